"""POST Object and Signature Version 2 in-process, through the real layers:

    werkzeug Client -> Gateway -> AuthenticationMiddleware -> EncryptionMiddleware
        -> (Recorder) -> FileStoreApp -> FileStore(tmp)

Forms are made by boto3's own ``generate_presigned_post`` (SigV2 by default, and SigV4)
and encoded by urllib3 as requests sends them; SigV2 URLs and headers by boto3's
``generate_presigned_url`` and botocore's ``HmacV1Auth``. What is checked is what a
client sees (status, S3 error code, ETag, Location, SSE headers, bytes read back) and
what the backend got (a PutObject, never a POST; ciphertext where the bucket encrypts;
nothing at all when the form is refused).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from encryption_testkit import (
    BUCKET,
    CUSTOMER_KEY,
    KMS_KEY_ID,
    SSE,
    Stack,
    assert_error,
    assert_not_plaintext,
    build_stack,
    customer_headers,
    get,
    head,
    md5_etag,
    parse_xml,
    payload,
)
from urllib3 import encode_multipart_formdata
from werkzeug.test import Client, TestResponse

from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi.auth.middleware import AuthenticationMiddleware
from encproxy.wsgi.edge.gateway import Gateway

ACCESS_KEY = "AKIDPOSTLAYER"
SECRET = "post-layer-secret"
HOST = "localhost"
BASE = f"http://{HOST}"


def auth_client(stack: Stack, allow_sigv2: bool = True) -> Client:
    auth = AuthenticationMiddleware(stack.middleware, {ACCESS_KEY: SECRET}.get,
                                    region="us-east-1", allow_sigv2=allow_sigv2)
    return Client(Gateway(auth, (HOST,)))


def boto(signature_version: str | None = None) -> Any:
    config = Config(signature_version=signature_version, s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=BASE, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                        config=config)


def presigned_post(key: str, version: str | None = None, fields: dict[str, str] | None = None,
                   conditions: list[Any] | None = None) -> list[tuple[str, Any]]:
    """boto3's form fields for ``key``, in its order (the file comes last, added later)."""
    post = boto(version).generate_presigned_post(BUCKET, key, Fields=fields,
                                                 Conditions=conditions)
    return list(post["fields"].items())


def send_form(client: Client, fields: list[tuple[str, Any]], data: bytes,
              filename: str = "upload.bin", after: list[tuple[str, Any]] | None = None
              ) -> TestResponse:
    body, content_type = encode_multipart_formdata(
        [*fields, ("file", (filename, data, "application/octet-stream")), *(after or [])])
    return client.post("/" + BUCKET, data=body, content_type=content_type, base_url=BASE)


def stored(stack: Stack, key: str) -> bytes:
    return stack.stored(BUCKET, key)[1]


def backend_methods(stack: Stack) -> list[str]:
    return [r.method for r in stack.recorder.requests if r.path.startswith("/" + BUCKET)]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


# -- POST Object ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [None, "s3v4"], ids=["sigv2-policy", "sigv4-policy"])
@pytest.mark.parametrize("encrypting", [True, False], ids=["encrypting-bucket", "plain-bucket"])
def test_presigned_post_is_stored_as_a_put(stack: Stack, version: str | None,
                                           encrypting: bool) -> None:
    if encrypting:
        stack.configs.put(BUCKET, BucketEncryption("AES256"))
    data = payload(300_000)
    resp = send_form(auth_client(stack), presigned_post("up/${filename}", version), data,
                     filename="photo.jpg")
    assert resp.status_code == 204, resp.get_data()
    assert resp.headers["ETag"] == md5_etag(data)
    assert resp.headers["Location"] == f"{BASE}/{BUCKET}/up/photo.jpg"
    assert (resp.headers.get(SSE) == "AES256") is encrypting
    if encrypting:
        assert_not_plaintext(stored(stack, "up/photo.jpg"), data)
    else:
        assert stored(stack, "up/photo.jpg") == data
    assert "POST" not in backend_methods(stack) and "PUT" in backend_methods(stack)
    got = get(stack.client, "up/photo.jpg")
    assert got.status_code == 200 and got.get_data() == data
    assert got.headers["ETag"] == md5_etag(data)
    assert got.headers["Content-Type"] == "application/octet-stream"  # the file part's


