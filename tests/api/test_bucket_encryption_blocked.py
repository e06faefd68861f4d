"""BlockedEncryptionTypes (AWS 2025-11; SSE-C blocked by default on new AWS buckets since
2026-04) through the real server, with boto3 (whose botocore knows the shape) and raw
signed requests: stored, returned, removed, and enforced with 403 AccessDenied."""
from __future__ import annotations

import base64
import hashlib
import os

import defusedxml.ElementTree as ET
import pytest
import requests
from botocore.exceptions import ClientError
from support.raw_s3 import Signed
from test_bucket_encryption import error_code, put_raw
from test_buckets import code, status

INTERNAL = "encproxy-internal"
MARKER = b"BLOCKED-TYPES-MARKER-4be1"
AES256 = {"SSEAlgorithm": "AES256"}
BLOCK_SSE_C = {"Rules": [{"ApplyServerSideEncryptionByDefault": AES256,
                          "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]}


def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(64)
    return (unit * (size // len(unit) + 1))[:size]


def customer_key() -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}


def rules(s3, bucket):
    return s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]


def assert_denied(exc: pytest.ExceptionInfo[ClientError]) -> None:
    assert (code(exc), status(exc)) == ("AccessDenied", 403)


def assert_absent(s3, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert status(exc) == 404


# -- PutBucketEncryption / GetBucketEncryption / DeleteBucketEncryption --------------------

@pytest.mark.parametrize("rule", [
    pytest.param({"ApplyServerSideEncryptionByDefault": AES256, "BucketKeyEnabled": False,
                  "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}, id="aes256-block"),
    pytest.param({"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                         "KMSMasterKeyID": "test-key"},
                  "BucketKeyEnabled": True,
                  "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}, id="kms-unblock"),
    pytest.param({"BucketKeyEnabled": False,
                  "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}, id="no-default"),
    pytest.param({"BucketKeyEnabled": False,
                  "BlockedEncryptionTypes": {"EncryptionType": ["NONE", "SSE-C"]}},
                 id="both-as-given"),
])
def test_boto3_round_trip(s3, bucket, rule):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert rules(s3, bucket) == [rule]
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code(exc) == "ServerSideEncryptionConfigurationNotFoundError"


def test_get_answers_in_aws_element_order(server, s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    url = f"{server.endpoint}/{bucket}?encryption"
    signed = Signed("GET", url, {}, hashlib.sha256(b"").hexdigest())
    resp = requests.get(url, headers=signed.headers, timeout=30)
    assert resp.status_code == 200
    rule = ET.fromstring(resp.content)[0]
    assert [child.tag.rsplit("}", 1)[-1] for child in rule] == [
        "ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes"]
    assert [t.text for t in rule[2]] == ["SSE-C"]


def test_stored_as_an_authenticated_record(s3, bucket, stored):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    record = stored.read(INTERNAL, "bucket-encryption/" + bucket).body
    assert record.startswith(b"encproxy-record/2 ")
    assert b'"blocked_encryption_types": ["SSE-C"]' in record and b'"version": 2' in record


@pytest.mark.parametrize("value", ["SSE-KMS", "AES256", "sse-c", ""])
def test_unknown_encryption_type_is_malformed_xml(server, s3, bucket, value):
    body = (b"<ServerSideEncryptionConfiguration><Rule><BlockedEncryptionTypes><EncryptionType>"
            + value.encode() + b"</EncryptionType></BlockedEncryptionTypes></Rule>"
            b"</ServerSideEncryptionConfiguration>")
    resp = put_raw(server, bucket, body)
    assert (resp.status_code, error_code(resp)) == (400, "MalformedXML")
    with pytest.raises(ClientError):
        s3.get_bucket_encryption(Bucket=bucket)


# -- enforcement ------------------------------------------------------------------------------

def test_sse_c_writes_refused_with_access_denied(s3, bucket, stored):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    data = marked(70_000)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=data, **customer_key())
    assert_denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="m", **customer_key())
    assert_denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="cp", CopySource={"Bucket": bucket, "Key": "src"},
                       **customer_key())
    assert_denied(exc)
    for key in ("c", "m", "cp"):
        assert_absent(s3, bucket, key)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert MARKER not in stored.all_bytes()


def test_refusal_is_an_xml_access_denied_before_the_key_is_checked(server, s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    body = b"secret"
    url = f"{server.endpoint}/{bucket}/raw"
    key = os.urandom(32)
    headers = {"content-length": str(len(body)),
               "x-amz-server-side-encryption-customer-algorithm": "AES256",
               "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
               # the MD5 of another key: AWS answers 403 all the same
               "x-amz-server-side-encryption-customer-key-md5":
                   base64.b64encode(hashlib.md5(b"another key").digest()).decode()}
    signed = Signed("PUT", url, headers, hashlib.sha256(body).hexdigest())
    resp = requests.put(url, data=body, headers=signed.headers, timeout=30)
    assert resp.status_code == 403
    assert resp.headers["Content-Type"].startswith("application/xml")
    error = ET.fromstring(resp.content)
    assert (error.tag, error.findtext("Code"), error.findtext("Message")) == (
        "Error", "AccessDenied", "Access Denied")
    assert_absent(s3, bucket, "raw")


def test_allowed_writes_work_and_are_encrypted_at_rest(s3, bucket, stored):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    data = marked(100_000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    kms = s3.put_object(Bucket=bucket, Key="kms", Body=data, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="test-key")
    assert kms["ServerSideEncryption"] == "aws:kms"
    for key in ("k", "kms"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        at_rest = stored.read(bucket, key).body
        assert at_rest != data and MARKER not in at_rest
    assert MARKER not in stored.all_bytes()


def test_sse_c_objects_written_before_stay_readable(s3, bucket, stored):
    sse = customer_key()
    data = marked(50_000)
    s3.put_object(Bucket=bucket, Key="old", Body=data, **sse)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    assert s3.get_object(Bucket=bucket, Key="old", **sse)["Body"].read() == data
    copy_source = {"CopySourceSSECustomerAlgorithm": "AES256",
                   "CopySourceSSECustomerKey": sse["SSECustomerKey"]}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "old"},
                   **copy_source)
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == data
    assert MARKER not in stored.all_bytes()


def test_unblocking_allows_sse_c_again(s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
    sse = customer_key()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"x", **sse)
    assert_denied(exc)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": AES256,
        "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]})
    s3.put_object(Bucket=bucket, Key="c", Body=b"x", **sse)
    assert s3.get_object(Bucket=bucket, Key="c", **sse)["Body"].read() == b"x"


def test_parts_of_an_sse_c_upload_refused_once_blocked(s3, bucket):
    sse = customer_key()
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m", **sse)["UploadId"]
    try:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BLOCK_SSE_C)
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"x",
                           **sse)
        assert_denied(exc)
        assert s3.list_parts(Bucket=bucket, Key="m", UploadId=upload).get("Parts", []) == []
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload)
