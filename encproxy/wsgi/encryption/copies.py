"""CopyObject and UploadPartCopy under encryption (FORMAT.md §3.4).

The source is looked at as the client sees it: its plaintext size, its
client-visible ETag (conditions ``x-amz-copy-source-if-*`` are evaluated
against it) and, for SSE-C, the key in ``x-amz-copy-source-server-side-
encryption-customer-*``.  The destination gets the encryption it calls for
(request headers, then the bucket's default, then the server's), whatever the
metadata directive.  Then, without ever holding the object in memory:

* **rebind** (the body is copied by the backend, byte for byte; only the
  envelope is new, bound to the destination): a whole-object CopyObject of an
  encrypted source into an encrypted destination of the same suite, unless the
  copy adds, drops or changes an SSE-C key.  A single-part source is copied
  with the backend's CopyObject (metadata REPLACE); a multipart source part by
  backend part with UploadPartCopy into a new backend upload, which keeps the
  segment boundaries, part numbers and ``-N`` that its segments and listing
  sizes depend on.  A copy onto itself with REPLACE is a rebind to the same key;
* **re-encrypt** (decrypt and encrypt as it streams, under a fresh data key):
  everything else that involves an encrypted side, including every
  UploadPartCopy into an encrypted upload (its data key was fixed at Create);
* **pass through**: plain to plain.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.single import ObjectEncryptor
from encproxy.crypto.stream import copied
from encproxy.format.checksum import FULL_OBJECT, StoredChecksum
from encproxy.format.constants import Kind, Suite
from encproxy.format.envelope import Envelope
from encproxy.format.layout import check_part, check_single_size
from encproxy.s3 import checksum_headers, preconditions, sse, tagging, xml
from encproxy.s3 import metadata as s3meta
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.dates import iso8601
from encproxy.s3.ranges import parse_copy_range
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import checksummed, kept_tags
from encproxy.wsgi.encryption.conditions import (
    CONDITION_HEADERS,
    backend_conditions,
    passed_through,
)
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import (
    check_metadata_budget,
    refuse_reserved_metadata,
    stored_metadata,
)
from encproxy.wsgi.encryption.layouts import backend_parts, client_multipart_etag
from encproxy.wsgi.encryption.part_copy import copy_parts_completed
from encproxy.wsgi.encryption.sources import (
    Source,
    open_source,
    source_checksum,
    source_plaintext,
)
from encproxy.wsgi.encryption.uploads import MultipartUploads, part_number, upload_id_of
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response

log = logging.getLogger("encproxy.copy")

MAX_COPY_SIZE = 5 * 1024**3     # S3's limit for a CopyObject source
# Request headers of a copy that describe the new object and go to the backend as sent.
DESTINATION_HEADERS = (
    "x-amz-acl", "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp",
    "x-amz-grant-write-acp", "x-amz-website-redirect-location",
    "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold")


class Copies:
    def __init__(self, ctx: EncryptionContext, uploads: MultipartUploads) -> None:
        self.ctx = ctx
        self.uploads = uploads

    def source(self, req: S3Request) -> Source:
        """The source named by ``x-amz-copy-source``, with its SSE-C copy-source key."""
        source = parse_copy_source(req.headers.get("x-amz-copy-source", ""))
        return open_source(self.ctx, req, source.bucket, source.key, source.version_id,
                           sse.parse_customer_key(req.headers, copy_source=True))

    def _check_conditions(self, req: S3Request, src: Source) -> None:
        preconditions.check(req.headers, src.etag, src.last_modified,
                            prefix="x-amz-copy-source-if-")

    # -- CopyObject ------------------------------------------------------------------
    def copy_object(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        ctx = self.ctx
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        refuse_reserved_metadata(req.headers)
        plan = ctx.plan(req)
        src = self.source(req)
        self._check_conditions(req, src)
        changes = any(h in req.headers for h in ("x-amz-storage-class",
                                                 "x-amz-website-redirect-location")) \
            or any(h.startswith(sse.SSE) for h in req.headers)
        if directive == "COPY" and (src.bucket, src.key) == (req.bucket, req.key) \
                and src.version_id is None and not changes:
            raise errors.InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to "
                "itself without changing the object's metadata, storage class, website "
                "redirect location or encryption attributes.")
        conditions = backend_conditions(ctx, req)   # If-Match names the destination
        if plan is None and not src.encrypted:
            return Response.from_app(ctx.app, passed_through(req, conditions))
        if src.plaintext_size > MAX_COPY_SIZE:
            raise errors.InvalidRequest("The specified copy source is larger than the maximum "
                                        f"allowable size for a copy source: {MAX_COPY_SIZE}")
        tags = self._destination_tags(req, src)
        meta = {**_destination_metadata(req, src, directive), **conditions,
                **kept_tags.tag_headers(tags)}
        if plan is None:
            return self._decrypt_into_plain(req, src, meta)
        context = req.headers.get(sse.SSE_CONTEXT) if plan.context is not None else None
        same_customer = (src.customer is None) == (plan.customer is None) and (
            src.customer is None or plan.customer is None or src.customer.key == plan.customer.key)
        # x-amz-checksum-algorithm asks for the checksum to be computed again (S3): the
        # body is read through, so that it can be.
        recompute = checksum_headers.ALGORITHM_HEADER in req.headers
        if src.envelope is not None and src.envelope.suite is Suite.AES256_GCM and same_customer \
                and not recompute:
            return self._rebind(req, src, plan, context, meta, tags)
        return self._reencrypt(req, src, plan, context, meta)

    def _destination_tags(self, req: S3Request, src: Source) -> tagging.Tags | None:
        """The new object's tags: the request's (``x-amz-tagging-directive: REPLACE``) or,
        by default, the source version's, as S3 copies them (None: the backend keeps no
        tags)."""
        if tagging.directive(req.headers.get("x-amz-tagging-directive")) == "REPLACE":
            return tagging.parse_header(req.headers.get("x-amz-tagging", ""))
        return kept_tags.read_tags(self.ctx.app, req.environ, src.bucket, src.key,
                                   src.version_id)

    def _result(self, req: S3Request, src: Source, etag: str, last_modified: str,
                sse_headers: dict[str, str], written: dict[str, str],
                checksum: tuple[StoredChecksum, int] | None = None) -> Response:
        """``written``: the headers of the app's answer to the write that made the copy
        (its version id); ``checksum``: the copy's, with its part count."""
        root = xml.Node("CopyObjectResult")
        root.add("LastModified", last_modified)
        root.add("ETag", etag)
        if checksum is not None:
            checksum_headers.add_elements(root, checksum[0], checksum[1])
        headers = dict(sse_headers)
        # The version copied: the one named, else the one the source's HEAD answered.
        source_version = src.version_id or src.headers.get("x-amz-version-id")
        if source_version:
            headers["x-amz-copy-source-version-id"] = source_version
        if "x-amz-version-id" in written:
            headers["x-amz-version-id"] = written["x-amz-version-id"]
        return xml_response(root, environ=req.environ, headers=headers)

    def _rebind(self, req: S3Request, src: Source, plan: sse.WritePlan, context: str | None,
                meta: dict[str, str], tags: tagging.Tags | None) -> Response:
        """The backend copies the body; only the envelope is new."""
        assert req.bucket is not None and req.key is not None and src.keys is not None
        ctx = self.ctx
        key_id = ctx.key_id(plan)
        envelope = ctx.rebound(src.keys, plan, req.bucket, req.key)
        headers = _with_envelope(meta, envelope, context)
        sse_headers = _sse_headers(plan, key_id, context)
        if src.multipart:
            backend_etag, written = self._copy_parts(req, src, headers)
            kept_tags.restore_tags(ctx.app, req.environ, req.bucket, req.key, tags,
                                   written.get("x-amz-version-id"))
            # The copy keeps the source's index, hence its S3-style ETag (FORMAT.md §7.8).
            etag = client_multipart_etag(ctx.layouts.layout(
                src.keys, src.stored_size, src.backend_etag, src.fetcher).layout, plan.mode,
                backend_etag)
            ctx.remember(req.bucket, req.key, backend_etag, src.stored_size, ObjectFacts(
                True, src.plaintext_size, etag, plan.mode, key_id), req.environ)
            return self._result(req, src, etag, iso8601(time.time()), sse_headers, written,
                                source_checksum(ctx, src))
        # The copy's tags are settled (_destination_tags): the backend must not bring the
        # source's of its own accord.
        headers.update({"x-amz-copy-source": src.copy_source(),
                        "x-amz-metadata-directive": "REPLACE",
                        "x-amz-tagging-directive": "REPLACE",
                        "x-amz-copy-source-if-match": src.backend_etag})
        resp = subrequest.request(ctx.app, req.environ, "PUT", req.bucket, req.key,
                                  headers=headers)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        result = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        if result.tag == "Error":
            raise subrequest.failure(500, resp.body)
        backend_etag = xml.child_text(result, "ETag") or ""
        kept_tags.restore_tags(ctx.app, req.environ, req.bucket, req.key, tags,
                               resp.headers.get("x-amz-version-id"))
        etag = backend_etag if plan.mode == sse.MODE_SSE_C else src.etag
        assert src.keys is not None   # a rebinding copy keeps the object id
        ctx.remember(req.bucket, req.key, backend_etag, src.stored_size, ObjectFacts(
            True, src.plaintext_size, etag, plan.mode, key_id,
            object_id=src.keys.object_id), req.environ)
        return self._result(req, src, etag, xml.child_text(result, "LastModified") or "",
                            sse_headers, resp.headers, source_checksum(ctx, src))

    def _copy_parts(self, req: S3Request, src: Source, headers: dict[str, str]
                    ) -> tuple[str, dict[str, str]]:
        """A multipart source, backend part by backend part: the copy keeps every
        segment's number and bytes, hence its ``-N`` and listing size.  The write
        conditions in ``headers`` go with the backend Complete that replaces the object.

        Returns the new backend ETag and the headers of the Complete's answer."""
        assert req.bucket is not None and req.key is not None and src.keys is not None
        layouts = self.ctx.layouts
        known = layouts.layout(src.keys, src.stored_size, src.backend_etag, src.fetcher)
        n = backend_parts(src.backend_etag)
        if n is None:
            raise errors.InternalError()
        conditions = {k: v for k, v in headers.items() if k in CONDITION_HEADERS}
        done = copy_parts_completed(
            self.ctx.app, req.environ, req.bucket, req.key, source=src.copy_source(),
            source_etag=src.backend_etag, ranges=known.layout.backend_part_ranges(n),
            numbers=known.layout.backend_part_numbers(n),
            headers={k: v for k, v in headers.items() if k not in CONDITION_HEADERS},
            complete_headers=conditions)
        etag = xml.child_text(xml.parse(done.body, max_size=subrequest.MAX_SUBRESPONSE),
                              "ETag") or ""
        layouts.remember(req.bucket, req.key, src.stored_size, etag, known)
        return etag, done.headers

    def _reencrypt(self, req: S3Request, src: Source, plan: sse.WritePlan, context: str | None,
                   meta: dict[str, str]) -> Response:
        """Decrypt the source and encrypt it under a fresh data key, as it streams."""
        assert req.bucket is not None and req.key is not None
        ctx = self.ctx
        try:
            check_single_size(src.plaintext_size, checksummed=True)
        except errors.S3Error:
            raise errors.InvalidRequest("The specified copy source is larger than the maximum "
                                        "allowable size for a copy source.") from None
        keys, envelope = ctx.new_keys(plan, req.bucket, req.key, Kind.SINGLE)
        headers = _with_envelope(meta, envelope, context)
        md5 = hashlib.md5(usedforsecurity=False)
        known = source_checksum(ctx, src)
        checksum = checksummed.for_copy(req.headers, known[0] if known else None)
        pieces, stream = source_plaintext(ctx, src, None)

        def observed() -> Iterator[bytes]:
            for piece in checksum.observed(pieces):
                md5.update(piece)
                yield piece

        encryptor = ObjectEncryptor(keys, src.plaintext_size)
        try:
            body = subrequest.IterReader(copied(encryptor.encrypt(
                observed(), md5=md5.digest, checksum=checksum.result)))
            resp = subrequest.request(ctx.app, req.environ, "PUT", req.bucket, req.key,
                                      headers=headers, body=body,
                                      length=encryptor.ciphertext_size)
        finally:
            stream.close()
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        backend_etag = resp.headers.get("etag", "")
        etag = '"' + md5.hexdigest() + '"'
        if plan.mode == sse.MODE_SSE_C:
            etag = backend_etag
        key_id = ctx.key_id(plan)
        stored = checksum.result()
        ctx.remember(req.bucket, req.key, backend_etag, encryptor.ciphertext_size, ObjectFacts(
            True, src.plaintext_size, etag, plan.mode, key_id, stored, keys.object_id), req.environ)
        return self._result(req, src, etag, iso8601(time.time()),
                            _sse_headers(plan, key_id, context), resp.headers, (stored, 1))

    def _decrypt_into_plain(self, req: S3Request, src: Source, meta: dict[str, str]
                            ) -> Response:
        """An encrypted source copied into a destination stored as sent (plaintext)."""
        assert req.bucket is not None and req.key is not None
        pieces, stream = source_plaintext(self.ctx, src, None)
        try:
            resp = subrequest.request(self.ctx.app, req.environ, "PUT", req.bucket, req.key,
                                      headers=meta, body=subrequest.IterReader(pieces),
                                      length=src.plaintext_size)
        finally:
            stream.close()
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        return self._result(req, src, resp.headers.get("etag", ""), iso8601(time.time()), {},
                            resp.headers)

    # -- UploadPartCopy ----------------------------------------------------------------
    def upload_part_copy(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        uploads = self.uploads
        number = part_number(req)
        upload_id = upload_id_of(req)
        record = uploads.record_for(req, req.bucket, req.key, upload_id)
        if not record.encrypted:
            self.ctx.refuse_unencrypted()   # [encryption] require, never through a record
        src = self.source(req)
        self._check_conditions(req, src)
        header = req.headers.get("x-amz-copy-source-range")
        byte_range = parse_copy_range(header, src.plaintext_size) if header else None
        length = byte_range.length if byte_range else src.plaintext_size
        customer = sse.parse_customer_key(req.headers)
        if not record.encrypted:
            if customer is not None:
                raise errors.InvalidRequest("The encryption parameters are not applicable to "
                                            "this multipart upload.")
            if not src.encrypted:
                return self.ctx.pass_through(req)
            keys = None
        else:
            keys = uploads.keys_for(req, req.bucket, req.key, upload_id, record, customer)
        try:
            check_part(number, length)
        except errors.EntityTooLarge:
            raise errors.InvalidRequest("The specified copy range is larger than the maximum "
                                        "allowable size of a part.") from None
        pieces, stream = source_plaintext(self.ctx, src, byte_range)
        sums: dict[str, bytes] = {}
        try:
            if keys is None:
                etag = uploads.put_part(req.environ, req.bucket, req.key, upload_id, number,
                                        subrequest.IterReader(pieces), length)
            else:
                etag, sums = uploads.write_part(req.environ, req.bucket, req.key, upload_id,
                                                keys, number, length, pieces)
        finally:
            stream.close()
        root = xml.Node("CopyPartResult")
        root.add("LastModified", iso8601(time.time()))
        root.add("ETag", etag)
        declared = record.checksum_algorithm
        if declared is not None and declared in sums:   # the part's, as S3 answers it
            checksum_headers.add_elements(root, StoredChecksum(
                declared, record.checksum_type or FULL_OBJECT, sums[declared]), with_type=False)
        headers = uploads.sse_headers(record, customer) if record.encrypted else {}
        source_version = src.version_id or src.headers.get("x-amz-version-id")
        if source_version:
            headers["x-amz-copy-source-version-id"] = source_version
        return xml_response(root, environ=req.environ, headers=headers)


def _destination_metadata(req: S3Request, src: Source, directive: str) -> dict[str, str]:
    """The new object's metadata and content headers: the source's (COPY) or the
    request's (REPLACE), with the destination headers of the request."""
    if directive == "COPY":
        user, content = src.user_metadata(), src.content_headers()
    else:
        user = {"x-amz-meta-" + k: v for k, v in s3meta.user_metadata(req.headers).items()}
        content = s3meta.content_headers(req.headers)
    meta = {**content, **user}
    storage = req.headers.get("x-amz-storage-class")
    if storage is not None:
        meta["x-amz-storage-class"] = storage
    meta.update({h: req.headers[h] for h in DESTINATION_HEADERS if h in req.headers})
    return meta


def _with_envelope(meta: dict[str, str], envelope: Envelope,
                   context: str | None) -> dict[str, str]:
    user = {k[len("x-amz-meta-"):]: v for k, v in meta.items() if k.startswith("x-amz-meta-")}
    check_metadata_budget(user, envelope, context)
    return {**meta, **stored_metadata(envelope, context)}


def _sse_headers(plan: sse.WritePlan, key_id: str, context: str | None) -> dict[str, str]:
    """The copy's SSE headers; its envelope has a bucket key exactly when ``plan`` asks
    for one (``EncryptionContext.bucket_key``)."""
    return sse.response_headers(plan.mode, key_id,
                                plan.customer.key_md5 if plan.customer else None, context,
                                plan.bucket_key)
