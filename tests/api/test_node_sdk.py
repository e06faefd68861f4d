"""The AWS SDK for JavaScript v3 (Node), the real one, against an encrypting bucket.

Its presigner signs more than AWS's documented presigning parameters: always
``X-Amz-Content-Sha256`` and the routing hint ``x-id``, on GETs the hoisted
``x-amz-checksum-mode``, on PUTs the CRC32 its default checksum behaviour computes
(``x-amz-sdk-checksum-algorithm``, ``x-amz-checksum-crc32``).  Through S3 backends its
GETs were once refused with 501 (issue 15).  Its client sends CRC32 with every upload:
a header for a body it holds, an aws-chunked trailer (HTTP-chunked, no Content-Length)
for a stream.

The size matrix of every client tier (``support.size_matrix``) goes through its PutObject
and through lib-storage's ``Upload`` (5 MiB parts), back by GetObject, a ranged GetObject
and ListObjectsV2 (``tests/node/transfer.mjs``).

The SDK is installed from ``tests/node/package-lock.json`` by ``npm ci``
(scripts/test.d/45-node.sh); without node or without that install these tests fail,
they never skip.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from support.server import ACCESS_KEY, REPO, SECRET_KEY
from support.size_matrix import (
    MiB, SIZES, Payload, assert_stored_encrypted, encrypted_bucket, expected_etag, sha256_file,
    size_id, write_payloads)

NODE_DIR = REPO / "tests" / "node"
NODE = shutil.which("node")
MARKER = b"NODE-SDK-PLAINTEXT-MARKER"
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
# A key that needs escaping in the path, as applications' keys do.
KEY = "node sdk/über file.bin"


def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(997)
    return (unit * (size // len(unit) + 1))[:size]


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.fixture(scope="module")
def node() -> Path:
    """The node binary, once the SDK is installed; a loud failure otherwise."""
    if NODE is None:
        pytest.fail("NODE MISSING: these tests drive the real AWS SDK for JavaScript v3; "
                    "scripts/test installs Node.js (scripts/test.d/45-node.sh)")
    if not (NODE_DIR / "node_modules" / "@aws-sdk" / "client-s3").is_dir():
        pytest.fail("THE NODE SDK IS NOT INSTALLED: run scripts/test, or `npm ci` in "
                    f"{NODE_DIR} (scripts/test.d/45-node.sh)")
    return Path(NODE)


def run_node(node: Path, script: str, server, bucket: str, key: str,
             *args: str) -> dict[str, Any]:
    """Run one of tests/node/*.mjs and return the JSON it prints."""
    # The SDK's defaults and nothing else: no AWS_* variable or config file of the
    # machine's (AWS_REQUEST_CHECKSUM_CALCULATION would change what is under test).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    result = subprocess.run(
        [str(node), str(NODE_DIR / script), "--endpoint", server.endpoint,
         "--region", "us-east-1", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
         "--bucket", bucket, "--key", key, *args],
        env=env, cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def assert_encrypted_at_rest(stored, bucket: str, key: str, data: bytes) -> None:
    at_rest = stored.read(bucket, key).body
    assert at_rest != data and len(at_rest) > len(data)
    assert MARKER not in stored.all_bytes()


def test_presigned_get_returns_the_plaintext(server, stored, s3, bucket, node):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(200_000)
    s3.put_object(Bucket=bucket, Key=KEY, Body=data)
    url = run_node(node, "presign.mjs", server, bucket, KEY)["get"]
    signed = dict(parse_qsl(urlsplit(url).query))
    # What made these URLs fail through S3 backends is in it.
    assert signed["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert signed["x-id"] == "GetObject"
    got = requests.get(url, timeout=60)
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["x-amz-server-side-encryption"] == "AES256"
    assert got.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert_encrypted_at_rest(stored, bucket, KEY, data)
    # The signature covers every parameter: changing one is refused.
    tampered = requests.get(url.replace("x-id=GetObject", "x-id=PutObject"), timeout=60)
    assert tampered.status_code == 403


def test_presigned_put_then_boto3_get(server, stored, s3, bucket, node):
    """A presigned PUT from an SDK told to sign no checksum (requestChecksumCalculation
    WHEN_REQUIRED, the setting its maintainers point presigning applications to)."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(150_000)
    url = run_node(node, "presign.mjs", server, bucket, KEY,
                   "--request-checksum-calculation", "WHEN_REQUIRED")["put"]
    signed = dict(parse_qsl(urlsplit(url).query))
    assert signed["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert signed["x-id"] == "PutObject"
    assert not [name for name in signed if "checksum" in name]
    put = requests.put(url, data=data, timeout=60)
    assert put.status_code == 200, put.text
    assert put.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=KEY)
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256"
    assert_encrypted_at_rest(stored, bucket, KEY, data)


def test_presigned_put_with_the_sdks_default_checksum(server, stored, s3, bucket, node):
    """The SDK's defaults: no body when presigning, so the URL signs the CRC32 of the
    empty body (x-amz-checksum-crc32=AAAAAA==, x-amz-sdk-checksum-algorithm=CRC32).  S3
    holds the body to it, as to the same header: an empty body is stored, any other is
    BadDigest, and nothing is stored."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    url = run_node(node, "presign.mjs", server, bucket, KEY)["put"]
    signed = dict(parse_qsl(urlsplit(url).query))
    assert signed["x-amz-checksum-crc32"] == "AAAAAA=="
    assert signed["x-amz-sdk-checksum-algorithm"] == "CRC32"
    put = requests.put(url, data=marked(150_000), timeout=60)
    assert put.status_code == 400, put.text
    assert "<Code>BadDigest</Code>" in put.text
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    empty = requests.put(url, data=b"", timeout=60)
    assert empty.status_code == 200, empty.text
    assert empty.headers["x-amz-checksum-crc32"] == "AAAAAA=="
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == b""


def test_presigned_put_with_the_bodys_checksum(server, stored, s3, bucket, node):
    """The application gives the SDK the body's CRC32 (PutObject's ChecksumCRC32): that
    body is stored, encrypted; any other body is BadDigest."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(150_000)
    crc32 = crc32_b64(data)
    url = run_node(node, "presign.mjs", server, bucket, KEY, "--checksum-crc32", crc32)["put"]
    assert dict(parse_qsl(urlsplit(url).query))["x-amz-checksum-crc32"] == crc32
    # Flip the last byte: a replacement byte equals a random last byte once in 256 runs.
    other = requests.put(url, data=data[:-1] + bytes([data[-1] ^ 0xFF]), timeout=60)
    assert other.status_code == 400 and "<Code>BadDigest</Code>" in other.text
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    put = requests.put(url, data=data, timeout=60)
    assert put.status_code == 200, put.text
    assert put.headers["x-amz-checksum-crc32"] == crc32
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data
    assert_encrypted_at_rest(stored, bucket, KEY, data)


@pytest.mark.parametrize("body", ["buffer", "stream"])
def test_sdk_put_and_get_round_trip(server, stored, s3, bucket, node, tmp_path, body):
    """PutObject and GetObject as an application calls them, the SDK's CRC32 included
    (a header for a Buffer, an aws-chunked trailer for a stream)."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(300_000)
    src, out = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    said = run_node(node, "roundtrip.mjs", server, bucket, KEY, "--file", str(src),
                    "--out", str(out), "--body", body)
    assert out.read_bytes() == data
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    assert said["put"]["ETag"] == etag and said["get"]["ETag"] == etag
    assert said["put"]["ChecksumCRC32"] == crc32_b64(data)
    assert said["get"]["ContentLength"] == len(data)
    assert said["put"]["ServerSideEncryption"] == said["get"]["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data
    assert_encrypted_at_rest(stored, bucket, KEY, data)


# -- the size matrix (issue 20) ----------------------------------------------------------
@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Payload]:
    return write_payloads(tmp_path_factory.mktemp("payloads"))


@pytest.fixture(scope="module")
def node_bucket(s3):
    with encrypted_bucket(s3, "node") as name:
        yield name


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("via", ["put", "upload"])
def test_sdk_size_matrix(server, s3, stored, node_bucket, node, payloads, tmp_path, via, size):
    """Each size of the matrix through PutObject (the SDK's CRC32 in a header) and through
    lib-storage's Upload (5 MiB parts above 5 MiB), read back whole (the SDK validating
    the checksum it is answered), ranged, and listed by ListObjectsV2."""
    payload, key = payloads[size], f"{via}/{size_id(size)}"
    data = payload.data()
    start, end = size // 3, size // 3 + size // 2 - (1 if size == 0 else 0)  # none of 0 B
    out, ranged = tmp_path / "out.bin", tmp_path / "range.bin"
    said = run_node(node, "transfer.mjs", server, node_bucket, key, "--file", str(payload.path),
                    "--out", str(out), "--range-out", str(ranged), "--range-start", str(start),
                    "--range-end", str(end), "--via", via)
    assert sha256_file(out) == payload.sha256
    part = 5 * MiB if via == "upload" and size > 5 * MiB else None
    etag = expected_etag(data, part)
    assert said["put"]["ETag"] == said["get"]["ETag"] == etag
    assert said["get"]["ContentLength"] == size
    if via == "put":
        assert said["put"]["ChecksumCRC32"] == crc32_b64(data)   # the SDK's default
    else:
        assert said["put"]["Parts"] == (-(-size // part) if part else 1)
    if size:
        assert ranged.read_bytes() == data[start:end + 1]
        assert said["range"] == {"ContentRange": f"bytes {start}-{end}/{size}",
                                 "ContentLength": end + 1 - start}
    else:
        assert said["range"] is None
    assert said["list"] == [{"Key": key, "Size": size, "ETag": etag}]
    assert_stored_encrypted(s3, stored, node_bucket, key, payload, part)
