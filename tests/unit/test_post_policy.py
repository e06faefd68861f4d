"""POST Object's pure parts: the policy document, its signature and conditions
(``encproxy.s3.post_policy``) and the streamed ``multipart/form-data`` body
(``encproxy.s3.form_data``).

The policies are ceph/s3-tests' (group h, ``test_post_object_*``), with the status each
test expects, and botocore's own ``generate_presigned_post`` (SigV2 by default, and SigV4);
form bodies are encoded by urllib3 (what requests sends) and read back in pieces of every
size, so that no boundary condition depends on how the input happens to be split.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from urllib3 import encode_multipart_formdata

from encproxy import errors
from encproxy.s3 import form_data, post_policy

ACCESS_KEY = "AKIDPOSTTEST"
SECRET = "post/secret+key=="
KEYS = {ACCESS_KEY: SECRET}
BUCKET = "bucket"
NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
LATER = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def v2_fields(document: dict[str, Any], **extra: str) -> dict[str, str]:
    """A SigV2-signed form as ceph/s3-tests builds it (lower-case names)."""
    policy = encode(document)
    signature = base64.b64encode(hmac.new(SECRET.encode(), policy.encode(),
                                          hashlib.sha1).digest()).decode()
    return {"key": "foo.txt", "awsaccesskeyid": ACCESS_KEY, "acl": "private",
            "signature": signature, "policy": policy, "content-type": "text/plain",
            **{name.lower(): value for name, value in extra.items()}}


def s3tests_policy(*extra: Any, expiration: str = LATER) -> dict[str, Any]:
    return {"expiration": expiration, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", "foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 0, 1024],
        *extra]}


# == the policy document ======================================================================

@pytest.mark.parametrize("document", [
    pytest.param({"conditions": []}, id="missing-expiration"),
    pytest.param({"EXPIRATION": LATER, "conditions": []}, id="expiration-is-case-sensitive"),
    pytest.param({"expiration": LATER}, id="missing-conditions"),
    pytest.param({"expiration": LATER, "CONDITIONS": []}, id="conditions-is-case-sensitive"),
    pytest.param({"expiration": "2026-12-06 12:00:00.123456+00:00", "conditions": []},
                 id="invalid-date-format"),
    pytest.param({"expiration": "2026-13-06T12:00:00Z", "conditions": []}, id="bad-month"),
    pytest.param({"expiration": LATER, "conditions": [{}]}, id="empty-condition"),
    pytest.param({"expiration": LATER, "conditions": [{"a": "1", "b": "2"}]},
                 id="two-property-condition"),
    pytest.param({"expiration": LATER, "conditions": [["content-length-range", 0]]},
                 id="content-length-range-one-argument"),
    pytest.param({"expiration": LATER, "conditions": [["content-length-range", -1, 0]]},
                 id="content-length-range-negative"),
    pytest.param({"expiration": LATER, "conditions": [["content-length-range", 10, 1]]},
                 id="content-length-range-inverted"),
    pytest.param({"expiration": LATER, "conditions": [["content-length-range", "a", 1]]},
                 id="content-length-range-not-a-number"),
    pytest.param({"expiration": LATER, "conditions": [["matches", "$key", "a"]]},
                 id="unknown-operator"),
    pytest.param({"expiration": LATER, "conditions": [["eq", "key", "a"]]}, id="no-dollar"),
    pytest.param({"expiration": LATER, "conditions": [["eq", "$key"]]}, id="two-elements"),
    pytest.param({"expiration": LATER, "conditions": [["eq", "$key", 1]]}, id="number-value"),
    pytest.param({"expiration": LATER, "conditions": ["key"]}, id="string-condition"),
    pytest.param({"expiration": LATER, "conditions": {"key": "a"}}, id="conditions-not-a-list"),
    pytest.param([LATER], id="not-an-object"),
])
def test_invalid_policy_documents(document: Any) -> None:
    with pytest.raises(errors.InvalidPolicyDocument) as caught:
        post_policy.decode_policy(encode(document))
    assert (caught.value.status, caught.value.code) == (400, "InvalidPolicyDocument")


@pytest.mark.parametrize("encoded", ["not base64!", base64.b64encode(b"{not json").decode(),
                                     base64.b64encode(b"\xff\xfe").decode()])
def test_undecodable_policies(encoded: str) -> None:
    with pytest.raises(errors.InvalidPolicyDocument, match="Invalid JSON"):
        post_policy.decode_policy(encoded)


def test_policy_parts() -> None:
    policy = post_policy.decode_policy(encode({
        "expiration": "2026-12-06T12:00:00.250Z",
        "conditions": [{"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "user/"],
                       ["content-length-range", "10", 100], ["content-length-range", 20, 90],
                       ["eq", "$x-amz-meta-a", ""]]}))
    assert policy.expiration == datetime(2026, 12, 6, 12, 0, 0, 250000, tzinfo=UTC)
    assert [(c.op, c.field, c.value) for c in policy.conditions] == [
        ("eq", "bucket", "b"), ("starts-with", "key", "user/"), ("eq", "x-amz-meta-a", "")]
    assert (policy.min_length, policy.max_length) == (20, 90)   # every range applies
    assert policy.conditions[1].quoted() == '["starts-with", "$key", "user/"]'


# == the conditions (ceph/s3-tests group h) ===================================================

def check(fields: dict[str, str], length: int = 3, bucket: str = BUCKET,
          filename: str | None = None, now: datetime = NOW) -> None:
    policy = post_policy.decode_policy(fields["policy"])
    key = post_policy.object_key(fields, filename)
    post_policy.check_policy(policy, fields, bucket, key, length, now)


ACCEPTED = [
    pytest.param(v2_fields(s3tests_policy()), {}, id="authenticated-request"),
    pytest.param(v2_fields(s3tests_policy(), **{"x-ignore-foo": "bar"}), {},
                 id="ignored-header"),
    pytest.param(v2_fields(s3tests_policy(["starts-with", "$x-amz-meta-foo", "bar"]),
                           **{"x-amz-meta-foo": "barclamp"}), {}, id="user-specified-header"),
    pytest.param(v2_fields(s3tests_policy(["starts-with", "$x-amz-meta-foo", ""])), {},
                 id="empty-prefix-allows-absent-field"),
    pytest.param(v2_fields(s3tests_policy(), **{"x-amz-checksum-sha256": "x"}), {},
                 id="checksum-fields-need-no-condition"),
    pytest.param(v2_fields({"expiration": LATER, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", r"\$foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"]]}, key=r"\$foo.txt"), {},
        id="escaped-field-values"),
    pytest.param(v2_fields(s3tests_policy(), key="${filename}"), {"filename": "foo.txt"},
                 id="key-from-filename"),
    pytest.param(v2_fields(s3tests_policy()), {"length": 1024}, id="largest-allowed"),
    pytest.param(v2_fields({"expiration": LATER, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", "foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 3, 3]]}),
        {}, id="exact-length"),
]


@pytest.mark.parametrize(("fields", "options"), ACCEPTED)
def test_accepted_forms(fields: dict[str, str], options: dict[str, Any]) -> None:
    check(fields, **options)


REFUSED = [
    pytest.param(v2_fields(s3tests_policy(expiration=(NOW - timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"))), {}, errors.AccessDenied, "Policy expired",
        id="expired-policy"),
    pytest.param(v2_fields(s3tests_policy(expiration=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))), {},
                 errors.AccessDenied, "Policy expired", id="expires-now"),
    pytest.param(v2_fields(s3tests_policy()), {"bucket": "other"}, errors.AccessDenied,
                 'Policy Condition failed: \\["eq", "\\$bucket", "bucket"\\]', id="wrong-bucket"),
    pytest.param(v2_fields(s3tests_policy(["eq", "$x-amz-meta-foo", ""]),
                           **{"x-amz-meta-foo": "barclamp"}), {}, errors.AccessDenied,
                 "Policy Condition failed", id="invalid-request-field-value"),
    pytest.param(v2_fields(s3tests_policy(["starts-with", "$x-amz-meta-foo", "bar"])), {},
                 errors.AccessDenied, "Policy Condition failed",
                 id="missing-policy-specified-field"),
    pytest.param(v2_fields({"expiration": LATER, "conditions": [
        ["starts-with", "$key", "foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"]]}), {}, errors.AccessDenied,
        "Extra input fields: bucket", id="missing-bucket-condition"),
    pytest.param(v2_fields(s3tests_policy(), **{"x-amz-meta-extra": "1"}), {},
                 errors.AccessDenied, "Extra input fields: x-amz-meta-extra",
                 id="field-without-condition"),
    pytest.param(v2_fields(s3tests_policy(), key="bar.txt"), {}, errors.AccessDenied,
                 "Policy Condition failed", id="key-prefix"),
    pytest.param(v2_fields(s3tests_policy(), key="${filename}"), {"filename": "bar.txt"},
                 errors.AccessDenied, "Policy Condition failed", id="filename-key-prefix"),
    pytest.param(v2_fields({"expiration": LATER, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", "foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 0, 0]]}),
        {}, errors.EntityTooLarge, "", id="upload-size-limit-exceeded"),
    pytest.param(v2_fields({"expiration": LATER, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", "foo"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 512, 1000]]}),
        {}, errors.EntityTooSmall, "", id="upload-size-below-minimum"),
    pytest.param(v2_fields(s3tests_policy()), {"length": 1025}, errors.EntityTooLarge, "",
                 id="one-byte-too-many"),
]


@pytest.mark.parametrize(("fields", "options", "error", "message"), REFUSED)
def test_refused_forms(fields: dict[str, str], options: dict[str, Any],
                       error: type[errors.S3Error], message: str) -> None:
    with pytest.raises(error, match=message or None) as caught:
        check(fields, **options)
    assert caught.value.status == (403 if error is errors.AccessDenied else 400)


def test_key_is_required() -> None:
    fields = v2_fields(s3tests_policy())
    del fields["key"]
    with pytest.raises(errors.InvalidArgument, match="field named 'key'") as caught:
        post_policy.object_key(fields, None)
    assert caught.value.status == 400


@pytest.mark.parametrize(("filename", "expected"), [
    ("photo.jpg", "uploads/photo.jpg"), ("C:\\Users\\me\\photo.jpg", "uploads/photo.jpg"),
    ("dir/photo.jpg", "uploads/photo.jpg"), (None, "uploads/")])
def test_filename_variable(filename: str | None, expected: str) -> None:
    assert post_policy.object_key({"key": "uploads/${filename}"}, filename) == expected


# == who signed it =============================================================================

def boto_post(signature_version: str | None = None, **kwargs: Any) -> dict[str, str]:
    """boto3's generate_presigned_post (in-process: nothing is sent), lower-case names."""
    config = Config(signature_version=signature_version) if signature_version else None
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                          config=config)
    post = client.generate_presigned_post(BUCKET, "uploads/${filename}", **kwargs)
    return {name.lower(): value for name, value in post["fields"].items()}


