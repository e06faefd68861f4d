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
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.customer_keys import KEY_ID as SSE_C_KEY_ID
from encproxy.crypto.keys import ObjectKeys, new_object, rebind
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.crypto.stream import copied
from encproxy.format.constants import Kind, Protection, Suite
from encproxy.format.envelope import Envelope
from encproxy.format.layout import check_part, check_single_size, plan_range
from encproxy.s3 import metadata as s3meta
from encproxy.s3 import preconditions, sse, xml
from encproxy.s3.dates import iso8601, parse_http_date
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.ranges import ByteRange, parse_copy_range
from encproxy.wsgi import backend_calls, subrequest
from encproxy.wsgi.encryption.uploads import (
    CONTEXT_HEADER,
    ENVELOPE_HEADER,
    PROTECTION_MODES,
    check_metadata_budget,
    part_number,
    upload_id_of,
    upload_query,
)
from encproxy.wsgi.encryption.multipart_reads import Fetcher, backend_parts
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response

if TYPE_CHECKING:
    from encproxy.wsgi.encryption.middleware import EncryptionMiddleware

log = logging.getLogger("encproxy.copy")

MAX_COPY_SIZE = 5 * 1024**3     # S3's limit for a CopyObject source
MODES = {Protection.SSE_S3: sse.MODE_SSE_S3, Protection.SSE_KMS: sse.MODE_SSE_KMS,
         Protection.SSE_C: sse.MODE_SSE_C}
# Request headers of a copy that describe the new object and go to the backend as sent.
DESTINATION_HEADERS = (
    "x-amz-acl", "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp",
    "x-amz-grant-write-acp", "x-amz-tagging", "x-amz-website-redirect-location",
    "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold")


@dataclass
class Source:
    """The source of a copy, as the client sees it."""

    bucket: str
    key: str
    version_id: str | None
    headers: dict[str, str]          # the backend's HEAD answer, lower-case names
    stored_size: int
    backend_etag: str
    fetcher: Fetcher
    envelope: Envelope | None = None
    mode: str = sse.MODE_NONE
    customer: sse.CustomerKey | None = None
    keys: ObjectKeys | None = None
    plaintext_size: int = 0
    etag: str = ""

    @property
    def encrypted(self) -> bool:
        return self.envelope is not None

    @property
    def multipart(self) -> bool:
        return self.envelope is not None and self.envelope.kind is Kind.MULTIPART

    @property
    def last_modified(self) -> float:
        return parse_http_date(self.headers.get("last-modified", "")) or 0.0

    def copy_source(self) -> str:
        """``x-amz-copy-source`` naming exactly this source for the backend."""
        value = "/" + quote(self.bucket + "/" + self.key, safe="/~")
        if self.version_id:
            value += "?versionId=" + backend_calls.quote_param(self.version_id)
        return value

    def user_metadata(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.startswith("x-amz-meta-")
                and k not in (ENVELOPE_HEADER, CONTEXT_HEADER)}

    def content_headers(self) -> dict[str, str]:
        return s3meta.content_headers(self.headers)


