"""GetObject and HeadObject: encrypted objects decrypted as they stream.

The first backend request is the client's own (GET for a whole object, HEAD for
a range or ``partNumber``), without its conditions, range or SSE-C key.  An
object stored as sent is answered from it directly.  For an encrypted object
the envelope in its metadata opens the data key; conditions are evaluated
against the client-visible ETag; the plaintext (or the smallest covering range
of ciphertext, for ranges) is then streamed and decrypted, every chunk verified
before any of its bytes is released.

Multipart-format objects are read through the ``LayoutReader`` (layouts.py),
never by asking the backend for ``?partNumber``.
"""
from __future__ import annotations

from dataclasses import dataclass

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.single import ObjectDecryptor
from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import Kind
from encproxy.format.envelope import Envelope
from encproxy.format.layout import plan_range
from encproxy.s3 import checksum_headers, preconditions, sse
from encproxy.s3.dates import parse_http_date
from encproxy.s3.ranges import ByteRange, parse_range
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.context import EncryptionContext, check_customer_matches
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import (
    CONDITIONAL_HEADERS,
    CONTEXT_HEADER,
    ENVELOPE_HEADER,
    SSE_C_HEADERS,
    client_view,
    mode_of,
)
from encproxy.wsgi.encryption.layouts import client_multipart_etag
from encproxy.wsgi.encryption.streaming import Fetcher, decrypted_response
from encproxy.wsgi.request import S3Request

# Stored bodies up to this size are read whole by a GET that has not yet learnt the
# object's ETag: the sealed MD5 comes with them, instead of by a second backend request.
WHOLE_BODY_UP_TO = 1024 * 1024


@dataclass(frozen=True)
class EncryptedRead:
    """One GET or HEAD of an encrypted object, after the first backend answer."""

    req: S3Request
    bucket: str
    key: str
    head: bool
    ranged: bool                   # a Range or partNumber: the first request was a HEAD
    customer: sse.CustomerKey | None
    first: subrequest.StreamingResponse
    envelope: Envelope
    fetcher: Fetcher               # later reads, pinned to the first answer's ETag

    @property
    def mode(self) -> str:
        return mode_of(self.envelope.protection)

    @property
    def stored_size(self) -> int:
        return int(self.first.header("content-length") or "0")

    @property
    def backend_etag(self) -> str:
        return self.first.header("etag") or ""

    @property
    def context(self) -> str | None:
        return self.first.header(CONTEXT_HEADER)

    @property
    def version_id(self) -> str | None:
        """The version read: named, or the current one the backend answered with (an
        older version is current again once the versions above it are deleted)."""
        return self.fetcher.version_id or self.first.header("x-amz-version-id")


def read_object(ctx: EncryptionContext, req: S3Request, head: bool) -> Response:
    assert req.bucket is not None and req.key is not None
    sse.refuse_on_read(req.headers)
    customer = sse.parse_customer_key(req.headers)
    if customer is not None:
        ctx.refuse_insecure_sse_c(req)
    ranged = "range" in req.headers or "partNumber" in req.query
    query = "&".join(p for p in req.environ.get(env.RAW_QUERY, "").split("&")
                     if p and not p.startswith("partNumber="))
    first = subrequest.open_stream(ctx.app, subrequest.derived_environ(
        req.environ, method="HEAD" if head or ranged else "GET",
        drop=(*CONDITIONAL_HEADERS, "range", *SSE_C_HEADERS), query=query))
    value = first.header(ENVELOPE_HEADER)
    if first.status < 300 and value is None and ctx.policy.require:
        # Encryption is required: an object without an envelope was not written by
        # encproxy, or had its envelope stripped in the backend (ENCRYPTION.md).
        first.close()
        raise integrity.envelope_missing(req.bucket, req.key)
    if first.status >= 300 or value is None:
        if customer is not None and first.status < 300:
            first.close()
            raise errors.InvalidRequest(
                "The encryption parameters are not applicable to this object.")
        if not ranged and customer is None and \
                not any(name in req.headers for name in CONDITIONAL_HEADERS):
            # The first request was the client's own, unchanged: its answer is the
            # answer (an object stored as sent, or an error), with no second request.
            return Response(first.body, status=first.status, headers=first.headers)
        first.close()
        return ctx.pass_through(req)
    try:
        read = EncryptedRead(
            req, req.bucket, req.key, head, ranged, customer, first,
            ctx.decode_envelope(value, req.bucket, req.key),
            Fetcher(ctx.app, req.environ, req.bucket, req.key, req.query.get("versionId"),
                    first.header("etag") or ""))
        check_customer_matches(read.mode, customer)
        if read.envelope.kind is Kind.SINGLE:
            return _single(ctx, read)
        return _multipart(ctx, read)
    except BaseException:
        first.close()
        raise


