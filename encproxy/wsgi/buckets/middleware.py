"""Bucket default encryption, answered by encproxy itself (``?encryption``).

PutBucketEncryption, GetBucketEncryption and DeleteBucketEncryption never reach
the backend: the configuration lives in the ``BucketConfigStore``.  This layer
also keeps that store consistent with bucket life cycles (a deleted bucket's
configuration goes with it; a new bucket starts with none) and hides the
internal bucket from clients.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.keys.provider import KeyProvider
from encproxy.s3 import xml
from encproxy.s3.bucket_encryption import MAX_BODY, BucketEncryption, parse_configuration
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary, xml_response

log = logging.getLogger("encproxy.bucket_encryption")


class BucketEncryptionMiddleware:
    def __init__(self, app: WSGIApp, store: BucketConfigStore, keys: KeyProvider) -> None:
        self.app = app
        self.store = store
        self.keys = keys
        self._native = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = S3Request.of(environ)
        if req.bucket == self.store.internal_bucket or req.operation in (
                "PutBucketEncryption", "GetBucketEncryption", "DeleteBucketEncryption",
                "ListBuckets", "DeleteBucket", "CreateBucket"):
            return self._native(environ, start_response)
        return self.app(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        if req.bucket == self.store.internal_bucket:
            raise errors.AccessDenied()
        assert req.operation is not None
        handler: Callable[[S3Request], Response] = getattr(self, "op_" + req.operation)
        return handler(req)

    # -- the subresource --------------------------------------------------------------
    def _require_bucket(self, req: S3Request) -> str:
        assert req.bucket is not None
        resp = subrequest.request(self.app, req.environ, "HEAD", req.bucket)
        if resp.status == 404:
            raise errors.NoSuchBucket(BucketName=req.bucket)
        if not resp.ok:
            raise errors.ServiceUnavailable() if resp.status == 503 else errors.InternalError()
        return req.bucket

    def op_PutBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        if req.content_length(required=False) > MAX_BODY:
            raise errors.MaxMessageLengthExceeded()
        config = parse_configuration(req.read_small_body(MAX_BODY))
        if config.kms_key_id is not None:
            key_id = self.keys.normalize(config.kms_key_id)
            if not self.keys.key_exists(key_id):
                raise errors.KMSNotFound(f"Invalid keyId '{config.kms_key_id}'")
            config = BucketEncryption(config.algorithm, key_id, config.bucket_key_enabled)
        self.store.put(bucket, config, parent=req.environ)
        log.info("bucket %s: default encryption set to %s", bucket, config.algorithm)
        return Response(b"", status=200)

    def op_GetBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        config = self.store.get(bucket, parent=req.environ)
        if config is None:
            raise errors.ServerSideEncryptionConfigurationNotFoundError(BucketName=bucket)
        return xml_response(config.to_xml(), environ=req.environ)

    def op_DeleteBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        self.store.delete(bucket, parent=req.environ)
        return Response(b"", status=204)

    # -- bucket life cycle ------------------------------------------------------------
    def _relay(self, req: S3Request) -> tuple[subrequest.SubResponse, Response]:
        resp = subrequest.run(self.app, req.environ)
        relayed = Response(resp.body, status=resp.status,
                           headers=[(k, v) for k, v in resp.headers.items()
                                    if k not in ("content-length",)])
        return resp, relayed

    def op_DeleteBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        resp, relayed = self._relay(req)
        if resp.ok:
            self.store.delete(req.bucket, parent=req.environ)
        return relayed

    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        resp, relayed = self._relay(req)
        if resp.ok:
            # A configuration left by a bucket deleted behind encproxy's back must not
            # apply to a new bucket of the same name.
            self.store.delete(req.bucket, parent=req.environ)
        return relayed

    def op_ListBuckets(self, req: S3Request) -> Response:
        resp, relayed = self._relay(req)
        if not resp.ok:
            return relayed
        root = xml.parse(resp.body)
        buckets = root.find("Buckets")
        if buckets is not None:
            entries = [b for b in buckets
                       if xml.child_text(b, "Name") != self.store.internal_bucket]
            # S3 lists buckets by name; some backends (moto) list them as created.
            entries.sort(key=lambda b: (xml.child_text(b, "Name") or "").encode("utf-8"))
            for bucket in list(buckets):
                buckets.remove(bucket)
            buckets.extend(entries)
        return Response(xml.render_element(root), status=200, content_type="application/xml")
