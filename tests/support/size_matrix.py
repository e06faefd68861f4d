"""The object sizes every client tier round-trips (issue 20), and what to check them by.

Empty, one byte, a small file, a large object and one that the client uploads in parts
with a one-byte last part.  The contents come from a fixed seed, made once per module,
so that a failure names the same bytes in every run.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.clients import empty_and_delete

MiB = 1 << 20
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
# Two 5 MiB parts and one byte: multipart for every client (above 8 MiB, the aws CLI's and
# boto3's threshold), with a last part of one byte where the parts are 5 MiB (rclone and
# s3cmd as the tiers run them, lib-storage's Upload, minio-py).
MULTIPART = 2 * 5 * MiB + 1
SIZES = [0, 1, 4096, 20 * MiB, MULTIPART]
SEED = 20


def size_id(size: int) -> str:
    return {0: "0B", 1: "1B", 4096: "4KiB", 20 * MiB: "20MiB", MULTIPART: "10MiB+1"}[size]


@dataclass(frozen=True)
class Payload:
    size: int
    path: Path
    sha256: str
    md5: str

    def data(self) -> bytes:
        return self.path.read_bytes()


def write_payloads(directory: Path) -> dict[int, Payload]:
    """One file per size in ``directory``, from the fixed seed."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    out = {}
    for size in SIZES:
        data = rng.randbytes(size)
        path = directory / f"{size_id(size)}.bin"
        path.write_bytes(data)
        out[size] = Payload(size, path, hashlib.sha256(data).hexdigest(),
                            hashlib.md5(data).hexdigest())
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def expected_etag(data: bytes, part_size: int | None) -> str:
    """S3's ETag for ``data`` uploaded whole (``part_size`` None) or in parts of that size."""
    if part_size is None:
        return f'"{hashlib.md5(data).hexdigest()}"'
    md5s = b"".join(hashlib.md5(data[i:i + part_size]).digest()
                    for i in range(0, len(data), part_size))
    return f'"{hashlib.md5(md5s).hexdigest()}-{-(-len(data) // part_size)}"'


@contextlib.contextmanager
def encrypted_bucket(s3: Any, prefix: str) -> Iterator[str]:
    """A bucket with default encryption (SSE-S3) for one client's module; emptied and
    deleted afterwards (leftover uploads aborted)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    try:
        yield name
    finally:
        empty_and_delete(s3, name)


def assert_stored_encrypted(s3: Any, stored: Any, bucket: str, key: str,
                            payload: Payload, part_size: int | None) -> None:
    """What encproxy answers for the object (plaintext size, S3's ETag of the plaintext,
    SSE-S3) and what the backend holds (no run of the plaintext)."""
    data = payload.data()
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == payload.size
    assert head["ETag"] == expected_etag(data, part_size)
    assert head["ServerSideEncryption"] == "AES256"
    at_rest = stored.read(bucket, key).body
    assert len(at_rest) > payload.size   # header and tags on top of the ciphertext
    middle = payload.size // 2
    if payload.size >= 32:
        assert data[middle - 16:middle + 16] not in at_rest
