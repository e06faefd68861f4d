"""Lifecycle through the real server (docs/OPERATIONS.md §4, §5): SIGTERM with an
upload in flight, SIGHUP with changed credentials, TLS termination."""
from __future__ import annotations

import os
import signal
import time

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from support.clients import make_client
from support.operations import SlowUpload, scrape, self_signed, value
from support.server import ACCESS_KEY, SECRET_KEY, start_server

NEW_ACCESS, NEW_SECRET = "rotated-access-key", "rotated-secret-key-0123"


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def wait_for(condition, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def test_sigterm_lets_an_upload_in_flight_finish(tmp_path):
    env = {"ENCPROXY_SERVER_GRACEFUL_TIMEOUT": "20", "ENCPROXY_ENCRYPTION_DEFAULT": "AES256"}
    server = start_server(tmp_path, env=env)
    try:
        make_client(server.endpoint).create_bucket(Bucket="drain")
        body = os.urandom(6 * 1024 * 1024 + 17)
        upload = SlowUpload(server.endpoint, server.port, "/drain/in-flight", body)
        time.sleep(0.5)  # a worker is reading the body
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # the server is shutting down, waiting for the upload
        assert server.process.poll() is None
        status, raw = upload.finish()
        assert status == 200, raw
        assert server.process.wait(timeout=30) == 0
    finally:
        server.stop()
    assert "Shutting down" in server.log_text()
    # No data loss: a new server on the same store and keyring reads the object whole.
    again = start_server(tmp_path, env=env)
    try:
        got = make_client(again.endpoint).get_object(Bucket="drain", Key="in-flight")
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == body
    finally:
        again.stop()


def test_sighup_reloads_credentials_without_dropping_connections(tmp_path):
    server = start_server(tmp_path, env={"ENCPROXY_SERVER_GRACEFUL_TIMEOUT": "20"})
    try:
        old = make_client(server.endpoint)
        old.create_bucket(Bucket="reload")
        for _ in range(5):
            old.head_bucket(Bucket="reload")
        before = value(scrape(server.endpoint), "encproxy_requests_total")
        body = os.urandom(2 * 1024 * 1024)
        upload = SlowUpload(server.endpoint, server.port, "/reload/in-flight", body)
        time.sleep(0.3)

        text = server.config.read_text()
        assert f"{ACCESS_KEY} = {SECRET_KEY}" in text
        server.config.write_text(text.replace(f"{ACCESS_KEY} = {SECRET_KEY}",
                                              f"{NEW_ACCESS} = {NEW_SECRET}"))
        server.process.send_signal(signal.SIGHUP)

        new = make_client(server.endpoint, access_key=NEW_ACCESS, secret=NEW_SECRET)

        def new_works() -> bool:
            try:
                make_client(server.endpoint, access_key=NEW_ACCESS, secret=NEW_SECRET) \
                    .head_bucket(Bucket="reload")
                return True
            except ClientError:
                return False

        def old_refused() -> bool:
            try:
                make_client(server.endpoint).head_bucket(Bucket="reload")
                return False
            except ClientError:
                return True

        assert wait_for(new_works), "the new credential never worked"
        assert wait_for(old_refused), "the old credential kept working"
        with pytest.raises(ClientError) as exc:
            make_client(server.endpoint).list_objects_v2(Bucket="reload")
        assert error_code(exc) == "InvalidAccessKeyId"

        # The upload that was in flight during the reload completes (old worker, old
        # credential, verified before the reload).
        status, raw = upload.finish()
        assert status == 200, raw
        assert new.get_object(Bucket="reload", Key="in-flight")["Body"].read() == body
        assert server.process.poll() is None
        # Counters from the replaced workers still count.
        assert value(scrape(server.endpoint), "encproxy_requests_total") >= before + 5
    finally:
        server.stop()
    assert "reload: configuration read from" in server.log_text()


def test_sighup_with_a_broken_config_keeps_serving(tmp_path):
    server = start_server(tmp_path)
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="broken-reload")
        server.config.write_text(server.config.read_text() + "\nno_such_option = 1\n")
        server.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the running configuration" in server.log_text())
        time.sleep(1.0)
        s3.head_bucket(Bucket="broken-reload")
        assert requests.get(server.endpoint + "/_encproxy/health", timeout=10).ok
        assert server.process.poll() is None
    finally:
        server.stop()


def test_tls_termination_carries_sse_c(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    server = start_server(tmp_path / "server", env={
        "ENCPROXY_SERVER_CERTFILE": str(cert), "ENCPROXY_SERVER_KEYFILE": str(key),
        "ENCPROXY_ENCRYPTION_ALLOW_INSECURE_SSE_C": "false"})
    endpoint = f"https://127.0.0.1:{server.port}"
    try:
        health = requests.get(endpoint + "/_encproxy/health", verify=str(cert), timeout=10)
        assert health.status_code == 200
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          verify=str(cert),
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 1}))
        s3.create_bucket(Bucket="tls")
        sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
        data = os.urandom(200_000)
        s3.put_object(Bucket="tls", Key="k", Body=data, **sse)
        assert s3.get_object(Bucket="tls", Key="k", **sse)["Body"].read() == data
        # Plain HTTP on the TLS port gets no S3 answer.
        with pytest.raises(requests.RequestException):
            resp = requests.get(server.endpoint + "/_encproxy/health", timeout=5)
            resp.raise_for_status()
    finally:
        server.stop()


def test_sse_c_over_plain_http_is_refused_even_if_a_header_says_https(tmp_path):
    """Only TLS to encproxy itself counts: X-Forwarded-Proto is not trusted."""
    server = start_server(tmp_path, env={"ENCPROXY_ENCRYPTION_ALLOW_INSECURE_SSE_C": "false"})
    try:
        s3 = make_client(server.endpoint)

        def spoof(request, **_):
            request.headers["X-Forwarded-Proto"] = "https"
            request.headers["X-Forwarded-Ssl"] = "on"

        s3.meta.events.register("before-send.s3", spoof)
        s3.create_bucket(Bucket="spoof")
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="spoof", Key="k", Body=b"x", SSECustomerAlgorithm="AES256",
                          SSECustomerKey=os.urandom(32))
        assert error_code(exc) == "InvalidRequest"
    finally:
        server.stop()
