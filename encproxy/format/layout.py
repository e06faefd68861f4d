"""Size and range maths of the encproxy object format (docs/FORMAT.md §5-§7).

Everything here is arithmetic on sizes and offsets: plaintext size to ciphertext
size and back, a plaintext byte range to the ciphertext bytes that cover it, and
the layout of a multipart object (where each part's segment starts).

Vocabulary:

* a *chunk stream* is ``max(1, ceil(p / CHUNK_SIZE))`` chunks of ``CHUNK_SIZE``
  plaintext bytes (the last one 0..CHUNK_SIZE bytes), each followed by its tag;
* a *single-part* body is one chunk stream followed by the sealed MD5;
* a *segment* is one part of a multipart object: a header, then a chunk stream;
* a *trailer* is an extra segment written at CompleteMultipartUpload time.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import NamedTuple

from encproxy.errors import (
    EntityTooLarge,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
)
from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import (
    BACKEND_MAX_OBJECT_SIZE,
    BACKEND_MAX_PART_SIZE,
    BACKEND_MAX_PUT_SIZE,
    CHECKSUM_BLOCK_SIZE,
    CHECKSUMMED_SEAL_SIZE,
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    ETAG_SEAL_SIZE,
    FOOTER_SIZE,
    INDEX_DESCRIPTION_SIZE,
    INDEX_ENTRY_SIZE,
    INDEX_PREFIX_SIZE,
    INDEX_SIGNAL_RESIDUE,
    MAX_INDEX_PAD,
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    SEGMENT_HEADER_SIZE,
    TAG_SIZE,
)
from encproxy.format.errors import CiphertextSizeInvalid

# -- chunk streams ---------------------------------------------------------------------


def chunk_count(plaintext_size: int) -> int:
    """Number of chunks of a chunk stream; an empty stream still has one (empty) chunk."""
    _check_size(plaintext_size)
    return max(1, -(-plaintext_size // CHUNK_SIZE))


def chunk_plaintext_size(plaintext_size: int, index: int) -> int:
    """Plaintext bytes in chunk ``index`` of a stream of ``plaintext_size`` bytes."""
    last = chunk_count(plaintext_size) - 1
    if not 0 <= index <= last:
        raise ValueError("chunk index out of range")
    return CHUNK_SIZE if index < last else plaintext_size - last * CHUNK_SIZE


def stream_size(plaintext_size: int) -> int:
    """Ciphertext size of a chunk stream."""
    return plaintext_size + TAG_SIZE * chunk_count(plaintext_size)


def stream_plaintext_size(ciphertext_size: int) -> int:
    """Exact inverse of :func:`stream_size`; raises CiphertextSizeInvalid off its image."""
    size = _residue_decode(ciphertext_size, allow_empty_tail=False)
    if size is None:
        raise CiphertextSizeInvalid()
    return size


def _residue_decode(x: int, *, allow_empty_tail: bool) -> int | None:
    """Plaintext size of ``x`` bytes of concatenated chunks, or None for a signal residue.

    A regular layout produces ``q`` full chunks plus a last chunk of ``r - 16``
    plaintext bytes: residues ``0`` (last chunk full) and ``16..CHUNK_SIZE+15``.  A
    residue of exactly 16 after full chunks means an empty last chunk, which only a
    multipart object whose last part is empty produces (``allow_empty_tail``).
    Residues 1..15 never occur in a regular layout: they signal an indexed layout.
    """
    if x < TAG_SIZE:
        raise CiphertextSizeInvalid()
    q, r = divmod(x, CHUNK_CIPHERTEXT_SIZE)
    if r == 0:
        return q * CHUNK_SIZE
    if r == TAG_SIZE:
        if q == 0 or allow_empty_tail:
            return q * CHUNK_SIZE
        raise CiphertextSizeInvalid()
    if r > TAG_SIZE:
        return q * CHUNK_SIZE + r - TAG_SIZE
    return None


def _largest_stream(budget: int) -> int:
    """Largest plaintext size whose chunk stream fits in ``budget`` bytes."""
    q, r = divmod(budget, CHUNK_CIPHERTEXT_SIZE)
    return q * CHUNK_SIZE + max(0, r - TAG_SIZE)


# -- single-part objects ------------------------------------------------------------------


def seal_size(checksummed: bool = False) -> int:
    """Size of a single-part object's sealed tail: the MD5, and with envelope version 2
    (``checksummed``) the checksum block too (FORMAT.md §5)."""
    return CHECKSUMMED_SEAL_SIZE if checksummed else ETAG_SEAL_SIZE


def ciphertext_size(plaintext_size: int, checksummed: bool = False) -> int:
    """Stored size of a single-part object of ``plaintext_size`` bytes."""
    return stream_size(plaintext_size) + seal_size(checksummed)


def plaintext_size(ciphertext_size: int, checksummed: bool = False) -> int:
    """Exact inverse of :func:`ciphertext_size`; raises CiphertextSizeInvalid off its image."""
    seal = seal_size(checksummed)
    if ciphertext_size < seal + TAG_SIZE:
        raise CiphertextSizeInvalid()
    return stream_plaintext_size(ciphertext_size - seal)


def etag_seal_offset(plaintext_size: int) -> int:
    """Offset of the sealed MD5 in a single-part body (its last ETAG_SEAL_SIZE bytes)."""
    return stream_size(plaintext_size)


# The largest indexed trailer: 10,000 index entries, the description with the checksum
# block, and the largest pad.
MAX_CHECKSUM_SIZE = 32   # SHA-256, the largest digest of S3's checksums
MAX_INDEXED_TRAILER_SIZE = (SEGMENT_HEADER_SIZE + INDEX_PREFIX_SIZE
                            + INDEX_ENTRY_SIZE * MAX_PART_NUMBER + INDEX_DESCRIPTION_SIZE
                            + CHECKSUM_BLOCK_SIZE + MAX_CHECKSUM_SIZE * MAX_PART_NUMBER
                            + MAX_INDEX_PAD + TAG_SIZE + FOOTER_SIZE)
MAX_SINGLE_PLAINTEXT_SIZE = _largest_stream(BACKEND_MAX_PUT_SIZE - ETAG_SEAL_SIZE)
MAX_CHECKSUMMED_SINGLE_PLAINTEXT_SIZE = _largest_stream(BACKEND_MAX_PUT_SIZE
                                                        - CHECKSUMMED_SEAL_SIZE)
MAX_PART_PLAINTEXT_SIZE = _largest_stream(BACKEND_MAX_PART_SIZE - SEGMENT_HEADER_SIZE)
# Part 10000 is always terminal, so it may have to carry an indexed trailer in the
# same backend part (held tail): it keeps room for the largest one.
MAX_LAST_PART_PLAINTEXT_SIZE = _largest_stream(
    BACKEND_MAX_PART_SIZE - SEGMENT_HEADER_SIZE - MAX_INDEXED_TRAILER_SIZE)
# Conservative: room for the header and a partial chunk's tag of each of
# MAX_PART_NUMBER segments plus the largest trailer, so that every layout of this
# plaintext size fits the backend's object limit.
MAX_OBJECT_PLAINTEXT_SIZE = _largest_stream(
    BACKEND_MAX_OBJECT_SIZE - MAX_PART_NUMBER * (SEGMENT_HEADER_SIZE + TAG_SIZE)
    - MAX_INDEXED_TRAILER_SIZE)


def check_single_size(plaintext_size: int, checksummed: bool = False) -> None:
    """Raise EntityTooLarge if a single PUT of this size cannot be stored."""
    _check_size(plaintext_size)
    if plaintext_size > (MAX_CHECKSUMMED_SINGLE_PLAINTEXT_SIZE if checksummed
                         else MAX_SINGLE_PLAINTEXT_SIZE):
        raise EntityTooLarge()


# -- ranges ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RangePlan:
    """A plaintext range ``[start, end]`` of a single-part object, mapped to ciphertext.

    Fetch ciphertext bytes ``[ciphertext_start, ciphertext_stop)`` (``http_range``),
    decrypt chunks ``first_chunk..last_chunk``, drop ``skip`` bytes at the front and
    ``trim`` bytes at the back: what is left is exactly ``length`` bytes.
    """

    plaintext_size: int
    start: int
    end: int
    first_chunk: int
    last_chunk: int
    ciphertext_start: int
    ciphertext_stop: int
    skip: int
    trim: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def includes_final_chunk(self) -> bool:
        return self.last_chunk == chunk_count(self.plaintext_size) - 1

    @property
    def http_range(self) -> str:
        """The backend ``Range`` header value (inclusive end)."""
        return f"bytes={self.ciphertext_start}-{self.ciphertext_stop - 1}"


def plan_range(plaintext_size: int, start: int, end: int) -> RangePlan:
    """Map plaintext bytes ``[start, end]`` (inclusive, resolved by the caller) to ciphertext.

    Suffix and open-ended ranges are resolved by the caller to ``[start, end]``
    first; ``end`` is clamped to the last byte as S3 does.  Raises InvalidRange when
    nothing is satisfiable (``start`` beyond the object, or an empty object).
    """
    _check_size(plaintext_size)
    end = min(end, plaintext_size - 1)
    if start < 0 or start > end:
        raise InvalidRange()
    first, last = start // CHUNK_SIZE, end // CHUNK_SIZE
    last_index = chunk_count(plaintext_size) - 1
    stop = (last + 1) * CHUNK_CIPHERTEXT_SIZE
    trim = (last + 1) * CHUNK_SIZE - (end + 1)
    if last == last_index:
        stop = stream_size(plaintext_size)
        trim = plaintext_size - (end + 1)
    return RangePlan(
        plaintext_size=plaintext_size, start=start, end=end, first_chunk=first,
        last_chunk=last, ciphertext_start=first * CHUNK_CIPHERTEXT_SIZE,
        ciphertext_stop=stop, skip=start - first * CHUNK_SIZE, trim=trim)


# -- segments (multipart parts) -------------------------------------------------------------


def segment_size(part_plaintext_size: int) -> int:
    """Stored size of one data segment (an uploaded part): header plus chunk stream."""
    return SEGMENT_HEADER_SIZE + stream_size(part_plaintext_size)


def segment_plaintext_size(part_ciphertext_size: int) -> int:
    """Exact inverse of :func:`segment_size` (for ListParts); raises off its image."""
    if part_ciphertext_size < SEGMENT_HEADER_SIZE + TAG_SIZE:
        raise CiphertextSizeInvalid()
    return stream_plaintext_size(part_ciphertext_size - SEGMENT_HEADER_SIZE)


def is_terminal_part(part_number: int, part_plaintext_size: int) -> bool:
    """True if an uploaded part can only be the last part of its upload."""
    return part_plaintext_size < MIN_PART_SIZE or part_number == MAX_PART_NUMBER


def max_part_plaintext_size(part_number: int) -> int:
    """Largest plaintext an UploadPart of ``part_number`` may carry.  Part 10000 keeps
    room for an indexed trailer in its backend part (held tail, FORMAT.md §7.4)."""
    if part_number == MAX_PART_NUMBER:
        return MAX_LAST_PART_PLAINTEXT_SIZE
    return MAX_PART_PLAINTEXT_SIZE


def check_part(part_number: int, part_plaintext_size: int) -> None:
    """Raise for a part that cannot be stored (bad number, too large)."""
    _check_size(part_plaintext_size)
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise ValueError("part number out of range")
    if part_plaintext_size > max_part_plaintext_size(part_number):
        raise EntityTooLarge()


class Trailer(Enum):
    """What follows the last data segment of a multipart object."""

    NONE = "none"                # the last data segment is terminal
    HEADER_ONLY = "header-only"  # a 52-byte terminal trailer segment, its own part
    INDEXED = "indexed"          # a trailer carrying the index of part sizes


def index_record_size(parts: int, pad: int, described: bool = False,
                      checksum_size: int = 0) -> int:
    """Plaintext size of an index: prefix, one entry (part number, size) per data
    segment, the description when ``described`` (FORMAT.md §7.8), and when
    ``checksum_size`` (the digest size of its algorithm) the object's checksum block
    and each part's digest (§15), then padding."""
    return (INDEX_PREFIX_SIZE + INDEX_ENTRY_SIZE * parts
            + (INDEX_DESCRIPTION_SIZE if described else 0)
            + (CHECKSUM_BLOCK_SIZE + parts * checksum_size if checksum_size else 0) + pad)


