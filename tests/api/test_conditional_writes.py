"""Conditional writes (AWS 2024/2025: If-None-Match: *, If-Match) through the real server,
with boto3, plain and encrypted; and version ids relayed from a versioned S3 backend.

On the file store every condition is enforced atomically with the write. Through an S3
backend the client's ETag (the plaintext MD5 of an encrypted object) is translated to the
backend's, and the backend enforces it; a condition the backend would ignore is refused
with 501 NotImplemented (``[backend] conditional_writes``, docs/BACKENDS.md).
"""
from __future__ import annotations

import hashlib
import os
import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from support.clients import failure

MiB = 1024 * 1024
MODES = {
    "plain": {},
    "sse-s3": {"ServerSideEncryption": "AES256"},
}


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'



def body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def refused_by_backend(quirks, op: str) -> bool:
    """Whether encproxy refuses this operation's conditions on this backend: it ignores
    them, and encproxy's default ``[backend] conditional_writes = PutObject`` says so."""
    return op != "PutObject" and quirks("conditions-ignored") is not None


# -- PutObject --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_put_if_none_match(s3, bucket, mode):
    first, second = os.urandom(3000), os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="k", Body=first, IfNoneMatch="*", **MODES[mode])
    assert failure(lambda: s3.put_object(Bucket=bucket, Key="k", Body=second, IfNoneMatch="*",
                                         **MODES[mode])) == (412, "PreconditionFailed")
    assert body(s3, bucket, "k") == first


@pytest.mark.parametrize("mode", MODES)
def test_put_if_match(s3, bucket, mode):
    first, second, third = os.urandom(3000), os.urandom(3000), os.urandom(3000)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=first, **MODES[mode])["ETag"]
    assert etag == md5_etag(first)      # the plaintext MD5, also when encrypted
    etag2 = s3.put_object(Bucket=bucket, Key="k", Body=second, IfMatch=etag,
                          **MODES[mode])["ETag"]
    assert body(s3, bucket, "k") == second
    assert failure(lambda: s3.put_object(Bucket=bucket, Key="k", Body=third, IfMatch=etag,
                                         **MODES[mode])) == (412, "PreconditionFailed")
    assert body(s3, bucket, "k") == second
    assert failure(lambda: s3.put_object(Bucket=bucket, Key="absent", Body=third,
                                         IfMatch=etag2, **MODES[mode]))[1] == "NoSuchKey"


def test_put_if_match_with_the_backends_etag_is_refused(s3, bucket, stored):
    data = os.urandom(2000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="AES256")
    ciphertext_etag = '"' + stored.read(bucket, "k").etag + '"'
    assert ciphertext_etag != md5_etag(data)
    assert failure(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"new",
                                         IfMatch=ciphertext_etag)) == (412, "PreconditionFailed")
    assert body(s3, bucket, "k") == data


def test_if_none_match_with_an_etag_is_not_implemented(s3, bucket):
    assert failure(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                         IfNoneMatch='"abc"')) == (501, "NotImplemented")
    assert failure(lambda: s3.head_object(Bucket=bucket, Key="k"))[0] == 404


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_if_none_match_puts_one_wins(s3, bucket, mode, quirks):
    """Writers released together: exactly one creates the object, the others get 412
    (or 409 ConditionalRequestConflict, as AWS may answer); the object is the winner's."""
    writers = 4
    bodies = [os.urandom(4 * MiB) for _ in range(writers)]
    gate = threading.Barrier(writers)
    results: list[tuple[int, int | str]] = []

    def write(i: int) -> None:
        gate.wait(timeout=30)
        try:
            s3.put_object(Bucket=bucket, Key="raced", Body=bodies[i], IfNoneMatch="*",
                          **MODES[mode])
            results.append((i, 200))
        except ClientError as exc:
            results.append((i, exc.response["Error"]["Code"]))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    winners = [i for i, outcome in results if outcome == 200]
    with quirks.breaks("conditional-write-race"):
        assert len(results) == writers
        assert len(winners) == 1, results
        assert all(o in ("PreconditionFailed", "ConditionalRequestConflict")
                   for _, o in results if o != 200), results
        assert body(s3, bucket, "raced") == bodies[winners[0]]


# -- CompleteMultipartUpload -------------------------------------------------------------------

def _upload(s3, bucket: str, key: str, mode: str) -> tuple[str, list[dict], bytes]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **MODES[mode])["UploadId"]
    parts, data = [], b""
    for number, size in ((1, 5 * MiB), (2, 1000)):
        chunk = os.urandom(size)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        data += chunk
    return upload_id, parts, data


@pytest.mark.parametrize("mode", MODES)
def test_complete_if_none_match(s3, bucket, mode, quirks):
    s3.put_object(Bucket=bucket, Key="k", Body=b"existing", **MODES[mode])
    upload_id, parts, data = _upload(s3, bucket, "k", mode)
    done = {"Parts": parts}
    if refused_by_backend(quirks, "CompleteMultipartUpload"):
        assert failure(lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=done,
            IfNoneMatch="*")) == (501, "NotImplemented")
        assert body(s3, bucket, "k") == b"existing"
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
        return
    assert failure(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=done,
        IfNoneMatch="*")) == (412, "PreconditionFailed")
    assert body(s3, bucket, "k") == b"existing"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                 MultipartUpload=done, IfNoneMatch="*")
    assert body(s3, bucket, "k") == data


