"""Atomicity and concurrency of writes through the real server."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from support.raw_s3 import Signed, read_response


def test_disconnect_mid_upload_leaves_nothing(server, s3, bucket, backend, backend_client):
    size = 8 * 1024 * 1024
    path = f"/{bucket}/partial"
    signed = Signed("PUT", server.endpoint + path, {"content-length": str(size)},
                    "UNSIGNED-PAYLOAD")
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
    sock.sendall(head.encode() + os.urandom(size // 2))
    time.sleep(0.3)
    sock.close()
    time.sleep(1.0)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="partial")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    if backend.is_s3:
        with pytest.raises(ClientError) as exc:
            backend_client.head_object(Bucket=bucket, Key="partial")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    else:
        tmp = server.root / "tmp"
        assert not tmp.exists() or not any(tmp.iterdir())


def test_concurrent_uploads_to_one_key_leave_one_whole_version(s3, bucket, quirks):
    bodies = [bytes([i]) * (4 * 1024 * 1024 + i) for i in range(6)]
    barrier = threading.Barrier(len(bodies))

    def put(body: bytes) -> str:
        barrier.wait()
        return s3.put_object(Bucket=bucket, Key="contended", Body=body)["ETag"]

    with quirks.breaks("concurrent-overwrite"):
        with ThreadPoolExecutor(len(bodies)) as pool:
            list(pool.map(put, bodies))
        got = s3.get_object(Bucket=bucket, Key="contended")
        data = got["Body"].read()
        assert data in bodies
        assert got["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'


def test_reader_keeps_its_version_while_overwritten(s3, bucket):
    first = os.urandom(16 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="v", Body=first)
    stream = s3.get_object(Bucket=bucket, Key="v")["Body"]
    head = stream.read(1024)
    s3.put_object(Bucket=bucket, Key="v", Body=b"replacement")
    assert head + stream.read() == first
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"replacement"


def test_garbage_requests_get_xml_errors(server):
    import requests
    resp = requests.request("PATCH", f"{server.endpoint}/bucket/key", timeout=10)
    assert resp.status_code in (403, 405)
    assert resp.content.startswith(b"<?xml")
    resp = requests.get(f"{server.endpoint}/%ff%fe/key", timeout=10)
    assert resp.status_code in (400, 403)
    assert resp.content.startswith(b"<?xml")


def test_stalled_upload_times_out(tmp_path):
    """A client that goes silent mid-body gets RequestTimeout and stores nothing."""
    from support.server import start_server
    from support.clients import make_client
    server = start_server(tmp_path / "srv", extra="", env={"ENCPROXY_SERVER_CLIENT_TIMEOUT": "2"})
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="stall")
        path = "/stall/slow"
        signed = Signed("PUT", server.endpoint + path, {"content-length": "1000"},
                        "UNSIGNED-PAYLOAD")
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall((f"PUT {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n").encode() + b"x" * 10)
        sock.settimeout(30)
        started = time.monotonic()
        reply = read_response(sock)
        assert time.monotonic() - started < 20
        assert reply.startswith(b"HTTP/1.1 400") and b"<Code>RequestTimeout</Code>" in reply
        sock.close()
        with pytest.raises(ClientError):
            s3.head_object(Bucket="stall", Key="slow")
    finally:
        server.stop()
