"""Object reads, writes, copies and deletes through the real server with boto3."""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from test_buckets import code, status


def md5(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def test_put_get_head_round_trip(s3, bucket):
    body = os.urandom(3 * 1024 * 1024 + 17)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body, ContentType="text/plain",
                        ContentEncoding="identity", ContentDisposition="inline",
                        CacheControl="no-cache", ContentLanguage="en",
                        Expires=datetime(2030, 1, 1, tzinfo=timezone.utc),
                        Metadata={"colour": "blue", "Mixed-Case": "v"})
    assert put["ETag"] == md5(body)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["ETag"] == md5(body)
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "text/plain"
    assert got["ContentEncoding"] == "identity"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "en"
    assert got["Metadata"] == {"colour": "blue", "mixed-case": "v"}
    assert got["Expires"].year == 2030
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == md5(body)
    assert abs(head["LastModified"].timestamp() - time.time()) < 60
    assert head["AcceptRanges"] == "bytes"


def test_default_content_type_and_empty_object(s3, bucket, quirks):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == md5(b"")
    with quirks.breaks("default-content-type"):
        assert got["ContentType"] == "binary/octet-stream"


def test_overwrite(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two!")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two!"


def test_missing_key(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert code(exc) == "NoSuchKey"
    assert status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nope")
    assert status(exc) == 404


BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.mark.parametrize("header,first,last", [
    pytest.param("bytes=0-99", 0, 99, id="head"),
    pytest.param("bytes=100-", 100, len(BODY) - 1, id="open-ended"),
    pytest.param("bytes=-300", len(BODY) - 300, len(BODY) - 1, id="suffix"),
    pytest.param("bytes=10000-99999", 10000, len(BODY) - 1, id="clamped"),
])
def test_range(s3, bucket, header, first, last):
    s3.put_object(Bucket=bucket, Key="r", Body=BODY)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == BODY[first:last + 1]
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(BODY)}"
    assert got["ContentLength"] == last - first + 1


def test_unsatisfiable_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=BODY)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(BODY)}-")
    assert code(exc) == "InvalidRange"
    assert status(exc) == 416


def test_conditional_get(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"data")
    etag = put["ETag"]
    lm = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert status(exc) == 412 and code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(exc) == 304
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=lm)
    assert status(exc) == 304
    assert s3.get_object(Bucket=bucket, Key="c",
                         IfModifiedSince=lm - timedelta(hours=1))["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=lm - timedelta(hours=1))
    assert status(exc) == 412
    assert s3.head_object(Bucket=bucket, Key="c", IfUnmodifiedSince=lm)["ETag"] == etag


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                        ResponseContentDisposition="attachment; filename=x.json",
                        ResponseCacheControl="max-age=5")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment; filename=x.json"
    assert got["CacheControl"] == "max-age=5"


def test_delete_object_is_idempotent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="d")


def test_delete_objects(s3, bucket):
    for k in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "c/d", "never-existed"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_copy_object_metadata_directives(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", ContentType="text/plain",
                  Metadata={"a": "1"})
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == md5(b"payload")
    dst = s3.get_object(Bucket=bucket, Key="dst")
    assert dst["Body"].read() == b"payload"
    assert dst["Metadata"] == {"a": "1"} and dst["ContentType"] == "text/plain"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="x/y")
    dst2 = s3.head_object(Bucket=bucket, Key="dst2")
    assert dst2["Metadata"] == {"b": "2"} and dst2["ContentType"] == "x/y"


def test_copy_onto_itself(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"v": "1"})
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert code(exc) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same" and got["Metadata"] == {"v": "2"}


def test_copy_errors_and_conditions(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/missing")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/src",
                       CopySourceIfMatch='"nope"')
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/src",
                       MetadataDirective="MERGE")
    assert code(exc) == "InvalidArgument"


def test_copy_across_buckets(s3, bucket):
    other = bucket + "-b"
    s3.create_bucket(Bucket=other)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"cross")
        s3.copy_object(Bucket=other, Key="k2", CopySource={"Bucket": bucket, "Key": "k"})
        assert s3.get_object(Bucket=other, Key="k2")["Body"].read() == b"cross"
        s3.delete_object(Bucket=other, Key="k2")
    finally:
        s3.delete_bucket(Bucket=other)


def is_path_like(key: str) -> bool:
    """A key a backend that stores keys as file paths cannot keep as it is: a `.` or `..`
    segment, an empty one (a leading `/`, `//`), or one over 255 bytes."""
    segments = key.split("/")
    return any(s in ("", ".", "..") or len(s.encode()) > 255 for s in segments[:-1]) or \
        segments[-1] in (".", "..") or len(segments[-1].encode()) > 255


@pytest.mark.parametrize("key", [
    "../../../etc/passwd", "a/../../b", "..", "./x", "/leading", "a//b", "sp ace",
    "per%cent", "plus+sign", "ünïcödé/ключ/鍵", "tab\tnew\nline", "q?x=1#frag", "~tilde",
    "x" * 1024,
])
def test_unusual_keys_stay_inside_root(server, s3, bucket, key, backend, backend_client,
                                       quirks):
    with quirks.breaks("newline-in-key") if "\n" in key else \
            quirks.breaks("keys-are-paths") if is_path_like(key) else nullcontext():
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    if backend.is_s3:
        # The backend holds it under exactly that key, however the client encoded it.
        assert [o["Key"] for o in backend_client.list_objects_v2(Bucket=bucket)["Contents"]] \
            == [key]
        assert backend_client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    else:
        root = server.root.resolve()
        for path in root.parent.rglob("*"):
            assert path.resolve().is_relative_to(root.parent)
        assert not (root.parent.parent / "etc").exists()
    s3.delete_object(Bucket=bucket, Key=key)


def test_key_too_long(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="x" * 1025, Body=b"")
    assert code(exc) == "KeyTooLongError"


def test_metadata_too_large(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"", Metadata={"big": "v" * 2100})
    assert code(exc) == "MetadataTooLarge"


def test_content_md5_verified(s3, bucket):
    import base64
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    s3.put_object(Bucket=bucket, Key="m", Body=b"abc", ContentMD5=good)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"abd", ContentMD5=good)
    assert code(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"abc", ContentMD5="not-base64!")
    assert code(exc) == "InvalidDigest"
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"abc"


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_checksums_verified(s3, bucket, algorithm):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"checksummed", ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"]
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"checksummed"
