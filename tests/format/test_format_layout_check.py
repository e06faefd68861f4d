"""The layout check (FORMAT.md §7.7): known-answer tamper cases.

A multipart object is rewritten in the backend as someone with write access could:
parts dropped, repeated, moved or taken from another upload, the trailer dropped or
replaced, data appended, and the ETag's part count ``N`` told wrong.  The layout a
reader uses for sizes, ranges and part numbers must verify whole before any read
releases a byte: every case below raises its documented error from
``LayoutReader.layout`` (which HEAD, listings, GetObjectAttributes, ranged and whole
reads all go through), whatever part count the backend claims; the intact object
verifies under its true ``N`` (and under ``N - 1``, which names the same layout with
the trailer counted into the last part).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from format_testkit import store_multipart

from encproxy.format.errors import (
    CiphertextSizeInvalid,
    FinalSegmentMissing,
    FormatError,
    SegmentHeaderAuthenticationFailed,
    SegmentOutOfOrder,
)
from encproxy.format.layout import segment_size
from encproxy.wsgi.encryption.layouts import LayoutReader

MiB = 1 << 20
P = 5 * MiB


@dataclass
class Fetcher:
    data: bytes
    bucket: str = "b"
    key: str = "k"
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def read(self, start: int, stop: int) -> bytes:
        self.ranges.append((start, stop))
        return self.data[start:stop]


@pytest.fixture(scope="module")
def uploads():
    """Two uploads of three 5 MiB parts: segments 1..3 and a header-only trailer (4)."""
    def split(body: bytes) -> list[bytes]:
        s = segment_size(P)
        return [body[i * s:(i + 1) * s] for i in range(3)] + [body[3 * s:]]
    a = store_multipart([os.urandom(P) for _ in range(3)])
    b = store_multipart([os.urandom(P) for _ in range(3)])
    return a, split(a.body), split(b.body)


# case: (backend parts as indexes into the upload's [seg1, seg2, seg3, trailer]; "B" marks
# the other upload's), the error.
CASES = {
    "drop-part-3-keep-trailer": ([0, 1, 3], SegmentOutOfOrder),
    "drop-trailer": ([0, 1, 2], FinalSegmentMissing),
    "keep-part-1-only": ([0], FinalSegmentMissing),
    "drop-part-2": ([0, 2, 3], SegmentOutOfOrder),
    "repeat-part-2": ([0, 1, 1, 2, 3], SegmentOutOfOrder),
    "part-after-the-trailer": ([0, 1, 2, 3, 1], CiphertextSizeInvalid),
    "trailer-of-another-upload": ([0, 1, 2, "B3"], SegmentHeaderAuthenticationFailed),
    "part-of-another-upload": ([0, "B1", 2, 3], SegmentHeaderAuthenticationFailed),
}


def layout(uploads, parts: list, n: int):
    a, mine, other = uploads
    body = b"".join(other[int(p[1:])] if isinstance(p, str) else mine[p] for p in parts)
    return LayoutReader().layout(a.keys, len(body), "0" * 32 + f"-{n}", Fetcher(body))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("claimed", [-1, 0, 1], ids=["N-1", "N", "N+1"])
def test_a_tampered_layout_never_verifies(uploads, case: str, claimed: int) -> None:
    parts, error = CASES[case]
    with pytest.raises(error):
        layout(uploads, parts, len(parts) + claimed)


def test_the_intact_layout_verifies_and_costs_one_header_round(uploads) -> None:
    a, mine, _ = uploads
    body = b"".join(mine)
    fetcher = Fetcher(body)
    reader = LayoutReader()
    known = reader.layout(a.keys, len(body), "0" * 32 + "-4", fetcher)
    assert known.layout.part_sizes == (P, P, P) and known.layout.plaintext_size == 3 * P
    # Part 1's header, then parts 2 and 3 and the trailer (in parallel): 52 bytes each.
    assert fetcher.ranges[0] == (0, 52) and len(fetcher.ranges) == 4
    assert {stop - start for start, stop in fetcher.ranges} == {52}
    assert fetcher.ranges[-1] == (len(body) - 52, len(body)) or \
        (len(body) - 52, len(body)) in fetcher.ranges
    fetcher.ranges.clear()
    assert reader.layout(a.keys, len(body), "0" * 32 + "-4", fetcher) is known
    assert fetcher.ranges == []      # warm: cached by backend ETag and stored size
    with pytest.raises(FormatError):
        layout(uploads, [0, 1, 2, 3], 5)
