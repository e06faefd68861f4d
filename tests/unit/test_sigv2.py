"""encproxy.sigv2: AWS's worked examples, botocore's own SigV2 signers, and S3's errors.

Two independent sources of truth:

1. the examples of AWS's "Signing and authenticating REST requests" (Signature Version 2),
   end to end through :func:`encproxy.sigv2.verify` with the documented clock: each
   signature was computed by AWS over the documented string to sign;
2. botocore's ``HmacV1Auth`` (headers) and ``HmacV1QueryAuth`` (presigned URLs) signing
   requests with awkward keys, subresources and headers, which ``verify`` must accept --
   and reject once tampered with.

Also here: the non-ASCII header values SigV4 canonicalizes from their bytes, and the
``X-Amz-Expires`` bounds (both live in ``encproxy.sigv4``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from encproxy import errors, sigv2, sigv4

DOC_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY = "AKIDSIGV2TEST"
SECRET = "s3cr3t/with+odd=chars"
KEYS = {DOC_KEY: DOC_SECRET, ACCESS_KEY: SECRET}
HOST = "127.0.0.1:8080"


def lookup(access_key: str) -> str | None:
    return KEYS.get(access_key)


def at(text: str) -> datetime:
    parsed = sigv2.parse_date(text)
    assert parsed is not None
    return parsed


# == 1. AWS's examples =====================================================================

@dataclass(frozen=True)
class DocCase:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    bucket: str | None        # virtual-hosted: the bucket the Host names
    signature: str
    string_to_sign: str


DOC_CASES = [
    pytest.param(DocCase(
        "GET", "/photos/puppy.jpg", "", {"date": "Tue, 27 Mar 2007 19:36:42 +0000"},
        "awsexamplebucket1", "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"),
        id="object-get"),
    pytest.param(DocCase(
        "PUT", "/photos/puppy.jpg", "",
        {"content-type": "image/jpeg", "content-length": "94328",
         "date": "Tue, 27 Mar 2007 21:15:45 +0000"},
        "awsexamplebucket1", "iqRzw+ileNPu1fhspnRs8nOjjIA=",
        "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n"
        "/awsexamplebucket1/photos/puppy.jpg"), id="object-put"),
    pytest.param(DocCase(
        "GET", "/", "prefix=photos&max-keys=50&marker=puppy",
        {"user-agent": "Mozilla/5.0", "date": "Tue, 27 Mar 2007 19:42:41 +0000"},
        "awsexamplebucket1", "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
        "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/"), id="list"),
    pytest.param(DocCase(
        "GET", "/", "acl", {"date": "Tue, 27 Mar 2007 19:44:46 +0000"},
        "awsexamplebucket1", "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl"), id="fetch-acl"),
    pytest.param(DocCase(
        "DELETE", "/awsexamplebucket1/photos/puppy.jpg", "",
        {"user-agent": "dotnet", "date": "Tue, 27 Mar 2007 21:20:27 +0000",
         "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000"},
        None, "XbyTlbQdu9Xw5o8P4iMwPktxQd8=",
        "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg"),
        id="delete-with-x-amz-date"),
    pytest.param(DocCase(
        "GET", "/", "", {"date": "Wed, 28 Mar 2007 01:29:59 +0000"}, None,
        "qGdzdERIC03wnaRNKh6OqZehG9s=", "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/"),
        id="list-all-buckets"),
    pytest.param(DocCase(
        "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "",
        {"date": "Wed, 28 Mar 2007 01:49:49 +0000"}, None, "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n"
        "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re"), id="unicode-keys"),
]


@pytest.mark.parametrize("case", DOC_CASES)
def test_aws_examples(case: DocCase) -> None:
    assert sigv2.signature(DOC_SECRET, case.string_to_sign) == case.signature
    headers = {**case.headers, "authorization": f"AWS {DOC_KEY}:{case.signature}"}
    now = at(headers.get("x-amz-date", headers["date"]))
    verified = sigv2.verify(case.method, case.path, case.query, headers, lookup, now,
                            bucket=case.bucket)
    assert (verified.access_key, verified.presigned) == (DOC_KEY, False)
    tampered = {**headers, "authorization": f"AWS {DOC_KEY}:{case.signature[::-1]}"}
    with pytest.raises(errors.SignatureDoesNotMatch) as caught:
        sigv2.verify(case.method, case.path, case.query, tampered, lookup, now,
                     bucket=case.bucket)
    assert caught.value.fields["AWSAccessKeyId"] == DOC_KEY
    assert DOC_SECRET not in str(caught.value.fields)


def test_doc_example_is_bound_to_its_resource() -> None:
    case = DOC_CASES[0].values[0]
    headers = {**case.headers, "authorization": f"AWS {DOC_KEY}:{case.signature}"}
    now = at(headers["date"])
    for path, bucket in (("/photos/kitten.jpg", case.bucket), (case.path, "otherbucket"),
                         (case.path, None)):
        with pytest.raises(errors.SignatureDoesNotMatch):
            sigv2.verify(case.method, path, "", headers, lookup, now, bucket=bucket)
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv2.verify("PUT", case.path, "", headers, lookup, now, bucket=case.bucket)


# == the steps =============================================================================

def test_canonicalized_amz_headers() -> None:
    text = sigv2.canonicalized_amz_headers([
        ("X-Amz-Meta-ReviewedBy", " joe@example.com "), ("x-amz-acl", "public-read"),
        ("x-amz-meta-reviewedby", "jane@example.com"), ("Content-Type", "text/plain"),
        ("X-Amz-Meta-FileChecksum", "0x02661779")])
    assert text == ("x-amz-acl:public-read\nx-amz-meta-filechecksum:0x02661779\n"
                    "x-amz-meta-reviewedby:joe@example.com,jane@example.com\n")
    assert sigv2.canonicalized_amz_headers([("content-md5", "x")]) == ""


@pytest.mark.parametrize(("path", "query", "bucket", "expected"), [
    pytest.param("/b/k", "", None, "/b/k", id="path-style"),
    pytest.param("/k", "", "b", "/b/k", id="virtual-hosted"),
    pytest.param("/", "", "b", "/b/", id="virtual-hosted-bucket"),
    pytest.param("", "", None, "/", id="empty-path"),
    pytest.param("/b/a%20b", "", None, "/b/a%20b", id="path-as-sent"),
    pytest.param("/b/k", "versionId=v%2B1&acl&prefix=p&uploads=", None,
                 "/b/k?acl&uploads=&versionId=v+1", id="sorted-decoded-signed-only"),
    pytest.param("/b/k", "response-content-type=text%2Fplain&partNumber=2&uploadId=u",
                 None, "/b/k?partNumber=2&response-content-type=text/plain&uploadId=u",
                 id="response-overrides"),
    pytest.param("/b", "max-keys=3&delimiter=%2F&list-type=2", None, "/b",
                 id="listing-parameters-unsigned"),
])
def test_canonicalized_resource(path: str, query: str, bucket: str | None,
                                expected: str) -> None:
    assert sigv2.canonicalized_resource(path, sigv2.parse_query(query), bucket) == expected


@pytest.mark.parametrize(("headers", "query", "expected"), [
    pytest.param({"authorization": "AWS AK:sig"}, "", True, id="header"),
    pytest.param({"authorization": "AWS4-HMAC-SHA256 Credential=..."}, "", False, id="v4"),
    pytest.param({}, "AWSAccessKeyId=AK&Signature=s&Expires=1", True, id="query"),
    pytest.param({}, "Signature=s", True, id="query-signature-only"),
    pytest.param({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256&Signature=s", False, id="v4-query"),
    pytest.param({}, "prefix=a", False, id="anonymous"),
])
def test_requested(headers: dict[str, str], query: str, expected: bool) -> None:
    names = [name for name, _ in sigv2.parse_query(query)]
    assert sigv2.requested(headers, names) is expected


# == 2. botocore's signers ===================================================================

def _url(path: str, query: str = "") -> str:
    return f"http://{HOST}{path}" + ("?" + query if query else "")


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]


def _as_received(request: AWSRequest) -> Received:
    """What a server gets: the target as sent, header values as WSGI carries them."""
    url = urlsplit(request.url)
    headers = {}
    for name, value in request.headers.items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        headers[name.lower()] = raw.decode("latin-1")
    return Received(request.method, url.path, url.query, headers)


def header_signed(method: str, path: str, query: str = "",
                  headers: dict[str, str] | None = None, secret: str = SECRET) -> Received:
    request = AWSRequest(method=method, url=_url(path, query), headers=headers or {})
    botocore.auth.HmacV1Auth(Credentials(ACCESS_KEY, secret)).add_auth(request)
    return _as_received(request)


def query_signed(method: str, path: str, query: str = "",
                 headers: dict[str, str] | None = None, expires: int = 600,
                 token: str | None = None) -> Received:
    """A presigned URL as a browser uses it: the URL alone, none of the signed headers."""
    request = AWSRequest(method=method, url=_url(path, query), headers=headers or {})
    botocore.auth.HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET, token),
                                  expires=expires).add_auth(request)
    url = urlsplit(request.url)
    return Received(method, url.path, url.query, {"host": HOST})


def verify(req: Received, now: datetime | None = None, bucket: str | None = None
           ) -> sigv2.VerifiedV2:
    return sigv2.verify(req.method, req.path, req.query, req.headers, lookup,
                        now or datetime.now(UTC), bucket=bucket)


AWKWARD_KEYS = ["plain", "with space", "a+plus", "tilde~", "per%cent", "../dots/..",
                "ünïcødé/ключ/😀", "=&?#[]@!$'()*,;", "trailing/", "x" * 900]
QUERIES = ["", "acl", "uploads", "uploadId=abc%2Bdef&partNumber=7", "versionId=3%2F4",
           "response-content-type=text%2Fplain%3B%20charset%3Dutf-8&response-expires=never",
           "tagging", "delete"]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_signature(key: str, query: str) -> None:
    path = "/bucket/" + quote(key, safe="/~")
    req = header_signed("PUT", path, query, {"x-amz-meta-Note": " two  spaces ",
                                            "Content-Type": "text/plain",
                                            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    verified = verify(req)
    assert verified.access_key == ACCESS_KEY and not verified.presigned
    for change in ({"x-amz-meta-note": "other"}, {"content-type": "text/html"},
                   {"content-md5": "XUFAKrxLKna5cZ2REBfFkg=="}, {"x-amz-acl": "public-read"}):
        with pytest.raises(errors.SignatureDoesNotMatch):
            verify(Received(req.method, req.path, req.query, {**req.headers, **change}))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, req.path + "x", req.query, req.headers))


@pytest.mark.parametrize("query", QUERIES[1:])
def test_signed_subresources_cannot_be_dropped_or_added(query: str) -> None:
    req = header_signed("GET", "/bucket/key", query)
    verify(req)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, req.path, "", req.headers))
    plain = header_signed("GET", "/bucket/key")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(plain.method, plain.path, query, plain.headers))


@pytest.mark.parametrize("parameter", ["attributes", "retention", "legal-hold",
                                       "renameObject", "x-amz-acl=public-read"])
def test_parameters_no_signer_signs_are_refused(parameter: str) -> None:
    """SigV2 leaves these out of the signature: added by anyone, they would change what a
    signed request does, so they are refused rather than ignored."""
    req = header_signed("GET", "/bucket/key")
    with pytest.raises(errors.AccessDenied, match="not covered"):
        verify(Received(req.method, req.path, parameter, req.headers))


def test_listing_parameters_may_come_unsigned() -> None:
    req = header_signed("GET", "/bucket", "list-type=2&prefix=a%2Fb&max-keys=5&x-id=Get")
    assert verify(req).access_key == ACCESS_KEY


def test_botocore_virtual_hosted_signature() -> None:
    request = AWSRequest(method="GET", url="http://bucket.localhost:8080/some/key")
    request.auth_path = "/bucket/some/key"
    botocore.auth.HmacV1Auth(Credentials(ACCESS_KEY, SECRET)).add_auth(request)
    req = _as_received(request)
    assert verify(req, bucket="bucket").access_key == ACCESS_KEY
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(req)


def test_botocore_bucket_request() -> None:
    """botocore signs a path-style bucket request (``GET /bucket``) as ``/bucket/``."""
    request = AWSRequest(method="GET", url=_url("/bucket", "encoding-type=url&prefix=a"))
    request.auth_path = "/bucket/"
    botocore.auth.HmacV1Auth(Credentials(ACCESS_KEY, SECRET)).add_auth(request)
    req = _as_received(request)
    assert verify(req).access_key == ACCESS_KEY
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, "/other", req.query, req.headers))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, "/bucket/key", req.query, req.headers))


def test_botocore_x_amz_date_header() -> None:
    now = datetime.now(UTC)
    amz_date = now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    req = header_signed("PUT", "/bucket/key", "", {"x-amz-date": amz_date})
    assert "date" in req.headers and verify(req, now).request_time is not None


# -- presigned (query) -----------------------------------------------------------------------

@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_botocore_presigned_url(key: str) -> None:
    req = query_signed("GET", "/bucket/" + quote(key, safe="/~"),
                       "response-content-disposition=attachment")
    verified = verify(req)
    assert verified.presigned and verified.query_headers == {}
    assert verified.expires is not None
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received("PUT", req.path, req.query, req.headers))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, req.path, req.query.replace("attachment", "inline"),
                        req.headers))


def test_presigned_headers_travel_in_the_query() -> None:
    """botocore moves x-amz-* (and Content-Type/MD5) headers into the URL; they are signed
    as headers and come back as the request's headers."""
    req = query_signed("PUT", "/bucket/key", headers={
        "x-amz-meta-Name": "é", "x-amz-server-side-encryption": "AES256",
        "Content-Type": "text/plain"}, token="session-token")
    assert "x-amz-server-side-encryption=AES256" in req.query
    verified = verify(req)
    assert verified.query_headers == {
        "x-amz-meta-name": "é".encode().decode("latin-1"),
        "x-amz-server-side-encryption": "AES256", "content-type": "text/plain",
        "x-amz-security-token": "session-token"}
    same = {**req.headers, "x-amz-server-side-encryption": "AES256"}
    assert verify(Received(req.method, req.path, req.query, same)).presigned
    other = {**req.headers, "x-amz-server-side-encryption": "aws:kms"}
    with pytest.raises(errors.InvalidArgument):
        verify(Received(req.method, req.path, req.query, other))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(Received(req.method, req.path,
                        req.query.replace("AES256", "aws%3Akms"), req.headers))