def test_ceph_s3_tests_form(stack: Stack) -> None:
    """ceph/s3-tests' own form (test_post_object_authenticated_request): its SigV2 policy
    and signature computed by hand, every field sent by requests as a file part."""
    policy = base64.b64encode(json.dumps({
        "expiration": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [{"bucket": BUCKET}, ["starts-with", "$key", "foo"], {"acl": "private"},
                       ["starts-with", "$Content-Type", "text/plain"],
                       ["content-length-range", 0, 1024]]}).encode())
    signature = base64.b64encode(hmac.new(SECRET.encode(), policy, hashlib.sha1).digest())
    files = OrderedDict([("key", "foo.txt"), ("AWSAccessKeyId", ACCESS_KEY), ("acl", "private"),
                         ("signature", signature), ("policy", policy),
                         ("Content-Type", "text/plain"), ("file", "bar")])
    prepared = requests.Request("POST", f"{BASE}/{BUCKET}", files=files).prepare()
    assert isinstance(prepared.body, bytes)
    resp = auth_client(stack).post("/" + BUCKET, data=prepared.body, base_url=BASE,
                                   content_type=prepared.headers["Content-Type"])
    assert resp.status_code == 204, resp.get_data()
    got = get(stack.client, "foo.txt")
    assert got.get_data() == b"bar" and got.headers["Content-Type"] == "text/plain"


def test_form_fields_become_the_objects_headers(stack: Stack) -> None:
    fields = {"x-amz-server-side-encryption": "aws:kms",
              "x-amz-server-side-encryption-aws-kms-key-id": KMS_KEY_ID,
              "x-amz-meta-note": "ünïcødé", "Content-Type": "text/plain",
              "Cache-Control": "no-cache"}
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    data = b"hello form"
    resp = send_form(auth_client(stack), presigned_post("k", "s3v4", fields, conditions), data)
    assert resp.status_code == 204, resp.get_data()
    assert (resp.headers[SSE], resp.headers[SSE + "-aws-kms-key-id"]) == ("aws:kms", KMS_KEY_ID)
    assert_not_plaintext(stored(stack, "k"), data)
    h = head(stack.client, "k")
    assert h.headers[SSE] == "aws:kms" and h.headers["Cache-Control"] == "no-cache"
    assert h.headers["Content-Type"] == "text/plain"
    # Non-ASCII metadata comes back RFC 2047-encoded, as AWS sends it (s3/metadata.py).
    sent = h.headers["x-amz-meta-note"]
    assert sent.startswith("=?UTF-8?B?") and sent.endswith("?=")
    assert base64.b64decode(sent[10:-2]).decode().encode("latin-1").decode() == "ünïcødé"


def test_sse_c_fields(stack: Stack) -> None:
    """SSE-C named by the form is applied as a PUT's headers would be, and refused where the
    bucket blocks SSE-C (BlockedEncryptionTypes), as AWS answers: 403 AccessDenied."""
    fields = dict(customer_headers(CUSTOMER_KEY))
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    data = b"customer key"
    resp = send_form(auth_client(stack), presigned_post("c", None, fields, conditions), data)
    assert resp.status_code == 204, resp.get_data()
    assert_not_plaintext(stored(stack, "c"), data)
    assert get(stack.client, "c", customer_headers(CUSTOMER_KEY)).get_data() == data
    assert_error(get(stack.client, "c"), 400, "InvalidRequest")
    stack.configs.put(BUCKET, BucketEncryption("AES256", blocked_encryption_types=("SSE-C",)))
    resp = send_form(auth_client(stack), presigned_post("d", None, fields, conditions), data)
    assert_error(resp, 403, "AccessDenied")
    assert_error(head(stack.client, "d"), 404, "NoSuchKey")


