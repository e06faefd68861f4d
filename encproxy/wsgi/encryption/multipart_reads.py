"""Reading encrypted multipart objects: sizes, layouts, ranges (FORMAT.md §7.5, §7.6).

Nothing here asks the backend where parts begin (Ceph RGW ignores
``?partNumber``, moto answers it with the whole object, and neither answers
GetObjectAttributes as S3 does).  Everything comes from the stored size, the
backend ETag's ``-N`` and the object's own authenticated framing:

* the **plaintext size** of a regular layout is arithmetic on ``(S, N)``; an
  object whose size carries the index signal is read from its index;
* the **layout** (where each part's segment starts) is the index's, or a
  prediction from part 1's header (equal parts and a shorter last one, what
  clients send), or, when the prediction is wrong, the walked headers.

A prediction is only a guess, so before a range is streamed the header of
every segment it crosses is read and checked against the prediction; a range
read therefore never fails half-way because of a wrong guess (it fails only on
tampering).  Layouts are cached by backend ETag and stored size, which never
change meaning, within a bound on the parts held.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys, open_object
from encproxy.crypto.multipart import (
    MultipartDecryptor,
    layout_from_headers,
    open_segment_header,
    read_index,
    walk_step,
)
from encproxy.format.constants import MAX_PART_NUMBER, SEGMENT_HEADER_SIZE
from encproxy.format.envelope import Envelope
from encproxy.format.errors import (
    CiphertextSizeInvalid,
    CiphertextTruncated,
    FormatError,
    SegmentLayoutMismatch,
)
from encproxy.format.layout import (
    MultipartLayout,
    Trailer,
    index_tail_hint,
    is_indexed,
    multipart_plaintext_size,
    predict_layout,
)
from encproxy.format.segment import SegmentHeader
from encproxy.s3 import preconditions, sse
from encproxy.s3.dates import parse_http_date
from encproxy.s3.ranges import ByteRange, parse_range
from encproxy.wsgi import backend_calls, subrequest
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.responses import WSGIApp

if TYPE_CHECKING:
    from encproxy.wsgi.encryption.middleware import EncryptionMiddleware
    from encproxy.wsgi.request import S3Request

log = logging.getLogger("encproxy.multipart")

_ETAG_PARTS = re.compile(r'^"?[0-9A-Fa-f]{32}-(\d{1,5})"?$')
MAX_CACHED_PARTS = 100_000
HEADER_THREADS = 4
ENVELOPE_HEADER = "x-amz-meta-encproxy"
CONTEXT_HEADER = "x-amz-meta-encproxy-context"
# Headers of a backend response that describe the stored ciphertext, not what the client sees.
CIPHERTEXT_RESPONSE_HEADERS = {"content-length", "etag", "content-range", "accept-ranges",
                               "x-amz-mp-parts-count", "transfer-encoding", "content-md5"}


def backend_parts(etag: str) -> int | None:
    """The part count ``N`` of a backend multipart ETag (``"<md5>-N"``), else None."""
    m = _ETAG_PARTS.match(etag.strip())
    if m is None:
        return None
    n = int(m.group(1))
    return n if 1 <= n <= MAX_PART_NUMBER else None


class Fetcher:
    """Ranged reads of one stored object, pinned to its backend ETag (If-Match):
    an object replaced between two reads is never mixed with its successor."""

    def __init__(self, app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                 version_id: str | None, etag: str) -> None:
        self.app, self.parent, self.bucket, self.key = app, parent, bucket, key
        self.query = ("versionId=" + backend_calls.quote_param(version_id)) if version_id else ""
        self.etag = etag

    def stream(self, start: int | None = None, stop: int | None = None
               ) -> subrequest.StreamingResponse:
        """Bytes ``[start, stop)`` (the whole object without a range), as a stream."""
        headers = {"If-Match": self.etag} if self.etag else {}
        if start is not None and stop is not None:
            if stop <= start:
                raise ValueError("empty range")
            headers["Range"] = f"bytes={start}-{stop - 1}"
        resp = backend_calls.open_stream(self.app, self.parent, "GET", self.bucket, self.key,
                                         self.query, headers)
        if resp.status == 412:
            resp.close()
            raise errors.ServiceUnavailable("The object changed while it was being read; "
                                            "please retry.")
        if resp.status >= 300:
            resp.close()
            raise backend_calls.internal_failure(resp.status)
        return resp

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` (small: headers, an index)."""
        data = self.stream(start, stop).read_all(limit=stop - start)
        if len(data) != stop - start:
            raise CiphertextTruncated()
        return data