def test_presigned_expiry() -> None:
    req = query_signed("GET", "/bucket/key", expires=60)
    now = datetime.now(UTC)
    verify(req, now)
    with pytest.raises(errors.AccessDenied, match="Request has expired") as caught:
        verify(req, now + timedelta(seconds=62))
    assert {"Expires", "ServerTime"} <= set(caught.value.fields)


@pytest.mark.parametrize(("query", "error", "message"), [
    pytest.param("AWSAccessKeyId=AK&Signature=s", errors.AccessDenied,
                 "requires the Signature, Expires and AWSAccessKeyId", id="no-expires"),
    pytest.param("Signature=s&Expires=9999999999", errors.AccessDenied,
                 "requires the Signature", id="no-access-key"),
    pytest.param("AWSAccessKeyId=AK&Signature=s&Expires=soon", errors.AccessDenied,
                 "seconds since epoch", id="expires-not-a-number"),
    pytest.param("AWSAccessKeyId=AK&Signature=s&Expires=1", errors.AccessDenied,
                 "Request has expired", id="expired"),
    pytest.param("AWSAccessKeyId=AK&AWSAccessKeyId=AK&Signature=s&Expires=9999999999",
                 errors.InvalidArgument, "more than once", id="repeated"),
    pytest.param("AWSAccessKeyId=NOPE&Signature=s&Expires=9999999999",
                 errors.InvalidAccessKeyId, "does not exist", id="unknown-key"),
])
def test_presigned_query_errors(query: str, error: type[errors.S3Error], message: str) -> None:
    with pytest.raises(error, match=message):
        sigv2.verify("GET", "/b/k", query, {}, lookup, datetime.now(UTC))


