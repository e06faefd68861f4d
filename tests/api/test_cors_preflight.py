"""CORS through the real server.  Preflights (OPTIONS) are never authenticated, and are
answered as S3 answers them: by the file store's own rules (PutBucketCors), or by an S3
backend's.  On the file store, answers to other requests with ``Origin`` carry the
CORS headers of the rule that matches (docs/BACKENDS.md)."""
from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from support.clients import make_client

ORIGIN = "https://app.example"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
file_store_only = pytest.mark.parametrize("backend", ["file"], indirect=True)


def error_code(resp: requests.Response) -> str | None:
    return ET.fromstring(resp.content).findtext("Code")


def error_message(resp: requests.Response) -> str | None:
    return ET.fromstring(resp.content).findtext("Message")


def object_url(endpoint: str, bucket: str, key: str = "k") -> str:
    return f"{endpoint}/{bucket}/{key}"


def cors_headers(resp: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.headers.items()
            if k.lower().startswith("access-control-")}


def test_preflight_without_origin_is_bad_request(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    resp = requests.options(object_url(server.endpoint, bucket), timeout=10)
    assert resp.status_code == 400
    assert error_code(resp) == "BadRequest"


def test_preflight_of_a_presigned_url_is_not_authenticated(server, s3, bucket):
    """The signature in a presigned URL plays no part: the answer is the preflight's."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    resp = requests.options(url, timeout=10)
    assert resp.status_code == 400
    assert error_code(resp) == "BadRequest"


def test_preflight_is_decided_by_the_backends_rules(backend, server, s3, bucket):
    """Without a CORS configuration a valid preflight is S3's answer for a bucket without
    one.  Through an S3 backend, the backend's rules decide, and the answer is relayed as
    the backend gives it: same status, same CORS headers.  (The file store's own rules:
    the tests below.)"""
    rules = {"CORSRules": [{"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": [ORIGIN],
                            "AllowedHeaders": ["*"], "MaxAgeSeconds": 600}]}
    allowed = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
    if not backend.is_s3:
        resp = requests.options(object_url(server.endpoint, bucket), headers=allowed, timeout=10)
        assert resp.status_code == 403
        assert error_code(resp) == "AccessForbidden"
        assert error_message(resp) == "CORSResponse: CORS is not enabled for this bucket."
        assert cors_headers(resp) == {}
        missing = requests.options(object_url(server.endpoint, "no-such-bucket-cors"),
                                   headers=allowed, timeout=10)
        assert missing.status_code == 404
        assert error_code(missing) == "NoSuchBucket"
        return
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)
    for method, origin in (("GET", ORIGIN), ("PUT", ORIGIN), ("DELETE", ORIGIN),
                           ("GET", "https://other.example")):
        headers = {"Origin": origin, "Access-Control-Request-Method": method}
        via = requests.options(object_url(server.endpoint, bucket), headers=headers, timeout=10)
        direct = requests.options(object_url(backend.endpoint, bucket), headers=headers,
                                  timeout=10)
        assert via.status_code == direct.status_code, (method, origin)
        if method in ("GET", "PUT") and origin == ORIGIN:
            assert via.status_code == 200
            assert cors_headers(via) == cors_headers(direct)
            assert cors_headers(via)["access-control-allow-origin"] == ORIGIN
        elif backend.kind == "ceph":
            assert via.status_code == 403, (method, origin)


def test_invalid_preflights_are_refused_before_any_rule(server, bucket):
    """S3 refuses a preflight without an Origin, or without a method S3 has, with 400,
    whatever the backend would have said."""
    for headers in ({}, {"Origin": ORIGIN}, {"Origin": ORIGIN,
                                             "Access-Control-Request-Method": "BREW"}):
        resp = requests.options(object_url(server.endpoint, bucket), headers=headers,
                                timeout=10)
        assert resp.status_code == 400, headers
        assert error_code(resp) == "BadRequest"


# -- the file store's own rules ------------------------------------------------------------

NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the "
               "evalution of Origin, request method / Access-Control-Request-Method or "
               "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
RULES: dict[str, Any] = {"CORSRules": [
    {"ID": "app", "AllowedMethods": ["GET", "PUT"], "AllowedOrigins": [ORIGIN],
     "AllowedHeaders": ["Content-Type", "x-amz-*"], "ExposeHeaders": ["ETag"],
     "MaxAgeSeconds": 600},
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]},
]}


def failure(call) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as exc:
        call()
    error = exc.value.response["Error"]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], \
        error.get("Message", "")


@file_store_only
def test_put_get_delete_round_trip(s3, bucket):
    assert failure(lambda: s3.get_bucket_cors(Bucket=bucket))[:2] == \
        (404, "NoSuchCORSConfiguration")
    assert s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)[
        "ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES["CORSRules"]
    replaced = {"CORSRules": [{"AllowedMethods": ["HEAD"], "AllowedOrigins": ["http://*.x"]}]}
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=replaced)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == replaced["CORSRules"]
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert failure(lambda: s3.get_bucket_cors(Bucket=bucket))[:2] == \
        (404, "NoSuchCORSConfiguration")
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


@file_store_only
@pytest.mark.parametrize("rules,code,message", [
    pytest.param([{"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}], "InvalidRequest",
                 "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
                 id="unsupported-method"),
    pytest.param([{"AllowedMethods": ["GET"], "AllowedOrigins": ["http://*.*.x"]}],
                 "InvalidRequest",
                 'AllowedOrigin "http://*.*.x" can not have more than one wildcard.',
                 id="two-wildcards"),
    pytest.param([], "MalformedXML", None, id="no-rules"),
    pytest.param([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}] * 101,
                 "InvalidRequest",
                 "The number of CORS rules should not exceed allowed limit of 100 rules.",
                 id="101-rules"),
])
def test_put_refuses_bad_configurations_and_keeps_the_old(s3, bucket, rules, code, message):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    status, got_code, got_message = failure(
        lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules}))
    assert (status, got_code) == (400, code)
    if message is not None:
        assert got_message == message
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES["CORSRules"]


@file_store_only
def test_put_requires_a_digest(server, bucket):
    """S3 requires Content-MD5 (or a checksum) on PutBucketCors; botocore always sends
    one, so this client drops it before signing."""
    client = make_client(server.endpoint)

    def drop_digests(request, **_: Any) -> None:
        for name in list(request.headers.keys()):
            if name.lower() == "content-md5" or name.lower().startswith("x-amz-checksum-") \
                    or name.lower() == "x-amz-sdk-checksum-algorithm":
                del request.headers[name]

    client.meta.events.register("before-sign.s3.PutBucketCors", drop_digests)
    status, code, message = failure(
        lambda: client.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES))
    assert (status, code) == (400, "InvalidRequest")
    assert message == "Missing required header for this request: Content-MD5"
    assert failure(lambda: client.get_bucket_cors(Bucket=bucket))[1] == "NoSuchCORSConfiguration"


@file_store_only
def test_deleting_the_bucket_deletes_its_rules(s3):
    name = "cors-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_cors(Bucket=name, CORSConfiguration=RULES)
    s3.delete_bucket(Bucket=name)
    assert failure(lambda: s3.get_bucket_cors(Bucket=name))[:2] == (404, "NoSuchBucket")
    s3.create_bucket(Bucket=name)
    try:
        assert failure(lambda: s3.get_bucket_cors(Bucket=name))[1] == "NoSuchCORSConfiguration"
    finally:
        s3.delete_bucket(Bucket=name)


@file_store_only
def test_preflights_by_the_stored_rules(server, s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    url = object_url(server.endpoint, bucket)
    allowed = requests.options(url, timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Date"})
    assert allowed.status_code == 200
    assert cors_headers(allowed) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-allow-headers": "content-type, x-amz-date",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
    }
    assert allowed.headers["Vary"] == VARY
    assert allowed.content == b""
    # Another origin falls through to the second rule, which allows any origin: "*".
    anyone = requests.options(url, timeout=10, headers={
        "Origin": "https://other.example", "Access-Control-Request-Method": "GET"})
    assert anyone.status_code == 200
    assert cors_headers(anyone) == {"access-control-allow-origin": "*",
                                    "access-control-allow-methods": "GET"}
    for denied in ({"Origin": "https://other.example", "Access-Control-Request-Method": "PUT"},
                   {"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
                   {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
                    "Access-Control-Request-Headers": "authorization"}):
        resp = requests.options(url, headers=denied, timeout=10)
        assert resp.status_code == 403, denied
        assert error_code(resp) == "AccessForbidden"
        assert error_message(resp) == NOT_ALLOWED
        assert cors_headers(resp) == {}
        assert "Vary" not in resp.headers


@file_store_only
def test_answers_with_origin_carry_the_headers(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    plain = requests.get(url, timeout=10)
    assert plain.content == b"hello" and cors_headers(plain) == {}
    got = requests.get(url, headers={"Origin": ORIGIN}, timeout=10)
    assert got.status_code == 200 and got.content == b"hello"
    assert cors_headers(got) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
    }
    assert got.headers["Vary"] == VARY
    # An error answer carries them too (an anonymous GET of a private object: 403).
    denied = requests.get(object_url(server.endpoint, bucket), headers={"Origin": ORIGIN},
                          timeout=10)
    assert denied.status_code == 403
    assert cors_headers(denied)["access-control-allow-origin"] == ORIGIN
    # No rule allows DELETE: no headers, and the request itself is unaffected.
    url = s3.generate_presigned_url("delete_object", Params={"Bucket": bucket, "Key": "k"})
    deleted = requests.delete(url, headers={"Origin": ORIGIN}, timeout=10)
    assert deleted.status_code == 204 and cors_headers(deleted) == {}
    # Without a configuration, none.
    s3.delete_bucket_cors(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert cors_headers(requests.get(url, headers={"Origin": ORIGIN}, timeout=10)) == {}


@file_store_only
@pytest.mark.parametrize("method,http_method", [("get_object", "GET"), ("put_object", "PUT")])
def test_presigned_url_preflight_flow(server, s3, bucket, method, http_method):
    """ceph/s3-tests' _test_cors_options_presigned_method: a preflight of a presigned URL
    without Origin is 400; once the bucket has a rule for the origin, 200."""
    s3.put_object(Bucket=bucket, Key="foo", Body=b"x")
    url = s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": "foo"},
                                    ExpiresIn=100000, HttpMethod=http_method)
    assert requests.options(url, timeout=10).status_code == 400
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": [http_method], "AllowedOrigins": ["example"]}]})
    resp = requests.options(url, timeout=10, headers={
        "Origin": "example", "Access-Control-Request-Method": http_method})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "example"
    assert resp.headers["access-control-allow-methods"] == http_method


def test_preflight_to_the_internal_bucket_is_access_denied(server):
    """encproxy's internal bucket answers a preflight as it answers every request."""
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    resp = requests.options(object_url(server.endpoint, "encproxy-internal"), headers=headers,
                            timeout=10)
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
