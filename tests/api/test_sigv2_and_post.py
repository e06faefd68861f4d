"""Signature Version 2 and POST Object through the real server (issue 15).

boto3 with its default configuration presigns URLs and POST policies with SigV2; both
must work, land encrypted where the bucket encrypts (checked in the backend itself) and
read back byte-identical. Policy violations get AWS's codes and store nothing. A SigV2
header-signed client (botocore ``HmacV1Auth``) works, and ``[auth] allow_sigv2 = false``
refuses SigV2 as a SigV4-only AWS region does. Run with ``-k "file or moto"``.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import defusedxml.ElementTree as ET
import pytest
import requests
from botocore.exceptions import ClientError

from support.backends import Backend, Stored
from support.clients import make_client
from support.server import RunningServer, start_server

MARKER = b"SIGV2-POST-PLAINTEXT-MARKER"
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(48)
    return (unit * (size // len(unit) + 1))[:size]


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def error_of(resp: requests.Response) -> str:
    root = ET.fromstring(resp.content)
    assert root.tag == "Error", resp.content
    return root.findtext("Code") or ""


@pytest.fixture
def encrypted_bucket(s3, bucket: str) -> str:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    return bucket


@pytest.fixture(scope="module")
def default_boto(server: RunningServer):
    """boto3 exactly as most Python code builds it: no signature_version."""
    return make_client(server.endpoint)


def post_form(url: str, fields: dict[str, str], data: bytes, filename: str = "file.bin",
              extra: list[tuple[str, str]] | None = None) -> requests.Response:
    """What a browser sends: the fields in order, the file last (requests' encoder)."""
    files = [*[(name, (None, value)) for name, value in fields.items()], *(extra or []),
             ("file", (filename, data, "application/octet-stream"))]
    return requests.post(url, files=files, timeout=30)


# -- presigned URLs ---------------------------------------------------------------------------

def test_default_presigned_put_and_get(default_boto, stored: Stored, encrypted_bucket: str):
    data = marked(150_000)
    put_url = default_boto.generate_presigned_url(
        "put_object", Params={"Bucket": encrypted_bucket, "Key": "pre signed"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in put_url and "X-Amz-Algorithm" not in put_url
    resp = requests.put(put_url, data=data, timeout=30)
    assert resp.status_code == 200, resp.content
    assert resp.headers["ETag"] == md5_etag(data)
    held = stored.read(encrypted_bucket, "pre signed")
    assert "encproxy" in held.user_metadata and MARKER not in held.body
    get_url = default_boto.generate_presigned_url(
        "get_object", Params={"Bucket": encrypted_bucket, "Key": "pre signed"}, ExpiresIn=300)
    resp = requests.get(get_url, timeout=30)
    assert resp.status_code == 200 and resp.content == data
    tampered = get_url.replace("pre%20signed", "pre%20signer")
    resp = requests.get(tampered, timeout=30)
    assert resp.status_code == 403 and error_of(resp) == "SignatureDoesNotMatch"


def test_presigned_put_headers_from_the_url(default_boto, s3, bucket: str):
    url = default_boto.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "meta", "Metadata": {"color": "blue"},
        "ServerSideEncryption": "AES256"})
    resp = requests.put(url, data=b"x", timeout=30)
    assert resp.status_code == 200, resp.content
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["Metadata"] == {"color": "blue"} and head["ServerSideEncryption"] == "AES256"


def test_expired_sigv2_url(default_boto, bucket: str):
    url = default_boto.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                    "Key": "k"}, ExpiresIn=-10)
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 403 and error_of(resp) == "AccessDenied"
    assert b"Request has expired" in resp.content


def test_hmac_v1_header_signed_client(server: RunningServer, stored: Stored,
                                      encrypted_bucket: str):
    v2 = make_client(server.endpoint, signature_version="s3")   # botocore's HmacV1Auth
    data = marked(70_000)
    v2.put_object(Bucket=encrypted_bucket, Key="v2", Body=data, Metadata={"a": "b"})
    assert MARKER not in stored.read(encrypted_bucket, "v2").body
    got = v2.get_object(Bucket=encrypted_bucket, Key="v2")
    assert got["Body"].read() == data and got["Metadata"] == {"a": "b"}
    keys = [o["Key"] for o in v2.list_objects(Bucket=encrypted_bucket)["Contents"]]
    assert keys == ["v2"]
    v2.delete_object(Bucket=encrypted_bucket, Key="v2")


def test_hmac_v1_garbage_content_md5(server: RunningServer, bucket: str):
    """ceph/s3-tests test_object_create_bad_md5_invalid_garbage_aws2."""
    v2 = make_client(server.endpoint, signature_version="s3")
    v2.meta.events.register("before-call.s3.PutObject", lambda params, **_: params[
        "headers"].update({"Content-MD5": "AWS HAHAHA"}))
    with pytest.raises(ClientError) as caught:
        v2.put_object(Bucket=bucket, Key="bad", Body=b"body")
    assert caught.value.response["Error"]["Code"] == "InvalidDigest"


# -- POST Object --------------------------------------------------------------------------

