"""Reading encrypted multipart objects without asking the backend where parts begin.

Objects are built in memory with the format's own engine; a fake backend answers
ranged reads and records them, so the tests see exactly which ciphertext a read
fetched.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import pytest

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import PartEncryptor, build_trailer
from encproxy.format.constants import Kind, Suite
from encproxy.format.errors import FormatError
from encproxy.format.layout import Trailer, plan_completion
from encproxy.wsgi.encryption.layouts import LayoutReader, backend_parts

MiB = 1 << 20


@dataclass
class FakeStream:
    body: list[bytes]

    def close(self) -> None:
        pass


@dataclass
class FakeFetcher:
    """Ranged reads of one stored object; remembers every range asked for."""

    data: bytes
    bucket: str = "b"
    key: str = "k"
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def read(self, start: int, stop: int) -> bytes:
        self.ranges.append((start, stop))
        return self.data[start:stop]

    def stream(self, start: int | None = None, stop: int | None = None) -> FakeStream:
        start, stop = start or 0, len(self.data) if stop is None else stop
        self.ranges.append((start, stop))
        body = self.data[start:stop]
        return FakeStream([body[i:i + 300_000] for i in range(0, len(body), 300_000)])


def stored(sizes: list[int], numbers: list[int] | None = None
           ) -> tuple[ObjectKeys, bytes, bytes, str]:
    """keys, stored body, plaintext, backend ETag of a completed upload."""
    keys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    numbers = numbers or list(range(1, len(sizes) + 1))
    parts = [os.urandom(s) for s in sizes]
    segments = [b"".join(bytes(v) for v in PartEncryptor(keys, n, len(p)).encrypt([p]))
                for n, p in zip(numbers, parts, strict=True)]
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
    body = b"".join(segments) + build_trailer(keys, plan)
    return keys, body, b"".join(parts), f'"{"0" * 32}-{plan.backend_parts}"'


def read_range(reads: LayoutReader, keys: ObjectKeys, body: bytes, etag: str,
               fetcher: FakeFetcher, first: int, last: int) -> bytes:
    batches, stream = reads.decrypt_range(keys, len(body), etag, fetcher, first, last)
    try:
        return b"".join(bytes(v) for v in batches)
    finally:
        stream.close()


@pytest.mark.parametrize("etag,parts", [
    ('"9b2cf535f27731c974343645a3985328-3"', 3), ("9b2cf535f27731c974343645a3985328-10000", 10000),
    ('"9b2cf535f27731c974343645a3985328"', None), ('"9b2cf535f27731c974343645a3985328-0"', None),
    ('"9b2cf535f27731c974343645a3985328-10001"', None), ('"abc-2"', None)])
def test_backend_parts(etag, parts):
    assert backend_parts(etag) == parts


@pytest.mark.parametrize("sizes", [
    [5 * MiB, 5 * MiB, 3 * MiB + 7],          # equal parts, shorter last: predicted
    [5 * MiB, 6 * MiB, 2 * MiB],              # regular but unequal: the prediction is wrong
    [5 * MiB + 1, 5 * MiB + 99, 12],          # irregular: from the index
    [5 * MiB, 5 * MiB],                        # a header-only trailer
], ids=["predicted", "wrong-prediction", "indexed", "trailer"])
def test_ranges_are_right_whatever_the_layout(sizes):
    keys, body, plaintext, etag = stored(sizes)
    reads = LayoutReader()
    fetcher = FakeFetcher(body)
    assert reads.plaintext_size(lambda: keys, len(body), etag, fetcher) == len(plaintext)
    rnd = random.Random(str(sizes))
    for _ in range(25):
        first = rnd.randrange(len(plaintext))
        last = min(len(plaintext) - 1, first + rnd.choice([0, 5, 70_000, 5 * MiB + 3]))
        assert read_range(reads, keys, body, etag, fetcher, first, last) == \
            plaintext[first:last + 1], (first, last)
    whole = reads.decrypt_all(keys, len(body), etag, fetcher, fetcher.stream().body,
                              len(plaintext))
    assert b"".join(bytes(v) for v in whole) == plaintext


def test_a_range_fetches_only_what_covers_it():
    keys, body, plaintext, etag = stored([8 * MiB] * 4 + [MiB])
    reads = LayoutReader()
    fetcher = FakeFetcher(body)
    reads.plaintext_size(lambda: keys, len(body), etag, fetcher)
    # The size comes from the verified layout (FORMAT.md §7.7): part 1's header, then
    # every other header in parallel; nothing but headers is read.
    assert sorted(fetcher.ranges)[0] == (0, 52) and len(fetcher.ranges) == 5
    assert all(stop - start == 52 for start, stop in fetcher.ranges)
    fetcher.ranges.clear()
    got = read_range(reads, keys, body, etag, fetcher, 20 * MiB, 20 * MiB + 9)
    assert got == plaintext[20 * MiB:20 * MiB + 10]
    streamed = [r for r in fetcher.ranges if r[1] - r[0] > 52]
    assert len(streamed) == 1 and streamed[0][1] - streamed[0][0] <= 2 * (65_536 + 16)
    # The checked layout is cached: a second read of the same part fetches the range only.
    fetcher.ranges.clear()
    read_range(reads, keys, body, etag, fetcher, 20 * MiB + 100, 20 * MiB + 200)
    assert all(stop - start > 52 for start, stop in fetcher.ranges)


def test_a_wrong_prediction_never_fails_half_way():
    """Parts 5, 6, 2 MiB look like 5, 5, 3 MiB from part 1's header and the listing; a range
    across parts 2 and 3 is checked before a byte is sent, and served from the walked layout."""
    keys, body, plaintext, etag = stored([5 * MiB, 6 * MiB, 2 * MiB])
    reads = LayoutReader()
    fetcher = FakeFetcher(body)
    first, last = 5 * MiB + 100, 13 * MiB - 1
    batches, stream = reads.decrypt_range(keys, len(body), etag, fetcher, first, last)
    assert b"".join(bytes(v) for v in batches) == plaintext[first:last + 1]
    known = reads.cached("b", "k", len(body), etag)
    assert known is not None and known.authoritative
    assert known.layout.part_sizes == (5 * MiB, 6 * MiB, 2 * MiB)


def test_gaps_come_from_the_index():
    keys, body, plaintext, etag = stored([5 * MiB, 5 * MiB, 100], numbers=[2, 7, 9])
    reads = LayoutReader()
    fetcher = FakeFetcher(body)
    known = reads.layout(keys, len(body), etag, fetcher)
    assert known.authoritative and known.layout.trailer is Trailer.INDEXED
    assert known.layout.part_numbers == (2, 7, 9) and known.position(7) == 1
    assert known.position(5) is None
    assert read_range(reads, keys, body, etag, fetcher, 5 * MiB - 1, 10 * MiB) == \
        plaintext[5 * MiB - 1:10 * MiB + 1]


def test_tampered_headers_are_integrity_errors():
    keys, body, _, etag = stored([5 * MiB, 5 * MiB, 3 * MiB])
    other_keys, *_ = stored([10])
    reads = LayoutReader()
    with pytest.raises(FormatError):
        reads.layout(other_keys, len(body), etag, FakeFetcher(body))   # another upload's key
    swapped = bytearray(body)
    seg = 52 + 5 * MiB + 16 * 80
    swapped[:seg], swapped[seg:2 * seg] = body[seg:2 * seg], body[:seg]
    with pytest.raises(FormatError):
        read_range(LayoutReader(), keys, bytes(swapped), etag, FakeFetcher(bytes(swapped)),
                   0, 10)


def test_the_cache_is_bounded_by_parts():
    reads = LayoutReader(max_cached_parts=5)
    for i in range(4):
        keys, body, _, _ = stored([5 * MiB, 1000])
        etag = f'"{i:032x}-2"'
        reads.layout(keys, len(body), etag, FakeFetcher(body))
    assert reads.cached_parts <= 5
    assert reads.cached("b", "k", len(body), etag) is not None


def test_a_layout_is_never_used_for_another_object_with_the_same_etag_and_size():
    """The backend names ETags and sizes: a layout verified for ``b/k`` is cached for that
    object only, so another object the backend gives the same ETag and size is verified
    on its own (and here, under its own keys, fails)."""
    keys, body, _, etag = stored([5 * MiB, 5 * MiB, 3 * MiB])
    other_keys, *_ = stored([5 * MiB, 5 * MiB, 3 * MiB])
    reads = LayoutReader()
    reads.layout(keys, len(body), etag, FakeFetcher(body))
    assert reads.cached("b", "k", len(body), etag) is not None
    assert reads.cached("b", "other", len(body), etag) is None
    with pytest.raises(FormatError):
        reads.layout(other_keys, len(body), etag, FakeFetcher(body, key="other"))


def test_facts_are_never_used_for_another_object_with_the_same_etag_and_size():
    """The same binding for what listings and HEAD learn (plaintext size, client ETag,
    mode, key id): keyed by bucket and key as well as the backend's ETag and size."""
    from encproxy.wsgi.encryption.facts import FactsCache, ObjectFacts
    facts = FactsCache()
    learnt = ObjectFacts(True, 1000, '"' + "a" * 32 + '"', "aws:kms", "key-a")
    facts.put("b", "k", '"' + "e" * 32 + '"', 1100, learnt)
    assert facts.get("b", "k", "e" * 32, 1100) == learnt
    for bucket, key in (("b", "other"), ("other", "k")):
        assert facts.get(bucket, key, "e" * 32, 1100) is None
    assert facts.get("b", "k", "e" * 32, 1101) is None
