"""encproxy.checksums: digest formats, S3's validation errors, one-pass hashing."""
from __future__ import annotations

import base64
import hashlib
import zlib

import google_crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy import checksums, errors

DATA = b"Welcome to Amazon S3."


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc64nvme_bitwise(data: bytes) -> int:
    """CRC-64/NVME bit by bit (reflected polynomial 0x9A6C9329AC4BC9B5, init and final
    XOR all ones): slow, and independent of awscrt's table-driven C."""
    crc = (1 << 64) - 1
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 if crc & 1 else 0)
    return crc ^ ((1 << 64) - 1)


# Known answers computed by independent implementations (zlib, google_crc32c, hashlib, the
# bitwise CRC-64/NVME above).
KNOWN = {
    "crc64nvme": crc64nvme_bitwise(DATA).to_bytes(8, "big"),
    "crc32": zlib.crc32(DATA).to_bytes(4, "big"),
    "crc32c": google_crc32c.value(DATA).to_bytes(4, "big"),
    "sha1": hashlib.sha1(DATA).digest(),
    "sha256": hashlib.sha256(DATA).digest(),
    "sha512": hashlib.sha512(DATA).digest(),
}


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_hashers_match_reference(algorithm: str) -> None:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(DATA[:5])
    hasher.update(memoryview(DATA[5:11]))
    hasher.update(bytearray(DATA[11:]))
    assert hasher.digest() == KNOWN[algorithm]


@pytest.mark.parametrize(("algorithm", "data", "expected"), [
    # Values S3 and botocore publish/emit for these inputs.
    pytest.param("crc32", b"hello world", "DUoRhQ==", id="crc32-hello-world"),
    pytest.param("crc32c", b"a" * 66560, "sOO8/Q==", id="crc32c-aws-trailer-example"),
    pytest.param("crc32", b"", "AAAAAA==", id="crc32-empty"),
    # CRC-64/NVME's check value (the CRC of "123456789"): 0xAE8B14860A799888.
    pytest.param("crc64nvme", b"123456789", "rosUhgp5mIg=", id="crc64nvme-check-value"),
    pytest.param("crc64nvme", b"", "AAAAAAAAAAA=", id="crc64nvme-empty"),
])
def test_published_checksum_values(algorithm: str, data: bytes, expected: str) -> None:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    assert checksums.to_base64(hasher.digest()) == expected


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_digest_set_is_split_invariant(data: bytes, cuts: list[int]) -> None:
    names = ["md5", *checksums.ALGORITHMS]
    whole = checksums.DigestSet(names)
    whole.update(data)
    pieces = checksums.DigestSet(names)
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    for start, end in zip(bounds, bounds[1:]):
        pieces.update(data[start:end])
    assert pieces.digests() == whole.digests()


def test_digest_set_hashes_a_name_once() -> None:
    digests = checksums.DigestSet(["sha256", "sha256", "md5"])
    digests.update(DATA)
    assert digests.digests() == {"sha256": KNOWN["sha256"], "md5": hashlib.md5(DATA).digest()}
    assert "sha256" in digests and "crc32" not in digests


# -- Content-MD5 ----------------------------------------------------------------------

def test_content_md5_roundtrip() -> None:
    digest = hashlib.md5(DATA).digest()
    assert checksums.parse_content_md5(b64(digest)) == digest
    assert checksums.parse_content_md5(" " + b64(digest) + " ") == digest


@pytest.mark.parametrize("value", [
    pytest.param("", id="empty"),
    pytest.param("not base64!", id="not-base64"),
    pytest.param(b64(b"x" * 15), id="too-short"),
    pytest.param(b64(b"x" * 17), id="too-long"),
    pytest.param(hashlib.md5(DATA).hexdigest(), id="hex-not-base64"),
    pytest.param(b64(b"x" * 16)[:-2], id="unpadded"),
])
def test_content_md5_malformed_is_invalid_digest(value: str) -> None:
    with pytest.raises(errors.InvalidDigest) as caught:
        checksums.parse_content_md5(value)
    assert caught.value.message == "The Content-MD5 you specified is not valid."


