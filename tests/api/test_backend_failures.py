"""An S3 backend that is down, silent, or dies mid-transfer.

* unreachable or silent: the client gets a 503 XML error promptly, never a hang;
* dies mid-GET: the client's connection is aborted, never a short 200;
* dies mid-PUT: no object, not even a partial one, is left in the backend.

The mid-transfer cases put a cutting TCP proxy (support.tcp_proxy) between encproxy
and a real backend (moto, Ceph RGW).
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import defusedxml.ElementTree as ET
import pytest
import requests
from botocore.exceptions import ClientError
from support.backends import Backend
from support.clients import make_client
from support.raw_s3 import Signed
from support.server import RunningServer, start_server
from support.tcp_proxy import CuttingProxy

S3_BACKENDS = ["moto", pytest.param("ceph", marks=pytest.mark.rgw)]
MiB = 1024 * 1024


def s3_env(endpoint: str, **options: str) -> dict[str, str]:
    env = {"ENCPROXY_BACKEND_TYPE": "s3", "ENCPROXY_BACKEND_ENDPOINT": endpoint,
           "ENCPROXY_BACKEND_ACCESS_KEY": "k", "ENCPROXY_BACKEND_SECRET_KEY": "s"}
    env.update({"ENCPROXY_BACKEND_" + k.upper(): v for k, v in options.items()})
    return env


def assert_503_xml(resp: requests.Response) -> None:
    assert resp.status_code == 503, resp.text
    root = ET.fromstring(resp.content)
    assert root.findtext("Code") in ("ServiceUnavailable", "SlowDown")
    assert root.findtext("RequestId") == resp.headers["x-amz-request-id"]


def signed_request(server: RunningServer, method: str, path: str, body: bytes = b"",
                   timeout: float = 30) -> requests.Response:
    url = server.endpoint + path
    signed = Signed(method, url, {"content-length": str(len(body))} if body else {},
                    "UNSIGNED-PAYLOAD")
    return requests.request(method, url, data=body or None, headers=signed.headers,
                            timeout=timeout)


# -- down and silent backends -----------------------------------------------------------

@pytest.fixture(scope="module")
def down_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    server = start_server(tmp_path_factory.mktemp("down"),
                          env=s3_env(f"http://127.0.0.1:{port}"))
    yield server
    server.stop()


@pytest.mark.parametrize("method,path,body", [
    pytest.param("GET", "/", b"", id="list-buckets"),
    pytest.param("GET", "/bkt/key", b"", id="get"),
    pytest.param("PUT", "/bkt/key", b"x" * 100_000, id="put"),
    pytest.param("PUT", "/bkt", b"", id="create-bucket"),
])
def test_unreachable_backend_is_503_at_once(down_server, method, path, body):
    started = time.monotonic()
    resp = signed_request(down_server, method, path, body)
    assert time.monotonic() - started < 3
    assert_503_xml(resp)


def test_unreachable_backend_head_is_503_without_body(down_server):
    resp = signed_request(down_server, "HEAD", "/bkt/key")
    assert resp.status_code == 503 and resp.content == b""


def test_silent_backend_is_503_after_the_read_timeout(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:  # accepts, reads nothing, answers nothing
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    server = start_server(tmp_path / "srv", env=s3_env(f"http://127.0.0.1:{port}",
                                                       read_timeout="1.5"))
    try:
        for method, body in (("GET", b""), ("PUT", b"y" * 10_000)):
            started = time.monotonic()
            resp = signed_request(server, method, "/bkt/key", body)
            elapsed = time.monotonic() - started
            assert 1.4 < elapsed < 6, elapsed
            assert_503_xml(resp)
    finally:
        server.stop()
        listener.close()
        for sock in accepted:
            sock.close()


# -- a backend that dies mid-transfer ---------------------------------------------------

@pytest.fixture(scope="module")
def proxied(backend: Backend, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[RunningServer, CuttingProxy]]:
    assert backend.endpoint is not None
    proxy = CuttingProxy(urlsplit(backend.endpoint).port or 80)
    server = start_server(tmp_path_factory.mktemp("proxied"),
                          env=backend.server_env(endpoint=proxy.endpoint, read_timeout="10"))
    yield server, proxy
    server.stop()
    proxy.close()


@pytest.fixture
def direct_bucket(backend_client) -> Iterator[str]:
    """A bucket made directly in the backend, emptied and removed afterwards."""
    name = "cut-" + uuid.uuid4().hex[:12]
    backend_client.create_bucket(Bucket=name)
    yield name
    for obj in backend_client.list_objects_v2(Bucket=name).get("Contents", []):
        backend_client.delete_object(Bucket=name, Key=obj["Key"])
    for up in backend_client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        backend_client.abort_multipart_upload(Bucket=name, Key=up["Key"],
                                              UploadId=up["UploadId"])
    backend_client.delete_bucket(Bucket=name)


@pytest.mark.parametrize("backend", S3_BACKENDS, indirect=True)
def test_backend_dying_mid_get_aborts_the_client_connection(proxied, backend_client,
                                                            direct_bucket):
    server, proxy = proxied
    size = 8 * MiB
    backend_client.put_object(Bucket=direct_bucket, Key="big", Body=os.urandom(size))
    proxy.cut.response_after = 3 * MiB
    try:
        path = f"/{direct_bucket}/big"
        signed = Signed("GET", server.endpoint + path, {}, "UNSIGNED-PAYLOAD")
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall((f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n").encode())
        received = b""
        while True:
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        sock.close()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f"content-length: {size}".encode() in head.lower()
        assert len(body) < size  # aborted: the client can tell it is not the whole object
        # And a real client notices.
        s3 = make_client(server.endpoint)
        with pytest.raises(Exception) as exc:
            s3.get_object(Bucket=direct_bucket, Key="big")["Body"].read()
        assert not isinstance(exc.value, AssertionError)
    finally:
        proxy.cut.response_after = None


@pytest.mark.parametrize("backend", S3_BACKENDS, indirect=True)
def test_backend_dying_mid_put_leaves_no_object(proxied, backend_client, direct_bucket):
    server, proxy = proxied
    s3 = make_client(server.endpoint)
    proxy.cut.request_after = 3 * MiB
    try:
        started = time.monotonic()
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=direct_bucket, Key="half", Body=os.urandom(8 * MiB))
        assert exc.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert time.monotonic() - started < 15
        assert proxy.cuts >= 1
    finally:
        proxy.cut.request_after = None
    time.sleep(0.5)
    with pytest.raises(ClientError) as exc:
        backend_client.head_object(Bucket=direct_bucket, Key="half")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "Contents" not in backend_client.list_objects_v2(Bucket=direct_bucket)
    # The proxy works again: the same upload now succeeds whole.
    body = os.urandom(4 * MiB)
    s3.put_object(Bucket=direct_bucket, Key="half", Body=body)
    assert backend_client.get_object(Bucket=direct_bucket, Key="half")["Body"].read() == body