@dataclass
class KnownLayout:
    """A layout, and what has been checked of it.

    ``authoritative`` layouts come from the index or from walking every header;
    a predicted one is trusted only for the spans in ``verified``.  ``headers``
    keeps the raw header of spans already read (the first piece of a range that
    starts mid-segment needs it).
    """

    layout: MultipartLayout
    authoritative: bool
    verified: set[int] = field(default_factory=set)
    headers: dict[int, bytes] = field(default_factory=dict)
    positions: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.positions = {s.ciphertext_offset: i for i, s in enumerate(self.layout.spans)}

    def position(self, number: int) -> int | None:
        """The position of part ``number`` (a part number, as uploaded), or None."""
        try:
            return self.layout.part_numbers.index(number)
        except ValueError:
            return None


class MultipartReads:
    def __init__(self, max_cached_parts: int = MAX_CACHED_PARTS) -> None:
        self.max_cached_parts = max_cached_parts
        self._cache: OrderedDict[tuple[str, int], KnownLayout] = OrderedDict()
        self._cached_parts = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(HEADER_THREADS, thread_name_prefix="encproxy-headers")

    # -- sizes -------------------------------------------------------------------------
    def plaintext_size(self, keys: Callable[[], ObjectKeys], stored_size: int, etag: str,
                       fetcher: Fetcher) -> int:
        """The plaintext size; ``keys`` is called only when the index must be read."""
        n = backend_parts(etag)
        if n is not None:
            size = multipart_plaintext_size(stored_size, n)
            if size is not None:
                return size
        return self.layout(keys(), stored_size, etag, fetcher).layout.plaintext_size

    # -- layouts -----------------------------------------------------------------------
    def cached(self, stored_size: int, etag: str) -> KnownLayout | None:
        with self._lock:
            known = self._cache.get((etag.strip('"'), stored_size))
            if known is not None:
                self._cache.move_to_end((etag.strip('"'), stored_size))
            return known

    def _remember(self, stored_size: int, etag: str, known: KnownLayout) -> None:
        ident = (etag.strip('"'), stored_size)
        with self._lock:
            old = self._cache.pop(ident, None)
            if old is not None:
                self._cached_parts -= old.layout.parts
            self._cache[ident] = known
            self._cached_parts += known.layout.parts
            while self._cached_parts > self.max_cached_parts and len(self._cache) > 1:
                _, evicted = self._cache.popitem(last=False)
                self._cached_parts -= evicted.layout.parts

    def layout(self, keys: ObjectKeys, stored_size: int, etag: str, fetcher: Fetcher,
               verify: Sequence[int] | None = None, *, verify_all: bool = False) -> KnownLayout:
        """The object's layout, with the spans at ``verify`` (positions) checked, or all
        of them with ``verify_all``.  A wrong prediction is replaced by the walked
        layout (the caller must then plan again with the returned layout)."""
        known = self.cached(stored_size, etag)
        if known is None:
            known = self._discover(keys, stored_size, etag, fetcher)
            self._remember(stored_size, etag, known)
        if known.authoritative:
            return known
        positions = range(known.layout.parts) if verify_all else (verify or ())
        todo = [p for p in positions if p not in known.verified]
        if todo:
            try:
                self._verify(keys, known, fetcher, todo)
            except FormatError as exc:
                log.info("object %s/%s: predicted layout is wrong (%s); walking its headers",
                         fetcher.bucket, fetcher.key, type(exc).__name__)
                known = self._walked(keys, stored_size, backend_parts(etag), fetcher)
                self._remember(stored_size, etag, known)
        return known

    def _discover(self, keys: ObjectKeys, stored_size: int, etag: str,
                  fetcher: Fetcher) -> KnownLayout:
        n = backend_parts(etag)
        if n is not None and is_indexed(stored_size, n):
            start = max(0, stored_size - index_tail_hint(n))
            return KnownLayout(read_index(keys, fetcher.read(start, stored_size), stored_size, n),
                               authoritative=True)
        if n is not None and stored_size >= SEGMENT_HEADER_SIZE:
            raw = fetcher.read(0, SEGMENT_HEADER_SIZE)
            header, _ = open_segment_header(keys, raw, part_number=1)
            predicted = None if header.trailer else predict_layout(
                stored_size, n, header.plaintext_size)
            if predicted is not None:
                known = KnownLayout(predicted, predicted.parts == 1, {0}, {0: raw})
                return known
        return self._walked(keys, stored_size, n, fetcher)

    def _verify(self, keys: ObjectKeys, known: KnownLayout, fetcher: Fetcher,
                positions: list[int]) -> None:
        def check(position: int) -> tuple[int, bytes]:
            span = known.layout.spans[position]
            raw = fetcher.read(span.ciphertext_offset, span.ciphertext_offset + SEGMENT_HEADER_SIZE)
            header, _ = open_segment_header(keys, raw, part_number=span.part_number)
            if header.trailer or header.plaintext_size != span.plaintext_size:
                raise SegmentLayoutMismatch()
            return position, raw

        results = list(self._pool.map(check, positions)) if len(positions) > 1 else \
            [check(positions[0])]
        for position, raw in results:
            known.headers[position] = raw
            known.verified.add(position)
        if len(known.verified) >= known.layout.parts:
            known.authoritative = True

    def _walked(self, keys: ObjectKeys, stored_size: int, backend_parts_: int | None,
                fetcher: Fetcher) -> KnownLayout:
        """Read every header in turn: header 1 gives part 2's offset, and so on."""
        headers: list[SegmentHeader] = []
        raws: list[bytes] = []
        offset, number = 0, 1
        while offset < stored_size:
            if len(headers) > MAX_PART_NUMBER or offset + SEGMENT_HEADER_SIZE > stored_size:
                raise CiphertextSizeInvalid()
            raw = fetcher.read(offset, offset + SEGMENT_HEADER_SIZE)
            header, offset = walk_step(keys, offset, raw, number)
            headers.append(header)
            raws.append(raw)
            number = header.part_number + 1
            if header.trailer:
                break
        layout = layout_from_headers(headers)
        if layout.ciphertext_size != stored_size or offset != stored_size:
            raise CiphertextSizeInvalid()
        if backend_parts_ is not None:
            try:
                layout.backend_part_numbers(backend_parts_)
            except ValueError:
                raise CiphertextSizeInvalid() from None
        data = [raw for raw, h in zip(raws, headers, strict=True) if not h.trailer]
        return KnownLayout(layout, True, set(range(layout.parts)), dict(enumerate(data)))

    def header(self, known: KnownLayout, position: int, fetcher: Fetcher) -> bytes:
        raw = known.headers.get(position)
        if raw is None:
            span = known.layout.spans[position]
            raw = fetcher.read(span.ciphertext_offset, span.ciphertext_offset + SEGMENT_HEADER_SIZE)
            known.headers[position] = raw
        return raw

    # -- decryption --------------------------------------------------------------------
    def decrypt_range(self, keys: ObjectKeys, stored_size: int, etag: str, fetcher: Fetcher,
                      first: int, last: int
                      ) -> tuple[Iterator[memoryview], subrequest.StreamingResponse]:
        """Plaintext bytes ``[first, last]`` and the backend stream they come from
        (close it when done).  Only the covering ciphertext is fetched."""
        known = self.layout(keys, stored_size, etag, fetcher)
        plan = known.layout.plan_range(first, last)
        positions = [known.positions[p.span.ciphertext_offset] for p in plan.pieces]
        checked = self.layout(keys, stored_size, etag, fetcher, positions)
        if checked is not known:   # the prediction was wrong: plan on the walked layout
            known = checked
            plan = known.layout.plan_range(first, last)
            positions = [known.positions[p.span.ciphertext_offset] for p in plan.pieces]
        first_header = self.header(known, positions[0], fetcher) if plan.needs_header else None
        stream = fetcher.stream(plan.ciphertext_start, plan.ciphertext_stop)
        decryptor = MultipartDecryptor(keys, stored_size, layout=known.layout)
        return decryptor.decrypt_range(plan, stream.body, first_header), stream

    def decrypt_all(self, keys: ObjectKeys, stored_size: int, etag: str, fetcher: Fetcher,
                    body: Any, plaintext_size: int) -> Iterator[memoryview]:
        """The whole plaintext from the whole stored body, every segment verified.

        Objects with an index are read against it (it lists their part numbers);
        others are walked as they stream."""
        n = backend_parts(etag)
        layout = None
        if n is None or is_indexed(stored_size, n):
            layout = self.layout(keys, stored_size, etag, fetcher).layout
            if layout.trailer is not Trailer.INDEXED:
                layout = None
        decryptor = MultipartDecryptor(keys, stored_size, layout=layout)
        return decryptor.decrypt(body, plaintext_size=plaintext_size)


