"""ListObjectVersions and version ids on the file store, which does not version objects.

Like an S3 bucket that never had versioning enabled, every object is one version with
VersionId ``null``: ListObjectVersions lists exactly what ListObjects lists (plaintext sizes
and ETags in an encrypting bucket), DeleteObjects and GET/HEAD/DELETE/copy accept
``null``, and any other version id is refused without touching the object.  ceph/s3-tests'
every setup and teardown lists versions and deletes by version id.
"""
from __future__ import annotations

import hashlib
import uuid

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.parametrize("backend", ["file"], indirect=True)

SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
OBJECTS = {"a": b"alpha" * 7, "b/c": b"", "b/d": b"delta" * 300, "e f/ü": b"unicode key",
           "g": b"g" * 1000}
PART = 5 * 1024 * 1024
MULTIPART = "m"
OTHER_VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"


def failure(call) -> tuple[int, str, dict]:
    with pytest.raises(ClientError) as exc:
        call()
    error = exc.value.response["Error"]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error


@pytest.fixture(params=["plain", "encrypted"])
def versions_bucket(request, s3, bucket) -> dict:
    """The bucket, filled with OBJECTS and a two-part object, and what it holds."""
    if request.param == "encrypted":
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    parts = [b"1" * PART, b"2" * 1000]
    up = s3.create_multipart_upload(Bucket=bucket, Key=MULTIPART)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=MULTIPART, UploadId=up,
                                                     PartNumber=n, Body=p)["ETag"]}
            for n, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key=MULTIPART, UploadId=up,
                                 MultipartUpload={"Parts": done})
    return {"bucket": bucket, "held": {**OBJECTS, MULTIPART: b"".join(parts)}}


def test_every_object_is_its_null_version(s3, versions_bucket):
    bucket, held = versions_bucket["bucket"], versions_bucket["held"]
    listed = s3.list_object_versions(Bucket=bucket)
    assert listed["IsTruncated"] is False and "DeleteMarkers" not in listed
    assert "NextKeyMarker" not in listed and "NextVersionIdMarker" not in listed
    contents = {c["Key"]: c for c in s3.list_objects(Bucket=bucket)["Contents"]}
    versions = listed["Versions"]
    assert [v["Key"] for v in versions] == sorted(held, key=lambda k: k.encode())
    for v in versions:
        c = contents[v["Key"]]
        assert v["VersionId"] == "null" and v["IsLatest"] is True
        for field in ("Size", "ETag", "LastModified", "Owner", "StorageClass"):
            assert v[field] == c[field], field
        # Plaintext facts, in an encrypting bucket too.
        assert v["Size"] == len(held[v["Key"]])
        assert v["ETag"] == s3.head_object(Bucket=bucket, Key=v["Key"])["ETag"]
        if v["Key"] != MULTIPART:
            assert v["ETag"] == '"' + hashlib.md5(held[v["Key"]]).hexdigest() + '"'
        else:
            assert "-" in v["ETag"]


def test_prefix_delimiter_and_encoding(s3, versions_bucket):
    bucket = versions_bucket["bucket"]
    listed = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in listed["Versions"]] == ["a", "g", MULTIPART]
    assert listed["CommonPrefixes"] == [{"Prefix": "b/"}, {"Prefix": "e f/"}]
    assert listed["Delimiter"] == "/"
    # Asked for explicitly, the encoding is left to the caller (botocore decodes only
    # what it asked for itself, as in the listings above).
    under = s3.list_object_versions(Bucket=bucket, Prefix="e f/", EncodingType="url")
    assert under["EncodingType"] == "url"
    assert [v["Key"] for v in under["Versions"]] == ["e%20f/%C3%BC"]
    assert under["Prefix"] == "e%20f/"


def test_pages_follow_the_next_markers(s3, versions_bucket):
    bucket, held = versions_bucket["bucket"], versions_bucket["held"]
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert first["IsTruncated"] is True and first["MaxKeys"] == 2
    assert [v["Key"] for v in first["Versions"]] == ["a", "b/c"]
    assert (first["NextKeyMarker"], first["NextVersionIdMarker"]) == ("b/c", "null")
    second = s3.list_object_versions(Bucket=bucket, MaxKeys=2, KeyMarker="b/c",
                                     VersionIdMarker="null")
    assert [v["Key"] for v in second["Versions"]] == ["b/d", "e f/ü"]
    assert (second["KeyMarker"], second["VersionIdMarker"]) == ("b/c", "null")
    keys = [v["Key"] for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}) for v in page.get("Versions", [])]
    assert keys == sorted(held, key=lambda k: k.encode())


