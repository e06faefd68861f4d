"""x-amz-sdk-checksum-algorithm through the real server, with raw signed requests: a
declared algorithm without its checksum is InvalidRequest, with another algorithm's value
BadDigest, and nothing is stored; a matching one is verified and stored."""
from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from botocore.exceptions import ClientError
from support.raw_s3 import Signed, crc32_b64

BODY = b"hello, sdk checksums"


def put(url: str, headers: dict[str, str], body: bytes = BODY,
        payload: str = "UNSIGNED-PAYLOAD") -> requests.Response:
    signed = Signed("PUT", url, {"content-length": str(len(body)), **headers}, payload)
    return requests.put(url, data=body, headers=signed.headers, timeout=30)


def error_code(response: requests.Response) -> str:
    text = response.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def assert_not_stored(s3, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert exc.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_declared_without_checksum_is_invalid_request(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/no-checksum"
    response = put(url, {"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert response.status_code == 400 and error_code(response) == "InvalidRequest"
    assert "x-amz-sdk-checksum-algorithm specified, but no corresponding" in response.text
    assert_not_stored(s3, bucket, "no-checksum")


def test_declared_with_another_algorithms_value_is_bad_digest(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/other"
    sha256 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    response = put(url, {"x-amz-sdk-checksum-algorithm": "CRC32",
                         "x-amz-checksum-sha256": sha256})
    assert response.status_code == 400 and error_code(response) == "BadDigest"
    assert_not_stored(s3, bucket, "other")


def test_declared_with_another_algorithms_trailer_is_bad_digest(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/trailer"
    framed = (f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n"
              + f"x-amz-checksum-crc32:{crc32_b64(BODY)}\r\n\r\n".encode())
    response = put(url, {"content-encoding": "aws-chunked",
                         "x-amz-decoded-content-length": str(len(BODY)),
                         "x-amz-trailer": "x-amz-checksum-crc32",
                         "x-amz-sdk-checksum-algorithm": "SHA256"},
                   body=framed, payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert response.status_code == 400 and error_code(response) == "BadDigest"
    assert_not_stored(s3, bucket, "trailer")


def test_matching_declaration_is_verified_and_stored(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/ok"
    response = put(url, {"x-amz-sdk-checksum-algorithm": "CRC32",
                         "x-amz-checksum-crc32": crc32_b64(BODY)})
    assert response.status_code == 200, response.text
    assert response.headers["x-amz-checksum-crc32"] == crc32_b64(BODY)
    assert s3.get_object(Bucket=bucket, Key="ok")["Body"].read() == BODY
    # And a wrong value of the declared algorithm is still BadDigest.
    bad = put(url + "2", {"x-amz-sdk-checksum-algorithm": "CRC32",
                          "x-amz-checksum-crc32": crc32_b64(BODY + b"!")})
    assert bad.status_code == 400 and error_code(bad) == "BadDigest"
    assert_not_stored(s3, bucket, "ok2")


def test_boto3_uploads_still_work(s3, bucket):
    # botocore sends x-amz-sdk-checksum-algorithm with its CRC32 on every PutObject.
    s3.put_object(Bucket=bucket, Key="boto", Body=BODY, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="boto2", Body=BODY)
    assert s3.get_object(Bucket=bucket, Key="boto")["Body"].read() == BODY
