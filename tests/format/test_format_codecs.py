"""Envelope, segment header, index and footer codecs: shapes and caps before parsing."""
from __future__ import annotations

import base64
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encproxy.errors import IntegrityError
from encproxy.format.constants import (
    MAX_KEY_ID_SIZE,
    MAX_METADATA_VALUE_SIZE,
    MAX_PART_NUMBER,
    MAX_WRAPPED_KEY_SIZE,
    METADATA_HEADER,
    METADATA_KEY,
    MIN_PART_SIZE,
    SEGMENT_HEADER_SIZE,
    Kind,
    Suite,
)
from encproxy.format.envelope import Envelope, metadata_size, wrap_context
from encproxy.format.errors import (
    DECODE_ERRORS,
    EnvelopeMalformed,
    EnvelopeMissing,
    FormatError,
    IndexMalformed,
    SegmentHeaderMalformed,
    UnsupportedSuite,
    UnsupportedVersion,
)
from encproxy.format.layout import MAX_PART_PLAINTEXT_SIZE
from encproxy.format.segment import (
    PartIndex,
    SegmentHeader,
    decode_footer,
    decode_index,
    encode_footer,
    encode_index,
    trailer_header,
)


def envelope(key_id: str = "local:main/3", wrapped: bytes = b"w" * 60) -> Envelope:
    return Envelope(Kind.SINGLE, Suite.AES256_GCM, os.urandom(16), os.urandom(32), key_id,
                    wrapped)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_errors_are_a_closed_list_of_integrity_errors() -> None:
    assert len(set(DECODE_ERRORS)) == len(DECODE_ERRORS) == 18
    for cls in DECODE_ERRORS:
        assert issubclass(cls, FormatError) and issubclass(cls, IntegrityError)
        assert cls.status == 500 and cls.code == "InternalError"
        assert cls.default_message and cls.reason


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
               max_size=MAX_KEY_ID_SIZE),
       st.binary(min_size=1, max_size=MAX_WRAPPED_KEY_SIZE),
       st.sampled_from(Kind), st.sampled_from(Suite))
@settings(max_examples=200, deadline=None)
def test_envelope_round_trip(key_id: str, wrapped: bytes, kind: Kind, suite: Suite) -> None:
    env = Envelope(kind, suite, os.urandom(16), os.urandom(32), key_id, wrapped)
    value = env.encode()
    assert value.isascii() and len(value) <= MAX_METADATA_VALUE_SIZE
    assert Envelope.decode(value) == env
    assert Envelope.from_metadata({METADATA_HEADER.upper(): value}) == env
    assert Envelope.from_metadata(env.metadata()) == env


