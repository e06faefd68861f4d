"""Encrypted multipart through the clients that switch to it on their own.

The aws CLI uploads files over 8 MiB in 8 MiB parts and downloads them with
parallel ranged GETs; ``aws s3 sync`` decides what to transfer from listing
sizes; rclone uploads in chunks above its cutoff and checks sizes and MD5s.
"""
from __future__ import annotations

import filecmp
import hashlib
import os
import subprocess
import time

import pytest

from support.clients import rclone_binary, rclone_env
from test_cli import aws
from test_encrypted_multipart import SSE_S3_CONFIG, assert_no_plaintext

MiB = 1024 * 1024
MARKER = b"CLIENT-MULTIPART-PLAINTEXT"


def marked_file(path, size: int) -> bytes:
    unit = MARKER + os.urandom(4096)
    data = (unit * (size // len(unit) + 1))[:size]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_aws_cli_cp_200mib_up_and_down(server, backend_client, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    src = tmp_path / "big.bin"
    size = 200 * MiB + 12_345   # 26 parts of 8 MiB, the last one short
    marked_file(src, size)
    aws(server, "s3", "cp", str(src), f"s3://{bucket}/big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == size and head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].endswith('-26"')
    assert s3.head_object(Bucket=bucket, Key="big.bin", PartNumber=26)["PartsCount"] == 26
    dst = tmp_path / "back.bin"
    aws(server, "s3", "cp", f"s3://{bucket}/big.bin", str(dst))   # parallel ranged GETs
    assert sha256(dst) == sha256(src)
    listing = aws(server, "s3", "ls", f"s3://{bucket}/").stdout
    assert f"{size} big.bin" in listing
    assert_no_plaintext(server, backend_client, MARKER)


def test_aws_cli_sync_transfers_nothing_twice(server, backend_client, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    tree = tmp_path / "tree"
    for name, size in (("big.bin", 20 * MiB + 3), ("exact.bin", 16 * MiB), ("a.txt", 10),
                       ("dir/b.bin", 70_000), ("empty", 0)):
        marked_file(tree / name, size)
        # sync compares mtimes with LastModified; stores that report whole seconds would
        # see a file written in the same second as newer than its copy.
        os.utime(tree / name, (time.time() - 10, time.time() - 10))
    first = aws(server, "s3", "sync", str(tree), f"s3://{bucket}/t").stdout
    assert first.count("upload:") == 5
    again = aws(server, "s3", "sync", str(tree), f"s3://{bucket}/t").stdout
    assert "upload:" not in again   # listing sizes are plaintext sizes
    back = tmp_path / "back"
    aws(server, "s3", "sync", f"s3://{bucket}/t", str(back))
    cmp = filecmp.dircmp(tree, back)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert filecmp.cmp(tree / "big.bin", back / "big.bin", shallow=False)
    assert filecmp.cmp(tree / "exact.bin", back / "exact.bin", shallow=False)
    assert "download:" not in aws(server, "s3", "sync", f"s3://{bucket}/t", str(back)).stdout
    assert_no_plaintext(server, backend_client, MARKER)


def test_rclone_multipart_copy_and_check(server, backend_client, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    tree = tmp_path / "tree"
    for name, size in (("big.bin", 12 * MiB + 777), ("exact.bin", 10 * MiB),
                       ("small.txt", 100), ("dir/mid.bin", 3 * MiB)):
        marked_file(tree / name, size)
    env = rclone_env(server.endpoint)

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        # Multipart above 5 MiB, in 5 MiB chunks: big.bin is 3 parts, exact.bin 2.
        return subprocess.run([rclone_binary(), *args, "--s3-upload-cutoff", "5M",
                               "--s3-chunk-size", "5M"], env=env, capture_output=True,
                              text=True, timeout=300)

    first = rclone("copy", str(tree), f"enc:{bucket}/t", "-v")
    assert first.returncode == 0, first.stderr
    assert s3.head_object(Bucket=bucket, Key="t/big.bin")["ETag"].endswith('-3"')
    check = rclone("check", str(tree), f"enc:{bucket}/t")   # sizes and MD5s
    assert check.returncode == 0, check.stderr
    assert "0 differences found" in check.stderr
    download = rclone("check", "--download", str(tree), f"enc:{bucket}/t")
    assert download.returncode == 0, download.stderr
    again = rclone("copy", str(tree), f"enc:{bucket}/t", "-v")
    assert again.returncode == 0, again.stderr
    assert "Copied" not in again.stderr
    assert_no_plaintext(server, backend_client, MARKER)
