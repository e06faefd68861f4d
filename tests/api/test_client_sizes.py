"""Every client tier round-trips the size matrix (issue 20), as users run the clients.

The aws CLI (v1, with awscrt: ``--checksum-algorithm CRC64NVME``), boto3's managed
transfers over HTTP and over HTTPS (where botocore streams every upload aws-chunked with
its CRC32 in a trailer), rclone with its upload cutoff at 5 MiB, and s3cmd with 5 MiB
parts each upload and download 0 B, 1 B, 4 KiB, 20 MiB and 10 MiB + 1 B
(``support.size_matrix``) into a bucket with default encryption: the content is checked
by hash, the size by the client's own listing, the ETag by S3's formula for the parts the
client cut, and what the backend holds must not hold the plaintext.  The aws CLI, rclone
and s3cmd then sync the whole set twice: the second run transfers nothing.  An empty
upload over HTTPS (an aws-chunked body of no data, its checksum in the trailer) once got
500 from an encrypted bucket; it has its own test here.  (The Node SDK runs the
matrix in test_node_sdk.py, minio-py in test_minio_py.py.)
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from support.clients import rclone_binary, rclone_env
from support.operations import self_signed
from support.server import ACCESS_KEY, SECRET_KEY, RunningServer, start_server
from support.size_matrix import (
    SIZES,
    MiB,
    Payload,
    assert_stored_encrypted,
    encrypted_bucket,
    sha256_file,
    size_id,
    write_payloads,
)
from test_cli import aws
from test_crc64nvme import crc64nvme_b64, put_raw, trailer_framed
from test_s3cmd_multipart import s3cmd

# The part sizes each client cuts: its own default, or 5 MiB where the tier forces it.
AWS_CLI_PART = BOTO3_PART = 8 * MiB   # s3transfer's multipart_threshold and chunksize
FORCED_PART = 5 * MiB                  # rclone --s3-upload-cutoff/--s3-chunk-size, s3cmd
sizes = pytest.mark.parametrize("size", SIZES, ids=size_id)


def parts_of(size: int, part: int) -> int | None:
    """The part size a client that uploads objects over ``part`` bytes in parts of that
    size used for ``size`` bytes (None: one PutObject).  No size of the matrix equals a
    threshold, where the clients differ (``>`` or ``>=``)."""
    return part if size > part else None


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Payload]:
    return write_payloads(tmp_path_factory.mktemp("payloads"))


@pytest.fixture(scope="module")
def tree(payloads: dict[int, Payload]) -> Path:
    """The matrix as one directory, for the sync runs; mtimes in the past, since sync
    tools compare them with LastModified (whole seconds on some stores)."""
    directory = next(iter(payloads.values())).path.parent
    past = os.path.getmtime(directory) - 60
    for payload in payloads.values():
        os.utime(payload.path, (past, past))
    return directory


# -- the aws CLI -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws_bucket(s3: Any) -> Iterator[str]:
    with encrypted_bucket(s3, "awscli") as name:
        yield name


@sizes
def test_aws_cli_cp_ls_and_crc64nvme(server: RunningServer, s3: Any, stored: Any,
                                     aws_bucket: str, payloads: dict[int, Payload],
                                     tmp_path: Path, size: int) -> None:
    payload, key = payloads[size], f"cp/{size_id(size)}"
    aws(server, "s3", "cp", str(payload.path), f"s3://{aws_bucket}/{key}",
        "--checksum-algorithm", "CRC64NVME")
    back = tmp_path / "back.bin"
    aws(server, "s3", "cp", f"s3://{aws_bucket}/{key}", str(back))
    assert sha256_file(back) == payload.sha256
    listing = aws(server, "s3", "ls", f"s3://{aws_bucket}/{key}").stdout.split()
    assert listing[2:] == [str(size), size_id(size)]   # date, time, size, name
    head = aws(server, "s3api", "head-object", "--bucket", aws_bucket, "--key", key,
               "--checksum-mode", "ENABLED", "--output", "json").stdout
    said = json.loads(head)
    # The CRC64NVME the CLI sent, of the whole object whether it went in parts or not
    # (S3 has only FULL_OBJECT CRC64NVMEs).
    assert said["ChecksumCRC64NVME"] == crc64nvme_b64(payload.data())
    assert said["ChecksumType"] == "FULL_OBJECT"
    assert said["ContentLength"] == size
    assert_stored_encrypted(s3, stored, aws_bucket, key, payload, parts_of(size, AWS_CLI_PART))


def test_aws_cli_sync_twice(server: RunningServer, aws_bucket: str, tree: Path,
                            payloads: dict[int, Payload], tmp_path: Path) -> None:
    target = f"s3://{aws_bucket}/sync"
    first = aws(server, "s3", "sync", str(tree), target, "--checksum-algorithm",
                "CRC64NVME").stdout
    assert first.count("upload:") == len(SIZES)
    again = aws(server, "s3", "sync", str(tree), target, "--checksum-algorithm",
                "CRC64NVME").stdout
    assert "upload:" not in again   # listed sizes are the plaintext sizes
    aws(server, "s3", "sync", target, str(tmp_path))
    for payload in payloads.values():
        assert sha256_file(tmp_path / payload.path.name) == payload.sha256


# -- boto3, over HTTP and over HTTPS ------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(backend: Any, server: RunningServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[RunningServer, Path]]:
    """A second encproxy serving TLS itself, on the session server's store and keyring
    (two instances of one deployment): (server, its certificate)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory / "cert")
    shared = {"ENCPROXY_KEYS_KEYRING": str(server.config.parent / "keys")}
    if not backend.is_s3:
        shared["ENCPROXY_BACKEND_ROOT"] = str(server.root)
    running = start_server(directory / "server", env={
        **backend.server_env(), **shared, "ENCPROXY_SERVER_CERTFILE": str(cert),
        "ENCPROXY_SERVER_KEYFILE": str(key)})
    yield running, cert
    running.stop()


