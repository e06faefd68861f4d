"""encproxy.sigv4: the published vectors, botocore's own signer, and S3's error cases.

Three independent sources of truth, each with a frozen clock:

1. AWS's SigV4 test suite (``tests/vectors/sigv4/aws4_testsuite``), step by step;
2. the worked examples of the S3 API reference (``tests/vectors/sigv4/s3_examples.json``),
   end to end through :func:`encproxy.sigv4.verify`;
3. botocore's ``S3SigV4Auth`` and ``S3SigV4QueryAuth`` signing requests with awkward keys
   and query strings, which ``verify`` must accept -- and reject once tampered with.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

try:
    from botocore.crt import auth as crt_auth
except ImportError:  # awscrt is optional
    crt_auth = None

from encproxy import errors, sigv4

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sigv4"
SUITE = VECTORS / "aws4_testsuite"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = "20150830T123600Z"


# == 1. the AWS SigV4 test suite ======================================================

@dataclass
class SuiteCase:
    name: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    creq: str
    sts: str
    authz: str


def load_case(name: str) -> SuiteCase:
    def read(ext: str) -> str:
        return (SUITE / name / f"{name}.{ext}").read_text(encoding="utf-8")
    head, _, body = read("req").partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, target = request_line.split(" ", 1)[0], request_line.split(" ", 1)[1].rsplit(" ", 1)[0]
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for line in header_lines:
        name_, _, value = line.partition(":")
        key = name_.lower()
        # Repeated headers reach WSGI joined with "," (gunicorn, werkzeug).
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return SuiteCase(name, method, path, query, headers, body.encode(), read("creq"),
                     read("sts"), read("authz"))


SUITE_CASES = sorted(p.name for p in SUITE.iterdir() if p.is_dir())


def test_the_suite_is_present() -> None:
    assert len(SUITE_CASES) == 23


def _authz_parts(authz: str) -> tuple[str, tuple[str, ...], str]:
    match = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=(\S+), SignedHeaders=(\S+), "
                         r"Signature=([0-9a-f]{64})", authz)
    assert match
    return match.group(1), tuple(match.group(2).split(";")), match.group(3)


@pytest.mark.parametrize("name", SUITE_CASES)
def test_suite_canonical_request(name: str) -> None:
    case = load_case(name)
    _, signed_headers, _ = _authz_parts(case.authz)
    query = sigv4.canonical_query(sigv4.parse_query(case.query))
    creq = sigv4.canonical_request(case.method, case.path, query, case.headers, signed_headers,
                                   hashlib.sha256(case.body).hexdigest())
    assert creq == case.creq


@pytest.mark.parametrize("name", SUITE_CASES)
def test_suite_string_to_sign(name: str) -> None:
    case = load_case(name)
    assert sigv4.string_to_sign(SUITE_TIME, "20150830/us-east-1/service/aws4_request",
                                case.creq) == case.sts


@pytest.mark.parametrize("name", SUITE_CASES)
def test_suite_signature(name: str) -> None:
    case = load_case(name)
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert sigv4.signature(key, case.sts) == _authz_parts(case.authz)[2]


@pytest.mark.parametrize("name", SUITE_CASES)
def test_suite_authorization_header_parses_for_s3(name: str) -> None:
    authz = load_case(name).authz
    with pytest.raises(errors.AuthorizationHeaderMalformed,
                       match='incorrect service "service". This endpoint belongs to "s3"'):
        sigv4.parse_authorization_header(authz)
    params = sigv4.parse_authorization_header(authz.replace("/service/", "/s3/"))
    credential, signed_headers, signature = _authz_parts(authz)
    assert params.credential.access_key == "AKIDEXAMPLE"
    assert params.credential.scope == "20150830/us-east-1/s3/aws4_request"
    assert params.signed_headers == signed_headers and params.signature == signature


@pytest.mark.parametrize(("secret", "date", "service", "expected"), [
    # "Deriving the signing key" in the AWS General Reference.
    pytest.param(SUITE_SECRET, "20120215", "iam",
                 "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d", id="2012"),
    pytest.param(SUITE_SECRET, "20150830", "iam",
                 "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9", id="2015"),
])
def test_published_signing_keys(secret: str, date: str, service: str, expected: str) -> None:
    assert sigv4.signing_key(secret, date, "us-east-1", service).hex() == expected


# == 2. the S3 API reference examples =================================================

S3_EXAMPLES = json.loads((VECTORS / "s3_examples.json").read_text(encoding="utf-8"))
S3_NOW = datetime(2013, 5, 24, tzinfo=timezone.utc)


def s3_lookup(access_key: str) -> str | None:
    return S3_EXAMPLES["secret_key"] if access_key == S3_EXAMPLES["access_key"] else None


@pytest.mark.parametrize("case", S3_EXAMPLES["cases"], ids=lambda c: c["name"])
def test_s3_documentation_examples(case: dict[str, Any]) -> None:
    verified = sigv4.verify(case["method"], case["path"], case["query"], dict(case["headers"]),
                            s3_lookup, S3_NOW)
    assert verified.seed_signature == case["signature"]
    assert verified.access_key == "AKIAIOSFODNN7EXAMPLE"
    assert verified.scope == "20130524/us-east-1/s3/aws4_request"
    assert verified.timestamp == "20130524T000000Z"
    if "body" in case:
        assert verified.payload_hash == hashlib.sha256(case["body"].encode()).hexdigest()


def test_repr_hides_the_signing_key() -> None:
    case = S3_EXAMPLES["cases"][0]
    verified = sigv4.verify(case["method"], case["path"], case["query"], dict(case["headers"]),
                            s3_lookup, S3_NOW)
    assert verified.signing_key.hex() not in repr(verified)
    assert "signing_key" not in repr(verified)


# == 3. botocore's signer =============================================================

ACCESS_KEY = "AKIDBOTOCORE"
SECRET = "botocore/secret+key="
FROZEN = datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
HOST = "bucket.s3.example.test:8443"


def lookup(access_key: str) -> str | None:
    return {ACCESS_KEY: SECRET}.get(access_key)


def _frozen_now(remove_tzinfo: bool = True) -> datetime:
    return FROZEN.replace(tzinfo=None) if remove_tzinfo else FROZEN


@pytest.fixture(autouse=True)
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", _frozen_now)
    if crt_auth is not None:
        monkeypatch.setattr(crt_auth, "get_current_datetime", _frozen_now)


# botocore's own signers, and awscrt's when installed (botocore then prefers them).
SIGNERS = [pytest.param((botocore.auth.S3SigV4Auth, botocore.auth.S3SigV4QueryAuth),
                        id="botocore")]
if crt_auth is not None:
    SIGNERS.append(pytest.param((crt_auth.CrtS3SigV4Auth, crt_auth.CrtS3SigV4QueryAuth),
                                id="awscrt"))
Signers = tuple[Any, Any]


@dataclass(frozen=True)
class Req:
    """A request as it reaches the verifier: target as sent, headers as received."""

    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)

    def with_header(self, name: str, value: str | None) -> Req:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)

    def with_query(self, query: str) -> Req:
        return replace(self, query=query)


def _url(key: str, query: str) -> str:
    # The path as botocore's REST serializer writes it.
    return f"https://{HOST}/{percent_encode(key, safe='/~')}" + (f"?{query}" if query else "")


def _as_received(request: AWSRequest) -> Req:
    url = urlsplit(request.url)
    headers = {name: (value.decode() if isinstance(value, bytes) else value)
               for name, value in request.headers.items()}
    headers.setdefault("Host", url.netloc)
    return Req(request.method, url.path, url.query, headers)


BOTOCORE: Signers = (botocore.auth.S3SigV4Auth, botocore.auth.S3SigV4QueryAuth)


def botocore_signed(method: str = "GET", key: str = "key", query: str = "",
                    headers: dict[str, str] | None = None, body: bytes = b"",
                    signers: Signers = BOTOCORE) -> Req:
    request = AWSRequest(method=method, url=_url(key, query), headers=headers or {},
                         data=body)
    request.context["payload_signing_enabled"] = True
    signers[0](Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1").add_auth(request)
    return _as_received(request)


def botocore_presigned(method: str = "GET", key: str = "key", query: str = "",
                       expires: int = 3600, headers: dict[str, str] | None = None,
                       token: str | None = None, signers: Signers = BOTOCORE) -> Req:
    request = AWSRequest(method=method, url=_url(key, query), headers=headers or {})
    signers[1](Credentials(ACCESS_KEY, SECRET, token), "s3", "us-east-1",
               expires=expires).add_auth(request)
    return _as_received(request)


def verify(req: Req, now: datetime = FROZEN, region: str | None = "us-east-1"
           ) -> sigv4.VerifiedRequest:
    return sigv4.verify(req.method, req.path, req.query, req.headers, lookup, now, region=region)


AWKWARD_KEYS = [
    "plain", "with space", "a+plus", "tilde~", "per%cent", "../dot/../dots", "./here",
    "a//double//slash/", "ünïcødé/ключ/鍵/😀", "=&?#[]@!$'()*,;", "trailing/", "%2F-literal",
    "x" * 900,
]


@pytest.mark.parametrize("signers", SIGNERS)
@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=range(len(AWKWARD_KEYS)))
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_botocore_header_signature(key: str, method: str, signers: Signers) -> None:
    body = b"some body" if method == "PUT" else b""
    req = botocore_signed(method, key, headers={"x-amz-meta-note": "  spaced   out  "},
                          body=body, signers=signers)
    verified = verify(req)
    assert verified.access_key == ACCESS_KEY and not verified.presigned
    assert verified.payload_hash == hashlib.sha256(body).hexdigest()
    assert verified.timestamp == "20260203T040506Z"
    assert verified.scope == "20260203/us-east-1/s3/aws4_request"
    assert verified.signing_key == sigv4.signing_key(SECRET, "20260203", "us-east-1")


QUERIES = [
    pytest.param("acl", id="bare-name"),
    pytest.param("acl=", id="empty-value"),
    pytest.param("prefix=&delimiter=%2F&list-type=2", id="empty-prefix"),
    pytest.param("prefix=a%20b%2Bc%2F%C3%BC&start-after=~x", id="encoded-values"),
    pytest.param("versionId=a%2Fb%3D%3D&uploadId=", id="slash-and-padding"),
    pytest.param("x=2&x=1&x=&a=", id="repeated-names"),
    pytest.param("partNumber=1&uploadId=abc.def-_~", id="unreserved"),
]


@pytest.mark.parametrize("signers", SIGNERS)
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_signature_queries(query: str, signers: Signers) -> None:
    assert verify(botocore_signed("GET", "k e y", query, signers=signers)).access_key == ACCESS_KEY


@pytest.mark.parametrize("signers", SIGNERS)
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("key", AWKWARD_KEYS[:10], ids=range(10))
def test_botocore_presigned(key: str, query: str, signers: Signers) -> None:
    req = botocore_presigned("GET", key, query, signers=signers)
    verified = verify(req)
    assert verified.presigned and verified.payload_hash == sigv4.UNSIGNED_PAYLOAD
    assert verified.seed_signature in req.query


def test_botocore_presigned_put_with_signed_headers() -> None:
    req = botocore_presigned("PUT", "k", headers={"x-amz-meta-a": "b",
                                                  "Content-Type": "text/plain"})
    assert "x-amz-meta-a" in req.query.lower()  # in X-Amz-SignedHeaders
    assert verify(req).presigned
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(req.with_header("x-amz-meta-a", "c"))


def test_botocore_session_token_is_accepted_and_ignored() -> None:
    assert verify(botocore_presigned(token="FwoGZXIvYXdzEXAMPLE//token+=")).presigned
    request = AWSRequest(method="GET", url=_url("k", ""))
    botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET, "sess+token/="), "s3",
                              "us-east-1").add_auth(request)
    assert verify(_as_received(request)).access_key == ACCESS_KEY


def test_botocore_date_header_instead_of_x_amz_date() -> None:
    request = AWSRequest(method="GET", url=_url("k", ""), headers={"Date": "now"})
    botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1").add_auth(request)
    req = _as_received(request)
    assert "X-Amz-Date" not in req.headers and "Date" in req.headers
    assert verify(req).timestamp == "20260203T040506Z"


def test_botocore_repeated_header_joined_by_server() -> None:
    # botocore signs repeated values joined with ","; servers hand them to WSGI the same way.
    req = botocore_signed(headers={"x-amz-meta-a": "1"})
    assert verify(req.with_header("x-amz-meta-a", "1")).access_key == ACCESS_KEY


def test_verify_accepts_wire_bytes_and_mixed_case_header_names() -> None:
    req = botocore_signed("GET", "ü/k y")
    headers = {name.upper(): value for name, value in req.headers.items()}
    assert sigv4.verify("get", req.path.encode(), req.query.encode(), headers, lookup,
                        FROZEN).access_key == ACCESS_KEY


# == 4. canonicalisation details ======================================================

@pytest.mark.parametrize(("raw", "canonical"), [
    pytest.param("", "/", id="empty"),
    pytest.param("/", "/", id="root"),
    pytest.param("/a b", "/a%20b", id="space"),
    pytest.param("/a%20b", "/a%20b", id="encoded-space-not-double-encoded"),
    pytest.param("/a%2fb/c", "/a%2Fb/c", id="encoded-slash-kept-uppercased"),
    pytest.param("/%7e~", "/~~", id="tilde-decoded"),
    pytest.param("/a+b", "/a%2Bb", id="plus-is-literal"),
    pytest.param("/../a/./b//c", "/../a/./b//c", id="no-dot-segment-normalisation"),
    pytest.param("/ü", "/%C3%BC", id="utf8"),
    pytest.param("/%zz", "/%25zz", id="invalid-escape"),
    pytest.param("/$&'()*,;=:@!", "/%24%26%27%28%29%2A%2C%3B%3D%3A%40%21", id="sub-delims"),
])
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


@pytest.mark.parametrize(("raw", "canonical"), [
    pytest.param("", "", id="empty"),
    pytest.param("acl", "acl=", id="no-equals"),
    pytest.param("b=2&a=1", "a=1&b=2", id="sorted-by-name"),
    pytest.param("a=2&a=10&a=1", "a=1&a=10&a=2", id="then-by-value"),
    pytest.param("a=x+y", "a=x%2By", id="plus-is-literal"),
    pytest.param("a=%7e&%41=1", "A=1&a=~", id="decoded-then-encoded"),
    pytest.param("a=1&&b=2&", "a=1&b=2", id="empty-segments"),
    pytest.param("k=a=b", "k=a%3Db", id="equals-in-value"),
    pytest.param("B=1&a=1", "B=1&a=1", id="byte-order-uppercase-first"),
])
def test_canonical_query(raw: str, canonical: str) -> None:
    assert sigv4.canonical_query(sigv4.parse_query(raw)) == canonical


def test_canonical_query_excludes_signature() -> None:
    pairs = sigv4.parse_query("X-Amz-Signature=abc&X-Amz-Date=1")
    assert sigv4.canonical_query(pairs, exclude=(b"X-Amz-Signature",)) == "X-Amz-Date=1"


@pytest.mark.parametrize(("value", "canonical"), [
    ("  a   b  ", "a b"), ("a\t \tb", "a b"), ("", ""), ("x\xa0y", "x\xa0y"),
])
def test_canonical_header_value(value: str, canonical: str) -> None:
    assert sigv4.canonical_header_value(value) == canonical


@pytest.mark.parametrize(("value", "expected"), [
    (sigv4.UNSIGNED_PAYLOAD, sigv4.UNSIGNED_PAYLOAD),
    (sigv4.STREAMING_SIGNED_TRAILER, sigv4.STREAMING_SIGNED_TRAILER),
    ("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", sigv4.EMPTY_SHA256),
])
def test_classify_payload_hash(value: str, expected: str) -> None:
    assert sigv4.classify_payload_hash(value) == expected


# == 5. error cases ===================================================================

Mutation = Callable[[Req], Req]
AUTH = "Authorization"


def _auth_sub(pattern: str, replacement: str) -> Mutation:
    return lambda r: r.with_header(AUTH, re.sub(pattern, replacement, r.headers[AUTH]))


def _query_sub(pattern: str, replacement: str) -> Mutation:
    return lambda r: r.with_query(re.sub(pattern, replacement, r.query))


def _other_hex(match: re.Match[str]) -> str:
    """The matched ``Signature=x`` with its first hex digit changed."""
    digit = match.group(0)[-1]
    return match.group(0)[:-1] + ("1" if digit == "0" else "0")


HEADER_ERRORS = [
    pytest.param(lambda r: r.with_header(AUTH, None), errors.AccessDenied, "Access Denied",
                 id="anonymous"),
    pytest.param(lambda r: r.with_header(AUTH, "AWS AKIDBOTOCORE:c2lnbmF0dXJl"),
                 errors.InvalidRequest, "The authorization mechanism you have provided is not "
                 "supported. Please use AWS4-HMAC-SHA256.", id="sigv2-header"),
    pytest.param(_auth_sub("^AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
                 errors.InvalidRequest, "not supported", id="sigv4a"),
    pytest.param(lambda r: r.with_header(AUTH, "Bearer abc"), errors.InvalidArgument,
                 "Unsupported Authorization Type", id="bearer"),
    pytest.param(lambda r: r.with_query("X-Amz-Algorithm=AWS4-HMAC-SHA256"),
                 errors.InvalidArgument, "Only one auth mechanism allowed", id="two-mechanisms"),
    pytest.param(_auth_sub(r", Signature=\w+", ""), errors.AuthorizationHeaderMalformed,
                 "The authorization header is malformed; missing Signature.", id="no-signature"),
    pytest.param(_auth_sub(r"SignedHeaders=[^,]+, ", ""), errors.AuthorizationHeaderMalformed,
                 "missing SignedHeaders", id="no-signed-headers"),
    pytest.param(_auth_sub(r"Credential=[^,]+, ", ""), errors.AuthorizationHeaderMalformed,
                 "missing Credential", id="no-credential"),
    pytest.param(_auth_sub("SignedHeaders=", "Signedheaders="),
                 errors.AuthorizationHeaderMalformed, "authorization component", id="bad-name"),
    pytest.param(_auth_sub(r"(Signature=\w+)", r"\1, Signature=00"),
                 errors.AuthorizationHeaderMalformed, "authorization component",
                 id="repeated-component"),
    pytest.param(_auth_sub(r"/us-east-1/s3/aws4_request", "/us-east-1/s3"),
                 errors.AuthorizationHeaderMalformed, "the Credential is mal-formed",
                 id="short-credential"),
    pytest.param(_auth_sub(r"AKIDBOTOCORE/", "/"), errors.AuthorizationHeaderMalformed,
                 "the Credential is mal-formed", id="empty-access-key"),
    pytest.param(_auth_sub("/20260203/", "/2026023/"), errors.AuthorizationHeaderMalformed,
                 'incorrect date format "2026023"', id="credential-date-format"),
    pytest.param(_auth_sub("/20260203/", "/20260231/"), errors.AuthorizationHeaderMalformed,
                 'incorrect date format "20260231"', id="credential-date-impossible"),
    pytest.param(_auth_sub("aws4_request", "aws5_request"), errors.AuthorizationHeaderMalformed,
                 'incorrect terminal "aws5_request"', id="terminal"),
    pytest.param(_auth_sub("/s3/", "/ec2/"), errors.AuthorizationHeaderMalformed,
                 'incorrect service "ec2". This endpoint belongs to "s3".', id="service"),
    pytest.param(_auth_sub("/us-east-1/", "/eu-west-1/"), errors.AuthorizationHeaderMalformed,
                 "the region 'eu-west-1' is wrong; expecting 'us-east-1'", id="region"),
    pytest.param(_auth_sub("/20260203/", "/20260202/"), errors.AuthorizationHeaderMalformed,
                 'Invalid credential date "20260202"', id="credential-date-mismatch"),
    pytest.param(_auth_sub("SignedHeaders=host;", "SignedHeaders=Host;"),
                 errors.AuthorizationHeaderMalformed, "SignedHeaders", id="uppercase-signed"),
    pytest.param(_auth_sub("SignedHeaders=host;", "SignedHeaders=host;host;"),
                 errors.AuthorizationHeaderMalformed, "SignedHeaders", id="repeated-signed"),
    pytest.param(_auth_sub("Credential=AKIDBOTOCORE", "Credential=AKIDUNKNOWN"),
                 errors.InvalidAccessKeyId, "does not exist in our records", id="unknown-key"),
    pytest.param(lambda r: r.with_header(AUTH, re.sub(r"Signature=\w", _other_hex,
                                                      r.headers[AUTH])),
                 errors.SignatureDoesNotMatch,
                 "calculated does not match", id="signature-changed"),
    pytest.param(lambda r: r.with_header(AUTH, r.headers[AUTH].upper().replace(
        "AWS4-HMAC-SHA256 CREDENTIAL=AKIDBOTOCORE/20260203/US-EAST-1/S3/AWS4_REQUEST, "
        "SIGNEDHEADERS=", "AWS4-HMAC-SHA256 Credential=AKIDBOTOCORE/20260203/us-east-1/s3/"
        "aws4_request, SignedHeaders=").replace("SIGNATURE=", "Signature=").replace(
        "HOST;X-AMZ-CONTENT-SHA256;X-AMZ-DATE;X-AMZ-META-A",
        "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a")),
                 errors.SignatureDoesNotMatch, "calculated", id="uppercase-signature"),
    pytest.param(lambda r: r.with_header("x-amz-meta-a", "tampered"),
                 errors.SignatureDoesNotMatch, "calculated", id="signed-header-changed"),
    pytest.param(lambda r: r.with_header("x-amz-server-side-encryption", "AES256"),
                 errors.AccessDenied, "headers present in the request which were not signed",
                 id="unsigned-amz-header"),
    pytest.param(lambda r: replace(r, path=r.path + "x"), errors.SignatureDoesNotMatch,
                 "calculated", id="path-changed"),
    pytest.param(lambda r: replace(r, path=r.path.replace("%20", "+")),
                 errors.SignatureDoesNotMatch, "calculated", id="space-as-plus"),
    pytest.param(lambda r: r.with_query("acl"), errors.SignatureDoesNotMatch, "calculated",
                 id="query-added"),
    pytest.param(lambda r: replace(r, method="DELETE"), errors.SignatureDoesNotMatch,
                 "calculated", id="method-changed"),
    pytest.param(lambda r: r.with_header("X-Amz-Date", None), errors.AccessDenied,
                 "requires a valid Date or x-amz-date header", id="no-date"),
    pytest.param(lambda r: r.with_header("X-Amz-Date", "2026-02-03T04:05:06Z"),
                 errors.AccessDenied, "valid Date or x-amz-date", id="bad-date-format"),
    pytest.param(lambda r: r.with_header("X-Amz-Content-SHA256", None), errors.InvalidRequest,
                 "Missing required header for this request: x-amz-content-sha256",
                 id="no-content-sha256"),
    pytest.param(lambda r: r.with_header("X-Amz-Content-SHA256", "abc"), errors.InvalidArgument,
                 "x-amz-content-sha256 must be", id="bad-content-sha256"),
]


@pytest.mark.parametrize(("mutate", "error", "message"), HEADER_ERRORS)
def test_header_auth_errors(mutate: Mutation, error: type[errors.S3Error], message: str) -> None:
    req = botocore_signed("GET", "some key", headers={"x-amz-meta-a": "1"})
    verify(req)  # the unmutated request is fine
    with pytest.raises(error) as caught:
        verify(mutate(req))
    assert message in caught.value.message


def test_signature_mismatch_fields_help_without_leaking() -> None:
    req = botocore_signed("GET", "k")
    with pytest.raises(errors.SignatureDoesNotMatch) as caught:
        sigv4.verify(req.method, req.path, req.query, req.headers, lambda _: "wrong", FROZEN)
    fields = caught.value.fields
    assert fields["AWSAccessKeyId"] == ACCESS_KEY
    assert fields["StringToSign"].startswith("AWS4-HMAC-SHA256\n20260203T040506Z\n")
    assert fields["CanonicalRequest"].startswith("GET\n/k\n")
    assert SECRET not in str(fields) and "wrong" not in str(fields)
    signature = req.headers[AUTH].rsplit("=", 1)[1]
    assert signature not in str(fields) and signature not in caught.value.message


def test_wrong_region_error_names_the_expected_region() -> None:
    with pytest.raises(errors.AuthorizationHeaderMalformed) as caught:
        verify(botocore_signed(), region="ap-south-2")
    assert caught.value.fields["Region"] == "ap-south-2"
    assert verify(botocore_signed(), region=None).region == "us-east-1"


@pytest.mark.parametrize(("offset", "ok"), [
    pytest.param(timedelta(minutes=14, seconds=59), True, id="14m59s-ahead"),
    pytest.param(-timedelta(minutes=15), True, id="15m-behind"),
    pytest.param(timedelta(minutes=15, seconds=1), False, id="15m01s-ahead"),
    pytest.param(-timedelta(minutes=16), False, id="16m-behind"),
])
def test_request_time_skew(offset: timedelta, ok: bool) -> None:
    req = botocore_signed()
    if ok:
        verify(req, now=FROZEN + offset)
        return
    with pytest.raises(errors.RequestTimeTooSkewed) as caught:
        verify(req, now=FROZEN + offset)
    assert caught.value.fields["MaxAllowedSkewMilliseconds"] == "900000"
    assert caught.value.fields["RequestTime"] == "2026-02-03T04:05:06Z"


PRESIGN_ERRORS = [
    pytest.param(_query_sub(r"&?X-Amz-Signature=\w+", ""), errors.AuthorizationQueryParametersError,
                 "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                 "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                 "X-Amz-Expires parameters.", id="no-signature"),
    pytest.param(_query_sub(r"&?X-Amz-Expires=\d+", ""), errors.AuthorizationQueryParametersError,
                 "requires the X-Amz-Algorithm", id="no-expires"),
    pytest.param(_query_sub("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
                 errors.AuthorizationQueryParametersError,
                 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"', id="algorithm"),
    pytest.param(_query_sub(r"X-Amz-Date=\w+", "X-Amz-Date=20260203"),
                 errors.AuthorizationQueryParametersError,
                 "X-Amz-Date must be in the ISO8601 Long Format", id="date-format"),
    pytest.param(_query_sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=soon"),
                 errors.AuthorizationQueryParametersError, "X-Amz-Expires should be a number",
                 id="expires-not-a-number"),
    pytest.param(_query_sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=-1"),
                 errors.AuthorizationQueryParametersError, "X-Amz-Expires must be non-negative",
                 id="expires-negative"),
    pytest.param(_query_sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=604801"),
                 errors.AuthorizationQueryParametersError,
                 "X-Amz-Expires must be less than a week", id="expires-over-a-week"),
    pytest.param(_query_sub("us-east-1", "eu-west-1"), errors.AuthorizationQueryParametersError,
                 "Error parsing the X-Amz-Credential parameter; the region 'eu-west-1' is wrong; "
                 "expecting 'us-east-1'", id="region"),
    pytest.param(_query_sub("%2Fs3%2F", "%2Fsqs%2F"), errors.AuthorizationQueryParametersError,
                 'Error parsing the X-Amz-Credential parameter; incorrect service "sqs"',
                 id="service"),
    pytest.param(_query_sub("AKIDBOTOCORE%2F20260203", "AKIDBOTOCORE%2F20260204"),
                 errors.AuthorizationQueryParametersError,
                 'Invalid credential date "20260204". This date is not the same as X-Amz-Date: '
                 '"20260203".', id="credential-date"),
    pytest.param(_query_sub("X-Amz-Credential=AKIDBOTOCORE%2F", "X-Amz-Credential="),
                 errors.AuthorizationQueryParametersError, "the Credential is mal-formed",
                 id="credential-malformed"),
    pytest.param(lambda r: r.with_query(r.query + "&X-Amz-Signature=" + "0" * 64),
                 errors.AuthorizationQueryParametersError, "more than once",
                 id="repeated-signature"),
    pytest.param(lambda r: r.with_query(re.sub(r"X-Amz-Signature=\w", _other_hex, r.query)),
                 errors.SignatureDoesNotMatch, "calculated", id="signature-changed"),
    pytest.param(_query_sub("AKIDBOTOCORE", "AKIDOTHER"), errors.InvalidAccessKeyId,
                 "does not exist", id="unknown-key"),
    pytest.param(lambda r: r.with_query(r.query + "&acl"), errors.SignatureDoesNotMatch,
                 "calculated", id="query-added"),
    pytest.param(_query_sub(r"X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-acl"),
                 errors.SignatureDoesNotMatch, "calculated", id="signed-headers-changed"),
    pytest.param(lambda r: r.with_header("x-amz-acl", "public-read"), errors.AccessDenied,
                 "not signed", id="unsigned-amz-header"),
]


@pytest.mark.parametrize(("mutate", "error", "message"), PRESIGN_ERRORS)
def test_presigned_errors(mutate: Mutation, error: type[errors.S3Error], message: str) -> None:
    req = botocore_presigned("GET", "some key")
    verify(req)
    with pytest.raises(error) as caught:
        verify(mutate(req))
    assert message in caught.value.message


@pytest.mark.parametrize(("expires", "elapsed", "outcome"), [
    pytest.param(60, timedelta(seconds=60), None, id="at-expiry"),
    pytest.param(60, timedelta(seconds=61), "Request has expired", id="after-expiry"),
    pytest.param(604800, timedelta(days=7), None, id="a-week"),
    pytest.param(0, timedelta(0), None, id="zero-expires-same-second"),
    pytest.param(0, timedelta(seconds=1), "Request has expired", id="zero-expires-later"),
    pytest.param(3600, timedelta(hours=2), "Request has expired", id="long-after"),
    pytest.param(3600, -timedelta(minutes=16), "Request is not yet valid", id="from-the-future"),
    pytest.param(3600, -timedelta(minutes=14), None, id="skew-tolerated"),
])
def test_presigned_expiry(expires: int, elapsed: timedelta, outcome: str | None) -> None:
    req = botocore_presigned(expires=expires)
    if outcome is None:
        assert verify(req, now=FROZEN + elapsed).presigned
        return
    with pytest.raises(errors.AccessDenied) as caught:
        verify(req, now=FROZEN + elapsed)
    assert caught.value.message == outcome and caught.value.status == 403
    assert caught.value.fields["ServerTime"] == (FROZEN + elapsed).strftime("%Y-%m-%dT%H:%M:%SZ")
    if outcome == "Request has expired":
        assert caught.value.fields["X-Amz-Expires"] == str(expires)
        assert caught.value.fields["Expires"] == (
            FROZEN + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sigv2_presigned_query_is_refused() -> None:
    with pytest.raises(errors.InvalidRequest, match="Please use AWS4-HMAC-SHA256"):
        sigv4.verify("GET", "/b/k", "AWSAccessKeyId=AK&Expires=1&Signature=abc", {"host": "h"},
                     lookup, FROZEN)


def test_presigned_payload_hash_header_is_used_when_signed() -> None:
    req = botocore_presigned("PUT", "k", headers={"X-Amz-Content-SHA256": sigv4.EMPTY_SHA256})
    assert verify(req).payload_hash == sigv4.EMPTY_SHA256


def test_naive_now_is_taken_as_utc() -> None:
    assert verify(botocore_signed(), now=FROZEN.replace(tzinfo=None)).access_key == ACCESS_KEY


def test_chunk_and_trailer_strings_to_sign() -> None:
    assert sigv4.chunk_string_to_sign("T", "S", "P", "H") == \
        f"AWS4-HMAC-SHA256-PAYLOAD\nT\nS\nP\n{sigv4.EMPTY_SHA256}\nH"
    assert sigv4.trailer_string_to_sign("T", "S", "P", "H") == \
        "AWS4-HMAC-SHA256-TRAILER\nT\nS\nP\nH"


@pytest.mark.parametrize("value", [
    "20261206T221530Z", "20240229T000000Z", "20230229T000000Z", "20261306T000000Z",
    "20261200T000000Z", "20260431T000000Z", "20261206T240000Z", "20261206T236000Z",
    "20261206T235960Z", "20261206T235961Z", "00001206T000000Z", "00011206T000000Z",
    "99991231T235959Z", "2026126T221530Z", "20261206 221530Z", "20261206T221530",
    "２０２61206T221530Z",
])
def test_amz_dates_are_read_as_strptime_reads_them(value: str):
    """The sliced parse (no strptime on every request) accepts and refuses exactly what
    strptime did, with the same moment."""
    try:
        expected = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc) \
            if re.fullmatch(r"\d{8}T\d{6}Z", value, re.ASCII) else None
    except ValueError:
        expected = None
    assert sigv4._parse_amz_date(value) == expected
    try:
        scope_ok = bool(re.fullmatch(r"\d{8}", value[:8], re.ASCII)) and \
            datetime.strptime(value[:8], "%Y%m%d") is not None
    except ValueError:
        scope_ok = False
    assert sigv4._scope_date_valid(value[:8]) is scope_ok
