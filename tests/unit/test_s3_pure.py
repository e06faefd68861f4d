"""Pure S3 helpers: ranges, preconditions, operation names, bucket names."""
from __future__ import annotations

import pytest

from encproxy import errors
from encproxy.s3 import preconditions
from encproxy.s3.copy_source import CopySource, parse_copy_source
from encproxy.s3.dates import http_date
from encproxy.s3.metadata import response_headers, user_metadata_value
from encproxy.s3.names import check_key, is_valid_bucket_name
from encproxy.s3.operations import classify
from encproxy.s3.ranges import ByteRange, parse_copy_range, parse_range


@pytest.mark.parametrize("header,size,expected", [
    pytest.param(None, 10, None, id="no-header"),
    pytest.param("bytes=0-4", 10, ByteRange(0, 4, 10), id="closed"),
    pytest.param("bytes=5-", 10, ByteRange(5, 9, 10), id="open-ended"),
    pytest.param("bytes=-3", 10, ByteRange(7, 9, 10), id="suffix"),
    pytest.param("bytes=-30", 10, ByteRange(0, 9, 10), id="suffix-longer-than-object"),
    pytest.param("bytes=8-100", 10, ByteRange(8, 9, 10), id="end-clamped"),
    pytest.param("bytes=9-9", 10, ByteRange(9, 9, 10), id="last-byte"),
    pytest.param("bytes=0-1,3-4", 10, None, id="multi-range-ignored"),
    pytest.param("items=0-1", 10, None, id="other-unit-ignored"),
    pytest.param("bytes=5-2", 10, None, id="inverted-ignored"),
    pytest.param("bytes=abc", 10, None, id="garbage-ignored"),
])
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header,size", [
    pytest.param("bytes=10-", 10, id="start-at-end"),
    pytest.param("bytes=20-30", 10, id="beyond"),
    pytest.param("bytes=-0", 10, id="empty-suffix"),
    pytest.param("bytes=0-", 0, id="empty-object"),
    pytest.param("bytes=-5", 0, id="suffix-of-empty"),
])
def test_unsatisfiable_range(header, size):
    with pytest.raises(errors.InvalidRange) as exc:
        parse_range(header, size)
    assert exc.value.status == 416
    assert exc.value.fields["ActualObjectSize"] == str(size)


def test_copy_range():
    assert parse_copy_range("bytes=2-5", 10) == ByteRange(2, 5, 10)
    with pytest.raises(errors.InvalidArgument):
        parse_copy_range("bytes=2-", 10)
    # Out of the source: AWS's 400 InvalidArgument, not a GET's 416 InvalidRange.
    for header in ("bytes=2-10", "bytes=0-21", "bytes=5-2"):
        with pytest.raises(errors.InvalidArgument) as exc:
            parse_copy_range(header, 10)
        assert exc.value.status == 400
        assert exc.value.message == "Range specified is not valid for source object of size: 10"
        assert exc.value.fields["ArgumentValue"] == header


LM = 1_700_000_000.0
ETAG = '"abc"'


@pytest.mark.parametrize("headers,outcome", [
    pytest.param({}, None, id="none"),
    pytest.param({"if-match": '"abc"'}, None, id="match-ok"),
    pytest.param({"if-match": '"x", "abc"'}, None, id="match-list"),
    pytest.param({"if-match": "*"}, None, id="match-star"),
    pytest.param({"if-match": '"x"'}, errors.PreconditionFailed, id="match-fails"),
    pytest.param({"if-none-match": '"abc"'}, errors.NotModified, id="none-match-hit"),
    pytest.param({"if-none-match": '"x"'}, None, id="none-match-miss"),
    pytest.param({"if-modified-since": http_date(LM)}, errors.NotModified, id="ims-same"),
    pytest.param({"if-modified-since": http_date(LM - 10)}, None, id="ims-older"),
    pytest.param({"if-unmodified-since": http_date(LM - 10)}, errors.PreconditionFailed,
                 id="ius-fails"),
    pytest.param({"if-unmodified-since": http_date(LM)}, None, id="ius-ok"),
    pytest.param({"if-match": '"abc"', "if-unmodified-since": http_date(LM - 10)}, None,
                 id="match-true-overrides-ius"),
    pytest.param({"if-none-match": '"x"', "if-modified-since": http_date(LM + 10)}, None,
                 id="inm-false-overrides-ims"),
    pytest.param({"if-modified-since": "not a date"}, None, id="bad-date-ignored"),
])
def test_preconditions(headers, outcome):
    if outcome is None:
        preconditions.check(headers, ETAG, LM)
    else:
        with pytest.raises(outcome):
            preconditions.check(headers, ETAG, LM)


def test_copy_preconditions_are_412():
    with pytest.raises(errors.PreconditionFailed):
        preconditions.check({"x-amz-copy-source-if-none-match": ETAG}, ETAG, LM,
                            prefix="x-amz-copy-source-if-")


