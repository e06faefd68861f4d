"""PutBucketEncryption / GetBucketEncryption / DeleteBucketEncryption through the real server."""
from __future__ import annotations

import base64
import hashlib
import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from support.clients import make_client
from support.raw_s3 import Signed
from test_buckets import code, status

SEEDS = "/work/shared/seeds"
# The three request bodies of the seed pages, verbatim (../shared/seeds/).
YANDEX_BODY = b"""<ServerSideEncryptionConfiguration>
   <Rule>
      <ApplyServerSideEncryptionByDefault>
         <KMSMasterKeyID>{key}</KMSMasterKeyID>
         <SSEAlgorithm>aws:kms</SSEAlgorithm>
      </ApplyServerSideEncryptionByDefault>
   </Rule>
</ServerSideEncryptionConfiguration>"""
AWS_SSE_S3_BODY = (b'<ServerSideEncryptionConfiguration xmlns=""> <Rule> '
                   b'<ApplyServerSideEncryptionByDefault> <SSEAlgorithm>AES256</SSEAlgorithm> '
                   b'</ApplyServerSideEncryptionByDefault> </Rule> </ServerSideEncryptionConfiguration>')
AWS_SSE_KMS_BODY = (b'<ServerSideEncryptionConfiguration xmlns=""> <Rule> '
                    b'<ApplyServerSideEncryptionByDefault> '
                    b'<KMSMasterKeyID>arn:aws:kms:us-east-1:1234/5678example</KMSMasterKeyID> '
                    b'</ApplyServerSideEncryptionByDefault> </Rule> </ServerSideEncryptionConfiguration>')


def put_raw(server, bucket: str, body: bytes, md5: str | None = "auto") -> requests.Response:
    url = f"{server.endpoint}/{bucket}?encryption"
    headers = {"content-length": str(len(body))}
    if md5 == "auto":
        headers["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    elif md5 is not None:
        headers["content-md5"] = md5
    signed = Signed("PUT", url, headers, hashlib.sha256(body).hexdigest())
    return requests.put(url, data=body, headers=signed.headers, timeout=30)


def error_code(resp: requests.Response) -> str:
    import defusedxml.ElementTree as ET
    return ET.fromstring(resp.content).findtext("Code") or ""


def rules(s3, bucket):
    return s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]


def test_not_configured_is_404(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code(exc) == "ServerSideEncryptionConfigurationNotFoundError" and status(exc) == 404


def test_boto3_round_trip_sse_s3(s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    assert rules(s3, bucket) == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                                  "BucketKeyEnabled": False}]
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code(exc) == "ServerSideEncryptionConfigurationNotFoundError"


@pytest.mark.parametrize("given", ["test-key", "alias/test-key",
                                   "arn:aws:kms:us-east-1:123456789012:key/test-key"])
