"""The backend as an attacker: what encproxy reads back must verify before it is used
(issue 14, items 2, 4 and 6; docs/FORMAT.md §7.7, docs/ENCRYPTION.md).

Every test rewrites objects directly in the backend (the file store, moto, Ceph RGW),
bypassing encproxy, then reads them through the real server and checks that the attack
is detected, that no short or wrong bytes and no forged fact reach the client, and that
the server log names the object and the reason.

* **Truncated multipart objects** (item 2): parts dropped, the trailer kept or not. HEAD,
  listings, GetObjectAttributes, ranged GETs, ``partNumber`` GETs, whole GETs and boto3's
  ``download_file`` (s3transfer, as the aws CLI downloads) all fail: none reports or
  writes the short size.
* **Forged key id** (item 4): the envelope's key-id field names another master key. No
  read reports it, and ``encproxy rotate`` neither follows it nor rewraps the object.
* **Envelope stripped** (item 6): with ``[encryption] require = true`` every read fails
  closed (EnvelopeMissing); without it the object is served as stored (the documented
  choice for objects written before encryption was turned on), and a self-copy through
  encproxy encrypts such an object in place (the documented migration).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.backends import Stored
from support.clients import make_client
from support.server import start_server
from test_encrypted_multipart import (
    backend_parts,
    split_segments,
    store_multipart,
    stored_object,
    upload,
)
from test_encryption import get_raw, marked

from encproxy.format.envelope import Envelope
from encproxy.keys.blob import WrappedKey

MiB = 1024 * 1024
ENCPROXY = str(Path(sys.executable).with_name("encproxy"))
SSE_S3_CONFIG = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
KMS_KEY_HEADER = "x-amz-server-side-encryption-aws-kms-key-id"


def failed(call, *args, **kwargs) -> str:
    """The error code of a call that must fail (a cut-off body counts as failing)."""
    try:
        result = call(*args, **kwargs)
        body = result.get("Body") if isinstance(result, dict) else None
        if body is not None:
            body.read()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    except Exception as exc:  # noqa: BLE001 - s3transfer and botocore read errors
        return type(exc).__name__
    raise AssertionError(f"{getattr(call, '__name__', call)} succeeded: {result!r:.300}")


def logged(server, bucket: str, key: str, *reasons: str) -> None:
    text = server.log_text()
    lines = [line for line in text.splitlines()
             if f"integrity failure on {bucket}/{key}:" in line]
    assert lines, f"no integrity failure logged for {bucket}/{key}"
    assert any(reason in line for line in lines for reason in reasons), lines


# -- item 2: a multipart object cut short in the backend ---------------------------------------

# Backend parts of a 25 MiB upload of 5 x 5 MiB: segments 1..5, then the indexed trailer (6).
# (The minimal header-only trailer encproxy wrote before is tried in-process:
# tests/unit/test_encryption_layer_verification.py.)
TRUNCATIONS = {
    "drop-3-5-keep-trailer": [0, 1, 5],    # the attack
    "drop-trailer": [0, 1, 2, 3, 4],
    "drop-4-5-and-trailer": [0, 1, 2],
    "keep-part-1-only": [0],
    "drop-part-3": [0, 1, 3, 4, 5],
}


def five_part_object(server, backend_client, s3, bucket: str
                     ) -> tuple[bytes, dict[str, str], list[bytes]]:
    """``t``, 5 x 5 MiB in an SSE-S3 bucket: its plaintext, and its stored metadata and
    backend parts as the attacker sees them."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    sizes = [5 * MiB] * 5
    parts = {n: marked(size) for n, size in enumerate(sizes, start=1)}
    upload(s3, bucket, "t", parts)
    meta, body = stored_object(server, backend_client, bucket, "t")
    return b"".join(parts.values()), meta, split_segments(body, sizes)