class Copies:
    def __init__(self, mw: EncryptionMiddleware) -> None:
        self.mw = mw
        self.app = mw.app

    # -- the source ------------------------------------------------------------------
    def source(self, req: S3Request) -> Source:
        source = parse_copy_source(req.headers.get("x-amz-copy-source", ""))
        return self.open(req, source.bucket, source.key, source.version_id,
                         sse.parse_customer_key(req.headers, copy_source=True))

    def open(self, req: S3Request, bucket: str, key: str, version: str | None,
             customer: sse.CustomerKey | None) -> Source:
        """Look a stored object up as the client sees it (HEAD, envelope, keys, size, ETag)."""
        mw = self.mw
        if bucket == mw.configs.internal_bucket:
            raise errors.AccessDenied()
        query = ("versionId=" + backend_calls.quote_param(version)) if version else ""
        head = backend_calls.call(self.app, req.environ, "HEAD", bucket, key, query)
        if not head.ok:
            # HEAD answers carry no error code: ask again with GET for the client's error.
            got = backend_calls.call(self.app, req.environ, "GET", bucket, key, query,
                                     headers={"Range": "bytes=0-0"}) if head.status == 404 \
                else head
            if got.ok:
                raise errors.ServiceUnavailable()
            raise backend_calls.failure(got.status, got.body)
        etag = head.headers.get("etag", "")
        src = Source(bucket, key, version, head.headers, int(head.headers.get("content-length",
                                                                                "0")),
                     etag, Fetcher(self.app, req.environ, bucket, key, version, etag))
        value = head.headers.get(ENVELOPE_HEADER)
        if value is None:
            if customer is not None:
                raise errors.InvalidRequest("The encryption parameters are not applicable to "
                                            "this object.")
            src.plaintext_size, src.etag = src.stored_size, etag
            return src
        src.envelope = mw._envelope(value, bucket, key)
        src.mode = MODES[src.envelope.protection]
        if src.mode == sse.MODE_SSE_C and customer is None:
            raise errors.InvalidRequest(
                "The object was stored using a form of Server Side Encryption. The correct "
                "parameters must be provided to retrieve the object.")
        if src.mode != sse.MODE_SSE_C and customer is not None:
            raise errors.InvalidRequest("The encryption parameters are not applicable to this "
                                        "object.")
        src.customer = customer
        context = head.headers.get(CONTEXT_HEADER)
        src.keys = mw._open(src.envelope, bucket, key, customer,
                            sse.parse_context(context) if context else None)
        try:
            if src.multipart:
                src.plaintext_size = mw.multipart_reads.plaintext_size(
                    lambda: src.keys, src.stored_size, etag, src.fetcher)
                src.etag = etag
            else:
                decryptor = ObjectDecryptor(src.keys, src.stored_size)
                src.plaintext_size = decryptor.plaintext_size
                src.etag = etag if src.mode == sse.MODE_SSE_C else self._sealed_etag(src,
                                                                                     decryptor)
        except errors.IntegrityError as exc:
            mw._integrity(bucket, key, exc)
            raise
        return src

    def _sealed_etag(self, src: Source, decryptor: ObjectDecryptor) -> str:
        facts = self.mw.facts.get(src.backend_etag, src.stored_size)
        if facts is not None and facts.encrypted:
            return facts.etag
        start, stop = decryptor.etag_seal_range
        etag = '"' + decryptor.open_etag_seal(src.fetcher.read(start, stop)).hex() + '"'
        self.mw.facts.put(src.backend_etag, src.stored_size, ObjectFacts(
            True, decryptor.plaintext_size, etag, src.mode))
        return etag

    def plaintext(self, src: Source, byte_range: ByteRange | None
                  ) -> tuple[Iterator[bytes], subrequest.StreamingResponse]:
        """The source's plaintext (a range of it), and the stream to close afterwards.

        An integrity failure of the source is logged here: it surfaces inside the app
        below (which is reading this plaintext, or its ciphertext), as that app's error.
        """
        pieces, stream = self._plaintext(src, byte_range)

        def logged() -> Iterator[bytes]:
            try:
                yield from pieces
            except errors.IntegrityError as exc:
                self.mw._integrity(src.bucket, src.key, exc)
                raise

        return logged(), stream

    def _plaintext(self, src: Source, byte_range: ByteRange | None
                   ) -> tuple[Iterator[bytes], subrequest.StreamingResponse]:
        first, last = (byte_range.first, byte_range.last) if byte_range else (None, None)
        if not src.encrypted:
            stream = src.fetcher.stream(first, None if last is None else last + 1) \
                if src.stored_size else src.fetcher.stream()
            return (bytes(p) for p in stream.body), stream
        assert src.keys is not None
        if src.multipart:
            reads = self.mw.multipart_reads
            if byte_range is not None:
                batches, stream = reads.decrypt_range(src.keys, src.stored_size, src.backend_etag,
                                                      src.fetcher, byte_range.first,
                                                      byte_range.last)
            else:
                stream = src.fetcher.stream()
                batches = reads.decrypt_all(src.keys, src.stored_size, src.backend_etag,
                                            src.fetcher, stream.body, src.plaintext_size)
            return copied(batches), stream
        decryptor = ObjectDecryptor(src.keys, src.stored_size)
        if byte_range is not None:
            plan = plan_range(decryptor.plaintext_size, byte_range.first, byte_range.last)
            stream = src.fetcher.stream(plan.ciphertext_start, plan.ciphertext_stop)
            return copied(decryptor.decrypt_range(plan, stream.body)), stream
        stream = src.fetcher.stream()
        return copied(decryptor.decrypt(stream.body)), stream

    def _check_conditions(self, req: S3Request, src: Source) -> None:
        preconditions.check(req.headers, src.etag, src.last_modified,
                            prefix="x-amz-copy-source-if-")

    # -- CopyObject ------------------------------------------------------------------
    def copy_object(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        mw = self.mw
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        if ENVELOPE_HEADER in req.headers or CONTEXT_HEADER in req.headers:
            raise errors.InvalidArgument(f"The metadata name {ENVELOPE_HEADER} is reserved "
                                         "by encproxy.", ArgumentName=ENVELOPE_HEADER)
        plan = mw._plan(req)
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
        if plan is None and not src.encrypted:
            return mw._pass(req)
        if src.plaintext_size > MAX_COPY_SIZE:
            raise errors.InvalidRequest("The specified copy source is larger than the maximum "
                                        f"allowable size for a copy source: {MAX_COPY_SIZE}")
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
        if plan is None:
            return self._decrypt_into_plain(req, src, meta)
        key_id = SSE_C_KEY_ID if plan.mode == sse.MODE_SSE_C else \
            mw.keys.normalize(plan.key_id or mw.policy.default_key)
        context = req.headers.get(sse.SSE_CONTEXT) if plan.context is not None else None
        same_customer = (src.customer is None) == (plan.customer is None) and (
            src.customer is None or src.customer.key == plan.customer.key)  # type: ignore
        if src.encrypted and src.envelope.suite is Suite.AES256_GCM and same_customer:  # type: ignore
            return self._rebind(req, src, plan, key_id, context, meta)
        return self._reencrypt(req, src, plan, key_id, context, meta)

    def _destination(self, req: S3Request, plan: sse.WritePlan, key_id: str,
                     context: str | None, envelope: Envelope, meta: dict[str, str]
                     ) -> dict[str, str]:
        headers = dict(meta)
        headers[ENVELOPE_HEADER] = envelope.encode()
        if context is not None:
            headers[CONTEXT_HEADER] = context
        user = {k[len("x-amz-meta-"):]: v for k, v in meta.items()
                if k.startswith("x-amz-meta-")}
        check_metadata_budget(user, envelope, context)
        return headers

    def _result(self, req: S3Request, src: Source, etag: str, last_modified: str,
                sse_headers: dict[str, str]) -> Response:
        root = xml.Node("CopyObjectResult")
        root.add("LastModified", last_modified)
        root.add("ETag", etag)
        headers = dict(sse_headers)
        if src.version_id:
            headers["x-amz-copy-source-version-id"] = src.version_id
        return xml_response(root, environ=req.environ, headers=headers)

    def _rebind(self, req: S3Request, src: Source, plan: sse.WritePlan, key_id: str,
                context: str | None, meta: dict[str, str]) -> Response:
        assert req.bucket is not None and req.key is not None and src.keys is not None
        mw = self.mw
        try:
            envelope = rebind(mw._wrapper(plan.mode, plan.customer), src.keys, key_id,
                              req.bucket, req.key, PROTECTION_MODES[plan.mode], plan.context)
        except ValueError:
            raise errors.InvalidArgument("The encryption context may not redefine encproxy's "
                                         "own fields.", ArgumentName=sse.SSE_CONTEXT) from None
        headers = self._destination(req, plan, key_id, context, envelope, meta)
        sse_headers = sse.response_headers(plan.mode, key_id,
                                           plan.customer.key_md5 if plan.customer else None,
                                           context)
        if src.multipart:
            etag = self._copy_parts(req, src, headers)
            self.mw.facts.put(etag, src.stored_size, ObjectFacts(
                True, src.plaintext_size, etag, plan.mode, key_id))
            return self._result(req, src, etag, iso8601(time.time()), sse_headers)
        headers.update({"x-amz-copy-source": src.copy_source(),
                        "x-amz-metadata-directive": "REPLACE",
                        "x-amz-copy-source-if-match": src.backend_etag})
        resp = backend_calls.call(self.app, req.environ, "PUT", req.bucket, req.key,
                                  headers=headers)
        if not resp.ok:
            raise backend_calls.failure(resp.status, resp.body)
        result = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        if result.tag == "Error":
            raise backend_calls.failure(500, resp.body)
        backend_etag = xml.child_text(result, "ETag") or ""
        etag = backend_etag if plan.mode == sse.MODE_SSE_C else src.etag
        mw.facts.put(backend_etag, src.stored_size, ObjectFacts(
            True, src.plaintext_size, etag, plan.mode, key_id))
        return self._result(req, src, etag, xml.child_text(result, "LastModified") or "",
                            sse_headers)

    def _copy_parts(self, req: S3Request, src: Source, headers: dict[str, str]) -> str:
        """A multipart source, backend part by backend part: the copy keeps every
        segment's number and bytes, hence its ``-N`` and listing size."""
        assert req.bucket is not None and req.key is not None and src.keys is not None
        reads = self.mw.multipart_reads
        known = reads.layout(src.keys, src.stored_size, src.backend_etag, src.fetcher,
                             verify_all=True)
        n = backend_parts(src.backend_etag)
        if n is None:
            raise errors.InternalError()
        ranges = known.layout.backend_part_ranges(n)
        numbers = known.layout.backend_part_numbers(n)
        resp = backend_calls.call(self.app, req.environ, "POST", req.bucket, req.key, "uploads",
                                  headers=headers)
        if not resp.ok:
            raise backend_calls.failure(resp.status, resp.body)
        upload_id = xml.child_text(xml.parse(resp.body), "UploadId") or ""
        try:
            out = xml.Node("CompleteMultipartUpload")
            for (start, stop), number in zip(ranges, numbers, strict=True):
                part = backend_calls.call(
                    self.app, req.environ, "PUT", req.bucket, req.key,
                    upload_query(upload_id, number),
                    headers={"x-amz-copy-source": src.copy_source(),
                             "x-amz-copy-source-range": f"bytes={start}-{stop - 1}",
                             "x-amz-copy-source-if-match": src.backend_etag})
                if not part.ok:
                    raise backend_calls.failure(part.status, part.body)
                etag = xml.child_text(xml.parse(part.body), "ETag") or ""
                out.add("Part", [xml.Node("PartNumber", number), xml.Node("ETag", etag)])
            body = xml.render(out)
            done = backend_calls.call(self.app, req.environ, "POST", req.bucket, req.key,
                                      upload_query(upload_id),
                                      headers={"content-type": "application/xml"},
                                      body=io.BytesIO(body), length=len(body))
            if not done.ok:
                raise backend_calls.failure(done.status, done.body)
            result = xml.parse(done.body, max_size=subrequest.MAX_SUBRESPONSE)
            if result.tag == "Error":
                raise backend_calls.failure(500, done.body)
        except BaseException:
            backend_calls.call(self.app, req.environ, "DELETE", req.bucket, req.key,
                               upload_query(upload_id))
            raise
        etag = xml.child_text(result, "ETag") or ""
        reads._remember(src.stored_size, etag, known)
        return etag

    def _reencrypt(self, req: S3Request, src: Source, plan: sse.WritePlan, key_id: str,
                   context: str | None, meta: dict[str, str]) -> Response:
        assert req.bucket is not None and req.key is not None
        mw = self.mw
        try:
            check_single_size(src.plaintext_size)
        except errors.S3Error:
            raise errors.InvalidRequest("The specified copy source is larger than the maximum "
                                        "allowable size for a copy source.") from None
        try:
            keys, envelope = new_object(
                mw._wrapper(plan.mode, plan.customer), key_id, req.bucket, req.key,
                kind=Kind.SINGLE, protection=PROTECTION_MODES[plan.mode],
                extra_context=plan.context)
        except ValueError:
            raise errors.InvalidArgument("The encryption context may not redefine encproxy's "
                                         "own fields.", ArgumentName=sse.SSE_CONTEXT) from None
        headers = self._destination(req, plan, key_id, context, envelope, meta)
        md5 = hashlib.md5(usedforsecurity=False)
        pieces, stream = self.plaintext(src, None)

        def observed() -> Iterator[bytes]:
            for piece in pieces:
                md5.update(piece)
                yield piece

        encryptor = ObjectEncryptor(keys, src.plaintext_size)
        try:
            body = subrequest.IterReader(copied(encryptor.encrypt(observed(), md5=md5.digest)))
            resp = backend_calls.call(self.app, req.environ, "PUT", req.bucket, req.key,
                                      headers=headers, body=body,
                                      length=encryptor.ciphertext_size)
        finally:
            stream.close()
        if not resp.ok:
            raise backend_calls.failure(resp.status, resp.body)
        backend_etag = resp.headers.get("etag", "")
        etag = '"' + md5.hexdigest() + '"'
        if plan.mode == sse.MODE_SSE_C:
            etag = backend_etag
        mw.facts.put(backend_etag, encryptor.ciphertext_size, ObjectFacts(
            True, src.plaintext_size, etag, plan.mode, key_id))
        return self._result(req, src, etag, iso8601(time.time()), sse.response_headers(
            plan.mode, key_id, plan.customer.key_md5 if plan.customer else None, context))

    def _decrypt_into_plain(self, req: S3Request, src: Source, meta: dict[str, str]
                            ) -> Response:
        """An encrypted source copied into a destination stored as sent (plaintext)."""
        assert req.bucket is not None and req.key is not None
        pieces, stream = self.plaintext(src, None)
        try:
            resp = backend_calls.call(self.app, req.environ, "PUT", req.bucket, req.key,
                                      headers=meta, body=subrequest.IterReader(pieces),
                                      length=src.plaintext_size)
        finally:
            stream.close()
        if not resp.ok:
            raise backend_calls.failure(resp.status, resp.body)
        return self._result(req, src, resp.headers.get("etag", ""), iso8601(time.time()), {})

    # -- UploadPartCopy ----------------------------------------------------------------
    def upload_part_copy(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        mw = self.mw
        number = part_number(req)
        upload_id = upload_id_of(req)
        uploads = mw.multipart
        record = uploads.record_for(req, req.bucket, req.key, upload_id)
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
                return mw._pass(req)
            keys = None
        else:
            keys = uploads.keys_for(req, req.bucket, req.key, upload_id, record, customer)
        try:
            check_part(number, length)
        except errors.EntityTooLarge:
            raise errors.InvalidRequest("The specified copy range is larger than the maximum "
                                        "allowable size of a part.") from None
        pieces, stream = self.plaintext(src, byte_range)
        try:
            if keys is None:
                etag = uploads.put_part(req.environ, req.bucket, req.key, upload_id, number,
                                        subrequest.IterReader(pieces), length)
            else:
                etag = uploads.write_part(req.environ, req.bucket, req.key, upload_id, keys,
                                          number, length, pieces)
        finally:
            stream.close()
        root = xml.Node("CopyPartResult")
        root.add("LastModified", iso8601(time.time()))
        root.add("ETag", etag)
        headers = uploads.sse_headers(record, customer) if record.encrypted else {}
        if src.version_id:
            headers["x-amz-copy-source-version-id"] = src.version_id
        return xml_response(root, environ=req.environ, headers=headers)