def authenticate(fields: dict[str, str], allow_sigv2: bool = True,
                 region: str | None = "us-east-1") -> str:
    return post_policy.authenticate(fields, KEYS.get, region=region, allow_sigv2=allow_sigv2)


@pytest.mark.parametrize("version", [None, "s3v4"])
def test_boto3_presigned_post(version: str | None) -> None:
    fields = boto_post(version, Conditions=[["starts-with", "$key", "uploads/"]])
    assert ("awsaccesskeyid" in fields) is (version is None)   # boto3's default is SigV2
    assert authenticate(fields) == ACCESS_KEY
    policy = post_policy.decode_policy(fields["policy"])
    key = post_policy.object_key(fields, "a.txt")
    post_policy.check_policy(policy, fields, BUCKET, key, 10, datetime.now(UTC))
    signature = "signature" if version is None else "x-amz-signature"
    tampered = {**fields, signature: fields[signature][::-1]}
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate(tampered)
    forged = {**fields, "policy": encode({"expiration": LATER, "conditions": []})}
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate(forged)


@pytest.mark.parametrize(("change", "error", "status"), [
    pytest.param({"awsaccesskeyid": "NOBODY"}, errors.InvalidAccessKeyId, 403, id="unknown-key"),
    pytest.param({"awsaccesskeyid": None}, errors.InvalidArgument, 400, id="no-access-key"),
    pytest.param({"signature": None}, errors.InvalidArgument, 400, id="missing-signature"),
    pytest.param({"policy": None}, errors.AccessDenied, 403, id="anonymous"),
    pytest.param({"x-amz-algorithm": "AWS4-ECDSA-P256-SHA256"}, errors.InvalidRequest, 400,
                 id="sigv4a"),
])
def test_sigv2_form_errors(change: dict[str, str | None], error: type[errors.S3Error],
                           status: int) -> None:
    fields = boto_post()
    for name, value in change.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    with pytest.raises(error) as caught:
        authenticate(fields)
    assert caught.value.status == status