@pytest.mark.parametrize("cut", sorted(TRUNCATIONS))
def test_a_truncated_multipart_object_is_refused_by_every_read(server, backend_client, s3,
                                                               bucket, tmp_path, cut):
    whole, meta, segments = five_part_object(server, backend_client, s3, bucket)
    assert len(segments[5]) > 52                        # the indexed trailer part
    kept = [segments[i] for i in TRUNCATIONS[cut]]
    store_multipart(server, backend_client, bucket, "t", meta, kept)
    short = len(kept) - (kept[-1] is segments[5])       # data parts left
    short_size = short * 5 * MiB

    # HEAD, listings and GetObjectAttributes never report the truncated size.
    assert failed(s3.head_object, Bucket=bucket, Key="t") in ("500", "InternalError")
    for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        if entry["Key"] == "t":
            assert entry["Size"] not in (short_size, len(whole))
    assert failed(s3.get_object_attributes, Bucket=bucket, Key="t",
                  ObjectAttributes=["ObjectSize", "ObjectParts"]) == "InternalError"
    # Every ranged read fails before a byte is sent, the ones inside the kept parts too.
    for first, last in [(0, 99), (5 * MiB - 10, 5 * MiB + 10), (7 * MiB, 8 * MiB)]:
        assert failed(s3.get_object, Bucket=bucket, Key="t",
                      Range=f"bytes={first}-{last}") == "InternalError"
    assert failed(s3.get_object, Bucket=bucket, Key="t", PartNumber=1) == "InternalError"
    status, got, _ = get_raw(server, bucket, "t")
    assert status == 500 and got != whole and not whole.startswith(got[:1 << 20] or b"x")
    # s3transfer (boto3's download_file, the aws CLI's downloads) reports an error and
    # leaves no file of the short size behind.
    target = tmp_path / "download"
    assert failed(s3.download_file, bucket, "t", str(target))
    assert not target.exists() or target.stat().st_size != short_size
    logged(server, bucket, "t", "SegmentOutOfOrder", "FinalSegmentMissing",
           "FinalSegmentUnexpected", "CiphertextSizeInvalid")