@pytest.mark.parametrize(("key_id", "wrapped", "budget"), [
    pytest.param("local:main/3", 60, 178, id="local keyring, AES-GCM wrap"),
    pytest.param("pkcs11:token/label", 40, 159, id="PKCS#11 AES key wrap"),
    pytest.param("arn:aws:kms:eu-west-1:123456789012:key/" + "0" * 36, 184, 427, id="AWS KMS"),
    pytest.param("k" * MAX_KEY_ID_SIZE, MAX_WRAPPED_KEY_SIZE, 935, id="worst case"),
])
def test_metadata_budget(key_id: str, wrapped: int, budget: int) -> None:
    """Name (8 bytes) + base64url of 55 + len(key id) + len(wrapped key) bytes."""
    used = metadata_size(envelope(key_id, b"w" * wrapped))
    assert used == budget == 8 + -(-(55 + len(key_id) + wrapped) * 4 // 3)
    assert used <= 1024, "at least half of S3's 2 KB stays the user's"


@pytest.mark.parametrize(("value", "error"), [
    pytest.param(None, EnvelopeMissing, id="absent"),
    pytest.param("", EnvelopeMissing, id="empty"),
    pytest.param("A" * (MAX_METADATA_VALUE_SIZE + 1), EnvelopeMalformed, id="too long"),
    pytest.param("AQEBAA==", EnvelopeMalformed, id="padding"),
    pytest.param("AQE+AA", EnvelopeMalformed, id="not base64url"),
    pytest.param("A", EnvelopeMalformed, id="impossible length"),
    pytest.param(b64(b"\x01\x01\x01\x00" + bytes(60)), EnvelopeMalformed, id="truncated"),
    pytest.param(b64(b"\x03" + bytes(90)), UnsupportedVersion, id="version 3"),
    # version 2 (a checksummed single-part object, FORMAT.md §15) is never multipart
    pytest.param(b64(b"\x02\x02\x01\x00" + bytes(90)), EnvelopeMalformed,
                 id="version 2 multipart"),
    pytest.param(b64(b"\x01\x01\x09\x00" + bytes(90)), UnsupportedSuite, id="suite 9"),
    pytest.param(b64(b"\x01\x03\x01\x00" + bytes(90)), EnvelopeMalformed, id="kind 3"),
    pytest.param(b64(b"\x01\x01\x01\x80" + bytes(90)), EnvelopeMalformed, id="flag set"),
])
def test_envelope_decode_errors(value: str | None, error: type[FormatError]) -> None:
    with pytest.raises(error):
        Envelope.decode(value)


def test_envelope_field_caps() -> None:
    raw = envelope().to_bytes()
    key_id_len = raw[52]
    bad_len = raw[:52] + bytes([200]) + raw[53:]
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(bad_len)
    control = raw[:53] + b"\n" + raw[54:]
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(control)
    extra = raw + b"x"
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(extra)
    pos = 53 + key_id_len
    zero_wrapped = raw[:pos] + b"\0\0"
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(zero_wrapped)
    with pytest.raises(EnvelopeMissing):
        Envelope.from_metadata({"x-amz-meta-other": "v"})


def test_wrap_context_names_object() -> None:
    ctx = wrap_context("bkt", "a/b", b"\x01" * 16)
    assert ctx == {"encproxy-format": "1", "bucket": "bkt", "key": "a/b",
                   "object-id": "01" * 16}
    assert METADATA_KEY == "encproxy"


# -- segment headers ---------------------------------------------------------------------

def header_bytes(**changes: int) -> bytes:
    h = SegmentHeader.data(Suite.AES256_GCM, 3, MIN_PART_SIZE, b"s" * 16).encode()
    raw = bytearray(h)
    for offset, value in changes.items():
        raw[int(offset[1:])] = value
    return bytes(raw)


def test_segment_header_round_trip_and_flags() -> None:
    data = SegmentHeader.data(Suite.AES256_CTR_HMAC_SHA256, 7, MIN_PART_SIZE, b"x" * 16)
    assert SegmentHeader.decode(data.encode()) == data
    assert not data.terminal and data.span == SEGMENT_HEADER_SIZE + MIN_PART_SIZE + 16 * 80
    small = SegmentHeader.data(Suite.AES256_GCM, 7, 10, b"x" * 16)
    assert small.terminal
    last = SegmentHeader.data(Suite.AES256_GCM, 10000, MIN_PART_SIZE, b"x" * 16)
    assert last.terminal
    trailer = trailer_header(Suite.AES256_GCM, 8, b"t" * 16)
    assert trailer.trailer and trailer.terminal and trailer.span == SEGMENT_HEADER_SIZE
    assert SegmentHeader.decode(trailer.encode()) == trailer


@pytest.mark.parametrize(("raw", "error"), [
    pytest.param(header_bytes()[:51], SegmentHeaderMalformed, id="short"),
    pytest.param(header_bytes(o0=0x41), SegmentHeaderMalformed, id="magic"),
    pytest.param(header_bytes(o3=2), UnsupportedVersion, id="version"),
    pytest.param(header_bytes(o4=7), UnsupportedSuite, id="suite"),
    pytest.param(header_bytes(o5=0x10), SegmentHeaderMalformed, id="unknown flag"),
    pytest.param(header_bytes(o5=0x01), SegmentHeaderMalformed, id="terminal flag on a big part"),
    pytest.param(header_bytes(o5=0x02), SegmentHeaderMalformed, id="trailer not terminal"),
    pytest.param(header_bytes(o5=0x03), SegmentHeaderMalformed, id="header-only trailer with size"),
    pytest.param(header_bytes(o5=0x04), SegmentHeaderMalformed, id="indexed data segment"),
    pytest.param(header_bytes(o7=1), SegmentHeaderMalformed, id="reserved"),
    pytest.param(header_bytes(o8=0xFF), SegmentHeaderMalformed, id="part number"),
    pytest.param(header_bytes(o11=0), SegmentHeaderMalformed, id="part zero"),
    pytest.param(header_bytes(o12=0xFF), SegmentHeaderMalformed, id="size beyond a part"),
    pytest.param(trailer_header(Suite.AES256_GCM, 1, b"t" * 16).encode(),
                 SegmentHeaderMalformed, id="trailer numbered 1 (follows no part)"),
    pytest.param(header_bytes(o5=0x03, o8=0, o9=0, o10=0x27, o11=0x12, o12=0, o13=0, o14=0,
                              o15=0, o16=0, o17=0, o18=0, o19=0),
                 SegmentHeaderMalformed, id="trailer numbered 10002"),
])
def test_segment_header_decode_errors(raw: bytes, error: type[FormatError]) -> None:
    with pytest.raises(error):
        SegmentHeader.decode(raw)


@given(st.lists(st.tuples(st.integers(1, MAX_PART_NUMBER),
                         st.integers(0, MAX_PART_PLAINTEXT_SIZE)),
                min_size=1, max_size=200, unique_by=lambda e: e[0]).map(sorted),
       st.integers(0, 65551))
@settings(max_examples=100, deadline=None)
def test_index_round_trip(entries: list[tuple[int, int]], pad: int) -> None:
    numbers, sizes = [n for n, _ in entries], [s for _, s in entries]
    raw = encode_index(numbers, sizes, pad)
    assert len(raw) == 8 + 12 * len(entries) + pad
    assert decode_index(raw) == PartIndex(tuple(numbers), tuple(sizes))


def test_index_layout() -> None:
    """u32 count, u32 pad, (u32 part number, u64 size) per part, pad zero bytes."""
    raw = encode_index([2, 7, 10000], [5, 2**32 + 1, 0], 3)
    assert raw == (struct.pack(">II", 3, 3) + struct.pack(">IQ", 2, 5)
                   + struct.pack(">IQ", 7, 2**32 + 1) + struct.pack(">IQ", 10000, 0) + bytes(3))
    index = decode_index(raw)
    assert index.part_numbers == (2, 7, 10000) and not index.contiguous
    assert decode_index(encode_index([1, 2], [0, 0], 0)).contiguous


def _index(*entries: tuple[int, int], pad: int = 0) -> bytes:
    return (struct.pack(">II", len(entries), pad)
            + b"".join(struct.pack(">IQ", n, s) for n, s in entries) + bytes(pad))


@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="empty"),
    pytest.param(encode_index([1, 2], [1, 2], 0)[:-1], id="short"),
    pytest.param(encode_index([1], [1], 3)[:-1] + b"\x01", id="pad not zero"),
    pytest.param(b"\0\0\0\0\0\0\0\0", id="no parts"),
    pytest.param(b"\0\0\x27\x11" + bytes(4 + 12 * 10001), id="too many parts"),
    pytest.param(_index((1, 2**62)), id="part too large"),
    pytest.param(_index((0, 1)), id="part number 0"),
    pytest.param(_index((1, 1), (10001, 1)), id="part number 10001"),
    pytest.param(_index((3, 1), (2, 1)), id="numbers descending"),
    pytest.param(_index((3, 1), (3, 1)), id="number repeated"),
    pytest.param(_index((1, 1), (2, 1))[:-12] + bytes(8), id="entries of 8 bytes"),
])
def test_index_decode_errors(raw: bytes) -> None:
    with pytest.raises(IndexMalformed):
        decode_index(raw)


@pytest.mark.parametrize(("numbers", "sizes", "pad"), [
    pytest.param([2, 1], [1, 1], 0, id="descending"),
    pytest.param([0], [1], 0, id="part 0"),
    pytest.param([1, 2], [1], 0, id="one size missing"),
    pytest.param([1], [1], 65552, id="pad too large"),
])
def test_index_encode_refuses(numbers: list[int], sizes: list[int], pad: int) -> None:
    with pytest.raises(ValueError):
        encode_index(numbers, sizes, pad)


def test_footer() -> None:
    assert decode_footer(encode_footer(5000)) == 5000
    too_short = encode_footer(5000)[:8] + (20).to_bytes(8, "big")
    for bad in (b"", encode_footer(5000)[:-1], b"XPF" + encode_footer(5000)[3:], too_short):
        with pytest.raises(IndexMalformed):
            decode_footer(bad)
