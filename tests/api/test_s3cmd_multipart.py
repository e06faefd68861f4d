"""s3cmd against an encrypting bucket (issue 15).

s3cmd uploads files over its chunk size in parts and compares every part's ETag
with the MD5 of what it sent ("MD5 Sums don't match!" otherwise), so it works only
if encproxy answers the plaintext MD5 of each part (FORMAT.md §7.8).  ``s3cmd sync``
then decides what to transfer from listing sizes, ETags and the MD5 it stored in
``x-amz-meta-s3cmd-attrs``, and checks what it downloads.  File store and moto.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import ACCESS_KEY, SECRET_KEY

S3CMD = shutil.which("s3cmd") or str(Path(sys.executable).with_name("s3cmd"))
MiB = 1024 * 1024
SSE_S3_CONFIG = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}



def s3cmd(server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not Path(S3CMD).exists():
        pytest.fail("S3CMD MISSING: s3cmd is a test extra (setup.cfg), installed by "
                    "scripts/test; these tests drive the real client and never skip")
    config = tmp_path / "s3cfg"
    if not config.exists():
        host = server.endpoint.removeprefix("http://")
        config.write_text(
            "[default]\n"
            f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
            f"host_base = {host}\nhost_bucket = {host}\n"   # no %(bucket)s: path style
            "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
            "check_ssl_certificate = False\nprogress_meter = False\n")
    done = subprocess.run([S3CMD, "-c", str(config), *args], text=True, capture_output=True,
                          timeout=300, check=False,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "MD5 Sums don't match" not in done.stdout + done.stderr
    return done


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_s3cmd_multipart_put_and_sync_back(server, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    src = tmp_path / "up"
    src.mkdir()
    data = os.urandom(40 * MiB)
    (src / "big.bin").write_bytes(data)
    s3cmd(server, tmp_path, "put", "--multipart-chunk-size-mb=5", str(src / "big.bin"),
          f"s3://{bucket}/big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    assert head["ETag"] == f'"{hashlib.md5(joined).hexdigest()}-8"'   # S3's formula
    assert head["ContentLength"] == len(data)
    assert head["ServerSideEncryption"] == "AES256"
    back = tmp_path / "down"
    back.mkdir()
    s3cmd(server, tmp_path, "sync", f"s3://{bucket}/", str(back) + "/")
    assert digest(back / "big.bin") == digest(src / "big.bin")
    again = s3cmd(server, tmp_path, "sync", f"s3://{bucket}/", str(back) + "/")
    assert "download:" not in again.stdout   # sizes and MD5s agree: nothing to fetch


def test_s3cmd_sync_a_directory_up_and_down(server, s3, bucket, tmp_path):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    files = {"small.txt": os.urandom(100), "sub/empty": b"", "sub/mid.bin": os.urandom(MiB),
             "sub/parts.bin": os.urandom(12 * MiB + 3)}
    for name, body in files.items():
        (tree / name).write_bytes(body)
    s3cmd(server, tmp_path, "sync", "--multipart-chunk-size-mb=5", str(tree) + "/",
          f"s3://{bucket}/t/")
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {f"t/{name}": len(body) for name, body in files.items()}
    again = s3cmd(server, tmp_path, "sync", "--multipart-chunk-size-mb=5", str(tree) + "/",
                  f"s3://{bucket}/t/")
    assert "upload:" not in again.stdout   # listing sizes and ETags: nothing to send
    back = tmp_path / "back"
    back.mkdir()
    s3cmd(server, tmp_path, "sync", f"s3://{bucket}/t/", str(back) + "/")
    for name, body in files.items():
        assert (back / name).read_bytes() == body, name
