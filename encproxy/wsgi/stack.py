"""Assembles the WSGI stack from settings.

    Operations -> RequestLog -> Gateway -> Authentication -> BucketEncryption
        -> Encryption -> backend app

Each layer speaks plain S3 to the one below.  The bucket-configuration store
talks to the backend app directly, so encproxy's own state is never encrypted
or filtered by the layers meant for client objects.
"""
from __future__ import annotations

from encproxy.errors import ConfigError
from encproxy.filestore.store import FileStore
from encproxy.keys.factory import build_provider
from encproxy.keys.provider import KeyProvider
from encproxy.metrics import ObservedBackend, metered
from encproxy.settings import Settings
from encproxy.wsgi.apps.filestore import FileStoreApp
from encproxy.wsgi.apps.s3backend import build_s3_backend
from encproxy.wsgi.auth.middleware import AuthenticationMiddleware
from encproxy.wsgi.buckets import generation
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.buckets.middleware import BucketEncryptionMiddleware
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.edge.operations import outer_layers
from encproxy.wsgi.edge.socket_input import SocketInputLayer
from encproxy.wsgi.encryption.middleware import EncryptionMiddleware
from encproxy.wsgi.encryption.policy import EncryptionPolicy
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


def build_app(settings: Settings, keys: KeyProvider | None = None) -> WSGIApp:
    backend = ObservedBackend(build_backend(settings))  # metrics: backend errors
    keys = metered(keys or build_provider(settings))    # metrics: key-provider calls
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
    encrypting = EncryptionMiddleware(backend, store, keys, policy)
    buckets = BucketEncryptionMiddleware(encrypting, store, keys)
    credentials = dict(settings.credentials)
    auth = AuthenticationMiddleware(buckets, credentials.get,
                                    region=settings.get("server", "region"),
                                    allow_sigv2=settings.get("auth", "allow_sigv2"))
    gateway = Gateway(auth, settings.get("server", "hostnames"),
                      client_timeout=settings.get("server", "client_timeout"))
    # Outermost: large request bodies read straight from the socket (socket_input.py).
    return SocketInputLayer(outer_layers(gateway, settings, backend, keys))
