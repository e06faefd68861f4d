"""Round trips through the real engine: every size, every range, every layout."""
from __future__ import annotations

import hashlib
import io
import random

import pytest
from cryptography.exceptions import InvalidTag
from format_testkit import (
    BlindWrapper,
    ContextWrapper,
    collect,
    join,
    pieces,
    rand_bytes,
    store_multipart,
    store_single,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from encproxy.crypto.keys import ObjectKeys, open_object, rebind, rewrap
from encproxy.crypto.multipart import (
    MultipartDecryptor,
    PartEncryptor,
    layout_from_headers,
    read_index,
    walk_step,
)
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.crypto.stream import BATCH_CHUNKS, Source, copied
from encproxy.errors import IncompleteBody
from encproxy.format.constants import (
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    ETAG_SEAL_SIZE,
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    SEGMENT_HEADER_SIZE,
    Kind,
    Suite,
)
from encproxy.format.envelope import Envelope
from encproxy.format.errors import EnvelopeAuthenticationFailed, SegmentOutOfOrder
from encproxy.format.layout import (
    MultipartLayout,
    Trailer,
    ciphertext_size,
    index_tail_hint,
    is_indexed,
    multipart_plaintext_size,
    plan_range,
    predict_layout,
    segment_size,
)
from encproxy.format.segment import SegmentHeader

C = CHUNK_SIZE
suites = st.sampled_from(Suite)
sizes = st.one_of(
    st.integers(0, 4 * C + 10),
    st.builds(lambda k, d: max(0, k * C + d), st.integers(0, 5), st.integers(-3, 3)),
    st.builds(lambda k, d: max(0, k * BATCH_CHUNKS * C + d), st.integers(1, 2),
              st.integers(-2, 2)))
piece_sizes = st.lists(
    st.sampled_from([1, 13, 4096, C - 1, C, C + 16, C + 17, 3 * C + 5, 1 << 20]),
    min_size=1, max_size=4)


def bounded(cuts: list[int], total: int) -> list[int]:
    """Tiny pieces only for small bodies, so that a test stays fast."""
    floor = 1 if total <= 4096 else 997
    return [max(floor, c) for c in cuts]


class ReadOnly:
    """A reader with ``read`` only (like some WSGI inputs)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._io, self._step = io.BytesIO(data), step

    def read(self, n: int) -> bytes:
        return self._io.read(min(n, self._step))


class Trickle(io.RawIOBase):
    """A ``readinto`` reader that returns short reads, like a socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._io, self._step = io.BytesIO(data), step

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        return self._io.readinto(memoryview(b)[:self._step])


def shaped(data: bytes, shape: str, cuts: list[int]) -> Source:
    cuts = bounded(cuts, len(data))
    if shape == "pieces":
        return pieces(data, cuts)
    if shape == "read":
        return ReadOnly(data, cuts[0])
    return Trickle(data, cuts[0])


shapes = st.sampled_from(["pieces", "read", "readinto"])


@given(sizes, suites, piece_sizes, shapes, st.integers(0, 2**32))
@settings(max_examples=120, deadline=None)
def test_single_round_trip(size: int, suite: Suite, cuts: list[int], shape: str,
                           seed: int) -> None:
    plaintext = rand_bytes(size, seed)
    keys = ObjectKeys.generate(Kind.SINGLE, suite)
    enc = ObjectEncryptor(keys, size)
    out = []
    for view in enc.encrypt(shaped(plaintext, shape, cuts)):
        assert 0 < len(view) <= BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE + 32
        out.append(bytes(view))
    body = b"".join(out)
    assert len(body) == enc.ciphertext_size == ciphertext_size(size)
    dec = ObjectDecryptor(keys, len(body))
    got = []
    for view in dec.decrypt(shaped(body, shape, cuts)):
        assert len(view) <= BATCH_CHUNKS * C
        got.append(bytes(view))
    assert b"".join(got) == plaintext
    assert dec.etag_md5 == hashlib.md5(plaintext).digest()
    assert dec.open_etag_seal(body[dec.etag_seal_range[0]:]) == dec.etag_md5


@given(sizes.filter(lambda n: n > 0), suites, st.data())
@settings(max_examples=120, deadline=None)
def test_single_random_range_equals_slice(size: int, suite: Suite, data: st.DataObject) -> None:
    stored = store_single(rand_bytes(size, size), suite)
    dec = ObjectDecryptor(stored.keys, len(stored.body))
    for _ in range(4):
        start = data.draw(st.integers(0, size - 1))
        end = data.draw(st.integers(start, size + 3))
        plan = plan_range(size, start, end)
        source = stored.body[plan.ciphertext_start:plan.ciphertext_stop]
        cut = bounded(data.draw(piece_sizes), len(source))
        assert join(dec.decrypt_range(plan, pieces(source, cut))) == \
            stored.plaintext[start:end + 1]


def test_md5_from_caller_and_copied_stream() -> None:
    plaintext = rand_bytes(3 * C + 5)
    keys = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM)
    md5 = hashlib.md5(plaintext).digest()
    body = b"".join(copied(ObjectEncryptor(keys, len(plaintext)).encrypt(
        [plaintext], md5=lambda: md5)))
    dec = ObjectDecryptor(keys, len(body))
    assert join(dec.decrypt([body])) == plaintext and dec.etag_md5 == md5


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_fingerprint_is_the_md5_of_the_seal_and_new_for_every_write(suite: Suite) -> None:
    plaintext = rand_bytes(C + 3, 9)
    prints = []
    for _ in range(2):
        enc = ObjectEncryptor(ObjectKeys.generate(Kind.SINGLE, suite), len(plaintext))
        with pytest.raises(ValueError):
            enc.fingerprint()  # not before the seal exists
        body = join(enc.encrypt([plaintext]))
        assert enc.fingerprint() == hashlib.md5(body[-ETAG_SEAL_SIZE:]).digest()
        prints.append(enc.fingerprint())
    assert prints[0] != prints[1]  # same plaintext, fresh data keys


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_one_byte_pieces_across_chunk_boundaries(suite: Suite) -> None:
    plaintext = rand_bytes(C + 17, 5)
    keys = ObjectKeys.generate(Kind.SINGLE, suite)
    body = join(ObjectEncryptor(keys, len(plaintext)).encrypt(pieces(plaintext, [1])))
    assert join(ObjectDecryptor(keys, len(body)).decrypt(pieces(body, [1]))) == plaintext


