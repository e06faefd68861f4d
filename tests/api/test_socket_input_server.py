"""Large request bodies read straight from the socket (encproxy.wsgi.edge.socket_input),
through the real server: keep-alive, pipelining, stalls and disconnects."""
from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest
from botocore.exceptions import ClientError
from support.clients import make_client
from support.raw_s3 import Signed, read_response
from support.server import start_server

MiB = 1024 * 1024


def raw_put(endpoint: str, path: str, body: bytes) -> bytes:
    signed = Signed("PUT", endpoint + path, {"content-length": str(len(body))},
                    "UNSIGNED-PAYLOAD")
    return (f"PUT {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n").encode() + body


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """The status lines of ``count`` responses (bodies are empty or XML, sized)."""
    data = b""
    statuses: list[bytes] = []
    while len(statuses) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                break
            statuses.append(head.split(b"\r\n")[0])
            data = rest[length:]
    return statuses


def test_pipelined_large_uploads_on_one_connection(server, s3, bucket):
    bodies = [os.urandom(MiB + 17), os.urandom(300 * 1024), os.urandom(2 * MiB)]
    wire = b"".join(raw_put(server.endpoint, f"/{bucket}/p{i}", body)
                    for i, body in enumerate(bodies))
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(wire)  # all three requests back to back, before any answer
        statuses = read_responses(sock, 3)
    assert statuses == [b"HTTP/1.1 200 OK"] * 3
    for i, body in enumerate(bodies):
        got = s3.get_object(Bucket=bucket, Key=f"p{i}")
        assert got["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
        assert got["Body"].read() == body


def test_large_upload_that_stalls_times_out_and_stores_nothing(tmp_path):
    server = start_server(tmp_path / "srv", env={"ENCPROXY_SERVER_CLIENT_TIMEOUT": "2"})
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="stall")
        wire = raw_put(server.endpoint, "/stall/big", os.urandom(2 * MiB))
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(wire[:-MiB])  # headers and half the body, then silence
        sock.settimeout(30)
        started = time.monotonic()
        reply = read_response(sock)
        assert time.monotonic() - started < 20
        assert reply.startswith(b"HTTP/1.1 400") and b"<Code>RequestTimeout</Code>" in reply
        sock.close()
        with pytest.raises(ClientError):
            s3.head_object(Bucket="stall", Key="big")
    finally:
        server.stop()