def indexed_trailer_size(parts: int, pad: int, described: bool = False,
                         checksum_size: int = 0) -> int:
    """Stored size of an indexed trailer: header, sealed index, footer."""
    return (SEGMENT_HEADER_SIZE + index_record_size(parts, pad, described, checksum_size)
            + TAG_SIZE + FOOTER_SIZE)


def index_tail_hint(backend_parts: int) -> int:
    """Bytes at the end of an indexed object that surely contain its whole trailer
    (an index lists at most ``backend_parts`` parts and may be described and carry
    SHA-256 part checksums; at most 505,728 bytes)."""
    return indexed_trailer_size(min(backend_parts, MAX_PART_NUMBER), CHUNK_CIPHERTEXT_SIZE,
                                described=True, checksum_size=MAX_CHECKSUM_SIZE)


class IndexDescription(NamedTuple):
    """What a described index says about the object besides its layout (FORMAT.md §7.8):
    the MD5 its S3-style ETag shows (of the concatenated binary MD5s of the client's
    parts) and the digest of the upload id that completed it; and, for an upload that
    declared a checksum algorithm (or defaulted to one), the object's checksum (§15,
    a ``format.checksum.StoredChecksum``; the header's CHECKSUMMED flag) and its parts'."""

    etag_md5: bytes
    upload_digest: bytes
    checksum: StoredChecksum | None = None
    # With ``checksum``: each part's digest of its algorithm, in the index's order.
    part_checksums: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class SegmentSpan:
    """Where one data segment sits in a multipart object."""

    part_number: int
    plaintext_offset: int
    plaintext_size: int
    ciphertext_offset: int      # offset of the segment header

    @property
    def chunks_offset(self) -> int:
        return self.ciphertext_offset + SEGMENT_HEADER_SIZE

    @property
    def ciphertext_size(self) -> int:
        return segment_size(self.plaintext_size)

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.plaintext_size)

    @property
    def terminal(self) -> bool:
        return is_terminal_part(self.part_number, self.plaintext_size)