def test_header_and_query_together_are_refused() -> None:
    req = header_signed("GET", "/bucket/key")
    with pytest.raises(errors.InvalidArgument, match="Only one auth mechanism"):
        verify(Received(req.method, req.path, "AWSAccessKeyId=AK&Signature=x&Expires=1",
                        req.headers))


# -- header scheme: dates and shape (ceph/s3-tests test_headers.py *_aws2) -------------------

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "error"), [
    pytest.param({"x-amz-date": "Bad Date"}, errors.AccessDenied, id="invalid"),
    pytest.param({"x-amz-date": ""}, errors.AccessDenied, id="empty"),
    pytest.param({}, errors.AccessDenied, id="none"),
    pytest.param({"x-amz-date": "Tue, 07 Jul 2010 21:53:04 GMT"}, errors.RequestTimeTooSkewed,
                 id="before-today"),
    pytest.param({"x-amz-date": "Tue, 07 Jul 1950 21:53:04 GMT"}, errors.AccessDenied,
                 id="before-epoch"),
    pytest.param({"x-amz-date": "Tue, 07 Jul 9999 21:53:04 GMT"}, errors.RequestTimeTooSkewed,
                 id="after-end"),
    pytest.param({"date": "Sun, 06 Dec 2026 11:44:00 GMT"}, errors.RequestTimeTooSkewed,
                 id="16-minutes-early"),
    pytest.param({"date": "Sun, 06 Dec 2026 12:16:00 GMT"}, errors.RequestTimeTooSkewed,
                 id="16-minutes-late"),
    pytest.param({"x-amz-date": "Bad", "date": "Sun, 06 Dec 2026 12:00:00 GMT"},
                 errors.AccessDenied, id="x-amz-date-wins-over-a-good-date"),
])
def test_header_dates(headers: dict[str, str], error: type[errors.S3Error]) -> None:
    signed = {**headers, "authorization": "AWS " + ACCESS_KEY + ":c2lnbmF0dXJl"}
    with pytest.raises(error) as caught:
        sigv2.verify("PUT", "/b/k", "", signed, lookup, NOW)
    assert caught.value.status == 403
    if error is errors.RequestTimeTooSkewed:
        assert caught.value.fields["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("date", ["Sun, 06 Dec 2026 11:46:00 GMT", "20261206T121400Z",
                                  "Sun, 06 Dec 2026 13:10:00 +0100"])
