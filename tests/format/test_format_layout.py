"""Size and range maths (encproxy.format.layout): tables and properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encproxy.errors import (
    EntityTooLarge,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
)
from encproxy.format.constants import (
    BACKEND_MAX_OBJECT_SIZE,
    BACKEND_MAX_PART_SIZE,
    BACKEND_MAX_PUT_SIZE,
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    ETAG_SEAL_SIZE,
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    SEGMENT_HEADER_SIZE,
    MiB,
)
from encproxy.format.errors import CiphertextSizeInvalid
from encproxy.format.layout import (
    MAX_INDEXED_TRAILER_SIZE,
    MAX_LAST_PART_PLAINTEXT_SIZE,
    MAX_OBJECT_PLAINTEXT_SIZE,
    MAX_PART_PLAINTEXT_SIZE,
    MAX_SINGLE_PLAINTEXT_SIZE,
    MultipartLayout,
    Trailer,
    check_part,
    check_part_numbers,
    check_single_size,
    ciphertext_size,
    index_tail_hint,
    indexed_trailer_size,
    is_indexed,
    is_terminal_part,
    max_part_plaintext_size,
    multipart_ciphertext_size,
    multipart_plaintext_size,
    plaintext_size,
    plan_completion,
    plan_range,
    predict_layout,
    segment_plaintext_size,
    segment_size,
    stream_size,
)

SETTINGS = settings(max_examples=300, deadline=None)
C = CHUNK_SIZE


def numbered(parts: list[int]) -> list[int]:
    return list(range(1, len(parts) + 1))

around_boundaries = st.one_of(
    st.integers(0, 5 * C),
    st.builds(lambda k, d: max(0, k * C + d), st.integers(0, 2**20), st.integers(-2, 2)),
    st.integers(0, MAX_SINGLE_PLAINTEXT_SIZE),
)


@pytest.mark.parametrize(("size", "expected"), [
    pytest.param(0, 16 + 32, id="empty: one empty chunk and the seal"),
    pytest.param(1, 1 + 16 + 32, id="one byte"),
    pytest.param(C - 1, C - 1 + 16 + 32, id="chunk-1"),
    pytest.param(C, C + 16 + 32, id="one full chunk"),
    pytest.param(C + 1, C + 1 + 32 + 32, id="chunk+1"),
    pytest.param(10 * C, 10 * (C + 16) + 32, id="ten chunks"),
])
def test_single_sizes_table(size: int, expected: int) -> None:
    assert ciphertext_size(size) == expected
    assert plaintext_size(expected) == size


@given(around_boundaries)
@SETTINGS
def test_single_size_functions_are_inverses(size: int) -> None:
    assert plaintext_size(ciphertext_size(size)) == size
    assert segment_plaintext_size(segment_size(size)) == size


@given(st.integers(0, 20 * CHUNK_CIPHERTEXT_SIZE))
@SETTINGS
def test_ciphertext_sizes_off_the_image_are_refused(stored: int) -> None:
    try:
        size = plaintext_size(stored)
    except CiphertextSizeInvalid:
        return
    assert ciphertext_size(size) == stored


@pytest.mark.parametrize("stored", [0, 15, 47, 48 + C + 1, 48 + C + 15, 32 + 2 * (C + 16) + 16])
def test_invalid_single_sizes(stored: int) -> None:
    with pytest.raises(CiphertextSizeInvalid):
        plaintext_size(stored)


def test_limits_fit_the_backend() -> None:
    assert ciphertext_size(MAX_SINGLE_PLAINTEXT_SIZE) <= BACKEND_MAX_PUT_SIZE
    assert ciphertext_size(MAX_SINGLE_PLAINTEXT_SIZE + 1) > BACKEND_MAX_PUT_SIZE
    assert segment_size(MAX_PART_PLAINTEXT_SIZE) <= BACKEND_MAX_PART_SIZE
    assert segment_size(MAX_PART_PLAINTEXT_SIZE + 1) > BACKEND_MAX_PART_SIZE
    worst = (MAX_PART_NUMBER * (SEGMENT_HEADER_SIZE + 16) + MAX_INDEXED_TRAILER_SIZE
             + stream_size(MAX_OBJECT_PLAINTEXT_SIZE))
    assert worst <= BACKEND_MAX_OBJECT_SIZE
    check_single_size(MAX_SINGLE_PLAINTEXT_SIZE)
    with pytest.raises(EntityTooLarge):
        check_single_size(MAX_SINGLE_PLAINTEXT_SIZE + 1)


@given(around_boundaries, st.data())
@SETTINGS
def test_range_plan_covers_exactly(size: int, data: st.DataObject) -> None:
    if size == 0:
        with pytest.raises(InvalidRange):
            plan_range(0, 0, 0)
        return
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size + 10))
    plan = plan_range(size, start, end)
    end = min(end, size - 1)
    assert plan.length == end - start + 1
    # Chunks cover [start, end]; the trims leave exactly the range.
    covered_from = plan.first_chunk * C
    covered_to = min(size, (plan.last_chunk + 1) * C)
    assert covered_from + plan.skip == start
    assert covered_to - plan.trim == end + 1
    assert plan.ciphertext_start == plan.first_chunk * CHUNK_CIPHERTEXT_SIZE
    decrypted = sum(min(C, size - i * C) for i in range(plan.first_chunk, plan.last_chunk + 1))
    assert plan.ciphertext_stop - plan.ciphertext_start == \
        decrypted + 16 * (plan.last_chunk - plan.first_chunk + 1)
    assert plan.ciphertext_stop <= ciphertext_size(size) - ETAG_SEAL_SIZE
    assert plan.http_range == f"bytes={plan.ciphertext_start}-{plan.ciphertext_stop - 1}"


def test_range_suffix_and_open_ended_resolved_by_caller() -> None:
    size = 3 * C + 100
    last_500 = plan_range(size, size - 500, size - 1)
    assert last_500.includes_final_chunk and last_500.length == 500
    open_ended = plan_range(size, C, 2**62)
    assert open_ended.end == size - 1 and open_ended.first_chunk == 1
    with pytest.raises(InvalidRange):
        plan_range(size, size, size + 5)


# -- multipart ---------------------------------------------------------------------------

regular_parts = st.builds(
    lambda n, k, last: [k * C] * (n - 1) + [last],
    st.integers(1, 40), st.integers(MIN_PART_SIZE // C, MIN_PART_SIZE // C + 300),
    st.integers(0, 12 * MiB))


@given(regular_parts)
@SETTINGS
def test_listing_size_is_exact_for_regular_layouts(parts: list[int]) -> None:
    plan = plan_completion(numbered(parts), parts)
    assert plan.layout.is_regular
    stored = plan.layout.ciphertext_size
    assert plan.backend_parts == len(parts) + (plan.trailer is Trailer.HEADER_ONLY)
    assert multipart_plaintext_size(stored, plan.backend_parts) == sum(parts)
    assert not is_indexed(stored, plan.backend_parts)


@given(st.lists(st.integers(MIN_PART_SIZE, MIN_PART_SIZE + 3 * C), min_size=1, max_size=30),
       st.integers(0, 8 * MiB), st.booleans())
@SETTINGS
def test_irregular_layouts_carry_the_index_signal(body: list[int], last: int,
                                                  rewrite: bool) -> None:
    parts = body + [last]
    layout = MultipartLayout(tuple(parts))
    terminal_last = last < MIN_PART_SIZE
    if layout.is_regular:
        return
    if terminal_last and not rewrite:
        with pytest.raises(InvalidRequest):
            plan_completion(numbered(parts), parts, can_rewrite_last_part=rewrite)
        return
    plan = plan_completion(numbered(parts), parts, can_rewrite_last_part=rewrite)
    assert plan.trailer is Trailer.INDEXED
    assert plan.trailer_in_own_part is not terminal_last
    assert is_indexed(plan.layout.ciphertext_size, plan.backend_parts)


@given(regular_parts, st.booleans())
@SETTINGS
def test_always_index_seals_every_completion_it_can_with_an_index(parts: list[int],
                                                                 rewrite: bool) -> None:
    """The server's completions (FORMAT.md §7.3): an indexed trailer in its own part
    after a non-terminal last part, a held tail after a terminal one; only a writer
    that cannot rewrite the last part falls back to the minimal trailer."""
    terminal = parts[-1] < MIN_PART_SIZE
    plan = plan_completion(numbered(parts), parts, can_rewrite_last_part=rewrite,
                           always_index=True)
    minimal = plan_completion(numbered(parts), parts, can_rewrite_last_part=rewrite)
    if terminal and not rewrite:
        assert plan == minimal and plan.trailer is Trailer.NONE
        return
    assert plan.trailer is Trailer.INDEXED and plan.held_tail is terminal
    assert plan.trailer_in_own_part is not terminal
    assert plan.backend_parts == len(parts) + (not terminal)
    assert plan.layout.plaintext_size == minimal.layout.plaintext_size == sum(parts)
    assert plan.layout.part_sizes == minimal.layout.part_sizes
    stored = plan.layout.ciphertext_size
    assert is_indexed(stored, plan.backend_parts)
    assert multipart_plaintext_size(stored, plan.backend_parts) is None
    # The index costs 12 bytes a part and at most one chunk of padding.
    assert stored - minimal.layout.ciphertext_size <= (
        indexed_trailer_size(len(parts), CHUNK_CIPHERTEXT_SIZE - 1))


def test_empty_last_part_and_empty_object() -> None:
    assert multipart_plaintext_size(multipart_ciphertext_size([0]), 1) == 0
    parts = [MIN_PART_SIZE, 0]
    assert multipart_plaintext_size(multipart_ciphertext_size(parts), 2) == MIN_PART_SIZE


@pytest.mark.parametrize(("stored", "parts"), [
    pytest.param(SEGMENT_HEADER_SIZE + 15, 1, id="shorter than a chunk tag"),
    pytest.param(0, 0, id="no parts"),
    pytest.param(100, MAX_PART_NUMBER + 1, id="too many parts"),
])
def test_invalid_multipart_listing(stored: int, parts: int) -> None:
    with pytest.raises(CiphertextSizeInvalid):
        multipart_plaintext_size(stored, parts)


@pytest.mark.parametrize(("numbers", "result"), [
    pytest.param([1, 2, 3], True, id="contiguous"),
    pytest.param([1], True, id="one part"),
    pytest.param([1, 3], False, id="gap"),
    pytest.param([2, 3], False, id="not from 1"),
    pytest.param([10000], False, id="only part 10000"),
    pytest.param([1, 5000, 10000], False, id="sparse up to 10000"),
    pytest.param([], InvalidPart, id="empty"),
    pytest.param([0, 1], InvalidPart, id="part 0"),
    pytest.param([1, 10001], InvalidPart, id="part 10001"),
    pytest.param([1, 3, 2], InvalidPartOrder, id="descending"),
    pytest.param([1, 1], InvalidPartOrder, id="repeated"),
])
def test_part_numbers(numbers: list[int], result: bool | type[Exception]) -> None:
    if isinstance(result, bool):
        assert check_part_numbers(numbers) is result
    else:
        with pytest.raises(result):
            check_part_numbers(numbers)


def test_completion_rules() -> None:
    with pytest.raises(EntityTooSmall):
        plan_completion([1, 2], [MIN_PART_SIZE - 1, 10])
    with pytest.raises(EntityTooSmall):
        plan_completion([2, 7], [MIN_PART_SIZE - 1, 10])
    with pytest.raises(InvalidPart):
        plan_completion([], [])
    with pytest.raises(InvalidPartOrder):
        plan_completion([2, 1], [MIN_PART_SIZE, 10])
    with pytest.raises(ValueError):
        plan_completion([1, 2], [MIN_PART_SIZE])
    terminal = plan_completion([1, 2], [MIN_PART_SIZE, 10])
    assert terminal.trailer is Trailer.NONE and terminal.backend_parts == 2
    assert not terminal.held_tail and terminal.trailer_number is None
    assert terminal.backend_part_numbers == (1, 2)
    header_only = plan_completion([1, 2], [MIN_PART_SIZE, MIN_PART_SIZE])
    assert header_only.trailer is Trailer.HEADER_ONLY and header_only.backend_parts == 3
    assert header_only.layout.trailer_size == SEGMENT_HEADER_SIZE
    assert header_only.trailer_number == 3 and header_only.backend_part_numbers == (1, 2, 3)
    numbers = list(range(1, MAX_PART_NUMBER + 1))
    tenk = plan_completion(numbers, [MIN_PART_SIZE] * MAX_PART_NUMBER)
    assert tenk.trailer is Trailer.NONE, "part 10000 is terminal whatever its size"


@pytest.mark.parametrize(("numbers", "sizes", "own_part", "trailer_number", "backend"), [
    pytest.param([1, 3], [MIN_PART_SIZE, 10], False, 4, (1, 3), id="gap, terminal last"),
    pytest.param([2, 5], [MIN_PART_SIZE, MIN_PART_SIZE], True, 6, (2, 5, 6),
                 id="gap, non-terminal last: trailer part last + 1"),
    pytest.param([7], [MIN_PART_SIZE], True, 8, (7, 8), id="one part, not part 1"),
    pytest.param([9999], [MIN_PART_SIZE], True, 10000, (9999, 10000),
                 id="trailer as part 10000"),
    pytest.param([1, 10000], [MIN_PART_SIZE, MIN_PART_SIZE], False, 10001, (1, 10000),
                 id="last part 10000: held tail, segment number 10001"),
    pytest.param([4, 10000], [MIN_PART_SIZE + 1, 0], False, 10001, (4, 10000),
                 id="irregular, empty part 10000"),
])
def test_completion_with_gaps(numbers: list[int], sizes: list[int], own_part: bool,
                              trailer_number: int, backend: tuple[int, ...]) -> None:
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
    assert plan.trailer is Trailer.INDEXED and not plan.contiguous
    assert plan.part_numbers == tuple(numbers)
    assert plan.trailer_in_own_part is own_part and plan.held_tail is not own_part
    assert plan.trailer_number == trailer_number
    assert plan.backend_part_numbers == backend and len(backend) == plan.backend_parts
    assert max(backend) <= MAX_PART_NUMBER
    assert is_indexed(plan.layout.ciphertext_size, plan.backend_parts)
    assert [s.part_number for s in plan.layout.spans] == numbers
    if not own_part:
        with pytest.raises(InvalidRequest):
            plan_completion(numbers, sizes, can_rewrite_last_part=False)


def test_part_10000_keeps_room_for_a_held_tail() -> None:
    assert max_part_plaintext_size(1) == MAX_PART_PLAINTEXT_SIZE
    assert max_part_plaintext_size(MAX_PART_NUMBER) == MAX_LAST_PART_PLAINTEXT_SIZE
    check_part(MAX_PART_NUMBER, MAX_LAST_PART_PLAINTEXT_SIZE)
    with pytest.raises(EntityTooLarge):
        check_part(MAX_PART_NUMBER, MAX_LAST_PART_PLAINTEXT_SIZE + 1)
    check_part(9999, MAX_LAST_PART_PLAINTEXT_SIZE + 1)
    # The largest part 10000 with the largest index still fits one backend part.
    numbers = list(range(1, MAX_PART_NUMBER + 1))
    sizes = [MIN_PART_SIZE + 1] * (MAX_PART_NUMBER - 1) + [MAX_LAST_PART_PLAINTEXT_SIZE]
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
    assert plan.held_tail and plan.layout.trailer_size <= MAX_INDEXED_TRAILER_SIZE
    last = plan.layout.backend_part_ranges(plan.backend_parts)[-1]
    assert last[1] - last[0] <= BACKEND_MAX_PART_SIZE
    assert index_tail_hint(MAX_PART_NUMBER) >= MAX_INDEXED_TRAILER_SIZE
    assert index_tail_hint(MAX_PART_NUMBER) == 505_728   # described, SHA-256 part sums (§15)


@pytest.mark.parametrize(("numbers", "parts", "rewrite"), [
    pytest.param([1, 2], [MIN_PART_SIZE, 10], False, id="terminal last part"),
    pytest.param([1, 2], [MIN_PART_SIZE, MIN_PART_SIZE], False, id="header-only trailer part"),
    pytest.param([1, 2], [MIN_PART_SIZE + 1, MIN_PART_SIZE], False, id="indexed trailer part"),
    pytest.param([1, 2], [MIN_PART_SIZE + 1, 10], True, id="held tail"),
    pytest.param([3, 8], [MIN_PART_SIZE, MIN_PART_SIZE], False, id="gaps, trailer part"),
    pytest.param([3, 8], [MIN_PART_SIZE, 10], True, id="gaps, held tail"),
])
def test_backend_part_ranges_tile_the_object(numbers: list[int], parts: list[int],
                                             rewrite: bool) -> None:
    plan = plan_completion(numbers, parts, can_rewrite_last_part=rewrite)
    ranges = plan.layout.backend_part_ranges(plan.backend_parts)
    assert len(ranges) == plan.backend_parts
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.layout.ciphertext_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(stop - start >= MIN_PART_SIZE for start, stop in ranges[:-1])
    assert plan.layout.backend_part_numbers(plan.backend_parts) == plan.backend_part_numbers
    assert plan.backend_part_numbers[:len(numbers)] == tuple(numbers)
    with pytest.raises(ValueError):
        plan.layout.backend_part_ranges(plan.backend_parts + 2)
    with pytest.raises(ValueError):
        plan.layout.backend_part_numbers(plan.backend_parts + 2)


# Any strictly ascending subset of 1..10000 (small, so that the layouts stay cheap).
part_subsets = st.lists(st.integers(1, MAX_PART_NUMBER), min_size=1, max_size=12,
                        unique=True).map(sorted)


@given(part_subsets, st.data())
@SETTINGS
def test_any_ascending_subset_completes(numbers: list[int], data: st.DataObject) -> None:
    regular = data.draw(st.booleans())
    body = [data.draw(st.integers(MIN_PART_SIZE // C, MIN_PART_SIZE // C + 40)) * C
            if regular else data.draw(st.integers(MIN_PART_SIZE, MIN_PART_SIZE + 5 * C))
            for _ in numbers[:-1]]
    sizes = body + [data.draw(st.integers(0, 12 * MiB))]
    contiguous = check_part_numbers(numbers)
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
    layout = plan.layout
    assert layout.part_numbers == tuple(numbers) and layout.part_sizes == tuple(sizes)
    stored, n = layout.ciphertext_size, plan.backend_parts
    if contiguous and layout.is_regular:
        assert plan.trailer is not Trailer.INDEXED
        assert multipart_plaintext_size(stored, n) == sum(sizes)
    else:
        # Gaps (or irregular sizes): listers get the index signal and read the index.
        assert plan.trailer is Trailer.INDEXED and is_indexed(stored, n)
        assert multipart_plaintext_size(stored, n) is None
        assert predict_layout(stored, n, sizes[0]) is None
    assert plan.held_tail == (plan.trailer is Trailer.INDEXED
                              and is_terminal_part(numbers[-1], sizes[-1]))
    assert all(1 <= p <= MAX_PART_NUMBER for p in plan.backend_part_numbers)
    assert list(plan.backend_part_numbers) == sorted(set(plan.backend_part_numbers))
    assert index_tail_hint(n) >= layout.trailer_size


@given(regular_parts)
@SETTINGS
def test_uniform_prediction_matches_completion(parts: list[int]) -> None:
    plan = plan_completion(numbered(parts), parts)
    predicted = predict_layout(plan.layout.ciphertext_size, plan.backend_parts, parts[0])
    if parts[-1] <= parts[0] and (len(parts) == 1 or parts[-1] > 0):
        assert predicted == plan.layout
    elif predicted is not None:
        assert predicted.ciphertext_size == plan.layout.ciphertext_size


@given(regular_parts, st.data())
@settings(max_examples=150, deadline=None)
def test_multipart_range_plan_covers_exactly(parts: list[int], data: st.DataObject) -> None:
    layout = plan_completion(numbered(parts), parts).layout
    total = layout.plaintext_size
    if total == 0:
        return
    start = data.draw(st.integers(0, total - 1))
    end = data.draw(st.integers(start, total - 1))
    plan = layout.plan_range(start, end)
    assert plan.length == end - start + 1
    first = plan.pieces[0]
    assert first.span.plaintext_offset + first.first_chunk * C + plan.skip == start
    for piece in plan.pieces[1:]:
        assert piece.header_inline and piece.first_chunk == 0
    assert plan.needs_header == (first.first_chunk != 0)
    decrypted = sum(min(C, p.span.plaintext_size - i * C)
                    for p in plan.pieces for i in range(p.first_chunk, p.last_chunk + 1))
    assert decrypted >= plan.length + plan.skip
    assert plan.ciphertext_stop <= layout.data_size