@dataclass(frozen=True)
class SegmentRange:
    """The chunks of one segment that a multipart range read decrypts."""

    span: SegmentSpan
    first_chunk: int
    last_chunk: int
    header_inline: bool    # the segment header is inside the fetched ciphertext range


@dataclass(frozen=True)
class MultipartRangePlan:
    """A plaintext range of a multipart object, mapped to ciphertext.

    Fetch ``[ciphertext_start, ciphertext_stop)``.  Unless the first piece's header
    is inline, also fetch its header at ``header_range`` (or take it from a cache).
    Decrypt the pieces in order, drop ``skip`` bytes at the front: ``length`` bytes.
    """

    start: int
    end: int
    pieces: tuple[SegmentRange, ...]
    ciphertext_start: int
    ciphertext_stop: int
    skip: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def header_range(self) -> tuple[int, int]:
        """``[start, stop)`` of the first piece's segment header."""
        off = self.pieces[0].span.ciphertext_offset
        return off, off + SEGMENT_HEADER_SIZE

    @property
    def needs_header(self) -> bool:
        return not self.pieces[0].header_inline

    @property
    def http_range(self) -> str:
        return f"bytes={self.ciphertext_start}-{self.ciphertext_stop - 1}"


def is_contiguous(part_numbers: Sequence[int]) -> bool:
    """True if the part numbers are exactly ``1..len(part_numbers)``."""
    return bool(part_numbers) and all(n == i for i, n in enumerate(part_numbers, start=1))