@pytest.mark.parametrize("method,bucket,key,query,headers,expected", [
    pytest.param("GET", None, None, {}, {}, "ListBuckets", id="list-buckets"),
    pytest.param("PUT", "b", None, {}, {}, "CreateBucket", id="create-bucket"),
    pytest.param("GET", "b", None, {"list-type": "2"}, {}, "ListObjectsV2", id="list-v2"),
    pytest.param("GET", "b", None, {}, {}, "ListObjects", id="list-v1"),
    pytest.param("GET", "b", None, {"location": ""}, {}, "GetBucketLocation", id="location"),
    pytest.param("PUT", "b", None, {"encryption": ""}, {}, "PutBucketEncryption",
                 id="put-encryption"),
    pytest.param("POST", "b", None, {"delete": ""}, {}, "DeleteObjects", id="delete-objects"),
    pytest.param("PUT", "b", "k", {}, {}, "PutObject", id="put"),
    pytest.param("PUT", "b", "k", {}, {"x-amz-copy-source": "/a/b"}, "CopyObject", id="copy"),
    pytest.param("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, {}, "UploadPart",
                 id="upload-part"),
    pytest.param("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"},
                 {"x-amz-copy-source": "/a/b"}, "UploadPartCopy", id="upload-part-copy"),
    pytest.param("POST", "b", "k", {"uploads": ""}, {}, "CreateMultipartUpload", id="create-mpu"),
    pytest.param("POST", "b", "k", {"uploadId": "u"}, {}, "CompleteMultipartUpload",
                 id="complete"),
    pytest.param("DELETE", "b", "k", {"uploadId": "u"}, {}, "AbortMultipartUpload", id="abort"),
    pytest.param("GET", "b", "k", {"uploadId": "u"}, {}, "ListParts", id="list-parts"),
    pytest.param("POST", "b", "k", {"select": "", "select-type": "2"}, {},
                 "SelectObjectContent", id="select"),
    pytest.param("GET", "b", "k", {"tagging": ""}, {}, "GetObjectTagging", id="tagging"),
    pytest.param("PATCH", "b", "k", {}, {}, None, id="unknown-method"),
    pytest.param("POST", "b", "k", {}, {}, None, id="bare-object-post"),
])
def test_classify(method, bucket, key, query, headers, expected):
    assert classify(method, bucket, key, query, headers) == expected


@pytest.mark.parametrize("name,ok", [
    ("abc", True), ("my.bucket-1", True), ("ab", False), ("a" * 64, False),
    ("Abc", False), ("a..b", False), ("-ab", False), ("ab-", False), ("192.168.1.1", False),
    ("xn--abc", False), ("a_b", False), ("_encproxy", False), ("abc-s3alias", False),
])
def test_bucket_names(name, ok):
    assert is_valid_bucket_name(name) is ok


def test_key_length():
    assert check_key("é" * 512) == "é" * 512
    with pytest.raises(errors.KeyTooLongError):
        check_key("é" * 513)


@pytest.mark.parametrize("raw,expected", [
    pytest.param("bk1/key", CopySource("bk1", "key"), id="bare"),
    pytest.param("/bk1/dir/a%20b", CopySource("bk1", "dir/a b"), id="leading-slash-encoded"),
    pytest.param("bk1/k?versionId=null", CopySource("bk1", "k", "null"), id="version"),
    pytest.param("bk1/%E2%82%AC%2Bx", CopySource("bk1", "€+x"), id="utf8-and-plus"),
])
def test_copy_source(raw, expected):
    assert parse_copy_source(raw) == expected


@pytest.mark.parametrize("raw,error", [
    pytest.param("bk1", errors.InvalidArgument, id="no-key"),
    pytest.param("/bk1/", errors.InvalidArgument, id="empty-key"),
    pytest.param("bk1/k?acl", errors.InvalidArgument, id="other-parameter"),
    pytest.param("B_1/k", errors.InvalidBucketName, id="bad-bucket"),
])
def test_copy_source_errors(raw, error):
    with pytest.raises(error):
        parse_copy_source(raw)


@pytest.mark.parametrize(("stored", "sent"), [
    pytest.param("plain ascii", "plain ascii", id="ascii-as-is"),
    pytest.param("=?UTF-8?B?w7Y=?=", "=?UTF-8?B?w7Y=?=", id="encoded-word-as-is"),
    # boto3 sends "Hello World\xe9" as UTF-8 bytes, which WSGI gives as latin-1 characters
    pytest.param("Hello World\xc3\xa9", "=?UTF-8?B?SGVsbG8gV29ybGTDg8Kp?=", id="utf8-bytes"),
    # MinIO's measurement against AWS (minio/minio#21282): "ö" sent as UTF-8
    pytest.param("\xc3\xb6", "=?UTF-8?B?w4PCtg==?=", id="minio-measured"),
    pytest.param("caf\xe9", "=?UTF-8?B?Y2Fmw6k=?=", id="latin-1-byte"),
])
def test_user_metadata_values_are_rfc2047_encoded_when_not_ascii(stored, sent):
    assert user_metadata_value(stored) == sent
    assert sent.isascii()
    headers = dict(response_headers({}, {"m": stored}))
    assert headers["x-amz-meta-m"] == sent and headers["Content-Type"] == "binary/octet-stream"


@pytest.mark.parametrize("headers,outcome", [
    pytest.param({}, False, id="none"),
    pytest.param({"range": "bytes=0-1", "if-range": ETAG}, False, id="if-range-is-no-condition"),
    *(pytest.param({name: "x"}, True, id=name)
      for name in ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")),
])
def test_any_condition_sees_every_condition_check_evaluates(headers, outcome):
    assert preconditions.any_condition(headers) is outcome
    assert preconditions.any_condition(
        {"x-amz-copy-source-" + k: v for k, v in headers.items()},
        prefix="x-amz-copy-source-if-") is outcome
