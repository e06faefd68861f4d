"""CopyObject's tags through encproxy: an encrypted copy is a write encproxy makes itself,
and it must carry the tags S3 would give the copy, the source version's by default
(``x-amz-tagging-directive: COPY``) or the request's (``REPLACE``).
"""
from __future__ import annotations

import os

import pytest

AES256 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def tags_of(s3, bucket: str, key: str, version: str | None = None) -> dict[str, str]:
    extra = {"VersionId": version} if version else {}
    got = s3.get_object_tagging(Bucket=bucket, Key=key, **extra).get("TagSet", [])
    return {t["Key"]: t["Value"] for t in got}


@pytest.mark.parametrize("source_encrypted", [True, False], ids=["from-encrypted",
                                                                 "from-plain"])
def test_a_copy_keeps_or_replaces_the_tags(s3, bucket, source_encrypted):
    other = bucket + "-dst"
    s3.create_bucket(Bucket=other)
    try:
        s3.put_bucket_encryption(Bucket=other, ServerSideEncryptionConfiguration=AES256)
        if source_encrypted:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256)
        body = os.urandom(10_000)
        s3.put_object(Bucket=bucket, Key="src", Body=body, Tagging="team=a&note=x%20y%2Bz%40w")
        assert tags_of(s3, bucket, "src") == {"team": "a", "note": "x y+z@w"}

        s3.copy_object(Bucket=other, Key="kept", CopySource={"Bucket": bucket, "Key": "src"})
        assert tags_of(s3, other, "kept") == {"team": "a", "note": "x y+z@w"}
        assert s3.get_object(Bucket=other, Key="kept")["Body"].read() == body

        # x-amz-tagging without REPLACE is not the copy's: the source's are.
        s3.copy_object(Bucket=other, Key="ignored", Tagging="other=1",
                       CopySource={"Bucket": bucket, "Key": "src"})
        assert tags_of(s3, other, "ignored") == {"team": "a", "note": "x y+z@w"}

        s3.copy_object(Bucket=other, Key="replaced", Tagging="team=b",
                       TaggingDirective="REPLACE", CopySource={"Bucket": bucket, "Key": "src"})
        assert tags_of(s3, other, "replaced") == {"team": "b"}
        s3.copy_object(Bucket=other, Key="none", TaggingDirective="REPLACE",
                       CopySource={"Bucket": bucket, "Key": "src"})
        assert tags_of(s3, other, "none") == {}
        assert s3.get_object(Bucket=other, Key="none")["Body"].read() == body
    finally:
        for obj in s3.list_objects_v2(Bucket=other).get("Contents", []):
            s3.delete_object(Bucket=other, Key=obj["Key"])
        s3.delete_bucket(Bucket=other)


def test_a_multipart_source_copied_keeps_its_tags(s3, bucket, quirks):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="kind=mp")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                                                     PartNumber=n, Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert s3.get_object(Bucket=bucket, Key="mp-copy")["Body"].read() == b"".join(parts)
    with quirks.breaks("multipart-tagging-ignored"):
        assert tags_of(s3, bucket, "mp") == {"kind": "mp"}
        assert tags_of(s3, bucket, "mp-copy") == {"kind": "mp"}


def test_a_copy_of_an_old_version_carries_that_versions_tags(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256)
    try:
        first = s3.put_object(Bucket=bucket, Key="k", Body=b"one", Tagging="v=1")["VersionId"]
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", Tagging="v=2")
        s3.copy_object(Bucket=bucket, Key="copy",
                       CopySource={"Bucket": bucket, "Key": "k", "VersionId": first})
        assert tags_of(s3, bucket, "copy") == {"v": "1"}
        assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"one"
    finally:
        # The bucket fixture empties the current versions; the old ones go here.
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_update_object_encryption_keeps_the_tags(s3, bucket):
    """UpdateObjectEncryption re-wraps the data key in place (a copy onto itself that the
    backend makes): the object's tags stay, as on S3."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256)
    s3.put_object(Bucket=bucket, Key="k", Body=b"body", Tagging="keep=me")
    s3.update_object_encryption(Bucket=bucket, Key="k", ObjectEncryption={
        "SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:111122223333:key/other-key"}})
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert tags_of(s3, bucket, "k") == {"keep": "me"}


def test_rotate_keeps_the_tags(server, backend, s3, bucket, quirks):
    """``encproxy rotate`` re-wraps by self-copies, single-part and multipart: the tags
    stay."""
    import subprocess
    import sys
    from pathlib import Path
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256)
    s3.put_object(Bucket=bucket, Key="single", Body=b"body", Tagging="a=1")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="multi", Tagging="b=2")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="multi", UploadId=uid, PartNumber=1,
                          Body=b"x" * 100)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    before = {k: tags_of(s3, bucket, k) for k in ("single", "multi")}
    encproxy = str(Path(sys.executable).with_name("encproxy"))
    with quirks.breaks("multipart-acl-500"):
        done = subprocess.run([encproxy, "rotate", "--config", str(server.config), "--bucket",
                               bucket, "--to-key", "other-key"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, **backend.server_env()})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rewrapped                 2" in done.stdout, done.stdout
    assert {k: tags_of(s3, bucket, k) for k in ("single", "multi")} == before
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == b"body"