def test_a_repeated_part_is_found_by_the_read_that_reaches_it(server, backend_client, s3,
                                                              bucket, tmp_path):
    """Part 2 stored again in part 3's place: the size, part count and end are the
    index's and true, so HEAD reports them; the moved part is refused by any read that
    reaches it, before its first byte, as a flipped byte would be (FORMAT.md §7.7)."""
    whole, meta, segments = five_part_object(server, backend_client, s3, bucket)
    store_multipart(server, backend_client, bucket, "t", meta,
                    [segments[i] for i in (0, 1, 1, 3, 4, 5)])
    assert s3.head_object(Bucket=bucket, Key="t")["ContentLength"] == len(whole)
    for first, last in [(0, 99), (5 * MiB - 10, 5 * MiB + 10), (len(whole) - 10, len(whole) - 1)]:
        got = s3.get_object(Bucket=bucket, Key="t", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == whole[first:last + 1]
    assert failed(s3.get_object, Bucket=bucket, Key="t",
                  Range=f"bytes={10 * MiB + 5}-{10 * MiB + 10}") == "InternalError"
    assert failed(s3.get_object, Bucket=bucket, Key="t", PartNumber=3) == "InternalError"
    status, got, _ = get_raw(server, bucket, "t")
    assert status == 200 and len(got) < len(whole) and whole.startswith(got)
    target = tmp_path / "download"
    assert failed(s3.download_file, bucket, "t", str(target))
    assert not target.exists() or target.read_bytes() != whole
    logged(server, bucket, "t", "SegmentOutOfOrder")


def test_an_intact_multipart_object_downloads_with_s3transfer(server, s3, bucket, tmp_path):
    """The control: the same shape, untouched, downloads whole by ranges."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    parts = {n: marked(5 * MiB) for n in range(1, 6)}
    upload(s3, bucket, "ok", parts)
    whole = b"".join(parts.values())
    assert s3.head_object(Bucket=bucket, Key="ok")["ContentLength"] == len(whole)
    from boto3.s3.transfer import TransferConfig
    target = tmp_path / "ok"
    s3.download_file(bucket, "ok", str(target),
                     Config=TransferConfig(multipart_threshold=MiB, multipart_chunksize=MiB))
    assert target.read_bytes() == whole


# -- item 4: the envelope's key id rewritten ------------------------------------------------------

def forge_key_id(meta: dict[str, str], key_id: str) -> dict[str, str]:
    envelope = Envelope.decode(meta["encproxy"])
    return {**meta, "encproxy": dataclasses.replace(envelope, key_id=key_id).encode()}


def run_rotate(server, backend, bucket: str) -> str:
    result = subprocess.run([ENCPROXY, "rotate", "--bucket", bucket, "--config",
                             str(server.config)], env={**os.environ, **backend.server_env()},
                            capture_output=True, text=True, timeout=300)
    return result.stdout + result.stderr


def test_a_forged_key_id_is_never_reported_nor_followed(server, backend, backend_client,
                                                         stored, s3, bucket):
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "test-key"}
    single = marked(100_000)
    s3.put_object(Bucket=bucket, Key="single", Body=single, **kms)
    parts = {1: marked(5 * MiB), 2: marked(777)}
    upload(s3, bucket, "multi", parts, **kms)
    for key in ("single", "multi"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["SSEKMSKeyId"] == "test-key"

    held = stored.read(bucket, "single")
    stored.write(bucket, "single", held.body, forge_key_id(held.user_metadata, "other-key"))
    meta, body = stored_object(server, backend_client, bucket, "multi")
    segments = backend_parts(body, [5 * MiB, 777])
    store_multipart(server, backend_client, bucket, "multi",
                    forge_key_id(meta, "other-key"), segments)

    for key in ("single", "multi"):
        for call, extra in [(s3.head_object, {}), (s3.get_object, {}),
                            (s3.get_object, {"Range": "bytes=0-9"})]:
            assert failed(call, Bucket=bucket, Key=key, **extra) in ("500", "InternalError")
        assert failed(s3.get_object_attributes, Bucket=bucket, Key=key,
                      ObjectAttributes=["ObjectSize"]) == "InternalError"
        assert failed(s3.copy_object, Bucket=bucket, Key=key + "-copy",
                      CopySource={"Bucket": bucket, "Key": key}) == "InternalError"
        status, got, _ = get_raw(server, bucket, key)
        assert status == 500 and b"other-key" not in got
        logged(server, bucket, key, "EnvelopeAuthenticationFailed")

    # Rotation takes its target from authenticated data only: the forged objects fail,
    # and nothing is rewrapped under the key the forged field names.
    output = run_rotate(server, backend, bucket)
    assert "EnvelopeAuthenticationFailed" in output, output
    for key in ("single", "multi"):
        after = Envelope.decode(stored_object(server, backend_client, bucket, key)[0]["encproxy"])
        assert WrappedKey.from_bytes(after.wrapped_key).key_id == "test-key"


# -- item 6: the envelope stripped ------------------------------------------------------------

@pytest.fixture(scope="module")
def strict_server(backend, tmp_path_factory):
    """A server with ``[encryption] require = true``."""
    running = start_server(tmp_path_factory.mktemp("strict-reads"),
                           env={**backend.server_env(), "ENCPROXY_ENCRYPTION_REQUIRE": "true"})
    yield running
    running.stop()


def strip(meta: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in meta.items() if not k.startswith("encproxy")}


def test_a_stripped_envelope_fails_closed_when_encryption_is_required(backend, strict_server):
    s3 = make_client(strict_server.endpoint)
    stored = Stored(backend, strict_server.root)
    backend_client = backend.client() if backend.is_s3 else None
    bucket = "strip-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    single = marked(300_000)
    s3.put_object(Bucket=bucket, Key="single", Body=single, ServerSideEncryption="AES256")
    parts = {1: marked(5 * MiB), 2: marked(1000)}
    upload(s3, bucket, "multi", parts, ServerSideEncryption="AES256")

    held = stored.read(bucket, "single")
    stored.write(bucket, "single", held.body, strip(held.user_metadata))
    meta, body = stored_object(strict_server, backend_client, bucket, "multi")
    store_multipart(strict_server, backend_client, bucket, "multi", strip(meta),
                    backend_parts(body, [5 * MiB, 1000]))

    for key in ("single", "multi"):
        for call, extra in [(s3.head_object, {}), (s3.get_object, {}),
                            (s3.get_object, {"Range": "bytes=0-9"})]:
            assert failed(call, Bucket=bucket, Key=key, **extra) in ("500", "InternalError")
        assert failed(s3.get_object_attributes, Bucket=bucket, Key=key,
                      ObjectAttributes=["ObjectSize"]) == "InternalError"
        assert failed(s3.copy_object, Bucket=bucket, Key=key + "-copy",
                      CopySource={"Bucket": bucket, "Key": key},
                      ServerSideEncryption="AES256") == "InternalError"
        status, got, _ = get_raw(strict_server, bucket, key)
        assert status == 500 and len(got) < 1000
        logged(strict_server, bucket, key, "EnvelopeMissing")


def test_without_require_an_object_without_envelope_is_served_as_stored_and_migrates(
        server, stored, s3, bucket):
    """The documented choice without ``require``: objects written before encryption was
    turned on are served as they are; a self-copy through encproxy encrypts one."""
    legacy = b"written before encryption was turned on " * 1000
    stored.write(bucket, "legacy", legacy, {"owner": "ops"})
    assert s3.get_object(Bucket=bucket, Key="legacy")["Body"].read() == legacy
    s3.copy_object(Bucket=bucket, Key="legacy", CopySource={"Bucket": bucket, "Key": "legacy"},
                   MetadataDirective="REPLACE", Metadata={"owner": "ops"},
                   ServerSideEncryption="AES256")
    held = stored.read(bucket, "legacy")
    assert "encproxy" in held.user_metadata and legacy[:40] not in held.body
    got = s3.get_object(Bucket=bucket, Key="legacy")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == legacy
    assert got["Metadata"] == {"owner": "ops"}