def test_header_dates_within_skew_reach_the_signature(date: str) -> None:
    signed = {"date": date, "authorization": "AWS " + ACCESS_KEY + ":c2lnbmF0dXJl"}
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv2.verify("PUT", "/b/k", "", signed, lookup, NOW)


@pytest.mark.parametrize("value", ["AWS HAHAHA", "AWS :sig", "AWS AK:", "AWS", "AWS a b:c"])
def test_malformed_authorization_is_invalid_argument(value: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="Expected AwsAccessKeyId:signature") as e:
        sigv2.verify("PUT", "/b/k", "", {"authorization": value, "date": "x"}, lookup, NOW)
    assert e.value.status == 400


def test_unknown_access_key() -> None:
    signed = {"date": "Sun, 06 Dec 2026 12:00:00 GMT", "authorization": "AWS WHO:c2ln"}
    with pytest.raises(errors.InvalidAccessKeyId) as caught:
        sigv2.verify("GET", "/b/k", "", signed, lookup, NOW)
    assert caught.value.fields["AWSAccessKeyId"] == "WHO"


def test_wrong_secret() -> None:
    req = header_signed("GET", "/bucket/key", secret="not-the-secret")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(req)


def test_post_policy_signature() -> None:
    """A SigV2 POST policy is signed as botocore's HmacV1PostAuth signs it."""
    request = AWSRequest(method="POST", url=_url("/bucket"))
    request.context["s3-presign-post-fields"] = {"key": "k"}
    request.context["s3-presign-post-policy"] = {"expiration": "2030-01-01T00:00:00Z",
                                                 "conditions": [{"bucket": "bucket"}]}
    botocore.auth.HmacV1PostAuth(Credentials(ACCESS_KEY, SECRET)).add_auth(request)
    fields = request.context["s3-presign-post-fields"]
    assert sigv2.post_policy_signature(SECRET, fields["policy"]) == fields["signature"]


