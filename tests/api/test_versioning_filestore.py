"""Versioning and tags on the file store, through the real server (gunicorn) with boto3.

Versions written in every mode (as sent, SSE-S3, SSE-KMS, SSE-C, multipart) read back by
version id, whole and ranged; version listings report plaintext sizes and ETags; delete
markers, suspension and null versions, DeleteObjects by version, copies and part copies
from a version, tags per version; a bucket with versions is not empty.  The flows of
minio-py's versioning tests (set/get versioning, stat/get/remove by version id) are here in
boto3 terms.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.parametrize("backend", ["file"], indirect=True)

VERSION_ID = re.compile(r"[0-9a-f]{32}")
PART = 5 * 1024 * 1024
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def failure(call) -> tuple[int, str, dict]:
    with pytest.raises(ClientError) as exc:
        call()
    response = exc.value.response
    return (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"].get("Code", ""),
            response["ResponseMetadata"]["HTTPHeaders"])


def empty_and_delete(s3, name: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        objs = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if objs:
            s3.delete_objects(Bucket=name, Delete={"Objects": [
                {"Key": o["Key"], "VersionId": o["VersionId"]} for o in objs], "Quiet": True})
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture(params=["plain", "encrypted"])
def versioned(request, s3) -> Iterator[str]:
    name = "ver-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    if request.param == "encrypted":
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    empty_and_delete(s3, name)


def test_set_and_get_versioning(s3):
    name = "ver-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    try:
        assert "Status" not in s3.get_bucket_versioning(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
        assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Suspended"
        status, code, _ = failure(lambda: s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
            MFA="serial 123456"))
        assert (status, code) == (501, "NotImplemented")
    finally:
        empty_and_delete(s3, name)


def test_versions_in_every_mode_read_back_by_id(s3, versioned):
    customer = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    modes = {
        "sent": {},
        "sse-s3": {"ServerSideEncryption": "AES256"},
        "sse-kms": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "test-key"},
        "sse-c": customer,
    }
    written: list[tuple[str, bytes, dict]] = []
    for i, (mode, extra) in enumerate(modes.items()):
        body = os.urandom(1000 + 37 * i)
        resp = s3.put_object(Bucket=versioned, Key="k", Body=body, **extra)
        assert VERSION_ID.fullmatch(resp["VersionId"]), mode
        written.append((resp["VersionId"], body, customer if mode == "sse-c" else {}))
    parts = [os.urandom(PART), os.urandom(4321)]
    up = s3.create_multipart_upload(Bucket=versioned, Key="k")["UploadId"]
    done = s3.complete_multipart_upload(Bucket=versioned, Key="k", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": s3.upload_part(
            Bucket=versioned, Key="k", UploadId=up, PartNumber=n, Body=p)["ETag"]}
            for n, p in enumerate(parts, 1)]})
    assert VERSION_ID.fullmatch(done["VersionId"])
    written.append((done["VersionId"], b"".join(parts), {}))
    for vid, body, read in written:
        got = s3.get_object(Bucket=versioned, Key="k", VersionId=vid, **read)
        assert got["Body"].read() == body and got["VersionId"] == vid
        ranged = s3.get_object(Bucket=versioned, Key="k", VersionId=vid, Range="bytes=17-99",
                               **read)
        assert ranged["Body"].read() == body[17:100]
        assert s3.head_object(Bucket=versioned, Key="k", VersionId=vid,
                              **read)["ContentLength"] == len(body)
    # The listing reports the plaintext sizes and ETags, newest first.
    listed = s3.list_object_versions(Bucket=versioned)["Versions"]
    assert [v["VersionId"] for v in listed] == [vid for vid, _, _ in reversed(written)]
    assert [v["Size"] for v in listed] == [len(b) for _, b, _ in reversed(written)]
    assert [v["IsLatest"] for v in listed] == [True] + [False] * (len(written) - 1)
    for v, (vid, _, read) in zip(listed, reversed(written), strict=True):
        if not read:    # SSE-C: the listing's ETag is not the plaintext MD5 in S3 either
            assert v["ETag"] == s3.head_object(Bucket=versioned, Key="k", VersionId=vid)["ETag"]
    assert listed[-1]["ETag"] == f'"{hashlib.md5(written[0][1]).hexdigest()}"'


def test_delete_markers(s3, versioned):
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"data")["VersionId"]
    deleted = s3.delete_object(Bucket=versioned, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    status, _, headers = failure(lambda: s3.head_object(Bucket=versioned, Key="k"))
    assert status == 404 and headers["x-amz-delete-marker"] == "true"
    status, code, _ = failure(lambda: s3.get_object(Bucket=versioned, Key="k", VersionId=marker))
    assert (status, code) == (405, "MethodNotAllowed")
    listed = s3.list_object_versions(Bucket=versioned)
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(vid, False)]
    assert "Contents" not in s3.list_objects_v2(Bucket=versioned)
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=vid)["Body"].read() == b"data"
    s3.delete_object(Bucket=versioned, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"data"
    status, code, _ = failure(lambda: s3.get_object(Bucket=versioned, Key="k",
                                                    VersionId="0" * 32))
    assert (status, code) == (404, "NoSuchVersion")
    status, code, _ = failure(lambda: s3.get_object(Bucket=versioned, Key="k",
                                                    VersionId="nonsense"))
    assert (status, code) == (400, "InvalidArgument")


def test_suspended_bucket_writes_null_versions(s3, versioned):
    kept = s3.put_object(Bucket=versioned, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.put_object(Bucket=versioned, Key="k", Body=b"null 1")
    s3.put_object(Bucket=versioned, Key="k", Body=b"null 2")
    listed = s3.list_object_versions(Bucket=versioned)["Versions"]
    assert [(v["VersionId"], v["Size"]) for v in listed] == [("null", 6), (kept, 4)]
    got = s3.get_object(Bucket=versioned, Key="k")
    assert got["Body"].read() == b"null 2" and got["VersionId"] == "null"
    marker = s3.delete_object(Bucket=versioned, Key="k")
    assert (marker["VersionId"], marker["DeleteMarker"]) == ("null", True)
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=kept)["Body"].read() == b"kept"


def test_delete_objects_by_version(s3, versioned):
    a = s3.put_object(Bucket=versioned, Key="a", Body=b"a")["VersionId"]
    s3.put_object(Bucket=versioned, Key="b", Body=b"b")
    result = s3.delete_objects(Bucket=versioned, Delete={"Objects": [
        {"Key": "a", "VersionId": a}, {"Key": "b"}]})
    by_key = {d["Key"]: d for d in result["Deleted"]}
    assert by_key["a"] == {"Key": "a", "VersionId": a}
    assert by_key["b"]["DeleteMarker"] is True
    assert VERSION_ID.fullmatch(by_key["b"]["DeleteMarkerVersionId"])
    listed = s3.list_object_versions(Bucket=versioned)
    assert "a" not in {v["Key"] for v in listed.get("Versions", [])}
    assert [m["Key"] for m in listed["DeleteMarkers"]] == ["b"]


def test_copies_from_a_version(s3, versioned):
    old = s3.put_object(Bucket=versioned, Key="src", Body=b"old" * 3000)["VersionId"]
    s3.put_object(Bucket=versioned, Key="src", Body=b"new" * 3000)
    copied = s3.copy_object(Bucket=versioned, Key="dst",
                            CopySource={"Bucket": versioned, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and VERSION_ID.fullmatch(copied["VersionId"])
    assert s3.get_object(Bucket=versioned, Key="dst")["Body"].read() == b"old" * 3000
    up = s3.create_multipart_upload(Bucket=versioned, Key="mp")["UploadId"]
    part = s3.upload_part_copy(Bucket=versioned, Key="mp", UploadId=up, PartNumber=1,
                               CopySource={"Bucket": versioned, "Key": "src", "VersionId": old},
                               CopySourceRange="bytes=0-8")
    s3.complete_multipart_upload(Bucket=versioned, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=versioned, Key="mp")["Body"].read() == b"old" * 3


def test_tags_per_version(s3, versioned):
    old = s3.put_object(Bucket=versioned, Key="k", Body=b"x", Tagging="a=1&b=2")["VersionId"]
    new = s3.put_object(Bucket=versioned, Key="k", Body=b"y")["VersionId"]
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=old)["TagCount"] == 2
    assert "TagCount" not in s3.get_object(Bucket=versioned, Key="k")
    assert s3.get_object_tagging(Bucket=versioned, Key="k", VersionId=old)["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    assert s3.get_object_tagging(Bucket=versioned, Key="k")["TagSet"] == []
    s3.put_object_tagging(Bucket=versioned, Key="k", VersionId=new,
                          Tagging={"TagSet": [{"Key": "n", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=versioned, Key="k")["TagSet"] == [
        {"Key": "n", "Value": "v"}]
    s3.delete_object_tagging(Bucket=versioned, Key="k", VersionId=old)
    assert s3.get_object_tagging(Bucket=versioned, Key="k", VersionId=old)["TagSet"] == []
    status, code, _ = failure(lambda: s3.put_object_tagging(
        Bucket=versioned, Key="k",
        Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}))
    assert (status, code) == (400, "InvalidTag")
    s3.put_bucket_tagging(Bucket=versioned, Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    assert s3.get_bucket_tagging(Bucket=versioned)["TagSet"] == [{"Key": "t", "Value": "1"}]
    s3.delete_bucket_tagging(Bucket=versioned)
    assert failure(lambda: s3.get_bucket_tagging(Bucket=versioned))[1] == "NoSuchTagSet"


def test_a_bucket_holding_versions_is_not_empty(s3, versioned):
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=versioned, Key="k")
    status, code, _ = failure(lambda: s3.delete_bucket(Bucket=versioned))
    assert (status, code) == (409, "BucketNotEmpty")
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=vid)["Body"].read() == b"x"
