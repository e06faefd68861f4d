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
from collections.abc import Callable, Iterator, Sequence
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
from encproxy.lru import LRU
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


class LayoutReader:
    def __init__(self, max_cached_parts: int = MAX_CACHED_PARTS) -> None:
        self.max_cached_parts = max_cached_parts
        self._cache: LRU[tuple[str, int], KnownLayout] = LRU(
            max_cached_parts, weigh=lambda known: known.layout.parts)
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
    @property
    def cached_parts(self) -> int:
        """How many parts the cached layouts hold together (what the cache is bounded by)."""
        return self._cache.weight

    def cached(self, stored_size: int, etag: str) -> KnownLayout | None:
        return self._cache.get((etag.strip('"'), stored_size))

    def remember(self, stored_size: int, etag: str, known: KnownLayout) -> None:
        """Cache ``known`` as the layout of the stored body (ETag, size)."""
        self._cache.put((etag.strip('"'), stored_size), known)

    def layout(self, keys: ObjectKeys, stored_size: int, etag: str, fetcher: Fetcher,
               verify: Sequence[int] | None = None, *, verify_all: bool = False) -> KnownLayout:
        """The object's layout, with the spans at ``verify`` (positions) checked, or all
        of them with ``verify_all``.  A wrong prediction is replaced by the walked
        layout (the caller must then plan again with the returned layout)."""
        known = self.cached(stored_size, etag)
        if known is None:
            known = self._discover(keys, stored_size, etag, fetcher)
            self.remember(stored_size, etag, known)
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
                self.remember(stored_size, etag, known)
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