@pytest.fixture(scope="module")
def boto_bucket(s3: Any) -> Iterator[str]:
    with encrypted_bucket(s3, "boto3") as name:
        yield name


class SentHeaders:
    """The headers of every upload request a client sends (PutObject, UploadPart)."""

    def __init__(self, client: Any) -> None:
        self.requests: list[dict[str, str]] = []
        for operation in ("PutObject", "UploadPart"):
            client.meta.events.register(f"before-send.s3.{operation}", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        self.requests.append({k.lower(): (v.decode() if isinstance(v, bytes) else v)
                              for k, v in request.headers.items()})


@pytest.fixture(params=["http", "https"])
def boto(request: pytest.FixtureRequest, server: RunningServer) -> tuple[Any, str]:
    """boto3 as applications make it (its default checksum behaviour) on the plain
    server or on the TLS one: (client, scheme)."""
    endpoint, verify = server.endpoint, None
    if request.param == "https":
        tls, cert = request.getfixturevalue("tls_server")
        endpoint, verify = f"https://127.0.0.1:{tls.port}", str(cert)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          verify=verify, config=Config(s3={"addressing_style": "path"},
                                                       retries={"max_attempts": 1}))
    return client, request.param


@sizes
def test_boto3_managed_transfer_round_trip(boto: tuple[Any, str], s3: Any, stored: Any,
                                           boto_bucket: str, payloads: dict[int, Payload],
                                           tmp_path: Path, size: int) -> None:
    client, scheme = boto
    payload, key = payloads[size], f"{scheme}/{size_id(size)}"
    sent = SentHeaders(client)
    client.upload_file(str(payload.path), boto_bucket, key)   # s3transfer's defaults
    # How botocore sent its CRC32: in a trailer of an aws-chunked body over HTTPS (the
    # body unsigned), in a header over plain HTTP (the body signed).
    expected_requests = -(-size // BOTO3_PART) if size > BOTO3_PART else 1
    assert len(sent.requests) == expected_requests
    for headers in sent.requests:
        if scheme == "https":
            assert headers["content-encoding"] == "aws-chunked"
            assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
            assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        else:
            assert "x-amz-trailer" not in headers and "content-encoding" not in headers
            assert "x-amz-checksum-crc32" in headers
    back = tmp_path / "back.bin"
    client.download_file(boto_bucket, key, str(back))
    assert sha256_file(back) == payload.sha256
    # ChecksumMode: botocore validates the checksum encproxy answers as the body ends.
    got = client.get_object(Bucket=boto_bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == payload.data()
    if size > 1:
        first, last = size // 3, size // 3 + size // 2
        part = client.get_object(Bucket=boto_bucket, Key=key, Range=f"bytes={first}-{last}")
        assert part["Body"].read() == payload.data()[first:last + 1]
    listed = client.list_objects_v2(Bucket=boto_bucket, Prefix=key)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [(key, size)]
    assert_stored_encrypted(s3, stored, boto_bucket, key, payload, parts_of(size, BOTO3_PART))


@pytest.mark.parametrize("claimed", ["right", "wrong"])
def test_an_empty_body_with_a_trailer_is_verified(server: RunningServer, s3: Any,
                                                  boto_bucket: str, claimed: str) -> None:
    """What boto3 sends over HTTPS for 0 bytes, bare: an aws-chunked body of no data with
    the CRC64NVME in its trailer.  Into an encrypted bucket it is checked like any other
    (encproxy once never read the trailer of an empty body: 500 InternalError)."""
    value = crc64nvme_b64(b"" if claimed == "right" else b"something else")
    url = f"{server.endpoint}/{boto_bucket}/empty-trailed-{claimed}"
    resp = put_raw(url, {"content-encoding": "aws-chunked",
                         "x-amz-decoded-content-length": "0",
                         "x-amz-trailer": "x-amz-checksum-crc64nvme",
                         "x-amz-sdk-checksum-algorithm": "CRC64NVME"},
                   trailer_framed(b"", value), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    listed = s3.list_objects_v2(Bucket=boto_bucket, Prefix=f"empty-trailed-{claimed}")
    if claimed == "wrong":
        assert resp.status_code == 400 and "<Code>BadDigest</Code>" in resp.text, resp.text
        assert "Contents" not in listed
        return
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-amz-checksum-crc64nvme"] == value
    assert [o["Size"] for o in listed["Contents"]] == [0]
    head = s3.head_object(Bucket=boto_bucket, Key=f"empty-trailed-{claimed}",
                          ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == value and head["ServerSideEncryption"] == "AES256"


# -- rclone ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rclone_bucket(s3: Any) -> Iterator[str]:
    with encrypted_bucket(s3, "rclone") as name:
        yield name


def rclone(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """rclone 1.75 on a remote ``enc:`` made from the environment alone; multipart from
    5 MiB on, in 5 MiB chunks."""
    env = rclone_env(server.endpoint)
    done = subprocess.run([rclone_binary(), *args, "--s3-upload-cutoff", "5M",
                           "--s3-chunk-size", "5M"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@sizes
def test_rclone_copyto_and_lsjson(server: RunningServer, s3: Any, stored: Any,
                                  rclone_bucket: str, payloads: dict[int, Payload],
                                  tmp_path: Path, size: int) -> None:
    payload, key = payloads[size], f"copy/{size_id(size)}"
    rclone(server, "copyto", str(payload.path), f"enc:{rclone_bucket}/{key}")
    back = tmp_path / "back.bin"
    rclone(server, "copyto", f"enc:{rclone_bucket}/{key}", str(back))
    assert sha256_file(back) == payload.sha256
    listed = json.loads(rclone(server, "lsjson", f"enc:{rclone_bucket}/copy").stdout)
    assert {o["Path"]: o["Size"] for o in listed}[size_id(size)] == size
    assert_stored_encrypted(s3, stored, rclone_bucket, key, payload,
                            parts_of(size, FORCED_PART))


def test_rclone_sync_twice_and_check(server: RunningServer, rclone_bucket: str,
                                     tree: Path) -> None:
    target = f"enc:{rclone_bucket}/sync"
    first = rclone(server, "sync", str(tree), target, "-v")
    assert first.stderr.count(": Copied (new)") == len(SIZES)
    again = rclone(server, "sync", str(tree), target, "-v")
    assert "Copied" not in again.stderr and "Deleted" not in again.stderr
    assert "There was nothing to transfer" in again.stderr
    check = rclone(server, "check", str(tree), target)             # sizes and MD5s
    assert f"{len(SIZES)} matching files" in check.stderr, check.stderr
    assert "0 differences found" in check.stderr
    download = rclone(server, "check", "--download", str(tree), target)   # the bytes
    assert "0 differences found" in download.stderr


# -- s3cmd -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3cmd_bucket(s3: Any) -> Iterator[str]:
    with encrypted_bucket(s3, "s3cmd") as name:
        yield name


@sizes
def test_s3cmd_put_get_and_ls(server: RunningServer, s3: Any, stored: Any,
                              s3cmd_bucket: str, payloads: dict[int, Payload],
                              tmp_path: Path, size: int) -> None:
    payload, key = payloads[size], f"put/{size_id(size)}"
    s3cmd(server, tmp_path, "put", "--multipart-chunk-size-mb=5", str(payload.path),
          f"s3://{s3cmd_bucket}/{key}")
    back = tmp_path / "back.bin"
    s3cmd(server, tmp_path, "get", "--force", f"s3://{s3cmd_bucket}/{key}", str(back))
    assert sha256_file(back) == payload.sha256
    listing = s3cmd(server, tmp_path, "ls", f"s3://{s3cmd_bucket}/{key}").stdout.split()
    assert listing[2:] == [str(size), f"s3://{s3cmd_bucket}/{key}"]   # date, time, size
    assert_stored_encrypted(s3, stored, s3cmd_bucket, key, payload,
                            parts_of(size, FORCED_PART))


def test_s3cmd_sync_twice(server: RunningServer, s3cmd_bucket: str, tree: Path,
                          payloads: dict[int, Payload], tmp_path: Path) -> None:
    target = f"s3://{s3cmd_bucket}/sync/"
    first = s3cmd(server, tmp_path, "sync", "--multipart-chunk-size-mb=5", str(tree) + "/",
                  target)
    assert first.stdout.count("upload:") >= len(SIZES)   # one line per part of a multipart
    again = s3cmd(server, tmp_path, "sync", "--multipart-chunk-size-mb=5", str(tree) + "/",
                  target)
    assert "upload:" not in again.stdout   # listed sizes and MD5s agree: nothing to send
    back = tmp_path / "back"
    back.mkdir()
    s3cmd(server, tmp_path, "sync", target, str(back) + "/")
    for payload in payloads.values():
        assert sha256_file(back / payload.path.name) == payload.sha256
