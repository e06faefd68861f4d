"""Multipart framing: segment headers, the index of an indexed trailer, the footer.

Each uploaded part is stored as one *segment*: a 52-byte header, then a chunk
stream.  The header (FORMAT.md §7.1)::

    0   3  magic "EPS"
    3   1  format version (1)
    4   1  suite
    5   1  flags: 0x01 terminal, 0x02 trailer, 0x04 indexed, 0x08 described,
             0x10 completion-keyed (others 0)
    6   2  reserved (0)
    8   4  part number (u32, 1..10000; a trailer's is the last part number + 1)
    12  8  plaintext size of the segment (u64; for an indexed trailer: of its index)
    20 16  segment salt (random per upload of the part)
    36 16  header tag: the suite's tag over AAD(domain 4) || bytes 0..35, under the
           segment key

Decoding checks lengths and ranges before any cryptography runs.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import (
    CHECKSUM_BLOCK_SIZE,
    FOOTER_MAGIC,
    FOOTER_SIZE,
    FORMAT_VERSION,
    INDEX_DESCRIPTION_SIZE,
    INDEX_ENTRY_SIZE,
    INDEX_PREFIX_SIZE,
    MAX_INDEX_PAD,
    MAX_PART_NUMBER,
    MAX_SEGMENT_NUMBER,
    SEGMENT_FLAGS_MASK,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    SEGMENT_SALT_SIZE,
    TAG_SIZE,
    SegmentFlag,
    Suite,
)
from encproxy.format.errors import (
    IndexMalformed,
    SegmentHeaderMalformed,
    UnsupportedSuite,
    UnsupportedVersion,
)
from encproxy.format.layout import (
    MAX_CHECKSUM_SIZE,
    MAX_PART_PLAINTEXT_SIZE,
    IndexDescription,
    index_record_size,
    is_contiguous,
    is_terminal_part,
    part_numbers_valid,
    segment_size,
)

_HEADER = struct.Struct(">3sBBBHIQ16s16s")
assert _HEADER.size == SEGMENT_HEADER_SIZE
AUTHENTICATED_SIZE = SEGMENT_HEADER_SIZE - TAG_SIZE
_FOOTER = struct.Struct(">3sBIQ")
assert _FOOTER.size == FOOTER_SIZE
_INDEX_PREFIX = struct.Struct(">II")
_INDEX_ENTRY = struct.Struct(">IQ")
assert _INDEX_ENTRY.size == INDEX_ENTRY_SIZE
MAX_INDEX_SIZE = index_record_size(MAX_PART_NUMBER, MAX_INDEX_PAD, described=True,
                                   checksum_size=MAX_CHECKSUM_SIZE)
MIN_CHECKSUM_SIZE = 4   # CRC32


@dataclass(frozen=True)
class SegmentHeader:
    """A decoded (not yet authenticated) segment header."""

    suite: Suite
    flags: int
    part_number: int
    plaintext_size: int
    salt: bytes
    tag: bytes = b"\0" * TAG_SIZE

    @property
    def terminal(self) -> bool:
        return bool(self.flags & SegmentFlag.TERMINAL)

    @property
    def trailer(self) -> bool:
        return bool(self.flags & SegmentFlag.TRAILER)

    @property
    def indexed(self) -> bool:
        return bool(self.flags & SegmentFlag.INDEXED)

    @property
    def completion_keyed(self) -> bool:
        """A trailer sealed under the upload's completion key (FORMAT.md §7.9)."""
        return bool(self.flags & SegmentFlag.COMPLETION)

    @property
    def described(self) -> bool:
        """An indexed trailer whose index carries a description (FORMAT.md §7.8)."""
        return bool(self.flags & SegmentFlag.DESCRIBED)

    @property
    def checksummed(self) -> bool:
        """A described index that also carries the object's checksum (FORMAT.md §15)."""
        return bool(self.flags & SegmentFlag.CHECKSUMMED)

    @property
    def span(self) -> int:
        """Stored size of the whole segment this header starts, header included."""
        if not self.trailer:
            return segment_size(self.plaintext_size)
        if not self.indexed:
            return SEGMENT_HEADER_SIZE
        return SEGMENT_HEADER_SIZE + self.plaintext_size + TAG_SIZE + FOOTER_SIZE

    def authenticated_bytes(self) -> bytes:
        """Bytes 0..35: what the header tag covers."""
        return self.encode()[:AUTHENTICATED_SIZE]

    def with_tag(self, tag: bytes) -> SegmentHeader:
        return SegmentHeader(self.suite, self.flags, self.part_number, self.plaintext_size,
                             self.salt, tag)

    def encode(self) -> bytes:
        return _HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, self.suite, self.flags, 0,
                            self.part_number, self.plaintext_size, self.salt, self.tag)

    @classmethod
    def data(cls, suite: Suite, part_number: int, plaintext_size: int,
             salt: bytes) -> SegmentHeader:
        """The header of an uploaded part (terminal if it can only be the last part)."""
        flags = SegmentFlag.TERMINAL if is_terminal_part(part_number, plaintext_size) else 0
        return cls(suite, int(flags), part_number, plaintext_size, salt)

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> SegmentHeader:
        """Parse and range-check a header; raises SegmentHeaderMalformed & co."""
        if len(raw) != SEGMENT_HEADER_SIZE:
            raise SegmentHeaderMalformed()
        magic, version, suite, flags, reserved, number, size, salt, tag = _HEADER.unpack(raw)
        if magic != SEGMENT_MAGIC:
            raise SegmentHeaderMalformed()
        if version != FORMAT_VERSION:
            raise UnsupportedVersion()
        if suite not in Suite._value2member_map_:
            raise UnsupportedSuite()
        if reserved or flags & ~SEGMENT_FLAGS_MASK or not 1 <= number <= MAX_SEGMENT_NUMBER:
            raise SegmentHeaderMalformed()
        trailer, indexed = flags & SegmentFlag.TRAILER, flags & SegmentFlag.INDEXED
        if flags & SegmentFlag.CHECKSUMMED and not flags & SegmentFlag.DESCRIBED \
                or flags & SegmentFlag.DESCRIBED and not indexed \
                or flags & SegmentFlag.COMPLETION and not trailer:
            raise SegmentHeaderMalformed()
        if trailer:
            # A trailer is terminal and follows a part; a header-only one is empty;
            # an index is bounded.
            if not flags & SegmentFlag.TERMINAL or number < 2:
                raise SegmentHeaderMalformed()
            if not indexed and size != 0:
                raise SegmentHeaderMalformed()
            least = index_record_size(1, 0, bool(flags & SegmentFlag.DESCRIBED),
                                      MIN_CHECKSUM_SIZE if flags & SegmentFlag.CHECKSUMMED
                                      else 0)
            if indexed and not least <= size <= MAX_INDEX_SIZE:
                raise SegmentHeaderMalformed()
        else:
            if indexed or number > MAX_PART_NUMBER or size > MAX_PART_PLAINTEXT_SIZE:
                raise SegmentHeaderMalformed()
            if bool(flags & SegmentFlag.TERMINAL) != is_terminal_part(number, size):
                raise SegmentHeaderMalformed()
        return cls(Suite(suite), flags, number, size, salt, tag)


