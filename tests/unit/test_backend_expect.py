"""encproxy.s3backend.expect: ``Expect: 100-continue`` spoken to a real HTTP/1.1 peer on a
loopback socket, in its three outcomes: "100 Continue" then the body, a final answer and no
body, and no answer in time (the body goes anyway)."""
from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from encproxy.s3backend.expect import send_expecting

BODY = b"0123456789" * 1000


class Peer:
    """A one-connection HTTP/1.1 server that answers as told and records what it got."""

    def __init__(self, interim: bytes | None, final: bytes, delay_interim: float = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.interim, self.final, self.delay = interim, final, delay_interim
        self.received_body = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            if self.delay:
                conn.settimeout(self.delay)
            if self.interim is None and not self.delay:
                conn.sendall(self.final)      # refuse before the body
                return
            if self.interim is not None:
                conn.sendall(self.interim)
            conn.settimeout(10)
            while len(self.received_body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                self.received_body += chunk
            conn.sendall(self.final)


@pytest.fixture
def connect() -> Iterator[object]:
    made: list[http.client.HTTPConnection] = []

    def make(peer: Peer) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=10)
        conn.connect()
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()


HEADERS = {"host": "peer", "content-length": str(len(BODY))}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
DENIED = (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 15\r\n\r\n<AccessDenied"
          b"/>")


def test_continue_then_the_body(connect) -> None:
    peer = Peer(b"HTTP/1.1 100 Continue\r\n\r\n", OK)
    resp, sent = send_expecting(connect(peer), "PUT", "/b/k", HEADERS, [BODY[:4000], BODY[4000:]],
                                wait=5)
    assert (resp.status, resp.read(), sent) == (200, b"ok", True)
    peer.thread.join(5)
    assert peer.received_body == BODY


def test_a_refusal_before_the_body_sends_no_body(connect) -> None:
    peer = Peer(None, DENIED)
    pieces: list[bytes] = []

    def body() -> Iterator[bytes]:
        pieces.append(BODY)     # reading the body would be the client's "100 Continue"
        yield BODY

    resp, sent = send_expecting(connect(peer), "PUT", "/b/k", HEADERS, body(), wait=5)
    assert (resp.status, sent) == (403, False)
    assert resp.read() == b"<AccessDenied/>"    # the head was read byte by byte, the rest after
    assert pieces == []


def test_no_answer_in_time_sends_the_body_anyway(connect) -> None:
    peer = Peer(None, OK, delay_interim=0.3)
    resp, sent = send_expecting(connect(peer), "PUT", "/b/k", HEADERS, [BODY], wait=0.2)
    assert (resp.status, resp.read(), sent) == (200, b"ok", True)
    peer.thread.join(5)
    assert peer.received_body == BODY
