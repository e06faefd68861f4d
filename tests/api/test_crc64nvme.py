"""CRC64NVME, the checksum AWS CLI v2 uploads with, through the real server: boto3 (with
awscrt, as the CLI) sends it in a header, a streaming SDK in an aws-chunked trailer; encproxy
verifies it (BadDigest, nothing stored, on a mismatch), stores only ciphertext, and gives
it back, with CRC32C and SHA-256, to boto3's managed transfers."""
from __future__ import annotations

import base64
import hashlib
import os

import pytest
import requests
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from support.clients import make_client
from support.raw_s3 import Signed

MiB = 1 << 20
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def crc64nvme_b64(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


def put_raw(url: str, headers: dict[str, str], body: bytes,
            payload: str = "UNSIGNED-PAYLOAD") -> requests.Response:
    signed = Signed("PUT", url, {"content-length": str(len(body)), **headers}, payload)
    return requests.put(url, data=body, headers=signed.headers, timeout=30)


def trailer_framed(data: bytes, value: str) -> bytes:
    """``data`` as aws-chunked with an unsigned trailer carrying ``value`` as CRC64NVME."""
    out = bytearray()
    for start in range(0, len(data), 64 * 1024):
        piece = data[start:start + 64 * 1024]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return bytes(out) + f"0\r\nx-amz-checksum-crc64nvme:{value}\r\n\r\n".encode()


def test_put_with_crc64nvme_header_and_trailer(server, s3, stored, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = b"CRC64NVME-MARKER" + os.urandom(300_000)
    # boto3 with awscrt, as AWS CLI v2: the CRC64NVME in a header.
    put = s3.put_object(Bucket=bucket, Key="header", Body=data, ChecksumAlgorithm="CRC64NVME")
    assert put["ChecksumCRC64NVME"] == crc64nvme_b64(data)
    # What an SDK streams: aws-chunked, the CRC64NVME in the trailer.
    framed = trailer_framed(data, crc64nvme_b64(data))
    resp = put_raw(f"{server.endpoint}/{bucket}/trailer",
                   {"content-encoding": "aws-chunked",
                    "x-amz-decoded-content-length": str(len(data)),
                    "x-amz-trailer": "x-amz-checksum-crc64nvme",
                    "x-amz-sdk-checksum-algorithm": "CRC64NVME"},
                   framed, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-amz-checksum-crc64nvme"] == crc64nvme_b64(data)
    for key in ("header", "trailer"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert b"CRC64NVME-MARKER" not in stored.read(bucket, key).body


def test_multipart_parts_with_crc64nvme(server, bucket):
    client = make_client(server.endpoint)
    data = os.urandom(12 * MiB)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(_Reader(data), bucket, "multi",
                          ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"}, Config=parts)
    assert client.get_object(Bucket=bucket, Key="multi")["Body"].read() == data


def _digest(algorithm: str, data: bytes) -> bytes:
    if algorithm == "CRC64NVME":
        return crt.crc64nvme(data).to_bytes(8, "big")
    if algorithm == "CRC32C":
        return crt.crc32c(data).to_bytes(4, "big")
    return hashlib.sha256(data).digest()


@pytest.mark.parametrize("size", [3 * MiB + 7, 12 * MiB + 5], ids=["single", "multipart"])
@pytest.mark.parametrize("algorithm", ["CRC64NVME", "CRC32C", "SHA256"])
def test_managed_transfers_get_their_checksum_back(server, stored, s3, bucket, tmp_path,
                                                   algorithm, size):
    """boto3 with awscrt, sending what AWS CLI v2 sends (CRC64NVME) and the other two the
    issue names, through its managed transfer (s3transfer: one PutObject under the
    threshold, 5 MiB parts above it) into an encrypted bucket: ChecksumMode=ENABLED
    answers the checksum of what was sent, FULL_OBJECT for a CRC64NVME (S3 has no other)
    and COMPOSITE for the others' multipart uploads, as S3 does when no type is asked."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    client = make_client(server.endpoint, request_checksum_calculation="when_supported",
                         response_checksum_validation="when_supported")
    data = b"MANAGED-TRANSFER-MARKER" + os.urandom(size - 23)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(_Reader(data), bucket, "obj",
                          ExtraArgs={"ChecksumAlgorithm": algorithm}, Config=parts)
    field = "Checksum" + algorithm
    chunks = [data[i:i + 5 * MiB] for i in range(0, size, 5 * MiB)]
    if size < 5 * MiB or algorithm == "CRC64NVME":
        expected, kind = base64.b64encode(_digest(algorithm, data)).decode(), "FULL_OBJECT"
    else:
        joined = b"".join(_digest(algorithm, c) for c in chunks)
        expected = f"{base64.b64encode(_digest(algorithm, joined)).decode()}-{len(chunks)}"
        kind = "COMPOSITE"
    head = client.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert (head[field], head["ChecksumType"]) == (expected, kind)
    got = client.get_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert got[field] == expected and got["Body"].read() == data
    out = tmp_path / "out.bin"
    client.download_file(bucket, "obj", str(out), Config=parts)
    assert out.read_bytes() == data
    assert b"MANAGED-TRANSFER-MARKER" not in stored.read(bucket, "obj").body


@pytest.mark.parametrize("where", ["header", "trailer"])
@pytest.mark.parametrize("claimed", ["other-body", "zero"])
def test_a_crc64nvme_that_does_not_match_is_bad_digest(server, s3, bucket, claimed, where):
    body = b"the body actually sent"
    value = crc64nvme_b64(b"another body") if claimed == "other-body" else "AAAAAAAAAAA="
    url = f"{server.endpoint}/{bucket}/bad"
    if where == "header":
        resp = put_raw(url, {"x-amz-checksum-crc64nvme": value}, body)
    else:
        resp = put_raw(url, {"content-encoding": "aws-chunked",
                             "x-amz-decoded-content-length": str(len(body)),
                             "x-amz-trailer": "x-amz-checksum-crc64nvme"},
                       trailer_framed(body, value), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert resp.status_code == 400 and "<Code>BadDigest</Code>" in resp.text
    assert "The CRC64NVME you specified did not match the calculated checksum." in resp.text
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="bad")
    assert exc.value.response["Error"]["Code"] in ("404", "NoSuchKey")


class _Reader:
    """A file-like body without a length boto3 could read in advance (so it streams)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        piece = bytes(self._data[self._pos:end])
        self._pos = end
        return piece