def test_success_action_status_and_redirect(stack: Stack) -> None:
    client = auth_client(stack)
    data = b"status"
    for status in ("200", "201", "404"):
        fields = {"success_action_status": status}
        resp = send_form(client, presigned_post("s", None, fields, [fields]), data)
        assert resp.status_code == {"404": 204}.get(status, int(status))
        if status == "201":
            root = parse_xml(resp.get_data())
            assert root.tag == "PostResponse" and b"xmlns" not in resp.get_data()
            assert (root.findtext("Bucket"), root.findtext("Key"), root.findtext("ETag"),
                    root.findtext("Location")) == (BUCKET, "s", md5_etag(data), f"{BASE}/data/s")
        else:
            assert resp.get_data() == b""
    fields = {"success_action_redirect": "https://example.com/done?x=1"}
    resp = send_form(client, presigned_post("r", None, fields, [fields]), data)
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert (target.netloc, target.path) == ("example.com", "/done")
    assert parse_qs(target.query) == {"x": ["1"], "bucket": [BUCKET], "key": ["r"],
                                      "etag": [md5_etag(data)]}


def test_checksum_field(stack: Stack) -> None:
    client = auth_client(stack)
    data = b"x" * 70_000
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    resp = send_form(client, [*presigned_post("c"), ("x-amz-checksum-sha256", good)], data)
    assert resp.status_code == 204 and resp.headers["x-amz-checksum-sha256"] == good
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = send_form(client, [*presigned_post("d"), ("x-amz-checksum-sha256", other)], data)
    assert_error(resp, 400, "BadDigest")
    resp = send_form(client, [*presigned_post("e"), ("x-amz-checksum-sha256", "sailorjerry")],
                     data)
    assert_error(resp, 400, "InvalidRequest")
    for key in ("d", "e"):
        assert_error(head(stack.client, key), 404, "NoSuchKey")


REFUSALS = [
    pytest.param(lambda: presigned_post("other/k", None, None,
                                        [["starts-with", "$key", "up/"]]),
                 None, 403, "AccessDenied", id="policy-condition"),
    pytest.param(lambda: [*presigned_post("k"), ("x-amz-meta-extra", "1")],
                 None, 403, "AccessDenied", id="field-without-condition"),
    pytest.param(lambda: presigned_post("k", None, None, [["content-length-range", 0, 10]]),
                 None, 400, "EntityTooLarge", id="content-length-range"),
    pytest.param(lambda: [(n, v[::-1] if n == "signature" else v) for n, v in
                          presigned_post("k")], None, 403, "SignatureDoesNotMatch",
                 id="bad-signature"),
    pytest.param(lambda: [("key", "k")], None, 403, "AccessDenied", id="anonymous"),
    pytest.param(lambda: [(n, v) for n, v in presigned_post("k") if n != "key"], None, 400,
                 "InvalidArgument", id="no-key"),
    pytest.param(lambda: presigned_post("k"), [("after", "x")], 400, "MalformedPOSTRequest",
                 id="field-after-the-file"),
]


@pytest.mark.parametrize(("fields", "after", "status", "code"), REFUSALS)
def test_refused_forms_store_nothing(stack: Stack, fields: Any, after: Any, status: int,
                                     code: str) -> None:
    resp = send_form(auth_client(stack), fields(), payload(100_000), after=after)
    assert_error(resp, status, code)
    for key in ("k", "other/k"):
        assert_error(head(stack.client, key), 404, "NoSuchKey")


def test_post_must_be_a_form(stack: Stack) -> None:
    resp = auth_client(stack).post("/" + BUCKET, data=b"key=k", base_url=BASE,
                                   content_type="application/x-www-form-urlencoded")
    root = assert_error(resp, 412, "PreconditionFailed")
    assert root is not None and "multipart/form-data" in (root.findtext("Condition") or "")