def test_kms_key_forms_are_normalised(s3, bucket, given):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": given},
        "BucketKeyEnabled": True}]})
    assert rules(s3, bucket) == [{"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}, "BucketKeyEnabled": True}]


def test_kms_without_key_id(s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms"}


def test_seed_yandex_body(server, s3, bucket):
    resp = put_raw(server, bucket, YANDEX_BODY.replace(b"{key}", b"test-key"), md5=None)
    assert resp.status_code == 200, resp.text
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}


def test_seed_aws_sse_s3_body(server, s3, bucket):
    assert put_raw(server, bucket, AWS_SSE_S3_BODY).status_code == 200
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_seed_aws_sse_kms_body(server, s3, bucket):
    # Verbatim, the page's ARN ("…:1234/5678example") names no key: refused as S3 refuses it.
    resp = put_raw(server, bucket, AWS_SSE_KMS_BODY)
    assert resp.status_code == 400 and error_code(resp) == "KMS.NotFoundException"
    # The same body with the ARN of a key that exists sets SSE-KMS (no SSEAlgorithm needed).
    body = AWS_SSE_KMS_BODY.replace(b"arn:aws:kms:us-east-1:1234/5678example",
                                    b"arn:aws:kms:us-east-1:123456789012:key/test-key")
    assert put_raw(server, bucket, body).status_code == 200
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}


@pytest.mark.parametrize("body,expected", [
    pytest.param(b"<ServerSideEncryptionConfiguration><Rule/>", "MalformedXML", id="broken-xml"),
    pytest.param(b"<ServerSideEncryptionConfiguration/>", "MalformedXML", id="no-rule"),
    pytest.param(AWS_SSE_S3_BODY.replace(b"AES256", b"SSE-KMS"), "MalformedXML",
                 id="unknown-algorithm"),
    pytest.param(AWS_SSE_S3_BODY.replace(b"AES256", b"aws:kms:dsse"), "NotImplemented",
                 id="dsse-not-offered"),
    pytest.param(AWS_SSE_S3_BODY.replace(
        b"<SSEAlgorithm>AES256</SSEAlgorithm>",
        b"<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>test-key</KMSMasterKeyID>"),
        "InvalidArgument", id="key-id-with-aes256"),
    pytest.param(YANDEX_BODY.replace(b"{key}", b"no-such-key"), "KMS.NotFoundException",
                 id="unknown-key"),
    pytest.param(AWS_SSE_S3_BODY.replace(b"<Rule>", b"<Rule><Rule>", 1), "MalformedXML",
                 id="nested-rule"),
])
def test_errors(server, s3, bucket, body, expected):
    resp = put_raw(server, bucket, body)
    assert resp.status_code in (400, 501)
    assert error_code(resp) == expected
    with pytest.raises(ClientError):
        s3.get_bucket_encryption(Bucket=bucket)


def test_invalid_argument_names_the_argument(server, bucket):
    resp = put_raw(server, bucket, AWS_SSE_S3_BODY.replace(
        b"<SSEAlgorithm>AES256</SSEAlgorithm>",
        b"<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"))
    assert b"<ArgumentName>ApplyServerSideEncryptionByDefault</ArgumentName>" in resp.content


def test_content_md5(server, bucket):
    resp = put_raw(server, bucket, AWS_SSE_S3_BODY, md5="bm90LWEtbWQ1")
    assert resp.status_code == 400 and error_code(resp) == "InvalidDigest"
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    resp = put_raw(server, bucket, AWS_SSE_S3_BODY, md5=wrong)
    assert resp.status_code == 400 and error_code(resp) == "BadDigest"


def test_no_such_bucket(s3):
    name = "missing-" + uuid.uuid4().hex[:8]
    for call in (lambda: s3.get_bucket_encryption(Bucket=name),
                 lambda: s3.delete_bucket_encryption(Bucket=name),
                 lambda: s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                     "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "NoSuchBucket"


def test_access_denied(server, bucket):
    resp = requests.get(f"{server.endpoint}/{bucket}?encryption", timeout=10)
    assert resp.status_code == 403 and error_code(resp) == "AccessDenied"
    bad = make_client(server.endpoint, secret="wrong-secret-000000")
    with pytest.raises(ClientError) as exc:
        bad.get_bucket_encryption(Bucket=bucket)
    assert code(exc) == "SignatureDoesNotMatch"


def test_internal_bucket_is_invisible_and_unaddressable(s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "encproxy-internal" not in names and bucket in names
    for call in (lambda: s3.list_objects_v2(Bucket="encproxy-internal"),
                 lambda: s3.get_object(Bucket="encproxy-internal", Key=f"bucket-encryption/{bucket}"),
                 lambda: s3.put_object(Bucket="encproxy-internal",
                                       Key=f"bucket-encryption/{bucket}", Body=b"{}"),
                 lambda: s3.delete_bucket(Bucket="encproxy-internal")):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "AccessDenied"
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def billion_laughs() -> bytes:
    entities = [b'<!ENTITY lol0 "lol">'] + [
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10)]
    return (b'<?xml version="1.0"?><!DOCTYPE lolz [' + b"".join(entities) + b"]>"
            b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
            b"<SSEAlgorithm>&lol9;</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
            b"</ServerSideEncryptionConfiguration>")


@pytest.mark.parametrize("attack", [
    pytest.param(billion_laughs(), id="billion-laughs"),
    pytest.param(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
                 b'<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>'
                 b'<SSEAlgorithm>&ext;</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>'
                 b'</ServerSideEncryptionConfiguration>', id="external-entity"),
    pytest.param(b"<a>" * 5000 + b"</a>" * 5000, id="deep-nesting-too-big"),
])
def test_hostile_xml_refused_fast(server, bucket, attack):
    started = time.monotonic()
    resp = put_raw(server, bucket, attack)
    assert time.monotonic() - started < 5
    assert resp.status_code == 400
    assert error_code(resp) in ("MalformedXML", "MaxMessageLengthExceeded")
    assert b"root:" not in resp.content


def test_delete_and_recreate_bucket_forgets_configuration(s3):
    name = "recreate-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.delete_bucket(Bucket=name)  # not blocked by the configuration
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=name)
    assert code(exc) == "ServerSideEncryptionConfigurationNotFoundError"
    s3.delete_bucket(Bucket=name)