def client_etag(ctx: EncryptionContext, decryptor: ObjectDecryptor, mode: str,
                fetcher: Fetcher, stored_size: int, whole: bytes | None = None) -> str:
    """The client-visible ETag of a single-part object: its sealed plaintext MD5
    (SSE-C: the backend's), from the facts cache or opened from the seal.

    ``whole``: the stored body, if it was read already; else the seal is fetched.
    """
    if mode == sse.MODE_SSE_C:
        return fetcher.etag
    facts = ctx.facts.verified(fetcher.bucket, fetcher.key, fetcher.etag, stored_size,
                               decryptor.keys.object_id)
    if facts is not None and facts.encrypted:
        return facts.etag
    return _open_seal(ctx, decryptor, mode, fetcher, stored_size, whole).etag


def _open_seal(ctx: EncryptionContext, decryptor: ObjectDecryptor, mode: str,
               fetcher: Fetcher, stored_size: int, whole: bytes | None) -> ObjectFacts:
    """The facts the sealed tail gives (the ETag, and the checksum of a version 2
    object), opened and cached."""
    start, stop = decryptor.etag_seal_range
    with integrity.reported(fetcher.bucket, fetcher.key):
        seal = whole[start:stop] if whole is not None else fetcher.read(start, stop)
        md5, checksum = decryptor.open_seal(seal)
    etag = fetcher.etag if mode == sse.MODE_SSE_C else '"' + md5.hex() + '"'
    facts = ObjectFacts(True, decryptor.plaintext_size, etag, mode, checksum=checksum,
                        object_id=decryptor.keys.object_id)
    if mode != sse.MODE_SSE_C:   # a listing must not learn what only the key opens
        ctx.facts.put(fetcher.bucket, fetcher.key, fetcher.etag, stored_size, facts)
    return facts


def single_checksum(ctx: EncryptionContext, decryptor: ObjectDecryptor, mode: str,
                    fetcher: Fetcher, stored_size: int, whole: bytes | None = None
                    ) -> StoredChecksum | None:
    """The sealed checksum of a single-part object (None if it has none: written
    before envelope version 2), from the facts cache or opened from the seal."""
    if not decryptor.keys.checksummed:
        return None
    facts = ctx.facts.verified(fetcher.bucket, fetcher.key, fetcher.etag, stored_size,
                               decryptor.keys.object_id)
    if facts is not None and facts.checksum is not None and mode != sse.MODE_SSE_C:
        return facts.checksum
    return _open_seal(ctx, decryptor, mode, fetcher, stored_size, whole).checksum


def _check_conditions(read: EncryptedRead, etag: str) -> None:
    if not preconditions.any_condition(read.req.headers):
        return
    last_modified = read.first.header("last-modified") or ""
    try:
        preconditions.check(read.req.headers, etag, parse_http_date(last_modified) or 0.0)
    except errors.NotModified as exc:
        exc.headers.update({"ETag": etag, "Last-Modified": last_modified})
        raise