# == SigV4 helpers fixed with SigV2 (encproxy.sigv4) ========================================

V4_NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def _v4_request(value_bytes: bytes, signed_text: str) -> dict[str, str]:
    """A PUT whose x-amz-meta-name arrived as ``value_bytes`` and was signed as text."""
    timestamp = V4_NOW.strftime(sigv4.AMZ_DATE_FORMAT)
    headers = {"host": HOST, "x-amz-date": timestamp,
               "x-amz-content-sha256": sigv4.UNSIGNED_PAYLOAD, "x-amz-meta-name": signed_text}
    signed = tuple(sorted(headers))
    creq = sigv4.canonical_request("PUT", "/b/k", "", headers, signed, sigv4.UNSIGNED_PAYLOAD,
                                   lambda value: value)
    scope = f"{timestamp[:8]}/us-east-1/s3/aws4_request"
    key = sigv4.signing_key(SECRET, timestamp[:8], "us-east-1")
    signature = sigv4.signature(key, sigv4.string_to_sign(timestamp, scope, creq))
    return {**headers, "x-amz-meta-name": value_bytes.decode("latin-1"),
            "authorization": f"{sigv4.ALGORITHM} Credential={ACCESS_KEY}/{scope}, "
                             f"SignedHeaders={';'.join(signed)}, Signature={signature}"}


