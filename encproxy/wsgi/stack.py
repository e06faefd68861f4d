"""Assembles the WSGI stack from settings.

    Operations -> RequestLog -> Gateway -> Cors -> Authentication
        -> BucketEncryption -> Encryption -> backend app

(Cors answers CORS ``OPTIONS`` requests, which are never authenticated, from the
backend app directly, and on the file store adds the CORS headers of its rules to
the answers of requests that carry ``Origin``.)

Each layer speaks plain S3 to the one below.  The bucket-configuration store
talks to the backend app directly, so encproxy's own state is never encrypted
or filtered by the layers meant for client objects.
"""
from __future__ import annotations

import dataclasses
import functools

from werkzeug.wrappers import Response

from encproxy.errors import AccessDenied, ConfigError
from encproxy.filestore.store import FileStore
from encproxy.keys.bucket_keys import BucketKeys
from encproxy.keys.factory import build_provider
from encproxy.keys.provider import KeyProvider
from encproxy.metrics import ObservedBackend, metered
from encproxy.settings import Settings
from encproxy.wsgi.apps.filestore import AnonymousAccess, FileStoreApp
from encproxy.wsgi.apps.filestore.preflight import (
    answer_preflight as answer_filestore_preflight,
)
from encproxy.wsgi.apps.filestore.preflight import response_cors_headers
from encproxy.wsgi.apps.s3backend import S3BackendApp, build_s3_backend
from encproxy.wsgi.apps.s3backend.anonymous import BackendAnonymousAccess
from encproxy.wsgi.apps.s3backend.preflight import answer_preflight as answer_s3_preflight
from encproxy.wsgi.auth.access import AccessRulesLayer
from encproxy.wsgi.auth.middleware import AnonymousAuthorizer, AuthenticationMiddleware
from encproxy.wsgi.buckets import generation
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.buckets.middleware import BucketEncryptionMiddleware
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.edge.operations import outer_layers
from encproxy.wsgi.edge.preflight import CorsHeaders, CorsLayer, PreflightAnswer
from encproxy.wsgi.edge.socket_input import SocketInputLayer
from encproxy.wsgi.encryption.background import BackgroundWrites
from encproxy.wsgi.encryption.middleware import EncryptionMiddleware
from encproxy.wsgi.encryption.policy import EncryptionPolicy
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp


def build_backend(settings: Settings) -> WSGIApp:
    kind = settings.get("backend", "type")
    if kind == "file":
        root = settings.path("backend", "root")
        try:
            store = FileStore(root)
        except OSError as exc:
            raise ConfigError("backend", "root", f"cannot use {root}: {exc.strerror}") from None
        return FileStoreApp(store, region=settings.get("server", "region"))
    if kind == "s3":
        return build_s3_backend(settings)
    raise AssertionError(f"backend type {kind!r} passed validation but has no builder")


def preflight_answer(backend: WSGIApp, internal_bucket: str) -> PreflightAnswer:
    """How ``backend`` answers a CORS preflight (``wsgi.edge.preflight``); the internal
    bucket is AccessDenied, as every other request to it."""
    answer: PreflightAnswer
    if isinstance(backend, FileStoreApp):
        answer = functools.partial(answer_filestore_preflight, backend.store)
    elif isinstance(backend, S3BackendApp):
        answer = functools.partial(answer_s3_preflight, backend.client)
    else:
        raise TypeError(f"no preflight answer for {type(backend).__name__}")

    def guarded(req: S3Request) -> Response:
        if req.bucket == internal_bucket:
            raise AccessDenied()
        return answer(req)
    return guarded


def cors_headers(backend: WSGIApp) -> CorsHeaders | None:
    """The CORS headers of ``backend``'s answers to requests with ``Origin``: the file
    store's rules; None for an S3 backend (its answers carry none: docs/BACKENDS.md)."""
    if isinstance(backend, FileStoreApp):
        return functools.partial(response_cors_headers, backend.store)
    return None


def anonymous_access(settings: Settings, backend: WSGIApp,
                     internal_bucket: str) -> AnonymousAuthorizer | None:
    """Who decides a request without credentials (``[auth] anonymous``; None: refused).

    The file store's ACLs, applied by encproxy; or an S3 backend's, which gets such
    requests unsigned.  The internal bucket is never anyone's to reach anonymously.
    """
    if settings.get("auth", "anonymous") == "refuse":
        return None
    if isinstance(backend, FileStoreApp):
        return AnonymousAccess(backend.store, hidden=(internal_bucket,))
    return BackendAnonymousAccess(hidden=(internal_bucket,))


def build_app(settings: Settings, keys: KeyProvider | None = None) -> WSGIApp:
    raw_backend = build_backend(settings)
    backend = ObservedBackend(raw_backend)              # metrics: backend errors
    # metrics: key-provider calls, counted where they reach the provider (under the
    # data-key cache, whose hits are no calls; bucket keys are above, FORMAT.md §16).
    keys = metered(keys) if keys is not None else build_provider(settings, measure=metered)
    internal = settings.get("backend", "internal_bucket")
    # Records in the internal bucket are authenticated under a key wrapped by this master key.
    records_key = keys.normalize(settings.get("keys", "records_key")
                                 or settings.get("keys", "default_key"))
    store = BucketConfigStore(backend, internal,
                              ttl=settings.get("encryption", "config_cache_seconds"),
                              records=RecordKeys(backend, internal, keys, records_key),
                              generation=generation.from_environment())
    policy = EncryptionPolicy(
        default=settings.get("encryption", "default"),
        require=settings.get("encryption", "require"),
        allow_insecure_sse_c=settings.get("encryption", "allow_insecure_sse_c"),
        default_key=keys.normalize(settings.get("keys", "default_key")))
    bucket_keys = BucketKeys(keys, settings.get("keys", "bucket_key_lifetime"),
                             settings.get("keys", "bucket_key_entries"))
    # The file store lists the facts it keeps with each object (FORMAT.md §17): no records
    # to read ahead.
    encrypting = EncryptionMiddleware(
        backend, store, keys, policy, bucket_keys=bucket_keys, background=BackgroundWrites(),
        read_ahead_records=not isinstance(raw_backend, FileStoreApp))
    buckets = BucketEncryptionMiddleware(encrypting, store, keys,
                                         own_backend_identity=settings.backend_credentials)
    # [access]: what each restricted client may do, decided right after authentication.
    ruled = AccessRulesLayer(buckets, {
        client: dataclasses.replace(rules, kms_keys=frozenset(
            keys.normalize(k) for k in rules.kms_keys))
        for client, rules in settings.access.items()})
    credentials = dict(settings.credentials)
    anonymous = anonymous_access(settings, raw_backend, internal)
    auth = AuthenticationMiddleware(ruled, credentials.get,
                                    region=settings.get("server", "region"),
                                    allow_sigv2=settings.get("auth", "allow_sigv2"),
                                    anonymous=anonymous)
    # CORS preflights are never authenticated: answered before the authentication layer,
    # which also refuses nothing before the CORS headers of an answer are decided.
    cors = CorsLayer(auth, preflight_answer(raw_backend, internal), cors_headers(raw_backend))
    gateway = Gateway(cors, settings.get("server", "hostnames"),
                      client_timeout=settings.get("server", "client_timeout"))
    # Outermost: large request bodies read straight from the socket (socket_input.py).
    return SocketInputLayer(outer_layers(gateway, settings, backend, keys))
