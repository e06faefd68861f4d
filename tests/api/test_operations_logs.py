"""The access log and log hygiene through the real server (docs/OPERATIONS.md §3).

One server at log level debug serves header-signed, presigned and badly signed
requests, SSE-C reads and writes and a session token; every line it logged is
then read back: one JSON access line per request with the documented fields,
and no secret, SSE-C key, signature, token or presigned query string anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from support.clients import make_client
from support.raw_s3 import Signed
from support.server import ACCESS_KEY, SECRET_KEY, start_server

WRONG_SECRET = "wrong-secret-never-logged-5f1c"
SESSION_TOKEN = "session-token-never-logged-93ab7e"
FIELDS = {"time", "request_id", "remote_addr", "method", "operation", "bucket", "key", "status",
          "bytes_in", "bytes_out", "duration_ms", "access_key", "auth", "complete",
          "user_agent", "access"}


def access_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if "request_id" in doc:
                lines.append(doc)
    return lines


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Serve a set of requests at log level debug; return what was sent and the log."""
    server = start_server(tmp_path_factory.mktemp("logs"),
                          env={"ENCPROXY_SERVER_LOG_LEVEL": "debug"})
    secrets: list[str] = [SECRET_KEY, WRONG_SECRET, SESSION_TOKEN]
    request_ids: dict[str, str] = {}   # request id -> what it was
    signatures: list[str] = []

    def capture(request, **_):
        auth = request.headers.get("Authorization")
        if auth:
            auth = auth.decode() if isinstance(auth, bytes) else auth
            signatures.append(auth.rsplit("Signature=", 1)[1])

    def client(**kw):
        c = make_client(server.endpoint, **kw)
        c.meta.events.register("before-send.s3", capture)
        return c

    try:
        s3 = client()
        s3.create_bucket(Bucket="logged")
        data = os.urandom(100_000)
        sse_key = os.urandom(32)
        secrets += [base64.b64encode(sse_key).decode(), sse_key.hex()]
        sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": sse_key}
        put = s3.put_object(Bucket="logged", Key="dir/secret.bin", Body=data, **sse)
        request_ids[put["ResponseMetadata"]["RequestId"]] = "put"
        got = s3.get_object(Bucket="logged", Key="dir/secret.bin", **sse)
        assert got["Body"].read() == data
        request_ids[got["ResponseMetadata"]["RequestId"]] = "get"
        try:  # the source's SSE-C key travels in x-amz-copy-source-server-side-encryption-*
            copied = s3.copy_object(Bucket="logged", Key="copy",
                                    CopySource="logged/dir/secret.bin",
                                    CopySourceSSECustomerAlgorithm="AES256",
                                    CopySourceSSECustomerKey=sse_key, **sse)
            request_ids[copied["ResponseMetadata"]["RequestId"]] = "copy"
        except ClientError as exc:  # whether or not this copy is supported
            request_ids[exc.response["ResponseMetadata"]["RequestId"]] = "copy"

        # Wrong secret: refused, signature in the request.
        bad = client(secret=WRONG_SECRET)
        with pytest.raises(ClientError) as exc:
            bad.get_object(Bucket="logged", Key="dir/secret.bin")
        assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        request_ids[exc.value.response["ResponseMetadata"]["RequestId"]] = "bad"

        # Presigned, with a session token in the query.
        presigner = boto3.client(
            "s3", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            aws_session_token=SESSION_TOKEN,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        s3.put_object(Bucket="logged", Key="dir/plain.txt", Body=b"plain")
        url = presigner.generate_presigned_url(
            "get_object", Params={"Bucket": "logged", "Key": "dir/plain.txt"}, ExpiresIn=300)
        query = urlsplit(url).query
        signatures.append(parse_qs(query)["X-Amz-Signature"][0])
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 200 and resp.content == b"plain"
        request_ids[resp.headers["x-amz-request-id"]] = "presigned"
        # A presigned URL with a forged signature.
        forged = url.replace(parse_qs(query)["X-Amz-Signature"][0], "ab" * 32)
        signatures.append("ab" * 32)
        resp = requests.get(forged, timeout=10)
        assert resp.status_code == 403
        request_ids[resp.headers["x-amz-request-id"]] = "forged"

        # A raw request whose headers carry a token and an SSE-C key.
        signed = Signed("GET", server.endpoint + "/logged/dir/secret.bin",
                        {"x-amz-security-token": SESSION_TOKEN,
                         "x-amz-server-side-encryption-customer-algorithm": "AES256",
                         "x-amz-server-side-encryption-customer-key":
                             base64.b64encode(sse_key).decode(),
                         "x-amz-server-side-encryption-customer-key-md5":
                             base64.b64encode(hashlib.md5(sse_key).digest()).decode()},
                        "UNSIGNED-PAYLOAD")
        signatures.append(signed.signature)
        resp = requests.get(server.endpoint + "/logged/dir/secret.bin", headers=signed.headers,
                            timeout=10)
        assert resp.status_code == 200 and resp.content == data
        request_ids[resp.headers["x-amz-request-id"]] = "raw"

        # A malformed request line carrying a presigned query: gunicorn refuses it itself.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"GET /logged/k?{query}&bad=\x7f HTTP/1.1\r\nHost: x\r\n\r\n"
                         .encode())
            sock.recv(4096)
    finally:
        server.stop()
    return {"log": server.log_text(), "secrets": secrets, "signatures": signatures,
            "request_ids": request_ids, "presigned_query": query, "size": len(data)}


def test_one_json_access_line_per_request(run):
    lines = access_lines(run["log"])
    by_id = {}
    for line in lines:
        assert set(line) == FIELDS, line
        by_id.setdefault(line["request_id"], []).append(line)
    for rid, what in run["request_ids"].items():
        assert len(by_id.get(rid, [])) == 1, (what, rid)
    put = next(v[0] for k, v in by_id.items() if run["request_ids"].get(k) == "put")
    assert (put["method"], put["operation"], put["bucket"], put["key"], put["status"]) == \
        ("PUT", "PutObject", "logged", "dir/secret.bin", 200)
    assert put["bytes_in"] == run["size"] and put["bytes_out"] == 0
    assert put["access_key"] == ACCESS_KEY and put["auth"] == "header" and put["complete"]
    assert put["duration_ms"] > 0 and put["user_agent"].startswith("Boto3")
    get = next(v[0] for k, v in by_id.items() if run["request_ids"].get(k) == "get")
    assert get["operation"] == "GetObject" and get["bytes_out"] == run["size"]
    bad = next(v[0] for k, v in by_id.items() if run["request_ids"].get(k) == "bad")
    assert bad["status"] == 403 and bad["access_key"] is None
    presigned = next(v[0] for k, v in by_id.items()
                     if run["request_ids"].get(k) == "presigned")
    assert presigned["auth"] == "presigned" and presigned["status"] == 200


def test_every_other_line_is_json_too(run):
    for line in run["log"].splitlines():
        if line.strip():
            doc = json.loads(line)
            assert "time" in doc


def test_no_secret_in_any_log_line(run):
    text = run["log"]
    assert len(run["signatures"]) >= 5
    for secret in run["secrets"]:
        assert secret not in text
    for signature in run["signatures"]:
        assert signature not in text
    assert run["presigned_query"] not in text
    # gunicorn's own message about the malformed request line was logged, redacted.
    assert any("Invalid request" in line and "X-Amz-Signature=REDACTED" in line
               for line in text.splitlines())
    assert "X-Amz-Credential=" + ACCESS_KEY not in text