@pytest.mark.parametrize("mode", MODES)
def test_complete_if_match(s3, bucket, mode, quirks):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"existing", **MODES[mode])["ETag"]
    upload_id, parts, data = _upload(s3, bucket, "k", mode)
    done = {"Parts": parts}
    if refused_by_backend(quirks, "CompleteMultipartUpload"):
        assert failure(lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=done,
            IfMatch=etag)) == (501, "NotImplemented")
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
        return
    assert failure(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=done,
        IfMatch='"' + "0" * 32 + '"')) == (412, "PreconditionFailed")
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                 MultipartUpload=done, IfMatch=etag)
    assert body(s3, bucket, "k") == data


# -- CopyObject -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_copy_conditions(s3, bucket, mode, quirks):
    source = os.urandom(2000)
    s3.put_object(Bucket=bucket, Key="src", Body=source, **MODES[mode])
    etag = s3.put_object(Bucket=bucket, Key="dst", Body=b"keep", **MODES[mode])["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    if refused_by_backend(quirks, "CopyObject"):
        for condition in ({"IfNoneMatch": "*"}, {"IfMatch": etag}):
            assert failure(lambda c=condition: s3.copy_object(
                Bucket=bucket, Key="dst", CopySource=src, **c, **MODES[mode])) == \
                (501, "NotImplemented")
        assert body(s3, bucket, "dst") == b"keep"
        return
    assert failure(lambda: s3.copy_object(Bucket=bucket, Key="dst", CopySource=src,
                                          IfNoneMatch="*", **MODES[mode])) == \
        (412, "PreconditionFailed")
    assert failure(lambda: s3.copy_object(Bucket=bucket, Key="dst", CopySource=src,
                                          IfMatch='"' + "1" * 32 + '"', **MODES[mode])) == \
        (412, "PreconditionFailed")
    assert body(s3, bucket, "dst") == b"keep"
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfMatch=etag, **MODES[mode])
    assert body(s3, bucket, "dst") == source
    s3.copy_object(Bucket=bucket, Key="new", CopySource=src, IfNoneMatch="*", **MODES[mode])
    assert body(s3, bucket, "new") == source


# -- version ids through a versioned S3 backend ---------------------------------------------

@pytest.fixture
def versioned_bucket(s3, backend):
    assert backend.is_s3   # the file store keeps one version, null (docs/BACKENDS.md)
    name = "ver-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


# S3 backends only: the file store does not version objects (issue 17).
@pytest.mark.parametrize("backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)],
                         indirect=True)
@pytest.mark.parametrize("mode", MODES)
def test_version_ids_are_relayed(s3, versioned_bucket, backend_client, mode, quirks):
    b = versioned_bucket
    put = s3.put_object(Bucket=b, Key="k", Body=b"one", **MODES[mode])
    assert put.get("VersionId")
    assert put["VersionId"] == backend_client.head_object(Bucket=b, Key="k")["VersionId"]
    second = s3.put_object(Bucket=b, Key="k", Body=b"two", **MODES[mode])
    assert second.get("VersionId") and second["VersionId"] != put["VersionId"]

    upload_id, parts, data = _upload(s3, b, "mp", mode)
    done = s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    assert done.get("VersionId")
    assert done["VersionId"] == backend_client.head_object(Bucket=b, Key="mp")["VersionId"]
    assert s3.head_object(Bucket=b, Key="mp")["VersionId"] == done["VersionId"]

    upload_id = s3.create_multipart_upload(Bucket=b, Key="pc", **MODES[mode])["UploadId"]
    part = s3.upload_part_copy(Bucket=b, Key="pc", UploadId=upload_id, PartNumber=1,
                               CopySource={"Bucket": b, "Key": "k"})
    if mode == "plain":    # relayed from the backend as it answered
        with quirks.breaks("part-copy-version-id"):
            assert part.get("CopySourceVersionId") == second["VersionId"]
    else:                  # the version the encryption layer read and copied
        assert part.get("CopySourceVersionId") == second["VersionId"]
    s3.abort_multipart_upload(Bucket=b, Key="pc", UploadId=upload_id)


@pytest.mark.parametrize("backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)],
                         indirect=True)
@pytest.mark.parametrize("mode", MODES)
def test_copy_version_ids_are_relayed(s3, versioned_bucket, backend_client, mode, quirks):
    b = versioned_bucket
    put = s3.put_object(Bucket=b, Key="k", Body=b"one", **MODES[mode])
    s3.put_object(Bucket=b, Key="k", Body=b"two", **MODES[mode])
    copied = s3.copy_object(Bucket=b, Key="copy", **MODES[mode],
                            CopySource={"Bucket": b, "Key": "k", "VersionId": put["VersionId"]})
    assert body(s3, b, "copy") == b"one"
    with quirks.breaks("copy-version-id"):
        assert copied.get("VersionId")
        assert copied["VersionId"] == \
            backend_client.head_object(Bucket=b, Key="copy")["VersionId"]
        assert copied.get("CopySourceVersionId") == put["VersionId"]
