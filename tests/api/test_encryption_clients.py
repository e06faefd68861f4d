"""Encrypted buckets driven by the aws CLI and rclone, as users drive them."""
from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from support.clients import rclone_binary, rclone_env
from test_cli import aws

MARKER = b"CLIENT-PLAINTEXT-MARKER"
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def test_aws_cli_on_an_encrypted_bucket(server, stored, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    src = tmp_path / "small.bin"
    data = MARKER * 1000 + os.urandom(3000)
    src.write_bytes(data)
    aws(server, "s3", "cp", str(src), f"s3://{bucket}/small.bin")
    out = tmp_path / "back.bin"
    aws(server, "s3", "cp", f"s3://{bucket}/small.bin", str(out))
    assert out.read_bytes() == data
    listing = aws(server, "s3", "ls", f"s3://{bucket}/").stdout
    assert str(len(data)) in listing
    head = aws(server, "s3api", "head-object", "--bucket", bucket, "--key", "small.bin",
               "--query", "[ETag, ContentLength, ServerSideEncryption]", "--output", "text")
    assert head.stdout.split() == [f'"{hashlib.md5(data).hexdigest()}"', str(len(data)), "AES256"]
    aws(server, "s3api", "put-object", "--bucket", bucket, "--key", "kms.bin", "--body",
        str(src), "--server-side-encryption", "aws:kms", "--ssekms-key-id", "test-key")
    got = aws(server, "s3api", "get-object", "--bucket", bucket, "--key", "kms.bin",
              str(tmp_path / "kms.out"), "--query", "[ServerSideEncryption, SSEKMSKeyId]",
              "--output", "text")
    assert got.stdout.split() == ["aws:kms", "test-key"]
    assert (tmp_path / "kms.out").read_bytes() == data
    assert MARKER not in stored.all_bytes()


def test_rclone_copy_check_and_nothing_to_recopy(server, stored, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    tree = tmp_path / "tree"
    for name, size in (("a.txt", 10), ("dir/b.bin", 70_000), ("dir/deeper/c.bin", 1_500_000),
                       ("empty", 0)):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes((MARKER + os.urandom(100)) * (size // 123) + b"x" * (size % 123))
    env = rclone_env(server.endpoint)

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([rclone_binary(), *args], env=env, capture_output=True, text=True,
                              timeout=300)

    first = rclone("copy", str(tree), f"enc:{bucket}/t", "--stats-one-line", "-v")
    assert first.returncode == 0, first.stderr
    check = rclone("check", str(tree), f"enc:{bucket}/t")  # sizes and MD5s
    assert check.returncode == 0, check.stderr
    assert "0 differences found" in check.stderr
    again = rclone("copy", str(tree), f"enc:{bucket}/t", "-v")
    assert again.returncode == 0, again.stderr
    assert "Copied" not in again.stderr  # nothing was transferred the second time
    assert "There was nothing to transfer" in again.stderr or "Unchanged skipping" in again.stderr
    # sync mirrors a changed tree (one file changed, one added, one deleted), then, run
    # again, finds nothing to do: sizes and modification times in the listing match.
    (tree / "a.txt").write_bytes(MARKER + b" changed")
    (tree / "new.bin").write_bytes(MARKER + os.urandom(5000))
    (tree / "dir" / "b.bin").unlink()
    synced = rclone("sync", str(tree), f"enc:{bucket}/t", "-v")
    assert synced.returncode == 0, synced.stderr
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {f"t/{p.relative_to(tree)}": p.stat().st_size
                      for p in tree.rglob("*") if p.is_file()}
    resynced = rclone("sync", str(tree), f"enc:{bucket}/t", "-v")
    assert resynced.returncode == 0, resynced.stderr
    assert "Copied" not in resynced.stderr and "Deleted" not in resynced.stderr
    check = rclone("check", "--download", str(tree), f"enc:{bucket}/t")
    assert check.returncode == 0 and "0 differences found" in check.stderr, check.stderr
    assert MARKER not in stored.all_bytes()