def part_numbers_valid(part_numbers: Sequence[int]) -> bool:
    """True if the numbers are strictly ascending, each in 1..10000 (gaps allowed)."""
    return (all(1 <= n <= MAX_PART_NUMBER for n in part_numbers)
            and all(a < b for a, b in zip(part_numbers, part_numbers[1:], strict=False)))


@dataclass(frozen=True)
class MultipartLayout:
    """The stored layout of a multipart object: data segments and its trailer.

    ``part_sizes[i]`` is the plaintext size of the ``i``-th data segment and
    ``part_numbers[i]`` its part number: strictly ascending in 1..10000, ``1..m``
    when not given.  Numbers with gaps occur only in an indexed object, whose index
    lists them (FORMAT.md §7.3).  ``trailer_size`` is the stored size of the trailer
    (0, SEGMENT_HEADER_SIZE or an indexed trailer's).
    """

    part_sizes: tuple[int, ...]
    trailer: Trailer = Trailer.NONE
    trailer_size: int = 0
    part_numbers: tuple[int, ...] = ()
    # From a described index (FORMAT.md §7.8); not part of the layout proper.
    description: IndexDescription | None = field(default=None, compare=False)
    spans: tuple[SegmentSpan, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.part_sizes) <= MAX_PART_NUMBER:
            raise ValueError("a multipart layout has 1..10000 parts")
        expected = {Trailer.NONE: 0, Trailer.HEADER_ONLY: SEGMENT_HEADER_SIZE}
        if self.trailer in expected and self.trailer_size != expected[self.trailer]:
            raise ValueError("trailer size does not match the trailer kind")
        numbers = tuple(self.part_numbers) or tuple(range(1, len(self.part_sizes) + 1))
        if len(numbers) != len(self.part_sizes) or not part_numbers_valid(numbers):
            raise ValueError("part numbers are strictly ascending in 1..10000, one per part")
        object.__setattr__(self, "part_sizes", tuple(self.part_sizes))
        object.__setattr__(self, "part_numbers", numbers)
        spans, pt, ct = [], 0, 0
        for number, size in zip(numbers, self.part_sizes, strict=True):
            _check_size(size)
            spans.append(SegmentSpan(number, pt, size, ct))
            pt, ct = pt + size, ct + segment_size(size)
        object.__setattr__(self, "spans", tuple(spans))

    @property
    def parts(self) -> int:
        return len(self.part_sizes)

    @property
    def etag(self) -> str | None:
        """The S3-style ETag a described index gives the object (``"<md5>-<parts>"``,
        quoted), else None."""
        if self.description is None:
            return None
        return f'"{self.description.etag_md5.hex()}-{self.parts}"'

    @property
    def contiguous(self) -> bool:
        """True if the parts are numbered ``1..m`` (no gaps)."""
        return is_contiguous(self.part_numbers)

    @property
    def last_part_number(self) -> int:
        return self.part_numbers[-1]

    @property
    def trailer_number(self) -> int | None:
        """The trailer's segment number (last part number + 1), None without a trailer."""
        return None if self.trailer is Trailer.NONE else self.last_part_number + 1

    @property
    def segment_numbers(self) -> tuple[int, ...]:
        """The part number of every segment in stored order, the trailer's included:
        what a header walk expects at each step (``walk_step``)."""
        number = self.trailer_number
        return self.part_numbers if number is None else self.part_numbers + (number,)

    @cached_property
    def plaintext_size(self) -> int:
        return sum(self.part_sizes)

    @cached_property
    def data_size(self) -> int:
        """Stored size of the data segments, without the trailer."""
        last = self.spans[-1]
        return last.ciphertext_offset + last.ciphertext_size

    @property
    def ciphertext_size(self) -> int:
        return self.data_size + self.trailer_size

    @property
    def is_regular(self) -> bool:
        """Every part but the last is a positive multiple of CHUNK_SIZE."""
        return all(s > 0 and s % CHUNK_SIZE == 0 for s in self.part_sizes[:-1])

    @property
    def segment_count(self) -> int:
        return self.parts + (self.trailer is not Trailer.NONE)

    def backend_part_ranges(self, backend_parts: int) -> tuple[tuple[int, int], ...]:
        """``[start, stop)`` of each backend part, for a copy that keeps part boundaries
        (UploadPartCopy per range; FORMAT.md §3.4).  A trailer is its own part, or
        shares the last part (held tail) when ``backend_parts`` equals the part count."""
        ranges = [(s.ciphertext_offset, s.ciphertext_offset + s.ciphertext_size)
                  for s in self.spans]
        if self.trailer is not Trailer.NONE and backend_parts == self.parts + 1:
            ranges.append((self.data_size, self.ciphertext_size))
        elif self.trailer is not Trailer.NONE and backend_parts == self.parts:
            ranges[-1] = (ranges[-1][0], self.ciphertext_size)
        elif backend_parts != self.parts:
            raise ValueError("backend part count does not fit this layout")
        return tuple(ranges)

    def backend_part_numbers(self, backend_parts: int) -> tuple[int, ...]:
        """The backend part number of each range of ``backend_part_ranges``: a copy
        keeps the source's part numbers, which its segment headers are bound to."""
        numbers = self.part_numbers
        if self.trailer is not Trailer.NONE and backend_parts == self.parts + 1:
            numbers += (self.last_part_number + 1,)
        elif backend_parts != self.parts:
            raise ValueError("backend part count does not fit this layout")
        return numbers

    def _position_at(self, offset: int) -> int:
        if not 0 <= offset < self.plaintext_size:
            raise ValueError("offset outside the object")
        lo, hi = 0, len(self.spans) - 1
        while lo < hi:   # last span whose plaintext_offset <= offset (skips empty spans)
            mid = (lo + hi + 1) // 2
            if self.spans[mid].plaintext_offset <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def span_at(self, offset: int) -> SegmentSpan:
        """The data segment holding plaintext byte ``offset``."""
        return self.spans[self._position_at(offset)]

    def plan_range(self, start: int, end: int) -> MultipartRangePlan:
        """Map plaintext bytes ``[start, end]`` (inclusive, end clamped) to ciphertext."""
        end = min(end, self.plaintext_size - 1)
        if start < 0 or start > end:
            raise InvalidRange()
        i, j = self._position_at(start), self._position_at(end)
        first, last = self.spans[i], self.spans[j]
        pieces = []
        for span in self.spans[i:j + 1]:
            if span.plaintext_size == 0:
                continue
            a = (start - span.plaintext_offset) // CHUNK_SIZE if span is first else 0
            b = ((end - span.plaintext_offset) // CHUNK_SIZE if span is last
                 else span.chunk_count - 1)
            pieces.append(SegmentRange(span, a, b, header_inline=(span is not first or a == 0)))
        head = pieces[0]
        tail = pieces[-1]
        ct_start = (head.span.ciphertext_offset if head.header_inline
                    else head.span.chunks_offset + head.first_chunk * CHUNK_CIPHERTEXT_SIZE)
        if tail.last_chunk == tail.span.chunk_count - 1:
            ct_stop = tail.span.ciphertext_offset + tail.span.ciphertext_size
        else:
            ct_stop = tail.span.chunks_offset + (tail.last_chunk + 1) * CHUNK_CIPHERTEXT_SIZE
        return MultipartRangePlan(
            start=start, end=end, pieces=tuple(pieces), ciphertext_start=ct_start,
            ciphertext_stop=ct_stop,
            skip=start - first.plaintext_offset - head.first_chunk * CHUNK_SIZE)