@pytest.mark.parametrize("signature_version", [None, "s3v4"], ids=["sigv2", "sigv4"])
def test_presigned_post_lands_encrypted(server: RunningServer, s3, stored: Stored,
                                        encrypted_bucket: str, signature_version: str | None):
    client = make_client(server.endpoint, signature_version=signature_version) \
        if signature_version else make_client(server.endpoint)
    post = client.generate_presigned_post(encrypted_bucket, "uploads/${filename}",
                                          Conditions=[["content-length-range", 1, 1 << 20]])
    data = marked(300_000)
    resp = post_form(post["url"], post["fields"], data, filename="photo.jpg")
    assert resp.status_code == 204, resp.content
    assert resp.headers["ETag"] == md5_etag(data)
    assert resp.headers["Location"].endswith(f"/{encrypted_bucket}/uploads/photo.jpg")
    assert resp.headers["x-amz-server-side-encryption"] == "AES256"
    held = stored.read(encrypted_bucket, "uploads/photo.jpg")
    assert "encproxy" in held.user_metadata and MARKER not in held.body
    got = s3.get_object(Bucket=encrypted_bucket, Key="uploads/photo.jpg")
    assert got["Body"].read() == data and got["ETag"] == md5_etag(data)


def test_post_with_status_201_and_form_encryption(server: RunningServer, s3, stored: Stored,
                                                  bucket: str):
    client = make_client(server.endpoint)
    fields = {"success_action_status": "201", "x-amz-server-side-encryption": "AES256",
              "x-amz-meta-origin": "browser"}
    post = client.generate_presigned_post(bucket, "k201", Fields=fields,
                                          Conditions=[{n: v} for n, v in fields.items()])
    data = marked(5000)
    resp = post_form(post["url"], post["fields"], data)
    assert resp.status_code == 201, resp.content
    root = ET.fromstring(resp.content)
    assert (root.tag, root.findtext("Key"), root.findtext("Bucket")) == ("PostResponse", "k201",
                                                                         bucket)
    assert root.findtext("ETag") == md5_etag(data)
    assert MARKER not in stored.read(bucket, "k201").body
    head = s3.head_object(Bucket=bucket, Key="k201")
    assert head["Metadata"] == {"origin": "browser"} and head["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize(("conditions", "extra", "status", "code"), [
    pytest.param([["starts-with", "$key", "elsewhere/"]], None, 403, "AccessDenied",
                 id="key-condition"),
    pytest.param([["content-length-range", 0, 100]], None, 400, "EntityTooLarge",
                 id="too-large"),
    pytest.param([["content-length-range", 1 << 20, 2 << 20]], None, 400, "EntityTooSmall",
                 id="too-small"),
    pytest.param(None, [("x-amz-meta-unsigned", (None, "1"))], 403, "AccessDenied",
                 id="field-not-in-policy"),
])
def test_policy_violations(default_boto, s3, encrypted_bucket: str, conditions, extra,
                           status: int, code: str):
    post = default_boto.generate_presigned_post(encrypted_bucket, "v", Conditions=conditions)
    resp = post_form(post["url"], post["fields"], marked(5000), extra=extra)
    assert resp.status_code == status and error_of(resp) == code
    with pytest.raises(ClientError):
        s3.head_object(Bucket=encrypted_bucket, Key="v")


def test_expired_and_forged_policies(default_boto, bucket: str):
    post = default_boto.generate_presigned_post(bucket, "x", ExpiresIn=-10)
    resp = post_form(post["url"], post["fields"], b"data")
    assert resp.status_code == 403 and error_of(resp) == "AccessDenied"
    assert b"Policy expired" in resp.content
    post = default_boto.generate_presigned_post(bucket, "x")
    fields = dict(post["fields"], signature=post["fields"]["signature"][::-1])
    resp = post_form(post["url"], fields, b"data")
    assert resp.status_code == 403 and error_of(resp) == "SignatureDoesNotMatch"
    resp = requests.post(post["url"], data={"key": "x"}, timeout=30)   # not multipart
    assert resp.status_code == 412 and error_of(resp) == "PreconditionFailed"


# -- [auth] allow_sigv2 = false ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sigv4_only(backend: Backend, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("sigv4-only"),
                           extra="[auth]\nallow_sigv2 = false\n", env=backend.server_env())
    yield running
    running.stop()


def test_sigv2_refused_when_disabled(sigv4_only: RunningServer):
    v4 = make_client(sigv4_only.endpoint, signature_version="s3v4")
    bucket = "sigv4-only-" + uuid.uuid4().hex[:8]
    v4.create_bucket(Bucket=bucket)
    try:
        v4.put_object(Bucket=bucket, Key="k", Body=b"v4 works")
        default = make_client(sigv4_only.endpoint)
        url = default.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        resp = requests.get(url, timeout=30)
        assert resp.status_code == 400 and error_of(resp) == "InvalidRequest"
        assert b"Please use AWS4-HMAC-SHA256" in resp.content
        post = default.generate_presigned_post(bucket, "p")
        resp = post_form(post["url"], post["fields"], b"data")
        assert resp.status_code == 400 and error_of(resp) == "InvalidRequest"
        with pytest.raises(ClientError) as caught:
            make_client(sigv4_only.endpoint, signature_version="s3").get_object(
                Bucket=bucket, Key="k")
        assert caught.value.response["Error"]["Code"] == "InvalidRequest"
        url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        assert "X-Amz-Signature=" in urlsplit(url).query
        assert requests.get(url, timeout=30).content == b"v4 works"
    finally:
        v4.delete_object(Bucket=bucket, Key="k")
        v4.delete_bucket(Bucket=bucket)