def _headers(read: EncryptedRead, etag: str, key_id: str,
             checksum: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The response headers; ``key_id`` is the authenticated one (never the envelope's
    field as stored: ``integrity.authenticated_key_id``); ``checksum``: the object's
    checksum headers, when the client asked for them."""
    headers = client_view(read.first.headers)
    if checksum:
        headers += list(checksum.items())
    headers += [("ETag", etag), ("Accept-Ranges", "bytes")]
    headers += list(sse.response_headers(
        read.mode, key_id, read.customer.key_md5 if read.customer else None,
        read.context, read.envelope.bucket_key is not None).items())
    return headers


def _single(ctx: EncryptionContext, read: EncryptedRead) -> Response:
    keys = ctx.open_keys(read.envelope, read.bucket, read.key, read.customer, read.context,
                         read.version_id)
    stored_size = read.stored_size
    with integrity.reported(read.bucket, read.key):
        key_id = integrity.authenticated_key_id(read.envelope)
        decryptor = ObjectDecryptor(keys, stored_size)
    whole = None
    if not read.head and not read.ranged and stored_size <= WHOLE_BODY_UP_TO and \
            read.mode != sse.MODE_SSE_C and \
            ctx.facts.verified(read.bucket, read.key, read.backend_etag, stored_size,
                               keys.object_id) is None:
        whole = read.first.read_all(limit=stored_size)
    etag = client_etag(ctx, decryptor, read.mode, read.fetcher, stored_size, whole)
    _check_conditions(read, etag)

    size = decryptor.plaintext_size
    byte_range = None
    if "partNumber" in read.req.query:
        number = _part_number(read.req)
        if number != 1:
            raise errors.InvalidPartNumber()
        if size:
            byte_range = parse_range(f"bytes=0-{size - 1}", size)
    else:
        byte_range = parse_range(read.req.headers.get("range"), size)
    shown = None
    if checksum_headers.mode_enabled(read.req.headers) and not read.ranged:
        # S3 shows the checksum of whole-object reads only.
        checksum = single_checksum(ctx, decryptor, read.mode, read.fetcher, stored_size, whole)
        if checksum is not None:
            shown = checksum_headers.response_headers(checksum)

    headers = _headers(read, etag, key_id, shown)
    status = 206 if byte_range is not None else 200
    if byte_range is not None:
        headers.append(("Content-Range", byte_range.content_range()))
    length = size if byte_range is None else byte_range.length
    headers.append(("Content-Length", str(length)))
    if read.head:
        read.first.close()
        return Response(None, status=status, headers=headers)
    if read.ranged:
        read.first.close()
        if byte_range is None:
            stream = read.fetcher.stream()
            batches = decryptor.decrypt(stream.body)
        else:
            plan = plan_range(size, byte_range.first, byte_range.last)
            stream = read.fetcher.stream(plan.ciphertext_start, plan.ciphertext_stop)
            batches = decryptor.decrypt_range(plan, stream.body)
    else:
        stream = read.first
        batches = decryptor.decrypt(stream.body if whole is None else [whole])
    return decrypted_response(batches, stream, status, headers, read.bucket, read.key, length)


def _part_number(req: S3Request) -> int:
    number = req.int_param("partNumber", 1, 1, 10000)
    if "range" in req.headers:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber "
                                    "query parameter.")
    return number


def _multipart(ctx: EncryptionContext, read: EncryptedRead) -> Response:
    """A multipart-format object: a range, ``partNumber``, or the whole object."""
    keys = ctx.open_keys(read.envelope, read.bucket, read.key, read.customer, read.context,
                         read.version_id)
    layouts, fetcher = ctx.layouts, read.fetcher
    stored_size, etag = read.stored_size, read.backend_etag
    with integrity.reported(read.bucket, read.key):
        key_id = integrity.authenticated_key_id(read.envelope)
        # The size of the verified layout (FORMAT.md §7.7), before any byte or size
        # is released, for HEAD, ranged and whole reads alike.
        layout = layouts.layout(keys, stored_size, etag, fetcher).layout
        size = layout.plaintext_size
        client = client_multipart_etag(layout, read.mode, etag)   # FORMAT.md §7.8
        ctx.facts.put(read.bucket, read.key, etag, stored_size,
                      ObjectFacts(True, size, client, read.mode, key_id,
                                  object_id=keys.object_id))
        _check_conditions(read, client)
        byte_range, parts_count, position = None, None, None
        if "partNumber" in read.req.query:
            byte_range, parts_count, position = _part_range(ctx, read, keys, size)
        else:
            byte_range = parse_range(read.req.headers.get("range"), size)

    shown = None
    description = layout.description
    if checksum_headers.mode_enabled(read.req.headers) and description is not None \
            and description.checksum is not None:
        checksum = description.checksum
        if position is not None:
            # A part read shows the part's checksum, as S3 does (FORMAT.md §15).
            shown = checksum_headers.response_headers(checksum._replace(
                digest=description.part_checksums[position]))
        elif not read.ranged:
            shown = checksum_headers.response_headers(checksum, layout.parts)
    headers = _headers(read, client, key_id, shown)
    if parts_count is not None:
        headers.append(("x-amz-mp-parts-count", str(parts_count)))
    status = 206 if byte_range is not None else 200
    if byte_range is not None:
        headers.append(("Content-Range", byte_range.content_range()))
    length = size if byte_range is None else byte_range.length
    if parts_count is not None and byte_range is None:
        length = 0
    headers.append(("Content-Length", str(length)))
    if read.head or length == 0 and parts_count is not None:
        read.first.close()
        return Response(None if read.head else b"", status=status, headers=headers)

    with integrity.reported(read.bucket, read.key):
        if byte_range is not None:
            read.first.close()
            batches, stream = layouts.decrypt_range(keys, stored_size, etag, fetcher,
                                                    byte_range.first, byte_range.last)
        else:
            if read.ranged:   # the first answer was a HEAD
                read.first.close()
                stream = fetcher.stream()
            else:
                stream = read.first
            batches = layouts.decrypt_all(keys, stored_size, etag, fetcher, stream.body, size)
    return decrypted_response(batches, stream, status, headers, read.bucket, read.key, length)


def _part_range(ctx: EncryptionContext, read: EncryptedRead, keys: ObjectKeys,
                size: int) -> tuple[ByteRange | None, int, int]:
    """The plaintext range of part ``partNumber`` (as uploaded), the part count, and the
    part's position in the layout."""
    number = _part_number(read.req)
    # Layouts are verified whole (FORMAT.md §7.7), so the part count reported is the client's.
    known = ctx.layouts.layout(keys, read.stored_size, read.backend_etag, read.fetcher)
    position = known.position(number)
    if position is None:
        raise errors.InvalidPartNumber()
    span = known.layout.spans[position]
    if not span.plaintext_size:
        return None, known.layout.parts, position
    return ByteRange(span.plaintext_offset, span.plaintext_offset + span.plaintext_size - 1,
                     size), known.layout.parts, position
