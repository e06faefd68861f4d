"""``S3BackendApp``: the dispatch (refuse, check, an ``op_<Operation>`` method, or plain
forwarding), and ``build_s3_backend``, the app built from settings."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.wrappers import Response

from encproxy.errors import ConfigError, NotImplementedError_
from encproxy.s3 import conditional_writes
from encproxy.s3.names import check_bucket_name
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import BackendConfig, S3BackendClient
from encproxy.settings import BackendCredential, Settings
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.s3backend.buckets import BucketOperations
from encproxy.wsgi.apps.s3backend.multipart import MultipartOperations
from encproxy.wsgi.apps.s3backend.objects import ObjectOperations
from encproxy.wsgi.apps.s3backend.relay import relay, send, small_body
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import s3_error_boundary


class S3BackendApp(BucketOperations, ObjectOperations, MultipartOperations):
    def __init__(self, client: S3BackendClient, region: str,
                 conditional_writes: frozenset[str] = frozenset({"PutObject"}),
                 internal_bucket: str | None = None,
                 backend_credentials: Mapping[str, BackendCredential] | None = None,
                 trailing_checksums: bool = False) -> None:
        """``conditional_writes``: what the backend enforces, ``[backend]
        conditional_writes`` (``Operation`` or ``Operation:If-Match``...).
        ``trailing_checksums``: the backend takes a checksum in an ``aws-chunked``
        trailer (``[backend] trailing_checksums``, :mod:`.trailer`).
        ``internal_bucket``: encproxy's own, whose requests are always signed, as
        encproxy.  ``backend_credentials``: client access key -> the backend identity
        its requests are signed as (``[backend_credentials]``)."""
        self.client = client
        self.region = region
        self.conditional_writes = conditional_writes
        self.internal_bucket = internal_bucket
        self.trailing_checksums = trailing_checksums
        self._app = s3_error_boundary(self.handle)
        # An anonymous caller's requests (environ.ANONYMOUS, kept by every sub-request
        # made for it) go unsigned, so that the backend's own ACLs decide them: the same
        # app over a client that does not sign.
        self._anonymous: S3BackendApp = self
        if client.signs:
            self._anonymous = S3BackendApp(client.unsigned(), region, conditional_writes,
                                           internal_bucket,
                                           trailing_checksums=trailing_checksums)
        # A client with its own backend identity: every request made for it
        # (environ.ACCESS_KEY, kept by sub-requests) goes signed as that identity, the
        # same app over a client that signs so.  encproxy's internal bucket is not the
        # client's: its records are always read and written as encproxy.
        self._as_client: dict[str, S3BackendApp] = {
            access_key: S3BackendApp(client.signing_as(cred.access_key, cred.secret_key),
                                     region, conditional_writes, internal_bucket,
                                     trailing_checksums=trailing_checksums)
            for access_key, cred in (backend_credentials or {}).items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._app(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        if environ.get(env.IN_PLACE):
            # An S3 backend cannot rewrite a version's metadata in place; a copy would
            # make a new current version instead: refused, and the caller falls back.
            raise NotImplementedError_("This storage backend cannot rewrite an object's "
                                       "metadata in place.")
        req = S3Request.of(environ)
        if req.bucket != self.internal_bucket:
            if environ.get(env.ANONYMOUS) and self._anonymous is not self:
                return self._anonymous.handle(environ)
            twin = self._as_client.get(environ.get(env.ACCESS_KEY) or "")
            if twin is not None:
                return twin.handle(environ)
        op = req.operation
        kind = forwarding.disposition(op)
        if kind == forwarding.REFUSE:
            raise req.refusal() if op is None else forwarding.refusal(op)
        assert op is not None
        forwarding.check_parameters(op, req.query)
        if op in conditional_writes.CONDITIONAL_WRITE_OPERATIONS:
            self._check_conditions(op, req)
        if req.bucket is not None and op != "CreateBucket":
            check_bucket_name(req.bucket)
        handler: Callable[[S3Request], Response] | None = getattr(self, "op_" + op, None)
        if handler is not None:
            return handler(req)
        if op in forwarding.VERBATIM_BODIES:
            return relay(req, send(self.client, req, body=small_body(req)))
        return relay(req, send(self.client, req))

    def _check_conditions(self, op: str, req: S3Request) -> None:
        """NotImplemented for a write condition the backend would not enforce: Ceph RGW
        16.2 and moto ignore some (docs/BACKENDS.md), and a write made unconditionally
        because of that would silently replace what the client meant to keep."""
        conditional_writes.parse(req.headers)   # If-None-Match other than "*"
        for header in ("If-Match", "If-None-Match"):
            if header.lower() in req.headers and op not in self.conditional_writes and \
                    f"{op}:{header}" not in self.conditional_writes:
                raise NotImplementedError_(
                    f"This storage backend does not enforce {header} on {op} ([backend] "
                    "conditional_writes): the write is refused rather than made "
                    "unconditionally.", Header=header)


def build_s3_backend(settings: Settings) -> S3BackendApp:
    """The app for ``[backend] type = s3``; ConfigError for a CA bundle it cannot read."""
    ca_bundle = None
    if settings.get("backend", "ca_bundle"):
        path = settings.path("backend", "ca_bundle")
        if not path.is_file():
            raise ConfigError("backend", "ca_bundle", f"cannot read {path}")
        ca_bundle = str(path)
    config = BackendConfig(
        endpoint=settings.get("backend", "endpoint"),
        access_key=settings.get("backend", "access_key"),
        secret_key=settings.get("backend", "secret_key"),
        region=settings.get("backend", "region"),
        addressing=settings.get("backend", "addressing"),
        tls_verify=settings.get("backend", "tls_verify"),
        ca_bundle=ca_bundle,
        connect_timeout=settings.get("backend", "connect_timeout"),
        read_timeout=settings.get("backend", "read_timeout"),
        pool_size=settings.get("backend", "pool_size"))
    return S3BackendApp(S3BackendClient(config), region=settings.get("server", "region"),
                        conditional_writes=settings.get("backend", "conditional_writes"),
                        internal_bucket=settings.get("backend", "internal_bucket"),
                        backend_credentials=settings.backend_credentials,
                        trailing_checksums=settings.get("backend", "trailing_checksums"))
