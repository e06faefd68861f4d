"""Verifying a held copy while it streams back into an upload (FORMAT.md §7.4, §14.3).

Complete re-uploads a gapped upload's last part from its held copy in the internal
bucket, followed by the trailer.  The held copy is backend data, so it is checked
on the way: its segment header must authenticate under the upload's keys as
terminal part ``part_number`` of ``plaintext_size`` bytes with the expected salt,
and every chunk must authenticate.  The bytes are passed on as read, except that
the piece holding the last unverified bytes is kept back until everything before
it verified, and the end of the segment is released only after the whole segment
verified (exact size, no trailing bytes): a bad held copy makes the re-upload
fail before its last byte is sent, never completes an unreadable object.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import open_segment_header
from encproxy.crypto.stream import BATCH_CHUNKS, Batch, ByteSource, decrypt_chunks
from encproxy.format.constants import CHUNK_SIZE, SEGMENT_HEADER_SIZE, Domain
from encproxy.format.errors import (
    CiphertextTrailingData,
    CiphertextTruncated,
    SegmentLayoutMismatch,
)
from encproxy.format.layout import chunk_count
from encproxy.format.records import AadPacker


class _Tee:
    """The pieces of a source, remembered until they are released."""

    def __init__(self, source: Iterable[bytes]) -> None:
        self.source = iter(source)
        self.pending: list[bytes] = []

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.source:
            piece = bytes(piece)
            self.pending.append(piece)
            yield piece

    def release_consumed(self) -> list[bytes]:
        """Every remembered piece except the last one read (it may be partly unverified)."""
        done, self.pending = self.pending[:-1], self.pending[-1:]
        return done

    def release_all(self) -> list[bytes]:
        done, self.pending = self.pending, []
        return done


def verified_held_segment(keys: ObjectKeys, part_number: int, plaintext_size: int,
                          salt: bytes | None, source: Iterable[bytes]) -> Iterator[bytes]:
    """The held segment's bytes, each released only once everything up to it verified.

    Raises (as the consumer reads) SegmentHeaderAuthenticationFailed, SegmentOutOfOrder,
    SegmentLayoutMismatch, ChunkAuthenticationFailed, CiphertextTruncated or
    CiphertextTrailingData.
    """
    tee = _Tee(source)
    src = ByteSource(tee)
    raw = src.take(SEGMENT_HEADER_SIZE)
    if len(raw) != SEGMENT_HEADER_SIZE:
        raise CiphertextTruncated()
    header, cipher = open_segment_header(keys, raw, part_number=part_number)
    if header.trailer or not header.terminal or header.plaintext_size != plaintext_size \
            or (salt is not None and header.salt != salt):
        raise SegmentLayoutMismatch()
    out = Batch(BATCH_CHUNKS * CHUNK_SIZE)
    chunks = decrypt_chunks(cipher, AadPacker(keys.suite, Domain.SEGMENT_CHUNK, part_number),
                            plaintext_size, 0, chunk_count(plaintext_size) - 1, src, out)
    for _ in chunks:
        yield from tee.release_consumed()
    if not src.at_end():
        raise CiphertextTrailingData()
    yield from tee.release_all()
