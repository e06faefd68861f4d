"""encproxy.sigv4.sign: outgoing requests to an S3 backend, checked against botocore.

botocore's ``S3SigV4Auth`` signs the same request (same headers, same frozen clock);
encproxy's signature must be byte-for-byte the same, and encproxy's own verifier must
accept what it signed and refuse it once anything signed changes.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from encproxy import errors, sigv4
from encproxy.s3backend.forwarding import Endpoint, forward_query, quote_key

FROZEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
IDENTITY = sigv4.SigningIdentity("BACKENDKEY", "backend/secret+key=", "eu-central-1")
# (body, payload hash): botocore hashes the body itself, or sends UNSIGNED-PAYLOAD.
PAYLOADS = [pytest.param(None, sigv4.UNSIGNED_PAYLOAD, id="unsigned"),
            pytest.param(b"", sigv4.EMPTY_SHA256, id="empty"),
            pytest.param(b"test", hashlib.sha256(b"test").hexdigest(), id="hashed")]


@pytest.fixture(autouse=True)
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda remove_tzinfo=True: FROZEN.replace(tzinfo=None)
                        if remove_tzinfo else FROZEN)


def botocore_authorization(method: str, url: str, headers: dict[str, str],
                           body: bytes | None) -> str:
    request = AWSRequest(method=method, url=url, headers=headers, data=body or b"")
    if body is None:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    signer = botocore.auth.S3SigV4Auth(
        Credentials(IDENTITY.access_key, IDENTITY.secret), "s3", IDENTITY.region)
    signer.add_auth(request)
    return request.headers["Authorization"]


CASES = [
    pytest.param("GET", None, None, "", id="list-buckets"),
    pytest.param("PUT", "bucket", "plain.txt", "", id="put"),
    pytest.param("GET", "bucket", "dir/sp ace+plus%percent", "", id="awkward-key"),
    pytest.param("GET", "bucket", "ünïcödé/ключ/鍵", "", id="unicode-key"),
    pytest.param("GET", "bucket", "a//b/../c/./d", "", id="dot-segments-kept"),
    pytest.param("GET", "bucket", "tab\tnew\nline~tilde", "", id="control-characters"),
    pytest.param("GET", "bucket", None, "list-type=2&prefix=a b&delimiter=/&max-keys=7",
                 id="list-query"),
    pytest.param("POST", "bucket", "k", "uploads", id="bare-parameter"),
    pytest.param("PUT", "bucket", "k", "partNumber=3&uploadId=a~b.c_d-e%2Ff",
                 id="upload-part"),
    pytest.param("GET", "bucket", "k", "response-content-type=text/plain; charset=utf-8",
                 id="response-override"),
]


@pytest.mark.parametrize("body,payload_hash", PAYLOADS)
@pytest.mark.parametrize("method,bucket,key,query", CASES)
@pytest.mark.parametrize("virtual", [False, True], ids=["path", "virtual"])
def test_signature_matches_botocore(method, bucket, key, query, virtual, body, payload_hash):
    endpoint = Endpoint.from_url("http://127.0.0.1:9000", "virtual" if virtual else "path")
    path, host = endpoint.target(bucket, key)
    wire_query = forward_query(query)
    headers = {"host": host, "content-type": "text/plain", "x-amz-meta-colour": "  blue  sky ",
               "x-amz-copy-source": "src/" + quote_key("k ey")}
    added = sigv4.sign(method, path, wire_query, headers, IDENTITY, FROZEN, payload_hash)
    url = f"http://{host}{path}" + (f"?{wire_query}" if wire_query else "")
    assert added["authorization"] == botocore_authorization(method, url, headers, body)
    assert added["x-amz-date"] == "20260304T050607Z"
    assert added["x-amz-content-sha256"] == payload_hash


def test_verifier_accepts_what_sign_signed_and_nothing_else():
    path, host = Endpoint.from_url("http://s3.example.test").target("bkt", "a b/ü")
    headers = {"host": host, "x-amz-meta-a": "1"}
    added = sigv4.sign("PUT", path, "partNumber=1&uploadId=x", headers, IDENTITY, FROZEN)
    signed = {**headers, **added}

    def secret(access_key: str) -> str | None:
        return IDENTITY.secret if access_key == IDENTITY.access_key else None

    verified = sigv4.verify("PUT", path, "partNumber=1&uploadId=x", signed, secret, FROZEN,
                            region=IDENTITY.region)
    assert verified.access_key == IDENTITY.access_key
    assert verified.payload_hash == sigv4.UNSIGNED_PAYLOAD
    assert set(verified.signed_headers) == {"host", "x-amz-meta-a", "x-amz-date",
                                            "x-amz-content-sha256"}
    for changed in ({**signed, "x-amz-meta-a": "2"}, {**signed, "host": "other.test"}):
        with pytest.raises(errors.SignatureDoesNotMatch):
            sigv4.verify("PUT", path, "partNumber=1&uploadId=x", changed, secret, FROZEN,
                         region=IDENTITY.region)
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.verify("PUT", path, "partNumber=2&uploadId=x", signed, secret, FROZEN,
                     region=IDENTITY.region)


def test_sign_requires_host_and_keeps_the_secret_out_of_repr():
    with pytest.raises(ValueError):
        sigv4.sign("GET", "/", "", {}, IDENTITY, FROZEN)
    assert IDENTITY.secret not in repr(IDENTITY)


def test_naive_clock_is_utc():
    naive = FROZEN.replace(tzinfo=None)
    headers = {"host": "h"}
    assert sigv4.sign("GET", "/", "", headers, IDENTITY, naive) == \
        sigv4.sign("GET", "/", "", headers, IDENTITY, FROZEN)