# -- multipart sizes from a listing ------------------------------------------------------------


def multipart_ciphertext_size(part_sizes: Sequence[int], trailer: Trailer = Trailer.NONE,
                              trailer_size: int | None = None) -> int:
    """Stored size of a multipart object with these part sizes and trailer."""
    if trailer_size is None:
        trailer_size = SEGMENT_HEADER_SIZE if trailer is Trailer.HEADER_ONLY else 0
    return MultipartLayout(tuple(part_sizes), trailer, trailer_size).ciphertext_size


def multipart_plaintext_size(ciphertext_size: int, backend_parts: int) -> int | None:
    """Plaintext size of a multipart object from a listing: its size and ETag ``-N``.

    Exact for every regular layout (all parts but the last are chunk multiples),
    with or without a header-only trailer.  Returns None when the size carries the
    index signal: the layout is irregular and the size must be read from the
    object's index (once; cache it by the backend ETag).  Raises
    CiphertextSizeInvalid for a size no layout produces.
    """
    if not 1 <= backend_parts <= MAX_PART_NUMBER:
        raise CiphertextSizeInvalid()
    return _residue_decode(ciphertext_size - backend_parts * SEGMENT_HEADER_SIZE,
                           allow_empty_tail=True)


def is_indexed(ciphertext_size: int, backend_parts: int) -> bool:
    """True if a multipart object's layout must be read from its index."""
    return multipart_plaintext_size(ciphertext_size, backend_parts) is None