@pytest.mark.parametrize("delta", [-1, 1], ids=["short", "long"])
def test_source_length_must_match(delta: int) -> None:
    keys = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM)
    with pytest.raises(IncompleteBody):
        join(ObjectEncryptor(keys, C).encrypt([bytes(C + delta)]))
    mkeys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    with pytest.raises(IncompleteBody):
        join(PartEncryptor(mkeys, 1, C).encrypt([bytes(C + delta)]))


# -- multipart ------------------------------------------------------------------------------

MIN = MIN_PART_SIZE
part_lists = st.one_of(
    # regular: equal chunk-multiple parts, any last part
    st.builds(lambda n, k, last: [k * C] * n + [last], st.integers(0, 2),
              st.integers(MIN // C, MIN // C + 3), st.integers(0, MIN + 3 * C)),
    # regular, unequal parts
    st.builds(lambda a, b, last: [a * C, b * C, last], st.integers(MIN // C, MIN // C + 20),
              st.integers(MIN // C, MIN // C + 20), st.integers(0, 3 * C)),
    # irregular: parts that are not chunk multiples (indexed trailer, maybe held tail)
    st.builds(lambda a, last: [MIN + a, last], st.integers(1, C - 1),
              st.integers(0, MIN + 2 * C)),
)


@given(part_lists, suites, st.integers(0, 2**32), st.booleans(), st.data())
@settings(max_examples=60, deadline=None)
def test_multipart_round_trip_and_ranges(parts_sizes: list[int], suite: Suite, seed: int,
                                         always_index: bool, data: st.DataObject) -> None:
    """Both ways to complete: the minimal trailer, and an index on every completion
    (what the server writes, FORMAT.md §7.3)."""
    rng = random.Random(seed)
    parts = [rng.randbytes(n) for n in parts_sizes]
    stored = store_multipart(parts, suite, always_index=always_index)
    plan = stored.plan
    assert plan is not None
    assert (plan.trailer is Trailer.INDEXED) == (always_index or not plan.layout.is_regular)
    body, total = stored.body, stored.plaintext
    listed = multipart_plaintext_size(len(body), plan.backend_parts)
    if plan.trailer is Trailer.INDEXED:
        assert listed is None
        layout = read_index(stored.keys, body[-index_tail_hint(plan.backend_parts):],
                            len(body), plan.backend_parts)
        assert layout == plan.layout
    else:
        assert listed == len(total)
        layout = plan.layout
    dec = MultipartDecryptor(stored.keys, len(body), layout=layout)
    assert join(dec.decrypt(pieces(body, bounded(data.draw(piece_sizes), len(body))),
                            plaintext_size=len(total))) == total
    assert dec.part_sizes == tuple(parts_sizes)

    # Walking the headers finds the same layout.
    offset, headers = 0, list[SegmentHeader]()
    while offset < len(body):
        header, offset = walk_step(stored.keys, offset,
                                   body[offset:offset + SEGMENT_HEADER_SIZE], len(headers) + 1)
        headers.append(header)
    assert offset == len(body) and layout_from_headers(headers) == layout

    check_ranges(dec, layout, body, total, data)


def check_ranges(dec: MultipartDecryptor, layout: MultipartLayout, body: bytes, total: bytes,
                 data: st.DataObject, rounds: int = 5) -> None:
    """Random ranges (some across part boundaries) equal the plaintext slice."""
    if not total:
        return
    edges = [s.plaintext_offset for s in layout.spans if 0 < s.plaintext_offset < len(total)]
    for _ in range(rounds):
        straddle = data.draw(st.booleans())
        if edges and straddle:   # straddle a part boundary
            edge = data.draw(st.sampled_from(edges))
            start = data.draw(st.integers(max(0, edge - 2 * C), edge - 1))
            end = data.draw(st.integers(edge, min(len(total) - 1, edge + 2 * C)))
        else:
            start = data.draw(st.integers(0, len(total) - 1))
            end = data.draw(st.integers(start, len(total) - 1))
        rplan = layout.plan_range(start, end)
        lo, hi = rplan.header_range
        header = body[lo:hi] if rplan.needs_header else None
        source = body[rplan.ciphertext_start:rplan.ciphertext_stop]
        cut = bounded(data.draw(piece_sizes), len(source))
        got = join(dec.decrypt_range(rplan, pieces(source, cut), header))
        assert got == total[start:end + 1]


@given(part_lists, suites, st.integers(0, 2**32), st.data())
@settings(max_examples=40, deadline=None)
def test_gapped_multipart_round_trip_and_ranges(parts_sizes: list[int], suite: Suite,
                                                seed: int, data: st.DataObject) -> None:
    """Complete names any strictly ascending part numbers in 1..10000 (gaps)."""
    rng = random.Random(seed)
    m = len(parts_sizes)
    shape = data.draw(st.sampled_from(["near 1..m", "anywhere", "ends at 10000"]))
    top = m + 2 if shape == "near 1..m" else MAX_PART_NUMBER
    numbers = data.draw(st.lists(st.integers(1, top), min_size=m, max_size=m,
                                 unique=True).map(sorted))
    if shape == "ends at 10000":
        numbers = numbers[:-1] + [MAX_PART_NUMBER]   # part 10000: terminal, held tail
    parts = [rng.randbytes(n) for n in parts_sizes]
    stored = store_multipart(parts, suite, numbers=numbers)
    plan = stored.plan
    assert plan is not None and plan.part_numbers == tuple(numbers)
    body, total, n = stored.body, stored.plaintext, plan.backend_parts
    gapped = not plan.contiguous
    if gapped:
        assert plan.trailer is Trailer.INDEXED
    if plan.trailer is not Trailer.INDEXED:
        layout = plan.layout
        assert multipart_plaintext_size(len(body), n) == len(total)
    else:
        # The listing carries the index signal; the index gives numbers and sizes.
        assert multipart_plaintext_size(len(body), n) is None and is_indexed(len(body), n)
        layout = read_index(stored.keys, body[-index_tail_hint(n):], len(body), n)
        assert layout == plan.layout and layout.part_numbers == tuple(numbers)
    assert plan.held_tail == (plan.trailer is not Trailer.NONE and n == len(parts))
    dec = MultipartDecryptor(stored.keys, len(body), layout=layout)
    assert join(dec.decrypt(pieces(body, bounded(data.draw(piece_sizes), len(body))),
                            plaintext_size=len(total))) == total
    assert dec.part_numbers == tuple(numbers) and dec.part_sizes == tuple(parts_sizes)

    # A walk that follows the index finds the same layout ...
    offset, headers = 0, list[SegmentHeader]()
    for number in layout.segment_numbers:
        header, offset = walk_step(stored.keys, offset,
                                   body[offset:offset + SEGMENT_HEADER_SIZE], number)
        headers.append(header)
    assert offset == len(body)
    assert layout_from_headers(headers, index=layout if gapped else None) == layout
    if gapped:
        # ... and a reader without the index stops at the first gap.
        with pytest.raises(SegmentOutOfOrder):
            layout_from_headers(headers)
        first_gap = next(i for i, k in enumerate(numbers) if k != i + 1)
        offset = sum(segment_size(s) for s in parts_sizes[:first_gap])
        with pytest.raises(SegmentOutOfOrder):
            walk_step(stored.keys, offset, body[offset:offset + SEGMENT_HEADER_SIZE],
                      first_gap + 1)
        received, error = collect(MultipartDecryptor(stored.keys, len(body)).decrypt([body]))
        assert isinstance(error, SegmentOutOfOrder)
        assert total.startswith(received) and len(received) <= sum(parts_sizes[:first_gap])

    check_ranges(dec, layout, body, total, data)


def test_predicted_layout_reads_ranges() -> None:
    parts = [rand_bytes(MIN, 1), rand_bytes(MIN, 2), rand_bytes(MIN // 2 + 7, 3)]
    stored = store_multipart(parts)
    plan = stored.plan
    assert plan is not None
    first = walk_step(stored.keys, 0, stored.body[:SEGMENT_HEADER_SIZE], 1)[0]
    predicted = predict_layout(len(stored.body), plan.backend_parts, first.plaintext_size)
    assert predicted == plan.layout
    rplan = predicted.plan_range(MIN - 10, 2 * MIN + 10)
    lo, hi = rplan.header_range
    got = join(MultipartDecryptor(stored.keys, len(stored.body)).decrypt_range(
        rplan, [stored.body[rplan.ciphertext_start:rplan.ciphertext_stop]], stored.body[lo:hi]))
    assert got == stored.plaintext[MIN - 10:2 * MIN + 11]


# -- envelopes: copies and rotation ------------------------------------------------------------

@pytest.mark.parametrize("wrapper_cls", [ContextWrapper, BlindWrapper])
def test_copy_rebinds_without_reencrypting(wrapper_cls: type[ContextWrapper]) -> None:
    wrapper = wrapper_cls()
    stored = store_single(rand_bytes(2 * C), wrapper=wrapper, bucket="src", key="a")
    keys = open_object(wrapper, Envelope.decode(stored.envelope.encode()), "src", "a")
    copy = rebind(wrapper, keys, "test:k/2", "dst", "b")
    copied_keys = open_object(wrapper, copy, "dst", "b")
    dec = ObjectDecryptor(copied_keys, len(stored.body))
    assert join(dec.decrypt([stored.body])) == stored.plaintext
    # The source's envelope does not open at the copy's location. open_object documents
    # EnvelopeAuthenticationFailed, and provider errors passing through: a provider that
    # binds the context (AES-GCM AAD) refuses the unwrap itself (InvalidTag).
    rejected = (EnvelopeAuthenticationFailed,) if wrapper_cls is BlindWrapper else \
        (EnvelopeAuthenticationFailed, InvalidTag)
    with pytest.raises(rejected):
        open_object(wrapper, stored.envelope, "dst", "b")


def test_rotation_rewraps_and_keeps_the_tag() -> None:
    wrapper = ContextWrapper()
    stored = store_single(rand_bytes(100), wrapper=wrapper, bucket="b", key="k")
    rotated = rewrap(wrapper, stored.envelope, "b", "k", "test:k/9")
    assert rotated.tag == stored.envelope.tag and rotated.key_id == "test:k/9"
    assert rotated.wrapped_key != stored.envelope.wrapped_key
    keys = open_object(wrapper, Envelope.decode(rotated.encode()), "b", "k")
    assert join(ObjectDecryptor(keys, len(stored.body)).decrypt([stored.body])) == \
        stored.plaintext