def test_sigv2_policies_refused_when_sigv2_is_off(stack: Stack) -> None:
    client = auth_client(stack, allow_sigv2=False)
    resp = send_form(client, presigned_post("v2"), b"data")
    root = assert_error(resp, 400, "InvalidRequest")
    assert root is not None and "AWS4-HMAC-SHA256" in (root.findtext("Message") or "")
    assert send_form(client, presigned_post("v4", "s3v4"), b"data").status_code == 204


def test_post_without_the_authentication_layer(stack: Stack) -> None:
    """The encryption layer on its own reads the form itself (authorizing it is the job of
    the layer above, absent here), and still stores a PutObject, encrypted."""
    stack.configs.put(BUCKET, BucketEncryption("AES256"))
    data = payload(1000)
    resp = send_form(stack.client, [("key", "alone")], data)
    assert resp.status_code == 204, resp.get_data()
    assert_not_plaintext(stored(stack, "alone"), data)
    assert get(stack.client, "alone").get_data() == data


# -- Signature Version 2 -------------------------------------------------------------------------

def send_url(client: Client, method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> TestResponse:
    parts = urlsplit(url)
    return client.open(parts.path, method=method, query_string=parts.query, data=data,
                       headers=headers or {}, base_url=BASE)


def test_boto3_default_presigned_urls(stack: Stack) -> None:
    stack.configs.put(BUCKET, BucketEncryption("AES256"))
    client, s3 = auth_client(stack), boto()
    data = payload(200_000)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "p"})
    assert "AWSAccessKeyId=" in put_url   # boto3's default presigner is SigV2
    assert send_url(client, "PUT", put_url, data).status_code == 200
    assert_not_plaintext(stored(stack, "p"), data)
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "p"})
    got = send_url(client, "GET", get_url)
    assert got.status_code == 200 and got.get_data() == data
    assert send_url(client, "GET", get_url.replace("/p?", "/q?")).status_code == 403


def test_presigned_headers_in_the_query_are_applied(stack: Stack) -> None:
    """boto3 moves a presigned PUT's headers into its SigV2 URL: they are applied as the
    headers they stand for (never ignored, never left in the query)."""
    s3, client = boto(), auth_client(stack)
    url = s3.generate_presigned_url("put_object", Params={
        "Bucket": BUCKET, "Key": "m", "Metadata": {"a": "b"}, "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KMS_KEY_ID})
    assert "x-amz-meta-a=b" in url
    resp = send_url(client, "PUT", url, b"query headers")
    assert resp.status_code == 200, resp.get_data()
    h = head(stack.client, "m")
    assert (h.headers["x-amz-meta-a"], h.headers[SSE]) == ("b", "aws:kms")
    assert_not_plaintext(stored(stack, "m"), b"query headers")


def test_hmac_v1_header_signature(stack: Stack) -> None:
    client = auth_client(stack)
    data = b"signed with SigV2"

    def signed_put(key: str, md5: bytes) -> TestResponse:
        request = AWSRequest("PUT", f"{BASE}/{BUCKET}/{key}", headers={
            "Content-MD5": base64.b64encode(md5).decode(), "x-amz-meta-v": "2",
            "Content-Type": "text/plain"})
        botocore.auth.HmacV1Auth(Credentials(ACCESS_KEY, SECRET)).add_auth(request)
        return client.put(f"/{BUCKET}/{key}", data=data, base_url=BASE,
                          headers=dict(request.headers.items()))

    assert signed_put("h", hashlib.md5(data).digest()).status_code == 200
    assert get(stack.client, "h").get_data() == data
    assert_error(signed_put("bad", hashlib.md5(b"other").digest()), 400, "BadDigest")
    assert_error(head(stack.client, "bad"), 404, "NoSuchKey")


def test_sigv2_refused_when_off(stack: Stack) -> None:
    url = boto().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "p"})
    root = assert_error(send_url(auth_client(stack, allow_sigv2=False), "GET", url), 400,
                        "InvalidRequest")
    assert root is not None and "AWS4-HMAC-SHA256" in (root.findtext("Message") or "")