def test_a_page_that_ends_in_a_common_prefix(s3, versions_bucket):
    bucket = versions_bucket["bucket"]
    first = s3.list_object_versions(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert [v["Key"] for v in first["Versions"]] == ["a"]
    assert first["CommonPrefixes"] == [{"Prefix": "b/"}]
    assert first["NextKeyMarker"] == "b/" and "NextVersionIdMarker" not in first
    rest = s3.list_object_versions(Bucket=bucket, Delimiter="/", KeyMarker="b/")
    assert [v["Key"] for v in rest["Versions"]] == ["g", MULTIPART]
    assert rest["CommonPrefixes"] == [{"Prefix": "e f/"}]


def test_max_keys_zero(s3, versions_bucket):
    listed = s3.list_object_versions(Bucket=versions_bucket["bucket"], MaxKeys=0)
    assert listed["IsTruncated"] is False and "Versions" not in listed


@pytest.mark.parametrize("kwargs,message", [
    pytest.param({"VersionIdMarker": "null"}, "without a key marker", id="no-key-marker"),
    pytest.param({"KeyMarker": "a", "VersionIdMarker": OTHER_VERSION},
                 "Invalid version id specified", id="other-version"),
])
def test_version_markers_that_cannot_exist(s3, versions_bucket, kwargs, message):
    status, code, error = failure(lambda: s3.list_object_versions(
        Bucket=versions_bucket["bucket"], **kwargs))
    assert (status, code) == (400, "InvalidArgument")
    assert message in error["Message"]


def test_no_such_bucket(s3):
    status, code, _ = failure(lambda: s3.list_object_versions(Bucket="nope-" + uuid.uuid4().hex))
    assert (status, code) == (404, "NoSuchBucket")


# -- version ids on objects ------------------------------------------------------------------

def test_null_addresses_the_object(s3, versions_bucket):
    bucket, held = versions_bucket["bucket"], versions_bucket["held"]
    got = s3.get_object(Bucket=bucket, Key="a", VersionId="null")
    assert got["Body"].read() == held["a"] and got["VersionId"] == "null"
    assert s3.head_object(Bucket=bucket, Key="g", VersionId="null")["ContentLength"] == 1000
    ranged = s3.get_object(Bucket=bucket, Key="b/d", VersionId="null", Range="bytes=5-9")
    assert ranged["Body"].read() == held["b/d"][5:10]
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "a",
                                                          "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == held["a"]
    deleted = s3.delete_object(Bucket=bucket, Key="copy", VersionId="null")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["VersionId"] == "null"
    assert failure(lambda: s3.head_object(Bucket=bucket, Key="copy"))[0] == 404


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.get_object(Bucket=b, Key="a", VersionId=OTHER_VERSION),
                 id="get"),
    pytest.param(lambda s3, b: s3.delete_object(Bucket=b, Key="a", VersionId=OTHER_VERSION),
                 id="delete"),
    pytest.param(lambda s3, b: s3.copy_object(
        Bucket=b, Key="a", MetadataDirective="REPLACE",
        CopySource={"Bucket": b, "Key": "g", "VersionId": OTHER_VERSION}), id="copy-onto"),
])
def test_other_version_ids_are_refused_and_change_nothing(s3, versions_bucket, call):
    bucket, held = versions_bucket["bucket"], versions_bucket["held"]
    status, code, error = failure(lambda: call(s3, bucket))
    assert (status, code) == (400, "InvalidArgument")
    assert error["Message"] == "Invalid version id specified"
    assert error["ArgumentValue"] == OTHER_VERSION
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == held["a"]


def test_head_of_another_version_is_400(s3, versions_bucket):
    status, _, _ = failure(lambda: s3.head_object(Bucket=versions_bucket["bucket"], Key="a",
                                                  VersionId=OTHER_VERSION))
    assert status == 400


def test_delete_objects_by_version(s3, versions_bucket):
    bucket, held = versions_bucket["bucket"], versions_bucket["held"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "VersionId": "null"}, {"Key": "g", "VersionId": OTHER_VERSION},
        {"Key": "b/c"}]})
    assert sorted(result["Deleted"], key=lambda d: d["Key"]) == [
        {"Key": "a", "VersionId": "null"}, {"Key": "b/c"}]
    assert result["Errors"] == [{"Key": "g", "VersionId": OTHER_VERSION,
                                 "Code": "NoSuchVersion",
                                 "Message": "The specified version does not exist."}]
    remaining = {v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]}
    assert remaining == set(held) - {"a", "b/c"}
    assert s3.get_object(Bucket=bucket, Key="g")["Body"].read() == held["g"]


def test_s3_tests_teardown_empties_the_bucket(s3):
    """ceph/s3-tests' nuke_bucket: list versions a page at a time, delete each page by
    version id (quietly, with governance bypass), then delete the bucket."""
    name = "nv-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    for i in range(5):
        s3.put_object(Bucket=name, Key=f"obj{i}", Body=b"x" * i)
    kwargs = {"Bucket": name, "MaxKeys": 2}
    truncated = True
    while truncated:
        listing = s3.list_object_versions(**kwargs)
        kwargs["KeyMarker"] = listing.get("NextKeyMarker")
        kwargs["VersionIdMarker"] = listing.get("NextVersionIdMarker")
        truncated = listing["IsTruncated"]
        objs = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
        if objs:
            out = s3.delete_objects(Bucket=name, BypassGovernanceRetention=True, Delete={
                "Objects": [{"Key": o["Key"], "VersionId": o["VersionId"]} for o in objs],
                "Quiet": True})
            assert "Errors" not in out
    s3.delete_bucket(Bucket=name)
    assert failure(lambda: s3.head_bucket(Bucket=name))[0] == 404
