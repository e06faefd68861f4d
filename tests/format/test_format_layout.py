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
    MAX_OBJECT_PLAINTEXT_SIZE,
    MAX_PART_PLAINTEXT_SIZE,
    MAX_SINGLE_PLAINTEXT_SIZE,
    MultipartLayout,
    Trailer,
    check_part_numbers,
    check_single_size,
    ciphertext_size,
    is_indexed,
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
    worst = (MAX_PART_NUMBER + 1) * SEGMENT_HEADER_SIZE + stream_size(MAX_OBJECT_PLAINTEXT_SIZE)
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
    plan = plan_completion(parts)
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
            plan_completion(parts, can_rewrite_last_part=rewrite)
        return
    plan = plan_completion(parts, can_rewrite_last_part=rewrite)
    assert plan.trailer is Trailer.INDEXED
    assert plan.trailer_in_own_part is not terminal_last
    assert is_indexed(plan.layout.ciphertext_size, plan.backend_parts)


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


@pytest.mark.parametrize(("numbers", "error"), [
    pytest.param([1, 2, 3], None, id="contiguous"),
    pytest.param([1], None, id="one part"),
    pytest.param([], InvalidPart, id="empty"),
    pytest.param([1, 3], InvalidPart, id="gap"),
    pytest.param([2, 3], InvalidPart, id="not from 1"),
    pytest.param([1, 3, 2], InvalidPartOrder, id="descending"),
    pytest.param([1, 1], InvalidPartOrder, id="repeated"),
])
def test_part_numbers(numbers: list[int], error: type[Exception] | None) -> None:
    if error is None:
        check_part_numbers(numbers)
    else:
        with pytest.raises(error):
            check_part_numbers(numbers)


def test_completion_rules() -> None:
    with pytest.raises(EntityTooSmall):
        plan_completion([MIN_PART_SIZE - 1, 10])
    with pytest.raises(InvalidRequest):
        plan_completion([])
    terminal = plan_completion([MIN_PART_SIZE, 10])
    assert terminal.trailer is Trailer.NONE and terminal.backend_parts == 2
    header_only = plan_completion([MIN_PART_SIZE, MIN_PART_SIZE])
    assert header_only.trailer is Trailer.HEADER_ONLY and header_only.backend_parts == 3
    assert header_only.layout.trailer_size == SEGMENT_HEADER_SIZE
    tenk = plan_completion([MIN_PART_SIZE] * MAX_PART_NUMBER)
    assert tenk.trailer is Trailer.NONE, "part 10000 is terminal whatever its size"


@pytest.mark.parametrize(("parts", "rewrite"), [
    pytest.param([MIN_PART_SIZE, 10], False, id="terminal last part"),
    pytest.param([MIN_PART_SIZE, MIN_PART_SIZE], False, id="header-only trailer part"),
    pytest.param([MIN_PART_SIZE + 1, MIN_PART_SIZE], False, id="indexed trailer part"),
    pytest.param([MIN_PART_SIZE + 1, 10], True, id="held tail"),
])
def test_backend_part_ranges_tile_the_object(parts: list[int], rewrite: bool) -> None:
    plan = plan_completion(parts, can_rewrite_last_part=rewrite)
    ranges = plan.layout.backend_part_ranges(plan.backend_parts)
    assert len(ranges) == plan.backend_parts
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.layout.ciphertext_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(stop - start >= MIN_PART_SIZE for start, stop in ranges[:-1])
    with pytest.raises(ValueError):
        plan.layout.backend_part_ranges(plan.backend_parts + 2)


@given(regular_parts)
@SETTINGS
def test_uniform_prediction_matches_completion(parts: list[int]) -> None:
    plan = plan_completion(parts)
    predicted = predict_layout(plan.layout.ciphertext_size, plan.backend_parts, parts[0])
    if parts[-1] <= parts[0] and (len(parts) == 1 or parts[-1] > 0):
        assert predicted == plan.layout
    elif predicted is not None:
        assert predicted.ciphertext_size == plan.layout.ciphertext_size


@given(regular_parts, st.data())
@settings(max_examples=150, deadline=None)
def test_multipart_range_plan_covers_exactly(parts: list[int], data: st.DataObject) -> None:
    layout = plan_completion(parts).layout
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
