"""A stored object looked at as the client sees it, to be copied or described.

CopyObject, UploadPartCopy and GetObjectAttributes all start from a HEAD of
the stored object, its envelope and keys, and its plaintext size and
client-visible ETag; copies then read its plaintext (or a range of it) as a
stream.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.single import ObjectDecryptor
from encproxy.crypto.stream import copied
from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import Kind
from encproxy.format.envelope import Envelope
from encproxy.format.layout import plan_range
from encproxy.s3 import metadata as s3meta
from encproxy.s3 import sse
from encproxy.s3.dates import parse_http_date
from encproxy.s3.ranges import ByteRange
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.context import EncryptionContext, check_customer_matches
from encproxy.wsgi.encryption.headers import CONTEXT_HEADER, ENVELOPE_HEADER, mode_of
from encproxy.wsgi.encryption.layouts import client_multipart_etag
from encproxy.wsgi.encryption.reads import client_etag, single_checksum
from encproxy.wsgi.encryption.streaming import Fetcher
from encproxy.wsgi.request import S3Request


@dataclass
class Source:
    """A stored object, as the client sees it."""

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
    key_id: str | None = None        # authenticated (integrity.authenticated_key_id)

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
            value += "?versionId=" + subrequest.quote_param(self.version_id)
        return value

    def user_metadata(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.startswith("x-amz-meta-")
                and k not in (ENVELOPE_HEADER, CONTEXT_HEADER)}

    def content_headers(self) -> dict[str, str]:
        return s3meta.content_headers(self.headers)


def open_source(ctx: EncryptionContext, req: S3Request, bucket: str, key: str,
                version: str | None, customer: sse.CustomerKey | None) -> Source:
    """Look a stored object up as the client sees it (HEAD, envelope, keys, size, ETag)."""
    if bucket == ctx.internal_bucket:
        raise errors.AccessDenied()
    if customer is not None:
        ctx.refuse_insecure_sse_c(req)
    query = ("versionId=" + subrequest.quote_param(version)) if version else ""
    head = subrequest.request(ctx.app, req.environ, "HEAD", bucket, key, query)
    if not head.ok:
        # HEAD answers carry no error code: ask again with GET for the client's error.
        got = subrequest.request(ctx.app, req.environ, "GET", bucket, key, query,
                                 headers={"Range": "bytes=0-0"}) if 400 <= head.status < 500 \
            else head
        if got.ok:
            raise errors.ServiceUnavailable()
        raise subrequest.failure(got.status, got.body)
    etag = head.headers.get("etag", "")
    src = Source(bucket, key, version, head.headers,
                 int(head.headers.get("content-length", "0")), etag,
                 Fetcher(ctx.app, req.environ, bucket, key, version, etag))
    value = head.headers.get(ENVELOPE_HEADER)
    if value is None and ctx.policy.require:
        raise integrity.envelope_missing(bucket, key)   # stripped, or never encrypted
    if value is None:
        if customer is not None:
            raise errors.InvalidRequest("The encryption parameters are not applicable to "
                                        "this object.")
        src.plaintext_size, src.etag = src.stored_size, etag
        return src
    src.envelope = ctx.decode_envelope(value, bucket, key)
    src.mode = mode_of(src.envelope.protection)
    check_customer_matches(src.mode, customer)
    src.customer = customer
    keys = ctx.open_keys(src.envelope, bucket, key, customer, head.headers.get(CONTEXT_HEADER),
                         version or head.headers.get("x-amz-version-id"))
    src.keys = keys
    with integrity.reported(bucket, key):
        src.key_id = integrity.authenticated_key_id(src.envelope)
    if src.multipart:
        with integrity.reported(bucket, key):
            layout = ctx.layouts.layout(keys, src.stored_size, etag, src.fetcher).layout
        src.plaintext_size = layout.plaintext_size
        src.etag = client_multipart_etag(layout, src.mode, etag)   # FORMAT.md §7.8
        return src
    with integrity.reported(bucket, key):
        decryptor = ObjectDecryptor(keys, src.stored_size)
    src.plaintext_size = decryptor.plaintext_size
    src.etag = client_etag(ctx, decryptor, src.mode, src.fetcher, src.stored_size)
    return src


def source_plaintext(ctx: EncryptionContext, src: Source, byte_range: ByteRange | None
                     ) -> tuple[Iterator[bytes], subrequest.StreamingResponse]:
    """The source's plaintext (a range of it), and the stream to close afterwards.

    An integrity failure of the source is logged here: it surfaces inside the app
    below (which is reading this plaintext, or its ciphertext), as that app's error.
    """
    pieces, stream = _plaintext(ctx, src, byte_range)

    def logged() -> Iterator[bytes]:
        with integrity.reported(src.bucket, src.key):
            yield from pieces

    return logged(), stream


def _plaintext(ctx: EncryptionContext, src: Source, byte_range: ByteRange | None
               ) -> tuple[Iterator[bytes], subrequest.StreamingResponse]:
    first, last = (byte_range.first, byte_range.last) if byte_range else (None, None)
    if not src.encrypted:
        stream = src.fetcher.stream(first, None if last is None else last + 1) \
            if src.stored_size else src.fetcher.stream()
        return (bytes(p) for p in stream.body), stream
    assert src.keys is not None
    if src.multipart:
        layouts = ctx.layouts
        if byte_range is not None:
            batches, stream = layouts.decrypt_range(src.keys, src.stored_size, src.backend_etag,
                                                    src.fetcher, byte_range.first,
                                                    byte_range.last)
        else:
            stream = src.fetcher.stream()
            batches = layouts.decrypt_all(src.keys, src.stored_size, src.backend_etag,
                                          src.fetcher, stream.body, src.plaintext_size)
        return copied(batches), stream
    decryptor = ObjectDecryptor(src.keys, src.stored_size)
    if byte_range is not None:
        plan = plan_range(decryptor.plaintext_size, byte_range.first, byte_range.last)
        stream = src.fetcher.stream(plan.ciphertext_start, plan.ciphertext_stop)
        return copied(decryptor.decrypt_range(plan, stream.body)), stream
    stream = src.fetcher.stream()
    return copied(decryptor.decrypt(stream.body)), stream


def source_checksum(ctx: EncryptionContext, src: Source) -> tuple[StoredChecksum, int] | None:
    """The sealed checksum of an encrypted source and its part count (1 for a
    single-part object); None if it has none (written before checksums were kept,
    or a multipart object completed without one)."""
    if src.keys is None:
        return None
    with integrity.reported(src.bucket, src.key):
        if src.multipart:
            layout = ctx.layouts.layout(src.keys, src.stored_size, src.backend_etag,
                                        src.fetcher).layout
            description = layout.description
            if description is None or description.checksum is None:
                return None
            return description.checksum, layout.parts
        decryptor = ObjectDecryptor(src.keys, src.stored_size)
    checksum = single_checksum(ctx, decryptor, src.mode, src.fetcher, src.stored_size)
    return None if checksum is None else (checksum, 1)