@pytest.mark.parametrize(("sent", "signed"), [
    pytest.param("Hello Wörld ключ 😀".encode(), "Hello Wörld ключ 😀", id="utf-8-sent-and-signed"),
    pytest.param("Hello World\xe9".encode("latin-1"), "Hello World\xe9",
                 id="botocore-latin-1-sent-utf-8-signed"),
])
def test_sigv4_non_ascii_metadata(sent: bytes, signed: str) -> None:
    headers = _v4_request(sent, signed)
    verified = sigv4.verify("PUT", "/b/k", "", headers, lookup, V4_NOW)
    assert verified.access_key == ACCESS_KEY
    other = {**headers, "x-amz-meta-name": "Hello"}
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.verify("PUT", "/b/k", "", other, lookup, V4_NOW)


def test_sigv4_sign_hashes_the_bytes_sent() -> None:
    """An outgoing request is signed over the bytes it carries (Ceph RGW and AWS hash
    bytes), whatever their encoding: sign() and a byte-exact verifier agree."""
    for raw in ("ключ".encode(), b"caf\xe9"):
        headers = {"host": HOST, "x-amz-meta-name": raw.decode("latin-1")}
        added = sigv4.sign("PUT", "/b/k", "", headers, sigv4.SigningIdentity(ACCESS_KEY, SECRET),
                           V4_NOW)
        signed = tuple(sorted({**headers, **added}.keys() - {"authorization"}))
        creq = sigv4.canonical_request("PUT", "/b/k", "", {**headers, **added}, signed,
                                       sigv4.UNSIGNED_PAYLOAD, sigv4.sent_text)
        assert ("x-amz-meta-name:" + raw.decode("utf-8", "surrogateescape")) in creq
        scope = f"{added['x-amz-date'][:8]}/us-east-1/s3/aws4_request"
        key = sigv4.signing_key(SECRET, added["x-amz-date"][:8], "us-east-1")
        expected = sigv4.signature(key, sigv4.string_to_sign(added["x-amz-date"], scope, creq))
        assert added["authorization"].endswith("Signature=" + expected)


@pytest.mark.parametrize("expires", ["-7", "-1", "609901", "604801"])
def test_x_amz_expires_out_of_range_is_403(expires: str) -> None:
    params = {"X-Amz-Algorithm": sigv4.ALGORITHM,
              "X-Amz-Credential": f"{ACCESS_KEY}/20261206/us-east-1/s3/aws4_request",
              "X-Amz-Date": "20261206T120000Z", "X-Amz-Expires": expires,
              "X-Amz-SignedHeaders": "host", "X-Amz-Signature": "0" * 64}
    with pytest.raises(errors.AuthorizationQueryParametersError) as caught:
        sigv4.parse_presigned_query(params)
    assert (caught.value.code, caught.value.status) == ("AuthorizationQueryParametersError", 403)