# -- GetObject and HeadObject of an encrypted multipart object ------------------------------

def respond(mw: EncryptionMiddleware, req: S3Request, head: bool, ranged: bool,
            customer: sse.CustomerKey | None, first: subrequest.StreamingResponse,
            envelope: Envelope, mode: str) -> Response:
    """The client's answer to GET/HEAD (a range, ``partNumber``, or the whole object).

    ``first`` is the backend's answer to the HEAD (ranges, ``partNumber``) or GET
    (whole object) that the middleware made for this request.
    """
    bucket, key = req.bucket, req.key
    stored_size = int(first.header("content-length") or "0")
    etag = first.header("etag") or ""
    context_header = first.header(CONTEXT_HEADER)
    extra = sse.parse_context(context_header) if context_header else None
    keys = mw._open(envelope, bucket, key, customer, extra)
    reads: MultipartReads = mw.multipart_reads
    fetcher = Fetcher(mw.app, req.environ, bucket, key, req.query.get("versionId"), etag)
    try:
        size = reads.plaintext_size(lambda: keys, stored_size, etag, fetcher)
        mw.facts.put(etag, stored_size, ObjectFacts(True, size, etag, mode, envelope.key_id))
        last_modified = parse_http_date(first.header("last-modified") or "") or 0.0
        try:
            preconditions.check(req.headers, etag, last_modified)
        except errors.NotModified as exc:
            exc.headers.update({"ETag": etag,
                                "Last-Modified": first.header("last-modified") or ""})
            raise
        byte_range, parts_count = None, None
        if "partNumber" in req.query:
            number = req.int_param("partNumber", 1, 1, 10000)
            if "range" in req.headers:
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber "
                                            "query parameter.")
            known = reads.layout(keys, stored_size, etag, fetcher)
            position = known.position(number)
            if position is None:
                raise errors.InvalidPartNumber()
            known = reads.layout(keys, stored_size, etag, fetcher, [position])
            position = known.position(number)
            if position is None:
                raise errors.InvalidPartNumber()
            span = known.layout.spans[position]
            parts_count = known.layout.parts
            if span.plaintext_size:
                byte_range = ByteRange(span.plaintext_offset,
                                       span.plaintext_offset + span.plaintext_size - 1, size)
        else:
            byte_range = parse_range(req.headers.get("range"), size)
    except errors.IntegrityError as exc:
        mw._integrity(bucket, key, exc)
        raise

    headers = client_headers(first.headers)
    headers += [("ETag", etag), ("Accept-Ranges", "bytes")]
    headers += list(sse.response_headers(mode, envelope.key_id,
                                         customer.key_md5 if customer else None,
                                         context_header).items())
    if parts_count is not None:
        headers.append(("x-amz-mp-parts-count", str(parts_count)))
    status = 200
    if byte_range is not None:
        status = 206
        headers.append(("Content-Range", byte_range.content_range()))
    length = size if byte_range is None else byte_range.length
    if parts_count is not None and byte_range is None:
        length = 0
    headers.append(("Content-Length", str(length)))
    if head or length == 0 and parts_count is not None:
        first.close()
        return Response(None if head else b"", status=status, headers=headers)

    try:
        if byte_range is not None:
            first.close()
            batches, stream = reads.decrypt_range(keys, stored_size, etag, fetcher,
                                                  byte_range.first, byte_range.last)
        else:
            if ranged:   # the first answer was a HEAD
                first.close()
                stream = fetcher.stream()
            else:
                stream = first
            batches = reads.decrypt_all(keys, stored_size, etag, fetcher, stream.body, size)
    except errors.IntegrityError as exc:
        mw._integrity(bucket, key, exc)
        raise
    return mw._stream_response(batches, stream, status, headers, bucket, key, length)



