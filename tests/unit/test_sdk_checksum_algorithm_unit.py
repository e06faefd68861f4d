"""x-amz-sdk-checksum-algorithm: the checksum an SDK says it sent must be there, as S3 checks."""
from __future__ import annotations

import base64
import zlib

import pytest

from encproxy import checksums, errors, sigv4
from encproxy.wsgi.auth.body import BodySpec, VerifiedBody

CRC32 = base64.b64encode(zlib.crc32(b"hello").to_bytes(4, "big")).decode()
SHA256_OF_HELLO = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="


def spec(headers: dict[str, str], payload_hash: str = sigv4.UNSIGNED_PAYLOAD) -> BodySpec:
    return BodySpec.from_headers({"content-length": "5", **headers}, payload_hash)


@pytest.mark.parametrize("value", ["CRC32", "crc32", " Crc32 "])
def test_matching_header_checksum_is_accepted(value):
    made = spec({"x-amz-sdk-checksum-algorithm": value, "x-amz-checksum-crc32": CRC32})
    pieces = iter([b"hello", b""])
    body = VerifiedBody(lambda _size: next(pieces), made)
    assert body.read() == b"hello" and body.checksums == {"crc32": CRC32}


def test_declared_without_any_checksum_is_invalid_request():
    with pytest.raises(errors.InvalidRequest) as exc:
        spec({"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert exc.value.message == ("x-amz-sdk-checksum-algorithm specified, but no corresponding "
                                 "x-amz-checksum-* or x-amz-trailer headers were found.")


def test_declared_with_another_algorithms_value_is_bad_digest():
    with pytest.raises(errors.BadDigest) as exc:
        spec({"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-sha256": SHA256_OF_HELLO})
    assert exc.value.message.startswith("The CRC32 you specified did not match")


def test_declared_with_another_algorithms_trailer_is_bad_digest():
    with pytest.raises(errors.BadDigest):
        BodySpec.from_headers(
            {"content-length": "40", "x-amz-decoded-content-length": "5",
             "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
             "x-amz-sdk-checksum-algorithm": "SHA256"},
            sigv4.STREAMING_UNSIGNED_TRAILER)


def test_matching_trailer_is_accepted():
    made = BodySpec.from_headers(
        {"content-length": "40", "x-amz-decoded-content-length": "5",
         "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32c",
         "x-amz-sdk-checksum-algorithm": "CRC32C"}, sigv4.STREAMING_UNSIGNED_TRAILER)
    assert made.trailer == "crc32c"


def test_unknown_algorithm_name_is_invalid_request():
    with pytest.raises(errors.InvalidRequest) as exc:
        spec({"x-amz-sdk-checksum-algorithm": "MD5", "x-amz-checksum-crc32": CRC32})
    assert exc.value.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."


def test_a_bodyless_request_is_checked_too():
    with pytest.raises(errors.InvalidRequest):
        BodySpec.from_headers({"x-amz-sdk-checksum-algorithm": "SHA1"}, sigv4.UNSIGNED_PAYLOAD,
                              method="DELETE")


@pytest.mark.parametrize("value,sent,error", [
    ("CRC32", "crc32", None),
    ("SHA256", None, errors.InvalidRequest),
    ("SHA256", "sha1", errors.BadDigest),
    ("CRC64NVME", "crc32", errors.BadDigest),
    ("nope", "crc32", errors.InvalidRequest),
])
def test_check_sdk_algorithm(value, sent, error):
    if error is None:
        checksums.check_sdk_algorithm(value, sent)
    else:
        with pytest.raises(error):
            checksums.check_sdk_algorithm(value, sent)
