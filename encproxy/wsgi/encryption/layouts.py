"""Reading encrypted multipart objects: sizes, layouts, ranges (FORMAT.md §7.5–§7.7).

Nothing here asks the backend where parts begin (Ceph RGW ignores
``?partNumber``, moto answers it with the whole object, and neither answers
GetObjectAttributes as S3 does).  Everything comes from the stored size, the
backend ETag's ``-N`` and the object's own authenticated framing:

* the **layout** (every part's number, size and offset, and how the object ends)
  is the index's (every SSE-S3 and SSE-KMS completion writes one, FORMAT.md §7.3),
  or a prediction from part 1's header (equal parts and a shorter last one, what
  clients send), or, when the prediction is wrong, the walked headers;
* the **plaintext size** is the layout's, and so is the client-visible **ETag** of an
  SSE-S3 or SSE-KMS object (its described index, FORMAT.md §7.8:
  ``client_multipart_etag``).

The backend is not trusted with the layout (FORMAT.md §7.7, the layout check):
a layout is used, for any read, size or part count, only once it has been
verified whole: an index is authenticated and must add up to the stored size and
part count; a predicted layout is confirmed by reading every other segment
header, the trailer's included, in parallel (one more round trip when cold); a
walk reads every header anyway.  Each header must be authentic, carry its span's
number and size, and the object must end exactly as §7.3 requires (a terminal
last part, or a trailer numbered last + 1, at the stored size).  So a stored
object cut short, whatever its ETag says, is refused before the first byte of a
ranged read, a whole read or a HEAD is released.  Verified layouts are cached
by bucket, key, backend ETag and stored size (the backend names the last two, so
a layout is never lent to another object it gives the same), within a bound on
the parts held: a warm read costs no extra request.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import (
    MultipartDecryptor,
    layout_from_headers,
    open_segment_header,
    read_index,
    walk_step,
)
from encproxy.format.constants import MAX_PART_NUMBER, SEGMENT_HEADER_SIZE
from encproxy.format.errors import (
    CiphertextSizeInvalid,
    FinalSegmentMissing,
    FinalSegmentUnexpected,
    FormatError,
    SegmentLayoutMismatch,
)
from encproxy.format.layout import (
    MultipartLayout,
    Trailer,
    index_tail_hint,
    is_indexed,
    predict_layout,
)
from encproxy.format.segment import SegmentHeader
from encproxy.lru import LRU
from encproxy.s3 import sse
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption.streaming import Fetcher

log = logging.getLogger("encproxy.multipart")

_ETAG_PARTS = re.compile(r'^"?[0-9A-Fa-f]{32}-(\d{1,5})"?$')
MAX_CACHED_PARTS = 100_000
HEADER_THREADS = 4


def backend_parts(etag: str) -> int | None:
    """The part count ``N`` of a backend multipart ETag (``"<md5>-N"``), else None."""
    m = _ETAG_PARTS.match(etag.strip())
    if m is None:
        return None
    n = int(m.group(1))
    return n if 1 <= n <= MAX_PART_NUMBER else None


def client_multipart_etag(layout: MultipartLayout, mode: str, backend_etag: str) -> str:
    """The ETag a client sees for a multipart object with this verified layout: the
    S3-style ETag its described index gives (SSE-S3 and SSE-KMS completions, FORMAT.md
    §7.8), else the backend's (SSE-C objects, whose index a listing cannot open, and
    objects completed before indexes were described)."""
    if mode != sse.MODE_SSE_C and layout.etag is not None:
        return layout.etag
    return backend_etag


@dataclass
class KnownLayout:
    """A verified layout (FORMAT.md §7.7): the index's, or every header read.

    ``headers`` keeps the raw header of data spans already read (the first piece of
    a range that starts mid-segment needs it).  ``authoritative`` is always True for
    a layout the reader hands out; it is kept for callers that test it.
    ``object_id``: of the envelope whose keys verified it (None: not known).
    """

    layout: MultipartLayout
    authoritative: bool = True
    verified: set[int] = field(default_factory=set)
    headers: dict[int, bytes] = field(default_factory=dict)
    object_id: bytes | None = None
    positions: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.positions = {s.ciphertext_offset: i for i, s in enumerate(self.layout.spans)}

    def position(self, number: int) -> int | None:
        """The position of part ``number`` (a part number, as uploaded), or None."""
        try:
            return self.layout.part_numbers.index(number)
        except ValueError:
            return None


def check_predicted_header(layout: MultipartLayout, position: int,
                           header: SegmentHeader) -> None:
    """Require the authentic ``header`` read at the offset the predicted ``layout``
    gives segment ``position`` (the trailer's is ``layout.parts``) to be that segment:
    its number and size, and the object's one ending (FORMAT.md §7.3, §7.7)."""
    parts = layout.parts
    if position == parts:   # the header-only trailer, at the very end
        if not header.trailer or header.indexed or header.plaintext_size:
            raise FinalSegmentMissing()
        return
    span = layout.spans[position]
    if header.trailer:
        raise FinalSegmentUnexpected() if position else FinalSegmentMissing()
    if header.plaintext_size != span.plaintext_size:
        raise SegmentLayoutMismatch()
    last = position == parts - 1
    if header.terminal and not (last and layout.trailer is Trailer.NONE):
        raise FinalSegmentUnexpected()
    if last and not header.terminal and layout.trailer is Trailer.NONE:
        raise FinalSegmentMissing()


class LayoutReader:
    def __init__(self, max_cached_parts: int = MAX_CACHED_PARTS) -> None:
        self.max_cached_parts = max_cached_parts
        self._cache: LRU[tuple[str, str, str, int], KnownLayout] = LRU(
            max_cached_parts, weigh=lambda known: known.layout.parts)
        self._pool = ThreadPoolExecutor(HEADER_THREADS, thread_name_prefix="encproxy-headers")

    # -- sizes -------------------------------------------------------------------------
    def plaintext_size(self, keys: Callable[[], ObjectKeys], stored_size: int, etag: str,
                       fetcher: Fetcher) -> int:
        """The plaintext size, from the verified layout (FORMAT.md §7.7): never from
        ``(S, N)`` alone, which the backend controls.  ``keys`` is called only when
        the layout is not cached."""
        known = self.cached(fetcher.bucket, fetcher.key, stored_size, etag)
        if known is None:
            known = self.layout(keys(), stored_size, etag, fetcher)
        return known.layout.plaintext_size

    # -- layouts -----------------------------------------------------------------------
    @property
    def cached_parts(self) -> int:
        """How many parts the cached layouts hold together (what the cache is bounded by)."""
        return self._cache.weight

    def cached(self, bucket: str, key: str, stored_size: int, etag: str) -> KnownLayout | None:
        return self._cache.get((bucket, key, etag.strip('"'), stored_size))

    def remember(self, bucket: str, key: str, stored_size: int, etag: str,
                 known: KnownLayout) -> None:
        """Cache ``known`` (verified) as the layout of the stored body (ETag, size) of
        ``bucket/key``: the backend names the ETag and size, so a layout is never used
        for another object that it says has the same."""
        self._cache.put((bucket, key, etag.strip('"'), stored_size), known)

    def layout(self, keys: ObjectKeys, stored_size: int, etag: str,
               fetcher: Fetcher) -> KnownLayout:
        """The object's layout, verified whole (FORMAT.md §7.7), from the cache or read.

        A cached layout is used only if it was verified under the keys of the same
        envelope (object id): an S3 backend's ETag names the body, not the envelope,
        and one version's body may be stored again under another's (same key)."""
        known = self.cached(fetcher.bucket, fetcher.key, stored_size, etag)
        if known is None or known.object_id != keys.object_id:
            known = self._discover(keys, stored_size, etag, fetcher)
            known.object_id = keys.object_id
            self.remember(fetcher.bucket, fetcher.key, stored_size, etag, known)
        return known

    def _discover(self, keys: ObjectKeys, stored_size: int, etag: str,
                  fetcher: Fetcher) -> KnownLayout:
        n = backend_parts(etag)
        if n is not None and is_indexed(stored_size, n):
            # The index is authenticated and must add up to the size and part count.
            start = max(0, stored_size - index_tail_hint(n))
            return KnownLayout(read_index(keys, fetcher.read(start, stored_size), stored_size, n))
        if n is not None and stored_size >= SEGMENT_HEADER_SIZE:
            raw = fetcher.read(0, SEGMENT_HEADER_SIZE)
            header, _ = open_segment_header(keys, raw, part_number=1)
            predicted = None if header.trailer else predict_layout(
                stored_size, n, header.plaintext_size)
            if predicted is not None:
                try:
                    check_predicted_header(predicted, 0, header)
                    return self._confirmed(keys, predicted, fetcher, raw)
                except FormatError as exc:
                    log.info("object %s/%s: predicted layout is wrong (%s); walking its headers",
                             fetcher.bucket, fetcher.key, type(exc).__name__)
        return self._walked(keys, stored_size, n, fetcher)

    def _confirmed(self, keys: ObjectKeys, layout: MultipartLayout, fetcher: Fetcher,
                   first: bytes) -> KnownLayout:
        """The predicted ``layout`` once every other header (the trailer's too) has been
        read, in parallel, and checked against it (``check_predicted_header``)."""
        def check(position: int) -> tuple[int, bytes]:
            if position == layout.parts:
                offset, number = layout.data_size, layout.last_part_number + 1
            else:
                span = layout.spans[position]
                offset, number = span.ciphertext_offset, span.part_number
            raw = fetcher.read(offset, offset + SEGMENT_HEADER_SIZE)
            header, _ = open_segment_header(keys, raw, part_number=number)
            check_predicted_header(layout, position, header)
            return position, raw

        todo = list(range(1, layout.segment_count))
        results = list(self._pool.map(check, todo)) if len(todo) > 1 else \
            [check(p) for p in todo]
        headers = {0: first}
        headers.update((p, raw) for p, raw in results if p < layout.parts)
        return KnownLayout(layout, True, set(range(layout.parts)), headers)

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
        first_header = self.header(known, positions[0], fetcher) if plan.needs_header else None
        stream = fetcher.stream(plan.ciphertext_start, plan.ciphertext_stop)
        decryptor = MultipartDecryptor(keys, stored_size, layout=known.layout)
        return decryptor.decrypt_range(plan, stream.body, first_header), stream

    def decrypt_all(self, keys: ObjectKeys, stored_size: int, etag: str, fetcher: Fetcher,
                    body: Any, plaintext_size: int) -> Iterator[memoryview]:
        """The whole plaintext from the whole stored body, every segment verified
        against the verified layout (already cached: the size came from it)."""
        layout = self.layout(keys, stored_size, etag, fetcher).layout
        decryptor = MultipartDecryptor(keys, stored_size, layout=layout)
        return decryptor.decrypt(body, plaintext_size=plaintext_size)