def client_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A backend object response's headers that describe the object as the client
    sees it (no ciphertext sizes, envelope, or backend encryption claims)."""
    return [(k, v) for k, v in headers
            if k.lower() not in CIPHERTEXT_RESPONSE_HEADERS
            and not k.lower().startswith((ENVELOPE_HEADER, "x-amz-server-side-encryption",
                                          "x-amz-checksum-"))]


def learn(mw: EncryptionMiddleware, parent: dict[str, Any], bucket: str, key: str,
          envelope: Envelope, mode: str, headers: dict[str, str], stored_size: int,
          etag: str) -> None:
    """A listing met this encrypted multipart object: cache its plaintext size.

    A regular layout's size is arithmetic on the listing; an indexed one reads the
    index once.  An SSE-C object's index cannot be read without the customer's
    key: until a GET or HEAD with the key (or its Complete) on this replica has
    cached its size, the listing reports what the backend listed.
    """
    n = backend_parts(etag)
    size = multipart_plaintext_size(stored_size, n) if n is not None else None
    if size is None:
        if mode == sse.MODE_SSE_C:
            log.info("listing %s: the size of %s needs its index, which needs the SSE-C key",
                     bucket, key)
            return
        context = headers.get(CONTEXT_HEADER)
        keys = open_object(mw.keys, envelope, bucket, key,
                           sse.parse_context(context) if context else None)
        fetcher = Fetcher(mw.app, parent, bucket, key, None, etag)
        size = mw.multipart_reads.plaintext_size(lambda: keys, stored_size, etag, fetcher)
    mw.facts.put(etag, stored_size, ObjectFacts(True, size, etag, mode, envelope.key_id))