def predict_layout(ciphertext_size: int, backend_parts: int,
                   first_part_size: int) -> MultipartLayout | None:
    """Guess a regular layout with equal parts, from the listing and part 1's header.

    Clients almost always upload equal parts with a shorter last one; then this is
    the layout.  It is a guess: a reader must check each segment header it reads
    against it (``SegmentLayoutMismatch`` when wrong) and fall back to walking the
    headers.  Returns None when the numbers cannot be an equal-parts layout.
    """
    total = multipart_plaintext_size(ciphertext_size, backend_parts)
    if total is None or first_part_size > total or (first_part_size == 0 and total > 0):
        return None
    if first_part_size == total:
        sizes: tuple[int, ...] = (total,)
    else:
        if first_part_size % CHUNK_SIZE:
            return None
        n = -(-total // first_part_size)
        sizes = (first_part_size,) * (n - 1) + (total - (n - 1) * first_part_size,)
    if len(sizes) > MAX_PART_NUMBER:
        return None
    trailer_parts = backend_parts - len(sizes)
    if trailer_parts not in (0, 1):
        return None
    terminal = is_terminal_part(len(sizes), sizes[-1])
    if terminal != (trailer_parts == 0):
        return None
    if any(s < MIN_PART_SIZE for s in sizes[:-1]):
        return None
    layout = MultipartLayout(sizes, Trailer.HEADER_ONLY if trailer_parts else Trailer.NONE,
                             SEGMENT_HEADER_SIZE * trailer_parts)
    return layout if layout.ciphertext_size == ciphertext_size else None


# -- CompleteMultipartUpload ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionPlan:
    """What the server writes at CompleteMultipartUpload (docs/FORMAT.md §7.3).

    ``trailer`` is what to append, under segment number ``trailer_number`` (the
    last completed part number + 1).  When ``trailer_in_own_part`` the trailer is
    uploaded as one more backend part, number ``trailer_number``; when
    ``held_tail`` (an indexed trailer after a terminal last part) the server
    re-uploads the last part as its segment followed by the trailer.  The backend
    Complete names ``backend_part_numbers``; the object then has ``backend_parts``
    parts.  ``index_pad`` is the index padding that puts the index signal into the
    object's size.
    """

    layout: MultipartLayout
    trailer_in_own_part: bool
    backend_parts: int
    index_pad: int

    @property
    def trailer(self) -> Trailer:
        return self.layout.trailer

    @property
    def part_numbers(self) -> tuple[int, ...]:
        return self.layout.part_numbers

    @property
    def contiguous(self) -> bool:
        return self.layout.contiguous

    @property
    def trailer_number(self) -> int | None:
        """Segment number of the trailer (None without one): last part number + 1."""
        return self.layout.trailer_number

    @property
    def held_tail(self) -> bool:
        """True if the trailer must be appended to the last part, which the server
        re-uploads (FORMAT.md §7.4): the last part is terminal (smaller than 5 MiB,
        or part 10000) and the completion needs an indexed trailer."""
        return self.trailer is not Trailer.NONE and not self.trailer_in_own_part

    @property
    def backend_part_numbers(self) -> tuple[int, ...]:
        """The part numbers of the backend's CompleteMultipartUpload, in order."""
        return self.layout.backend_part_numbers(self.backend_parts)


def check_part_numbers(part_numbers: Sequence[int]) -> bool:
    """Check a CompleteMultipartUpload list as S3 does: strictly ascending
    (InvalidPartOrder), each in 1..10000 and at least one (InvalidPart).

    Any such list is allowed, gaps included (FORMAT.md §7.3).  Returns True if the
    numbers are exactly ``1..m`` (contiguous from 1), False if they have gaps.
    """
    numbers = list(part_numbers)
    if not numbers:
        raise InvalidPart()
    if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
        raise InvalidPartOrder()
    if not all(isinstance(n, int) and 1 <= n <= MAX_PART_NUMBER for n in numbers):
        raise InvalidPart("Part numbers are between 1 and 10000.")
    return is_contiguous(numbers)


def plan_completion(part_numbers: Sequence[int], part_sizes: Sequence[int], *,
                    can_rewrite_last_part: bool = False,
                    always_index: bool = False,
                    description: IndexDescription | None = None) -> CompletionPlan:
    """Decide the trailer for the completed parts ``part_numbers`` (the Complete
    list, any strictly ascending numbers in 1..10000) with these plaintext sizes.

    * gaps, or an irregular layout: an indexed trailer listing every part's number
      and size, in its own part (number last + 1) when the last part is not
      terminal, else appended to the last part (``plan.held_tail``);
    * numbers ``1..m`` and a regular layout, the *minimal* trailer: none when the
      last part is terminal, else a header-only trailer in its own part;
    * unless ``always_index``: then an indexed trailer there too, wherever the
      server can write one (its own part, or a held tail when it can rewrite the
      last part), so that every reader gets the layout from one read of the
      object's tail instead of one read per part (FORMAT.md §7.3, §7.7);
    * ``description``: an indexed trailer carries it (a described index, FORMAT.md
      §7.8), and the plan's layout has it.

    Raises InvalidPartOrder / InvalidPart for a bad list (``check_part_numbers``),
    EntityTooSmall when a part other than the last is smaller than MIN_PART_SIZE,
    EntityTooLarge when a part or the object is too large, and InvalidRequest when
    the held tail is needed but the server cannot rewrite the last part.
    """
    numbers, sizes = tuple(part_numbers), tuple(part_sizes)
    if len(numbers) != len(sizes):
        raise ValueError("one size per part number")
    contiguous = check_part_numbers(numbers)
    for number, size in zip(numbers, sizes, strict=True):
        check_part(number, size)
    if any(s < MIN_PART_SIZE for s in sizes[:-1]):
        raise EntityTooSmall()
    terminal = is_terminal_part(numbers[-1], sizes[-1])
    bare = MultipartLayout(sizes, part_numbers=numbers)
    indexable = can_rewrite_last_part or not terminal
    if contiguous and bare.is_regular and not (always_index and indexable):
        trailer = Trailer.NONE if terminal else Trailer.HEADER_ONLY
        layout = MultipartLayout(sizes, trailer, 0 if terminal else SEGMENT_HEADER_SIZE)
        plan = CompletionPlan(layout, not terminal, len(sizes) + (not terminal), 0)
    else:
        if terminal and not can_rewrite_last_part:
            raise InvalidRequest(
                "This server cannot complete an upload whose part numbers have gaps, or "
                "whose parts other than the last are not multiples of 64 KiB, when the "
                "last part is smaller than 5 MiB or is part 10000.")
        own_part = not terminal
        backend_parts = len(sizes) + own_part
        described = description is not None
        checksum_size = 0
        if description is not None and description.checksum is not None:
            checksum_size = len(description.checksum.digest)
            if len(description.part_checksums) != len(sizes) \
                    or any(len(d) != checksum_size for d in description.part_checksums):
                raise ValueError("one part checksum of the object's algorithm per part")
        unpadded = (bare.data_size
                    + indexed_trailer_size(len(sizes), 0, described, checksum_size)
                    - backend_parts * SEGMENT_HEADER_SIZE)
        pad = (INDEX_SIGNAL_RESIDUE - unpadded) % CHUNK_CIPHERTEXT_SIZE
        layout = MultipartLayout(sizes, Trailer.INDEXED,
                                 indexed_trailer_size(len(sizes), pad, described, checksum_size),
                                 part_numbers=numbers, description=description)
        plan = CompletionPlan(layout, own_part, backend_parts, pad)
    if plan.layout.ciphertext_size > BACKEND_MAX_OBJECT_SIZE:
        raise EntityTooLarge()
    return plan


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 0:
        raise ValueError("sizes are non-negative integers")
