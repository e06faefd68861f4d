"""Authentication and body verification through the real server."""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timedelta, timezone

import defusedxml.ElementTree as ET
import pytest
import requests
from botocore.exceptions import ClientError

from support.clients import make_client
from support.raw_s3 import Signed, crc32_b64, put_aws_chunked
from test_buckets import code


def error_of(resp: requests.Response) -> str:
    assert resp.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(resp.content)
    assert root.tag == "Error"
    assert root.findtext("RequestId") == resp.headers["x-amz-request-id"]
    return root.findtext("Code") or ""


def test_anonymous_is_denied_by_a_private_bucket(server, bucket, quirks):
    """No credentials, a private bucket: the ACLs refuse (the file store's, or the S3
    backend's, which gets the request unsigned)."""
    with quirks.breaks("anonymous-acls-ignored"):
        resp = requests.get(f"{server.endpoint}/{bucket}", timeout=10)
        assert resp.status_code == 403 and error_of(resp) == "AccessDenied"
        resp = requests.put(f"{server.endpoint}/{bucket}/k", data=b"x", timeout=10)
        assert resp.status_code == 403 and error_of(resp) == "AccessDenied"


def test_wrong_secret_and_unknown_key(server, s3, bucket):
    bad = make_client(server.endpoint, secret="not-the-secret-at-all")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert code(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert code(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    url = f"{server.endpoint}/{bucket}"
    signed = Signed("GET", url, {}, hashlib.sha256(b"").hexdigest(), access_key="NOSUCHKEY1")
    resp = requests.get(url, headers=signed.headers, timeout=10)
    assert resp.status_code == 403 and error_of(resp) == "InvalidAccessKeyId"


def test_request_time_too_skewed(server, bucket):
    url = f"{server.endpoint}/{bucket}"
    old = datetime.now(timezone.utc) - timedelta(minutes=16)
    signed = Signed("GET", url, {}, hashlib.sha256(b"").hexdigest(), now=old)
    resp = requests.get(url, headers=signed.headers, timeout=10)
    assert resp.status_code == 403 and error_of(resp) == "RequestTimeTooSkewed"
    recent = datetime.now(timezone.utc) - timedelta(minutes=14)
    signed = Signed("GET", url, {}, hashlib.sha256(b"").hexdigest(), now=recent)
    assert requests.get(url, headers=signed.headers, timeout=10).status_code == 200


def test_malformed_authorization(server, bucket):
    url = f"{server.endpoint}/{bucket}"
    resp = requests.get(url, headers={"Authorization": "AWS4-HMAC-SHA256 garbage",
                                      "x-amz-date": "20250101T000000Z"}, timeout=10)
    assert resp.status_code == 400 and error_of(resp) == "AuthorizationHeaderMalformed"


def test_payload_hash_mismatch(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/h"
    signed = Signed("PUT", url, {"content-length": "5"}, hashlib.sha256(b"other").hexdigest())
    resp = requests.put(url, data=b"hello", headers=signed.headers, timeout=10)
    assert resp.status_code == 400 and error_of(resp) == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="h")
    signed = Signed("PUT", url, {"content-length": "5"}, "UNSIGNED-PAYLOAD")
    assert requests.put(url, data=b"hello", headers=signed.headers, timeout=10).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="h")["Body"].read() == b"hello"


def test_bad_checksum_header(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/ck"
    signed = Signed("PUT", url, {"content-length": "5",
                                 "x-amz-checksum-crc32": crc32_b64(b"HELLO")},
                    hashlib.sha256(b"hello").hexdigest())
    resp = requests.put(url, data=b"hello", headers=signed.headers, timeout=10)
    assert resp.status_code == 400 and error_of(resp) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ck")


def test_presigned_get_and_put(server, bucket):
    s3 = make_client(server.endpoint, signature_version="s3v4")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p s"},
                                        ExpiresIn=300)
    assert requests.put(put_url, data=b"presigned body", timeout=10).status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p s"},
                                        ExpiresIn=300)
    resp = requests.get(get_url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"presigned body"
    tampered = get_url.replace("p%20s", "p%20t")
    resp = requests.get(tampered, timeout=10)
    assert resp.status_code == 403 and error_of(resp) == "SignatureDoesNotMatch"


def test_sigv2_presign_is_accepted(server, s3, bucket):
    """boto3's default presign is SigV2, accepted unless [auth] allow_sigv2 = false
    (tests/api/test_sigv2_and_post.py has the rest)."""
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert "AWSAccessKeyId=" in url
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 404 and error_of(resp) == "NoSuchKey"


def test_expired_presign(server, bucket):
    s3 = make_client(server.endpoint, signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"},
                                    ExpiresIn=1)
    time.sleep(2.1)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 403 and error_of(resp) == "AccessDenied"
    assert b"expired" in resp.content


FORMS = ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
         "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size", [0, 1, 65536, 3 * 65536 + 5])
def test_aws_chunked_forms(server, s3, bucket, form, size):
    data = os.urandom(size)
    resp = put_aws_chunked(f"{server.endpoint}/{bucket}/chunked", data, form)
    assert resp.status_code == 200, resp.text
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    assert got["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    assert "ContentEncoding" not in got


@pytest.mark.parametrize("form,tamper,expected", [
    pytest.param(FORMS[0], "data", "SignatureDoesNotMatch", id="signed-data"),
    pytest.param(FORMS[0], "chunk-sig", "SignatureDoesNotMatch", id="signed-chunk-sig"),
    pytest.param(FORMS[1], "data", "BadDigest", id="unsigned-trailer-data"),
    pytest.param(FORMS[1], "checksum", "BadDigest", id="unsigned-trailer-checksum"),
    pytest.param(FORMS[2], "data", "SignatureDoesNotMatch", id="signed-trailer-data"),
    pytest.param(FORMS[2], "trailer-sig", "SignatureDoesNotMatch", id="signed-trailer-sig"),
    pytest.param(FORMS[2], "checksum", "BadDigest", id="signed-trailer-checksum"),
])
def test_aws_chunked_tampering(server, s3, bucket, form, tamper, expected):
    resp = put_aws_chunked(f"{server.endpoint}/{bucket}/tampered", os.urandom(200_000), form,
                           tamper=tamper)
    assert resp.status_code in (400, 403)
    assert error_of(resp) == expected
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