def trailer_header(suite: Suite, part_number: int, salt: bytes, *,
                   index_size: int | None = None, described: bool = False,
                   completion_keyed: bool = False, checksummed: bool = False) -> SegmentHeader:
    """The header of a trailer; ``index_size`` given for an indexed trailer,
    ``described`` for one whose index carries a description (FORMAT.md §7.8)."""
    flags = SegmentFlag.TERMINAL | SegmentFlag.TRAILER
    if index_size is not None:
        flags |= SegmentFlag.INDEXED
    if described:
        if index_size is None:
            raise ValueError("only an index is described")
        flags |= SegmentFlag.DESCRIBED
    if checksummed:
        if not described:
            raise ValueError("only a described index carries a checksum")
        flags |= SegmentFlag.CHECKSUMMED
    if completion_keyed:
        flags |= SegmentFlag.COMPLETION
    return SegmentHeader(suite, int(flags), part_number, index_size or 0, salt)


# -- the index of an indexed trailer ------------------------------------------------------------


class PartIndex(NamedTuple):
    """The content of an index: each completed part's number and plaintext size."""

    part_numbers: tuple[int, ...]
    part_sizes: tuple[int, ...]
    description: IndexDescription | None = None

    @property
    def contiguous(self) -> bool:
        return is_contiguous(self.part_numbers)


