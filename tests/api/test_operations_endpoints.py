"""Health, readiness and metrics through the real server (docs/OPERATIONS.md §1, §2).

Each endpoint, each metric family, metrics summed across gunicorn workers, a
backend that is down (readiness 503, backend errors counted), the metrics
token, and the request body limit.
"""
from __future__ import annotations

import os
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from support.backend_files import read_stored, write_stored
from support.clients import make_client
from support.operations import scrape, value
from support.server import free_port, start_server

FAMILIES = (
    "encproxy_requests_total", "encproxy_request_duration_seconds_bucket",
    "encproxy_request_duration_seconds_count", "encproxy_requests_in_flight",
    "encproxy_received_bytes_total", "encproxy_sent_bytes_total",
    "encproxy_encrypted_bytes_total", "encproxy_decrypted_bytes_total",
    "encproxy_key_provider_calls_total", "encproxy_key_provider_errors_total",
    "encproxy_key_provider_duration_seconds_bucket", "encproxy_backend_errors_total",
    "encproxy_integrity_failures_total",
)


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("ops"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ops_s3(ops):
    return make_client(ops.endpoint)


@pytest.fixture
def ops_bucket(ops_s3):
    name = "ops-" + uuid.uuid4().hex[:12]
    ops_s3.create_bucket(Bucket=name)
    return name


# -- the endpoints -------------------------------------------------------------------------

def test_health_needs_no_authentication(ops):
    resp = requests.get(ops.endpoint + "/_encproxy/health", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"status": "ok"}
    head = requests.head(ops.endpoint + "/_encproxy/health", timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_ready_reports_each_check(ops):
    resp = requests.get(ops.endpoint + "/_encproxy/ready", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"backend": "ok", "keys": "ok"}}


def test_reserved_paths_refuse_other_methods_and_names(ops):
    resp = requests.post(ops.endpoint + "/_encproxy/health", timeout=10)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, HEAD"
    resp = requests.get(ops.endpoint + "/_encproxy/nothing", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["paths"] == ["/_encproxy/health", "/_encproxy/ready",
                                    "/_encproxy/metrics"]


def test_reserved_path_of_a_virtual_host_is_an_object_key(ops, ops_s3, ops_bucket):
    """``BUCKET.localhost/_encproxy/health`` is the object ``_encproxy/health`` of BUCKET."""
    vs3 = make_client(f"http://s3.localhost:{ops.port}", addressing="virtual")

    def resolve_to_loopback(request, **_):
        host = urlsplit(request.url).hostname
        request.headers["Host"] = urlsplit(request.url).netloc
        request.url = request.url.replace(host, "127.0.0.1", 1)

    vs3.meta.events.register("before-send.s3", resolve_to_loopback)
    vs3.put_object(Bucket=ops_bucket, Key="_encproxy/health", Body=b"an object")
    assert vs3.get_object(Bucket=ops_bucket, Key="_encproxy/health")["Body"].read() == \
        b"an object"
    assert ops_s3.get_object(Bucket=ops_bucket, Key="_encproxy/health")["Body"].read() == \
        b"an object"


# -- metrics -------------------------------------------------------------------------------

def test_every_metric_family_through_the_server(ops, ops_s3, ops_bucket):
    data = os.urandom(300_000)
    ops_s3.put_object(Bucket=ops_bucket, Key="enc", Body=data, ServerSideEncryption="AES256")
    assert ops_s3.get_object(Bucket=ops_bucket, Key="enc")["Body"].read() == data
    # A key-provider error: an SSE-KMS key that does not exist.
    with pytest.raises(ClientError):
        ops_s3.put_object(Bucket=ops_bucket, Key="nokey", Body=b"x",
                          ServerSideEncryption="aws:kms", SSEKMSKeyId="no-such-key")
    # An integrity failure: a flipped bit in the stored ciphertext.
    record, stored = read_stored(ops.root, ops_bucket, "enc")
    tampered = bytearray(stored)
    tampered[100] ^= 1
    write_stored(ops.root, ops_bucket, "enc", bytes(tampered), dict(record.meta.user_metadata))
    with pytest.raises(ClientError):
        ops_s3.get_object(Bucket=ops_bucket, Key="enc")["Body"].read()

    m = scrape(ops.endpoint)
    for family in FAMILIES:
        if family != "encproxy_backend_errors_total":  # tested against a broken backend below
            assert family in m, family
    assert value(m, "encproxy_requests_total", operation="PutObject", status="200") >= 1
    assert value(m, "encproxy_requests_total", operation="GetObject", status="200") >= 1
    assert value(m, "encproxy_request_duration_seconds_count", operation="PutObject",
                 status="200") >= 1
    assert value(m, "encproxy_received_bytes_total", operation="PutObject") >= len(data)
    assert value(m, "encproxy_sent_bytes_total", operation="GetObject") >= len(data)
    assert value(m, "encproxy_encrypted_bytes_total") >= len(data)
    assert value(m, "encproxy_decrypted_bytes_total") >= len(data)
    assert value(m, "encproxy_key_provider_calls_total", provider="local", call="wrap") >= 1
    assert value(m, "encproxy_key_provider_calls_total", provider="local", call="unwrap") >= 1
    assert value(m, "encproxy_key_provider_duration_seconds_count", provider="local",
                 call="unwrap") >= 1
    assert value(m, "encproxy_key_provider_errors_total",
                 error="KMS.NotFoundException") >= 1
    assert value(m, "encproxy_integrity_failures_total") >= 1
    assert value(m, "encproxy_requests_in_flight") >= 0
    # The operations endpoints themselves are not counted as S3 requests.
    assert all(labels["operation"] != "unknown" or labels["status"] != "200"
               for labels, _ in m["encproxy_requests_total"])


def test_counters_are_summed_across_workers(ops, ops_s3, ops_bucket):
    """Two workers; every request on a new connection. Each scrape reaches one worker,
    yet reports the requests both served."""
    before = value(scrape(ops.endpoint), "encproxy_requests_total", operation="HeadBucket")
    n = 40
    for _ in range(n):
        resp = requests.head(ops.endpoint + "/" + ops_bucket, timeout=10,
                             headers={"Connection": "close"})
        assert resp.status_code == 403  # anonymous: refused, and still counted
    # A request is counted when the server closes its response, just after the client
    # has read it: the last one may still be on its way to the shared counters.
    deadline = time.monotonic() + 5
    while value(scrape(ops.endpoint, headers={"Connection": "close"}),
                "encproxy_requests_total", operation="HeadBucket") - before < n:
        assert time.monotonic() < deadline, "the workers' counts never reached the requests"
        time.sleep(0.05)
    for _ in range(4):  # whichever worker answers the scrape
        after = value(scrape(ops.endpoint, headers={"Connection": "close"}),
                      "encproxy_requests_total", operation="HeadBucket")
        assert after - before == n


def test_metrics_token_and_body_limit(tmp_path):
    server = start_server(tmp_path, env={"ENCPROXY_SERVER_METRICS_TOKEN": "scrape-token-123",
                                         "ENCPROXY_SERVER_MAX_REQUEST_BODY": "1MiB"})
    try:
        resp = requests.get(server.endpoint + "/_encproxy/metrics", timeout=10)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        resp = requests.get(server.endpoint + "/_encproxy/metrics", timeout=10,
                            headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401
        scrape(server.endpoint, headers={"Authorization": "Bearer scrape-token-123"})
        # health and ready stay open
        assert requests.get(server.endpoint + "/_encproxy/health", timeout=10).ok

        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="limits")
        s3.put_object(Bucket="limits", Key="fits", Body=b"x" * (1024 * 1024))
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="limits", Key="too-big", Body=b"x" * (1024 * 1024 + 1))
        assert exc.value.response["Error"]["Code"] == "EntityTooLarge"
        with pytest.raises(ClientError):
            s3.head_object(Bucket="limits", Key="too-big")
    finally:
        server.stop()
    assert "scrape-token-123" not in server.log_text()


def test_backend_down_is_not_ready_and_counted(tmp_path):
    """An S3 backend that refuses connections: ready is 503, health stays 200, and the
    backend's failures are counted."""
    down = free_port()
    server = start_server(tmp_path, env={
        "ENCPROXY_BACKEND_TYPE": "s3", "ENCPROXY_BACKEND_ENDPOINT": f"http://127.0.0.1:{down}",
        "ENCPROXY_BACKEND_ACCESS_KEY": "backend-key", "ENCPROXY_BACKEND_SECRET_KEY":
        "backend-secret", "ENCPROXY_BACKEND_CONNECT_TIMEOUT": "1"})
    try:
        assert requests.get(server.endpoint + "/_encproxy/health", timeout=10).status_code == 200
        resp = requests.get(server.endpoint + "/_encproxy/ready", timeout=10)
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "not ready"
        assert body["checks"]["backend"] != "ok" and body["checks"]["keys"] == "ok"
        s3 = make_client(server.endpoint)
        with pytest.raises(ClientError) as exc:
            s3.list_objects_v2(Bucket="anything")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        m = scrape(server.endpoint, headers={"Connection": "close"})
        assert value(m, "encproxy_backend_errors_total") >= 1
        assert value(m, "encproxy_requests_total", operation="ListObjectsV2",
                     status="503") >= 1
    finally:
        server.stop()


def test_multipart_bytes_are_counted(ops, ops_s3, ops_bucket):
    before = scrape(ops.endpoint)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    up = ops_s3.create_multipart_upload(Bucket=ops_bucket, Key="mp",
                                        ServerSideEncryption="AES256")
    done = [{"PartNumber": n + 1, "ETag": ops_s3.upload_part(
        Bucket=ops_bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n + 1,
        Body=data)["ETag"]} for n, data in enumerate(parts)]
    ops_s3.complete_multipart_upload(Bucket=ops_bucket, Key="mp", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done})
    assert ops_s3.get_object(Bucket=ops_bucket, Key="mp")["Body"].read() == b"".join(parts)
    after = scrape(ops.endpoint)
    total = sum(map(len, parts))
    for name in ("encproxy_encrypted_bytes_total", "encproxy_decrypted_bytes_total"):
        assert value(after, name) - value(before, name) == total, name
    assert value(after, "encproxy_requests_total", operation="UploadPart", status="200") - \
        value(before, "encproxy_requests_total", operation="UploadPart", status="200") == 2
