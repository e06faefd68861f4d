"""encproxy.wsgi.edge.socket_input against gunicorn's real parser, over a real socket pair.

The fast reader leans on gunicorn internals (its Body, LengthReader and unreader), so
these tests drive gunicorn's own RequestParser: the body must come out whole, a
pipelined next request must still parse, and failures must close the connection.
"""
from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from encproxy.wsgi.edge.socket_input import MIN_LENGTH, SocketBody, SocketInputLayer, _applies

MiB = 1 << 20


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def request_bytes(body: bytes, path: str = "/b/k", extra: str = "") -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def send_later(sock: socket.socket, data: bytes, close: bool = False) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_all(body: SocketBody, piece: int) -> bytes:
    out = bytearray()
    while data := body.read(piece):
        out += data
    return bytes(out)


@pytest.mark.parametrize("piece", [MiB, 65536, 7777])
def test_body_comes_out_whole_and_the_next_request_still_parses(pair, piece):
    server, client = pair
    first = os.urandom(3 * MiB + 123)
    second = b"second body"
    sender = send_later(client, request_bytes(first) + request_bytes(second, "/b/next"))
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    req = next(parser)
    body = SocketBody(req.body, server)
    assert read_all(body, piece) == first
    assert body.left == 0 and body.read(10) == b""
    assert not req.body.failed
    nxt = next(parser)  # gunicorn drains nothing: the body was consumed
    assert nxt.path == "/b/next" and nxt.body.read() == second
    sender.join()


def test_full_pieces_when_the_data_is_there(pair):
    server, client = pair
    data = os.urandom(4 * MiB)
    sender = send_later(client, request_bytes(data))
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    body = SocketBody(req.body, server)
    assert [len(body.read(MiB)) for _ in range(4)] == [MiB] * 4
    sender.join()


def test_client_gone_mid_body_is_short_and_closes_the_connection(pair):
    server, client = pair
    data = os.urandom(2 * MiB)
    sender = send_later(client, request_bytes(data)[:-MiB], close=True)
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    req = next(parser)
    body = SocketBody(req.body, server)
    got = read_all(body, MiB)
    sender.join()
    assert len(got) == MiB and got == data[:MiB]
    assert req.body.failed
    assert parser.finish_body() is False  # gunicorn will not reuse this connection


def test_stalled_client_times_out_and_closes_the_connection(pair):
    server, client = pair
    sender = send_later(client, request_bytes(b"x" * MiB)[:-10])
    server.settimeout(0.5)
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    req = next(parser)
    body = SocketBody(req.body, server)
    with pytest.raises(TimeoutError):
        read_all(body, MiB)
    sender.join()
    assert req.body.failed and parser.finish_body() is False


def environ_for(req, sock, **extra) -> dict:
    return {"gunicorn.socket": sock, "wsgi.input": req.body,
            "CONTENT_LENGTH": str(req.body.reader.length), **extra}


def test_layer_applies_to_large_bodies_of_known_length_only(pair):
    server, client = pair
    sender = send_later(client, request_bytes(b"y" * MIN_LENGTH))
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    assert _applies(environ_for(req, server)) is not None
    assert _applies(environ_for(req, server, HTTP_TRANSFER_ENCODING="chunked")) is None
    assert _applies(environ_for(req, server, CONTENT_LENGTH="5")) is None
    assert _applies({"wsgi.input": io.BytesIO(b"z" * MIN_LENGTH),
                     "CONTENT_LENGTH": str(MIN_LENGTH)}) is None  # not gunicorn
    req.body.read(10)  # someone read already: gunicorn's reader keeps the body
    assert _applies(environ_for(req, server, CONTENT_LENGTH=str(MIN_LENGTH))) is None
    req.body.read()
    sender.join()

    seen = {}

    def app(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        return []

    small = {"wsgi.input": io.BytesIO(b"a"), "CONTENT_LENGTH": "1"}
    SocketInputLayer(app)(small, lambda *a: None)
    assert isinstance(seen["input"], io.BytesIO)


def test_read_ahead_beyond_the_body_is_given_back(pair):
    server, client = pair
    body_bytes = b"q" * (MIN_LENGTH + 5)
    # Everything arrives at once, so gunicorn's header read-ahead holds body bytes and
    # the start of the next request.
    sender = send_later(client, request_bytes(body_bytes) + request_bytes(b"tail", "/b/2"))
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    req = next(parser)
    body = SocketBody(req.body, server)
    assert read_all(body, 1000) == body_bytes
    nxt = next(parser)
    assert nxt.path == "/b/2" and nxt.body.read() == b"tail"
    sender.join()


def test_pipelined_request_inside_the_read_ahead_is_given_back(pair):
    server, client = pair
    client.sendall(request_bytes(b"0123456789" * 10) + request_bytes(b"tail", "/b/3"))
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    req = next(parser)
    body = SocketBody(req.body, server)
    assert body.read(1000) == b"0123456789" * 10  # all of it was in gunicorn's read-ahead
    assert body.read(1000) == b""
    nxt = next(parser)
    assert nxt.path == "/b/3" and nxt.body.read() == b"tail"