def test_content_md5_mismatch_is_bad_digest() -> None:
    good = hashlib.md5(DATA).digest()
    checksums.check_content_md5(good, good)
    with pytest.raises(errors.BadDigest) as caught:
        checksums.check_content_md5(good, hashlib.md5(b"other").digest())
    assert caught.value.message == "The Content-MD5 you specified did not match what we received."
    assert caught.value.fields["ExpectedDigest"] == b64(good)


# -- x-amz-checksum-* -----------------------------------------------------------------

@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_checksum_header_roundtrip(algorithm: str) -> None:
    claim = checksums.parse_checksum_headers(
        {f"x-amz-checksum-{algorithm}": b64(KNOWN[algorithm]), "host": "h"})
    assert claim is not None
    assert (claim.algorithm, claim.digest) == (algorithm, KNOWN[algorithm])
    assert claim.header == f"x-amz-checksum-{algorithm}"
    assert claim.value == b64(KNOWN[algorithm])
    checksums.check_checksum(claim, KNOWN[algorithm])


def test_no_checksum_header_and_non_digest_prefixed_headers() -> None:
    assert checksums.parse_checksum_headers({"host": "h"}) is None
    assert checksums.parse_checksum_headers({"x-amz-checksum-algorithm": "CRC32",
                                             "x-amz-checksum-type": "FULL_OBJECT"}) is None


@pytest.mark.parametrize(("headers", "error", "message"), [
    pytest.param({"x-amz-checksum-crc32": "AAAA"}, errors.InvalidRequest,
                 "Value for x-amz-checksum-crc32 header is invalid.", id="crc32-too-short"),
    pytest.param({"x-amz-checksum-sha256": b64(b"x" * 31)}, errors.InvalidRequest,
                 "Value for x-amz-checksum-sha256 header is invalid.", id="sha256-wrong-size"),
    pytest.param({"x-amz-checksum-crc32c": "!!!!!!=="}, errors.InvalidRequest,
                 "Value for x-amz-checksum-crc32c header is invalid.", id="crc32c-not-base64"),
    pytest.param({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": b64(b"x" * 20)},
                 errors.InvalidRequest,
                 "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                 "not allowed.", id="two-checksums"),
    pytest.param({"x-amz-checksum-crc64nvme": "AAAAAA=="}, errors.InvalidRequest,
                 "Value for x-amz-checksum-crc64nvme header is invalid.",
                 id="crc64nvme-wrong-size"),
    pytest.param({"x-amz-checksum-xxhash64": "AAAAAAAAAAA="}, errors.NotImplementedError_,
                 "The XXHASH64 checksum algorithm is not supported.", id="xxhash64"),
    pytest.param({"x-amz-checksum-md4": "AAAAAA=="}, errors.InvalidRequest,
                 "The checksum header x-amz-checksum-md4 is not supported.", id="unknown"),
])
def test_checksum_header_errors(headers: dict[str, str], error: type[errors.S3Error],
                                message: str) -> None:
    with pytest.raises(error) as caught:
        checksums.parse_checksum_headers(headers)
    assert caught.value.message == message


@pytest.mark.parametrize(("algorithm", "name"), [
    ("crc32", "CRC32"), ("crc32c", "CRC32C"), ("sha1", "SHA1"), ("sha256", "SHA256"),
])
def test_checksum_mismatch_message(algorithm: str, name: str) -> None:
    claim = checksums.ChecksumClaim(algorithm, KNOWN[algorithm])
    wrong = bytes(len(KNOWN[algorithm]))
    with pytest.raises(errors.BadDigest) as caught:
        checksums.check_checksum(claim, wrong)
    assert caught.value.message == f"The {name} you specified did not match the calculated checksum."
    assert caught.value.status == 400


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("x-amz-checksum-crc32", "crc32", id="crc32"),
    pytest.param(" X-Amz-Checksum-SHA256 ", "sha256", id="case-and-space"),
])
def test_trailer_declaration(value: str, expected: str) -> None:
    assert checksums.parse_trailer_declaration(value) == expected


@pytest.mark.parametrize("value", [
    pytest.param("", id="empty"),
    pytest.param("x-amz-meta-foo", id="not-a-checksum"),
    pytest.param("x-amz-checksum-crc32,x-amz-checksum-sha1", id="two"),
])
def test_trailer_declaration_errors(value: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        checksums.parse_trailer_declaration(value)
