"""Transparent encryption of object bodies: ``EncryptionMiddleware``.

It wraps any WSGI app that speaks plain S3 (the file store, the S3 backend).
Writes that are to be encrypted reach the app below as ciphertext with the
object's envelope in ``x-amz-meta-encproxy`` (docs/FORMAT.md); reads are
decrypted as they stream, and sizes and ETags are translated wherever S3
reports them, so that clients see plain S3.

This module only dispatches: each operation is handled by a helper that
receives the ``EncryptionContext`` (context.py) and nothing else of the
middleware.  Operations not in the table pass through unchanged, as do all
requests for encproxy's internal bucket (which the bucket-configuration layer
above already keeps clients out of).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from encproxy import metrics
from encproxy.keys.bucket_keys import BucketKeys
from encproxy.keys.provider import KeyProvider
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.encryption.attributes import get_object_attributes
from encproxy.wsgi.encryption.background import BackgroundWrites
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.copies import Copies
from encproxy.wsgi.encryption.facts import FactsCache
from encproxy.wsgi.encryption.layouts import LayoutReader
from encproxy.wsgi.encryption.listings import Listings
from encproxy.wsgi.encryption.policy import EncryptionPolicy
from encproxy.wsgi.encryption.post import post_object
from encproxy.wsgi.encryption.reads import read_object
from encproxy.wsgi.encryption.update_encryption import update_object_encryption
from encproxy.wsgi.encryption.upload_store import UploadStore
from encproxy.wsgi.encryption.uploads import MultipartUploads
from encproxy.wsgi.encryption.writes import put_object
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary

Handler = Callable[[S3Request], Response]

__all__ = ["EncryptionMiddleware", "EncryptionPolicy"]


class EncryptionMiddleware:
    def __init__(self, app: WSGIApp, configs: BucketConfigStore, keys: KeyProvider,
                 policy: EncryptionPolicy, facts: FactsCache | None = None,
                 bucket_keys: BucketKeys | None = None,
                 background: BackgroundWrites | None = None,
                 read_ahead_records: bool = False) -> None:
        """``background``: where facts records are written from after the answer (None:
        before it, as in-process tests want them).  ``read_ahead_records``: listings read
        the facts records ahead (listings.py), for an app below that lists no facts."""
        self.app = app
        self.context = EncryptionContext(app, configs, keys, policy, facts or FactsCache(),
                                         LayoutReader(), bucket_keys or BucketKeys(keys),
                                         background)
        ctx = self.context
        self.uploads = uploads = MultipartUploads(
            ctx, UploadStore(app, configs.internal_bucket, configs.records))
        copies = Copies(ctx, uploads)
        listings = Listings(ctx, read_ahead=read_ahead_records)
        self.handlers: dict[str, Handler] = {
            "PutObject": lambda req: put_object(ctx, req),
            "PostObject": lambda req: post_object(ctx, req),
            "GetObject": lambda req: read_object(ctx, req, head=False),
            "HeadObject": lambda req: read_object(ctx, req, head=True),
            "CreateMultipartUpload": uploads.create,
            "UploadPart": lambda req: metrics.encrypted_if_sse(
                uploads.upload_part(req), req.content_length(False)),
            "CompleteMultipartUpload": uploads.complete,
            "AbortMultipartUpload": uploads.abort,
            "ListParts": uploads.list_parts,
            "CopyObject": copies.copy_object,
            "UploadPartCopy": copies.upload_part_copy,
            "GetObjectAttributes": lambda req: get_object_attributes(ctx, req),
            "UpdateObjectEncryption": lambda req: update_object_encryption(ctx, req),
            "ListObjects": lambda req: listings.respond(req, "Contents"),
            "ListObjectsV2": lambda req: listings.respond(req, "Contents"),
            "ListObjectVersions": lambda req: listings.respond(req, "Version"),
            "DeleteObject": lambda req: delete_object(ctx, req),
        }
        self._handle = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        req = S3Request.of(environ)
        if req.bucket == self.context.internal_bucket or req.operation not in self.handlers:
            return self.app(environ, start_response)
        return self._handle(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        assert req.operation is not None
        return self.handlers[req.operation](req)


def delete_object(ctx: EncryptionContext, req: S3Request) -> Response:
    """DeleteObject, passed through; a version deleted by id takes its rewrap record
    (``rewraps``) with it."""
    resp = ctx.pass_through(req)
    version_id = req.query.get("versionId")
    if version_id and 200 <= resp.status_code < 300:
        assert req.bucket is not None and req.key is not None
        ctx.rewraps.delete(req.bucket, req.key, version_id, req.environ)
    return resp