def test_sigv2_forms_refused_when_sigv2_is_off() -> None:
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        authenticate(boto_post(), allow_sigv2=False)
    assert authenticate(boto_post("s3v4"), allow_sigv2=False) == ACCESS_KEY


@pytest.mark.parametrize(("change", "message"), [
    pytest.param({"x-amz-credential": None}, "field named 'x-amz-credential'", id="no-credential"),
    pytest.param({"x-amz-signature": None}, "field named 'x-amz-signature'", id="no-signature"),
    pytest.param({"x-amz-date": None}, "field named 'x-amz-date'", id="no-date"),
    pytest.param({"x-amz-date": "yesterday"}, "ISO8601", id="bad-date"),
    pytest.param({"x-amz-date": "20000101T000000Z"}, "credential", id="date-not-credential's"),
])
def test_sigv4_form_errors(change: dict[str, str | None], message: str) -> None:
    fields = boto_post("s3v4")
    for name, value in change.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    with pytest.raises(errors.InvalidArgument, match=message):
        authenticate(fields)


def test_sigv4_form_region() -> None:
    fields = boto_post("s3v4")
    with pytest.raises(errors.InvalidArgument, match="region 'us-east-1' is wrong") as caught:
        authenticate(fields, region="eu-west-3")
    assert caught.value.fields["Region"] == "eu-west-3"
    assert authenticate(fields, region=None) == ACCESS_KEY