def encode_index(part_numbers: Sequence[int], part_sizes: Sequence[int], pad: int,
                 description: IndexDescription | None = None) -> bytes:
    """Index plaintext: u32 count, u32 pad, then per part u32 part number and u64
    plaintext size, then the description if any (16-byte ETag MD5, 32-byte upload
    digest: FORMAT.md §7.8), then ``pad`` zero bytes."""
    count = len(part_sizes)
    if not 1 <= count <= MAX_PART_NUMBER or len(part_numbers) != count \
            or not 0 <= pad <= MAX_INDEX_PAD:
        raise ValueError("index out of range")
    if not part_numbers_valid(part_numbers):
        raise ValueError("part numbers are strictly ascending in 1..10000")
    entries = bytearray(INDEX_ENTRY_SIZE * count)
    for i, entry in enumerate(zip(part_numbers, part_sizes, strict=True)):
        _INDEX_ENTRY.pack_into(entries, i * INDEX_ENTRY_SIZE, *entry)
    described = b""
    if description is not None:
        described = description.etag_md5 + description.upload_digest
        if len(described) != INDEX_DESCRIPTION_SIZE or len(description.etag_md5) != 16:
            raise ValueError("a description is a 16-byte MD5 and a 32-byte digest")
        if description.checksum is not None:
            size = len(description.checksum.digest)
            if len(description.part_checksums) != count \
                    or any(len(d) != size for d in description.part_checksums):
                raise ValueError("one part checksum of the object's algorithm per part")
            described += description.checksum.encode() + b"".join(description.part_checksums)
    return b"".join((_INDEX_PREFIX.pack(count, pad), entries, described, bytes(pad)))


def decode_index(raw: bytes | memoryview, described: bool = False,
                 checksummed: bool = False) -> PartIndex:
    """Part numbers and sizes (and the description of a ``described`` index) from an
    (authenticated) index plaintext; raises IndexMalformed for a bad shape, numbers
    not strictly ascending in 1..10000, sizes beyond a part, or non-zero padding."""
    if checksummed and not described:
        raise ValueError("only a described index carries a checksum")
    raw = memoryview(raw)
    if not INDEX_PREFIX_SIZE <= len(raw) <= MAX_INDEX_SIZE:
        raise IndexMalformed()
    count, pad = _INDEX_PREFIX.unpack_from(raw)
    if not 1 <= count <= MAX_PART_NUMBER or pad > MAX_INDEX_PAD:
        raise IndexMalformed()
    checksum = None
    checksum_size = 0
    if checksummed:
        at = INDEX_PREFIX_SIZE + INDEX_ENTRY_SIZE * count + INDEX_DESCRIPTION_SIZE
        checksum = StoredChecksum.decode(raw[at:at + CHECKSUM_BLOCK_SIZE])
        checksum_size = len(checksum.digest)
    if len(raw) != index_record_size(count, pad, described, checksum_size):
        raise IndexMalformed()
    stop = INDEX_PREFIX_SIZE + INDEX_ENTRY_SIZE * count
    entries = list(_INDEX_ENTRY.iter_unpack(raw[INDEX_PREFIX_SIZE:stop]))
    numbers = tuple(n for n, _ in entries)
    sizes = tuple(s for _, s in entries)
    description = None
    if described:
        extra = bytes(raw[stop:stop + INDEX_DESCRIPTION_SIZE])
        stop += INDEX_DESCRIPTION_SIZE
        part_checksums: tuple[bytes, ...] = ()
        if checksum is not None:
            stop += CHECKSUM_BLOCK_SIZE
            part_checksums = tuple(bytes(raw[stop + i * checksum_size:
                                             stop + (i + 1) * checksum_size])
                                   for i in range(count))
            stop += count * checksum_size
        description = IndexDescription(extra[:16], extra[16:], checksum, part_checksums)
    if not part_numbers_valid(numbers) or any(s > MAX_PART_PLAINTEXT_SIZE for s in sizes) \
            or any(raw[stop:]):
        raise IndexMalformed()
    return PartIndex(numbers, sizes, description)


# -- the footer of an indexed trailer --------------------------------------------------------------


def encode_footer(trailer_size: int) -> bytes:
    """Footer: magic, version, reserved, and the distance from the trailer header to it."""
    return _FOOTER.pack(FOOTER_MAGIC, FORMAT_VERSION, 0, trailer_size - FOOTER_SIZE)


def decode_footer(raw: bytes | memoryview) -> int:
    """The stored size of the indexed trailer this footer ends; raises IndexMalformed."""
    if len(raw) != FOOTER_SIZE:
        raise IndexMalformed()
    magic, version, reserved, back = _FOOTER.unpack(raw)
    if magic != FOOTER_MAGIC or reserved:
        raise IndexMalformed()
    if version != FORMAT_VERSION:
        raise UnsupportedVersion()
    if not SEGMENT_HEADER_SIZE + INDEX_PREFIX_SIZE <= back <= \
            SEGMENT_HEADER_SIZE + MAX_INDEX_SIZE + TAG_SIZE:
        raise IndexMalformed()
    return int(back) + FOOTER_SIZE


__all__ = [
    "AUTHENTICATED_SIZE", "MAX_INDEX_SIZE", "SEGMENT_SALT_SIZE", "PartIndex", "SegmentHeader",
    "decode_footer", "decode_index", "encode_footer", "encode_index", "trailer_header",
]
