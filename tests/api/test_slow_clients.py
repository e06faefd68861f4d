"""Slow clients against the real server (encproxy.worker): 32 connections trickling
request heads or bodies must neither stall /_encproxy/health nor stay open past their
deadlines ([server] header_timeout, body_timeout, body_min_rate)."""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from support.clients import make_client
from support.raw_s3 import Signed
from support.server import RunningServer, start_server

HEADER_TIMEOUT = 5
BODY_TIMEOUT = 5
SLOW_HEADS = 16
SLOW_BODIES = 16
TRICKLE = 0.5  # seconds between the bytes (or header lines) a slow client sends


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("slow"), env={
        "ENCPROXY_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "ENCPROXY_SERVER_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "ENCPROXY_SERVER_BODY_MIN_RATE": "1024",
        "ENCPROXY_SERVER_CLIENT_TIMEOUT": "60",  # never the reason a slow client goes
    })
    yield server
    server.stop()


def health_latency(port: int) -> float:
    """Seconds for one GET /_encproxy/health on a new connection (raises if over 3 s)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/_encproxy/health")
        response = conn.getresponse()
        assert response.status == 200 and b'"ok"' in response.read()
    finally:
        conn.close()
    return time.monotonic() - started


class Trickler:
    """Slow clients on one thread: each sends its next byte every TRICKLE seconds."""

    def __init__(self, port: int, endpoint: str, bucket: str) -> None:
        self.sockets: list[socket.socket] = []
        self.pending: dict[socket.socket, bytes] = {}
        self.closed_after: dict[socket.socket, float] = {}
        self.answers: dict[socket.socket, bytes] = {}
        self.kind: dict[socket.socket, str] = {}
        self.started = time.monotonic()
        for i in range(SLOW_HEADS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"PUT /%s/head-%d HTTP/1.1\r\n" % (bucket.encode(), i))
            self._add(sock, b"x-slow: a\r\n" * 1000, "head")
        for i in range(SLOW_BODIES):
            path = f"/{bucket}/body-{i}"
            signed = Signed("PUT", endpoint + path, {"content-length": "100000"},
                            "UNSIGNED-PAYLOAD")
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall((f"PUT {path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n").encode())
            self._add(sock, b"b" * 100000, "body")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _add(self, sock: socket.socket, rest: bytes, kind: str) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)
        self.pending[sock] = rest
        self.answers[sock] = b""
        self.kind[sock] = kind

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.closed_after) < len(self.sockets):
            for sock in self.sockets:
                if sock in self.closed_after:
                    continue
                try:
                    while True:  # what the server said, up to its closing
                        data = sock.recv(65536)
                        if not data:
                            self.closed_after[sock] = time.monotonic() - self.started
                            break
                        self.answers[sock] += data
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_after[sock] = time.monotonic() - self.started
                if sock in self.closed_after:
                    continue
                rest = self.pending[sock]
                line = rest[:11] if self.kind[sock] == "head" else rest[:1]
                try:
                    sock.send(line)
                    self.pending[sock] = rest[len(line):]
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_after[sock] = time.monotonic() - self.started
            self.stop.wait(TRICKLE)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_health_answers_under_slow_clients_and_they_are_cut_off(slow_server):
    s3 = make_client(slow_server.endpoint)
    s3.create_bucket(Bucket="slow")
    assert health_latency(slow_server.port) < 1
    trickler = Trickler(slow_server.port, slow_server.endpoint, "slow")
    try:
        time.sleep(1.0)  # every slow connection is in, the body senders hold threads
        latencies = []
        while time.monotonic() - trickler.started < HEADER_TIMEOUT - 0.5:
            latencies.append(health_latency(slow_server.port))
            time.sleep(0.2)
        # The slow clients are all still connected while health was being probed...
        open_during = len(trickler.sockets) - len(
            [t for t in trickler.closed_after.values() if t < HEADER_TIMEOUT - 0.5])
        assert open_during == SLOW_HEADS + SLOW_BODIES
        assert len(latencies) >= 5 and max(latencies) < 1.0, latencies
        # ...and the server closes every one of them once its deadline has passed.
        trickler.thread.join(HEADER_TIMEOUT + BODY_TIMEOUT + 10)
        assert len(trickler.closed_after) == len(trickler.sockets), "not all closed"
    finally:
        trickler.close()
    heads = [t for sock, t in trickler.closed_after.items() if trickler.kind[sock] == "head"]
    bodies = [t for sock, t in trickler.closed_after.items() if trickler.kind[sock] == "body"]
    # Heads: the deadline counts from connecting; the event loop checks it each second.
    assert min(heads) >= HEADER_TIMEOUT - 0.5 and max(heads) <= HEADER_TIMEOUT + 2.5, heads
    # Bodies: from the moment a thread starts reading one. A worker may have been given
    # more bodies than it has threads (8), so some waited one round for a thread.
    assert min(bodies) >= BODY_TIMEOUT - 0.5 and max(bodies) <= 2 * BODY_TIMEOUT + 3, bodies
    for sock in trickler.sockets:
        # Each was told why: an S3 RequestTimeout, with Connection: close.
        answer = trickler.answers[sock]
        assert answer.startswith(b"HTTP/1.1 400 "), (trickler.kind[sock], answer[:200])
        assert b"<Code>RequestTimeout</Code>" in answer
        assert b"\r\nConnection: close\r\n" in answer
    # Nothing half-sent was stored, and the server still serves S3.
    assert s3.list_objects_v2(Bucket="slow").get("KeyCount", 0) == 0
    assert health_latency(slow_server.port) < 1
    print(f"health under 32 slow clients: max {max(latencies) * 1000:.0f} ms over "
          f"{len(latencies)} probes; heads closed after {min(heads):.1f}-{max(heads):.1f} s, "
          f"bodies after {min(bodies):.1f}-{max(bodies):.1f} s")