# == the PutObject a form describes ===========================================================

def test_put_headers() -> None:
    fields = {"key": "k", "acl": "public-read", "content-type": "text/plain",
              "cache-control": "no-cache", "expires": "never", "x-amz-meta-a": "1",
              "x-amz-server-side-encryption": "aws:kms", "x-amz-storage-class": "STANDARD_IA",
              "x-amz-checksum-crc32": "AAAAAA==", "policy": "p", "signature": "s",
              "awsaccesskeyid": "a", "x-amz-credential": "c", "x-amz-date": "d",
              "x-amz-algorithm": "a", "x-amz-signature": "s", "x-amz-security-token": "t",
              "success_action_status": "201", "x-ignore-me": "1", "submit": "Upload",
              "tagging": "<Tagging><TagSet><Tag><Key>a b</Key><Value>1&amp;2</Value></Tag>"
                         "<Tag><Key>k</Key><Value></Value></Tag></TagSet></Tagging>"}
    assert post_policy.put_headers(fields, "image/png") == {
        "x-amz-acl": "public-read", "content-type": "text/plain", "cache-control": "no-cache",
        "expires": "never", "x-amz-meta-a": "1", "x-amz-server-side-encryption": "aws:kms",
        "x-amz-storage-class": "STANDARD_IA", "x-amz-tagging": "a%20b=1%262&k="}
    assert post_policy.put_headers({"key": "k"}, "image/png") == {"content-type": "image/png"}
    assert post_policy.put_headers({"key": "k"}, None) == {}


def test_tagging_must_be_xml() -> None:
    with pytest.raises(errors.MalformedXML):
        post_policy.tagging_header("<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet>"
                                   "</Tagging>")
    with pytest.raises(errors.MalformedXML):
        post_policy.tagging_header("a=b")


@pytest.mark.parametrize(("value", "status"), [("200", 200), ("201", 201), ("204", 204),
                                               ("404", 204), ("", 204), (None, 204)])
def test_success_status(value: str | None, status: int) -> None:
    fields = {} if value is None else {"success_action_status": value}
    assert post_policy.success_status(fields) == status


def test_redirect_target() -> None:
    assert post_policy.redirect_target({"success_action_redirect": "http://x/y"}) == "http://x/y"
    assert post_policy.redirect_target({"redirect": "https://x/y?a=b"}) == "https://x/y?a=b"
    assert post_policy.redirect_target({"success_action_redirect": "javascript:x"}) is None
    assert post_policy.redirect_target({}) is None


# == the form body =============================================================================

BOUNDARY = "----encproxyBoundary7MA4YWxkTrZu0gW"


def form(fields: list[tuple[str, Any]], boundary: str = BOUNDARY) -> tuple[bytes, str]:
    return encode_multipart_formdata(fields, boundary=boundary)


def reader_of(body: bytes, size: int) -> Callable[[int], bytes]:
    """A read(n) that never returns more than ``size`` bytes at a time."""
    stream = io.BytesIO(body)
    return lambda n: stream.read(min(n, size))


def read_form(body: bytes, content_type: str, piece: int = 1 << 20,
              length: int | None = None) -> tuple[form_data.FormHead, bytes]:
    boundary = form_data.boundary_of(content_type)
    reader = form_data.FormReader(reader_of(body, piece), boundary,
                                  len(body) if length is None else length)
    head = reader.read_head()
    data = reader.file_data(head)
    out = bytearray()
    while True:
        chunk = data.read(piece)
        if not chunk:
            return head, bytes(out)
        out += chunk


FILE = bytes(range(256)) * 300 + b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n--"


