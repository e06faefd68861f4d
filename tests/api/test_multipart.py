"""Multipart uploads through the real server with boto3."""
from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from test_buckets import code

MiB = 1024 * 1024


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_out_of_order_upload_and_reupload(s3, bucket, quirks):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="text/x",
                                    Metadata={"m": "1"})
    uid = up["UploadId"]
    etags = {}
    for number in (3, 1, 2):
        etags[number] = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number,
                                       Body=parts[number - 1])["ETag"]
    # A retried part: the last upload wins.
    parts[1] = os.urandom(5 * MiB)
    etags[2] = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2,
                              Body=parts[1])["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]})
    assert done["ETag"] == multipart_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "text/x" and got["Metadata"] == {"m": "1"}
    # Ranges across part boundaries and partNumber reads.
    whole = b"".join(parts)
    rng = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert rng["Body"].read() == whole[5 * MiB - 10: 5 * MiB + 10]
    if quirks("part-number-ignored"):
        # The backend cannot say where parts begin: refused, never the wrong bytes.
        for read in (s3.get_object, s3.head_object):
            with pytest.raises(ClientError) as exc:
                read(Bucket=bucket, Key="mp", PartNumber=2)
            assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    else:
        p2 = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
        assert p2["Body"].read() == parts[1] and p2["PartsCount"] == 3
        head3 = s3.head_object(Bucket=bucket, Key="mp", PartNumber=3)
        assert head3["ContentLength"] == 1234
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
    assert code(exc) == "NoSuchUpload"
    # Last: the parts as listed before Complete, one per number (the re-sent part 2 replaced).
    with quirks.breaks("parts-kept-per-upload"):
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
            (n, etags[n], len(parts[n - 1])) for n in (1, 2, 3)]


def test_complete_with_subset_and_gaps(s3, bucket, quirks):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sub")["UploadId"]
    bodies = {n: os.urandom(5 * MiB if n < 9 else 100) for n in (2, 5, 7, 9)}
    etags = {n: s3.upload_part(Bucket=bucket, Key="sub", UploadId=uid, PartNumber=n,
                               Body=b)["ETag"] for n, b in bodies.items()}
    chosen = [2, 7, 9]
    with quirks.breaks("complete-omits-parts"):
        s3.complete_multipart_upload(Bucket=bucket, Key="sub", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in chosen]})
        assert s3.get_object(Bucket=bucket, Key="sub")["Body"].read() == b"".join(
            bodies[n] for n in chosen)


@pytest.mark.parametrize("case,expected", [
    pytest.param("order", "InvalidPartOrder", id="descending"),
    pytest.param("missing", "InvalidPart", id="missing-part"),
    pytest.param("etag", "InvalidPart", id="wrong-etag"),
    pytest.param("small", "EntityTooSmall", id="small-non-final-part"),
])
def test_complete_validation(s3, bucket, case, expected):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="v")["UploadId"]
    size = 100 if case == "small" else 5 * MiB
    e1 = s3.upload_part(Bucket=bucket, Key="v", UploadId=uid, PartNumber=1,
                        Body=b"a" * size)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="v", UploadId=uid, PartNumber=2, Body=b"b")["ETag"]
    parts = {"order": [(2, e2), (1, e1)], "missing": [(1, e1), (3, e2)],
             "etag": [(1, e1), (2, '"00000000000000000000000000000000"')],
             "small": [(1, e1), (2, e2)]}[case]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="v", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})
    assert code(exc) == expected
    # A failed Complete leaves the upload in place.
    assert len(s3.list_parts(Bucket=bucket, Key="v", UploadId=uid)["Parts"]) == 2
    s3.abort_multipart_upload(Bucket=bucket, Key="v", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="v")


def test_abort_and_unknown_upload(s3, bucket, quirks):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=uid)
    for call in (lambda: s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid, PartNumber=1,
                                        Body=b"x"),
                 lambda: s3.list_parts(Bucket=bucket, Key="other", UploadId="nonexistent")):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="ab", UploadId="u", PartNumber=10001, Body=b"x")
    assert code(exc) == "InvalidArgument"
    # Last: aborting the aborted upload again.
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=uid)
        again = "answered"
    except ClientError as error:
        again = error.response["Error"]["Code"]
    with quirks.breaks("abort-aborted-succeeds"):
        assert again == "NoSuchUpload"


def test_upload_part_copy_with_range(s3, bucket, quirks):
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pc")["UploadId"]
    r1 = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    r2 = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    s3.complete_multipart_upload(Bucket=bucket, Key="pc", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="pc")["Body"].read() == source
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pc2")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="pc2", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange=f"bytes=0-{6 * MiB}")
    assert code(exc) == "InvalidArgument"   # AWS: out of the source is 400 InvalidArgument
    # Last: a copied part's ETag is the MD5 of the bytes it copied.
    with quirks.breaks("copy-part-etag"):
        assert r1["CopyPartResult"]["ETag"] == \
            '"' + hashlib.md5(source[:5 * MiB]).hexdigest() + '"'


def test_list_multipart_uploads(s3, bucket, quirks):
    ids = {}
    for key in ("x/1", "x/2", "y", "x/1"):
        ids.setdefault(key, []).append(
            s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in listed["Uploads"]] == ["x/1", "x/1", "x/2", "y"]
    assert sorted(u["UploadId"] for u in listed["Uploads"] if u["Key"] == "x/1") == \
        sorted(ids["x/1"])
    keys = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}):
        keys += [u["Key"] for u in page.get("Uploads", [])]
    # Last: pages in key order, and one key's uploads in the order they were initiated.
    with quirks.breaks("uploads-by-id"):
        assert keys == ["x/1", "x/1", "x/2", "y"]
        assert [u["UploadId"] for u in listed["Uploads"] if u["Key"] == "x/1"] == ids["x/1"]


def test_list_multipart_uploads_with_delimiter(s3, bucket, quirks):
    for key in ("x/1", "x/2", "y"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    with quirks.breaks("uploads-delimiter-ignored"):
        rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
        assert [p["Prefix"] for p in rolled.get("CommonPrefixes", [])] == ["x/"]
        assert [u["Key"] for u in rolled["Uploads"]] == ["y"]