@pytest.mark.parametrize("piece", [1, 2, 7, 64, 4096, 1 << 20])
@pytest.mark.parametrize("data", [b"", b"x", FILE], ids=["empty", "one-byte", "awkward"])
def test_form_round_trip(piece: int, data: bytes) -> None:
    body, content_type = form([("key", "uploads/${filename}"), ("AWSAccessKeyId", "AK"),
                               ("x-amz-meta-note", "ünïcødé"), ("empty", ""),
                               ("file", ("name.bin", data, "application/octet-stream"))])
    head, got = read_form(body, content_type, piece)
    assert got == data and head.file_length == len(data)
    assert head.fields == (("key", "uploads/${filename}"), ("AWSAccessKeyId", "AK"),
                           ("x-amz-meta-note", "ünïcødé"), ("empty", ""))
    assert head.get("awsaccesskeyid") == "AK" and head.by_name["x-amz-meta-note"] == "ünïcødé"
    assert head.file == form_data.FilePart("name.bin", "application/octet-stream")


def test_preamble_and_padding() -> None:
    body = (b"preamble text\r\n--B  \r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n"
            b"k\r\n--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
            b"data\r\n--B--\r\n")
    head, data = read_form(body, "multipart/form-data; boundary=B")
    assert head.fields == (("key", "k"),) and data == b"data"
    assert head.file == form_data.FilePart(None, None)


def test_data_withheld_when_fields_follow_the_file() -> None:
    """S3 ignores fields after the file; encproxy cannot size the file then, and refuses the
    form before the file's last bytes are released (nothing is stored)."""
    data = b"a" * 100_000
    body, content_type = form([("key", "k"), ("file", ("f", data)), ("after", "x")])
    boundary = form_data.boundary_of(content_type)
    reader = form_data.FormReader(reader_of(body, 4096), boundary, len(body))
    head = reader.read_head()
    assert head.file_length > len(data)   # the prediction counts the trailing field
    stream = reader.file_data(head)
    released = 0
    with pytest.raises(errors.MalformedPOSTRequest, match="last field"):
        while True:
            chunk = stream.read(4096)
            assert chunk
            released += len(chunk)
    assert released <= len(data) + 4096


@pytest.mark.parametrize("ending", [b"\r\n--" + BOUNDARY.encode() + b"--",
                                    b"\r\n--" + BOUNDARY.encode() + b"--\r\nepilogue"])
def test_anything_but_the_close_delimiter_after_the_file_is_refused(ending: bytes) -> None:
    body, content_type = form([("key", "k"), ("file", ("f", b"data"))])
    body = body[:body.rindex(b"\r\n--")] + ending
    with pytest.raises(errors.MalformedPOSTRequest):
        read_form(body, content_type)


def test_no_file() -> None:
    body, content_type = form([("key", "k"), ("other", "x")])
    with pytest.raises(errors.IncorrectNumberOfFilesInPostRequest):
        read_form(body, content_type)


def test_fields_before_the_file_are_capped() -> None:
    body, content_type = form([("key", "k"), ("big", "x" * (form_data.MAX_HEAD + 1)),
                               ("file", ("f", b"data"))])
    with pytest.raises(errors.MaxPostPreDataLengthExceededError):
        read_form(body, content_type, piece=4096)


def test_repeated_fields_are_refused() -> None:
    body, content_type = form([("key", "a"), ("KEY", "b"), ("file", ("f", b"data"))])
    with pytest.raises(errors.InvalidArgument, match="exactly one value"):
        read_form(body, content_type)


def test_truncated_body() -> None:
    body, content_type = form([("key", "k"), ("file", ("f", b"data" * 1000))])
    with pytest.raises(errors.IncompleteBody):
        read_form(body[:-100], content_type, length=len(body))
    with pytest.raises(errors.MalformedPOSTRequest):
        read_form(body[:50], content_type, length=50)


@pytest.mark.parametrize(("content_type", "error"), [
    pytest.param("application/x-www-form-urlencoded", errors.PreconditionFailed, id="urlencoded"),
    pytest.param("text/plain", errors.PreconditionFailed, id="text"),
    pytest.param("multipart/form-data", errors.MalformedPOSTRequest, id="no-boundary"),
    pytest.param("multipart/form-data; boundary=\"a\r\nb\"", errors.MalformedPOSTRequest,
                 id="bad-boundary"),
])
def test_content_type(content_type: str, error: type[errors.S3Error]) -> None:
    with pytest.raises(error) as caught:
        form_data.boundary_of(content_type)
    if error is errors.PreconditionFailed:
        assert caught.value.status == 412
        assert "multipart/form-data" in caught.value.fields["Condition"]
