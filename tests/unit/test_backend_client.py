"""encproxy.s3backend.client against a raw-socket fake backend: what goes on the wire.

The fake backend reads requests byte by byte as an HTTP/1.1 server would, so the tests
see exactly what encproxy sends (framing, lengths, headers) and can misbehave the way
real backends and networks do: close mid-body, stall, drop keep-alive connections.
"""
from __future__ import annotations

import hashlib
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from support.operations import self_signed

from encproxy import errors, sigv4
from encproxy.io_sizes import PIECE
from encproxy.s3backend.client import (
    BackendBroken,
    BackendConfig,
    BodySource,
    S3BackendClient,
)
from encproxy.s3backend.response_head import BackendHTTPResponse

MiB = 1 << 20


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    complete: bool           # the whole Content-Length arrived
    connection: int          # which accepted connection carried it


@dataclass
class FakeBackend:
    """``respond(seen, sock)`` answers each request; it may close or stall instead."""

    respond: Callable[[Seen, socket.socket], bool]   # True: keep the connection open
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    tls: ssl.SSLContext | None = None                 # serve HTTPS with it

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except OSError:
                    sock.close()
                    continue
            threading.Thread(target=self._serve, args=(sock, self.connections),
                             daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = reader.read(length) if length else b""
                seen = Seen(method, target, headers, body, len(body) == length, number)
                self.requests.append(seen)
                if not self.respond(seen, sock):
                    return
        except OSError:
            return
        finally:
            sock.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()

    def client(self, **options: object) -> S3BackendClient:
        scheme = "https" if self.tls is not None else "http"
        config = BackendConfig(endpoint=f"{scheme}://127.0.0.1:{self.port}", access_key="AK",
                               secret_key="secret-key", **options)  # type: ignore[arg-type]
        return S3BackendClient(config)


def reply(sock: socket.socket, status: str = "200 OK", body: bytes = b"",
          headers: dict[str, str] | None = None, keep_alive: bool = True) -> bool:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head += "" if keep_alive else "Connection: close\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    return keep_alive


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeBackend]]:
    made: list[FakeBackend] = []

    def make(respond: Callable[[Seen, socket.socket], bool],
             tls: ssl.SSLContext | None = None) -> FakeBackend:
        made.append(FakeBackend(respond, tls=tls))
        return made[-1]
    yield make
    for backend in made:
        backend.close()


class Pieces(io.RawIOBase):
    """A readable body that records the sizes it was asked for, and can fail midway."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data = data
        self.offset = 0
        self.asked: list[int] = []
        self.fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        if self.fail_after is not None and self.offset >= self.fail_after:
            raise errors.IncompleteBody()
        piece = self.data[self.offset:self.offset + size]
        self.offset += len(piece)
        return piece


# -- request bodies ---------------------------------------------------------------------

def test_streamed_put_has_exact_length_and_no_chunked_framing(fake):
    backend = fake(lambda seen, sock: reply(sock, headers={"ETag": '"e"'}))
    data = bytes(range(256)) * (12 * 4096) + b"tail"  # 12 MiB + 4 bytes
    source = Pieces(data)
    resp = backend.client().request("PUT", "bkt", "dir/a b", "", {"content-type": "x/y"},
                                    BodySource(source, len(data)))
    assert resp.status == 200 and resp.header("etag") == '"e"'
    resp.close()
    seen = backend.requests[0]
    assert seen.target == "/bkt/dir/a%20b"
    assert seen.body == data and seen.complete
    assert seen.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in seen.headers
    assert seen.headers["x-amz-content-sha256"] == sigv4.UNSIGNED_PAYLOAD
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/")
    assert seen.headers["host"] == f"127.0.0.1:{backend.port}"
    assert max(source.asked) == PIECE == MiB and len(source.asked) == 13


def test_small_body_is_hashed_and_signed(fake):
    backend = fake(lambda seen, sock: reply(sock))
    backend.client().request("PUT", "bkt", None, "tagging", {}, b"<Tagging/>").close()
    seen = backend.requests[0]
    assert seen.target == "/bkt?tagging"
    assert seen.body == b"<Tagging/>" and seen.headers["content-length"] == "10"
    assert seen.headers["x-amz-content-sha256"] == hashlib.sha256(b"<Tagging/>").hexdigest()


def test_failing_source_never_completes_the_upload(fake):
    """The client went away mid-body: the backend sees a short body and a closed socket."""
    backend = fake(lambda seen, sock: reply(sock))
    data = b"x" * (5 * MiB)
    with pytest.raises(errors.IncompleteBody):
        backend.client().request("PUT", "bkt", "k", "", {},
                                 BodySource(Pieces(data, fail_after=2 * MiB), len(data)))
    deadline = time.monotonic() + 5
    while not backend.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.requests and not backend.requests[0].complete
    assert len(backend.requests[0].body) == 2 * MiB


def test_source_failing_before_its_first_byte_sends_nothing(fake):
    """No request at all, not headers and a closed socket: SeaweedFS keeps a PUT cut off
    before any of its body as an empty object."""
    backend = fake(lambda seen, sock: reply(sock))
    with pytest.raises(errors.IncompleteBody):
        backend.client().request("PUT", "bkt", "k", "", {},
                                 BodySource(Pieces(b"hello", fail_after=0), 5))
    time.sleep(0.2)
    assert backend.connections == 0 and backend.requests == []


def test_source_shorter_than_its_length_is_incomplete(fake):
    backend = fake(lambda seen, sock: reply(sock))
    with pytest.raises(errors.IncompleteBody):
        backend.client().request("PUT", "bkt", "k", "", {}, BodySource(Pieces(b"abc"), 10))


def test_dot_segments_reach_the_backend_as_sent(fake):
    backend = fake(lambda seen, sock: reply(sock))
    backend.client().request("GET", "bkt", "a/../../b/./c//d", "").close()
    assert backend.requests[0].target == "/bkt/a/../../b/./c//d"


def test_virtual_addressing_puts_the_bucket_in_host(fake):
    backend = fake(lambda seen, sock: reply(sock))
    backend.client(addressing="virtual").request("GET", "bkt", "k", "").close()
    seen = backend.requests[0]
    assert seen.target == "/k" and seen.headers["host"] == f"bkt.127.0.0.1:{backend.port}"


# -- connections ------------------------------------------------------------------------

def test_connections_are_reused(fake):
    backend = fake(lambda seen, sock: reply(sock, body=b"hello"))
    client = backend.client()
    for _ in range(5):
        resp = client.request("GET", "bkt", "k", "")
        assert b"".join(resp.pieces()) == b"hello"
    assert backend.connections == 1


@pytest.mark.parametrize("method, status, headers", [
    ("PUT", "200 OK", {}),                        # Content-Length: 0
    ("HEAD", "200 OK", {"x-amz-meta-a": "1"}),     # a HEAD's answer has no body
    ("DELETE", "204 No Content", {}),
])
def test_answers_without_a_body_keep_their_connection(fake, method, status, headers):
    """Closed without reading (what a write's or a HEAD's caller does), an answer with
    nothing to read leaves its connection to the next request."""
    def respond(seen: Seen, sock: socket.socket) -> bool:
        if seen.method == "HEAD":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nx-amz-meta-a: 1\r\n\r\n")
            return True
        return reply(sock, status, headers=headers)
    backend = fake(respond)
    client = backend.client()
    for _ in range(3):
        resp = client.request(method, "bkt", "k", "", body=b"" if method == "PUT" else None)
        assert resp.status in (200, 204)
        resp.close()
    assert len(backend.requests) == 3 and backend.connections == 1


def test_unread_body_closes_its_connection(fake):
    backend = fake(lambda seen, sock: reply(sock, body=b"x" * 100_000))
    client = backend.client()
    client.request("GET", "bkt", "k", "").close()   # body never read
    resp = client.request("GET", "bkt", "k", "")
    assert len(b"".join(resp.pieces())) == 100_000
    assert backend.connections == 2


def test_closed_keep_alive_connection_is_replaced(fake):
    def respond(seen: Seen, sock: socket.socket) -> bool:
        reply(sock, body=b"ok")
        return False  # close without saying so
    backend = fake(respond)
    client = backend.client()
    for _ in range(3):
        resp = client.request("GET", "bkt", "k", "")
        assert b"".join(resp.pieces()) == b"ok"
    assert len(backend.requests) == 3


def test_connection_dropped_before_answering_is_retried_once(fake):
    """A keep-alive connection the backend drops as the request arrives (idle timeout)."""
    def respond(seen: Seen, sock: socket.socket) -> bool:
        if seen.connection == 1 and len(backend.requests) == 2:
            return False  # drop it, unanswered
        return reply(sock, body=b"ok")
    backend = fake(respond)
    client = backend.client()
    for _ in range(2):
        resp = client.request("GET", "bkt", "k", "")
        assert b"".join(resp.pieces()) == b"ok"
    assert len(backend.requests) == 3 and backend.connections == 2


def test_streamed_body_is_never_retried(fake):
    def respond(seen: Seen, sock: socket.socket) -> bool:
        if len(backend.requests) == 2:
            return False
        return reply(sock)
    backend = fake(respond)
    client = backend.client()
    client.request("GET", "bkt", "k", "").close()
    with pytest.raises(errors.ServiceUnavailable):
        client.request("PUT", "bkt", "k", "", {}, BodySource(Pieces(b"abc"), 3))
    assert len(backend.requests) == 2


def test_unreachable_backend_is_service_unavailable_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # nothing listens here
    client = S3BackendClient(BackendConfig(f"http://127.0.0.1:{port}", "AK", "secret-key"))
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable):
        client.request("GET", "bkt", "k", "")
    assert time.monotonic() - started < 2


def test_silent_backend_times_out_as_service_unavailable(fake):
    backend = fake(lambda seen, sock: (time.sleep(5), False)[1])
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable):
        backend.client(read_timeout=0.5).request("GET", "bkt", "k", "")
    assert time.monotonic() - started < 3


# -- response bodies --------------------------------------------------------------------

def test_response_streams_in_large_pieces(fake):
    data = bytes(range(256)) * (3 * 4096 + 1)  # 3 MiB + 256
    backend = fake(lambda seen, sock: reply(sock, body=data))
    resp = backend.client().request("GET", "bkt", "k", "")
    pieces = list(resp.pieces())
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) == MiB and len(pieces) == 4


def test_broken_response_body_raises_instead_of_ending_short(fake):
    def respond(seen: Seen, sock: socket.socket) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n" + b"x" * 1_000_000)
        sock.shutdown(socket.SHUT_RDWR)
        return False
    backend = fake(respond)
    resp = backend.client().request("GET", "bkt", "k", "")
    got = 0
    with pytest.raises(BackendBroken):
        for piece in resp.pieces():
            got += len(piece)
    assert got < 3_000_000


def test_stalled_response_body_raises(fake):
    def respond(seen: Seen, sock: socket.socket) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(3)
        return False
    backend = fake(respond)
    resp = backend.client(read_timeout=0.5).request("GET", "bkt", "k", "")
    with pytest.raises(BackendBroken):
        list(resp.pieces())


def test_read_all_refuses_oversized_bodies(fake):
    backend = fake(lambda seen, sock: reply(sock, body=b"x" * 5000))
    with pytest.raises(BackendBroken):
        backend.client().request("GET", "bkt", None, "").read_all(1000)


def test_hop_by_hop_response_headers_are_dropped(fake):
    backend = fake(lambda seen, sock: reply(sock, headers={"Keep-Alive": "timeout=5",
                                                           "x-amz-meta-a": "1"}))
    resp = backend.client().request("HEAD", "bkt", "k", "")
    names = {k.lower() for k, _ in resp.headers}
    resp.close()
    assert "keep-alive" not in names and "x-amz-meta-a" in names


def test_first_piece_can_be_small(fake):
    data = b"y" * (2 * MiB)
    backend = fake(lambda seen, sock: reply(sock, body=data))
    pieces = list(backend.client().request("GET", "bkt", "k", "").pieces(first=65536))
    assert len(pieces[0]) == 65536 and b"".join(pieces) == data


# -- response heads (response_head.py) -------------------------------------------------

def test_backend_responses_are_read_with_the_fast_head(fake):
    backend = fake(lambda seen, sock: reply(sock, body=b"data", headers={"ETag": '"e"'}))
    resp = backend.client().request("GET", "bkt", "k", "")
    assert isinstance(resp._raw._original_response, BackendHTTPResponse)
    assert resp.header("etag") == '"e"' and b"".join(resp.pieces()) == b"data"


def raw_reply(data: bytes):
    def respond(seen, sock: socket.socket) -> bool:
        sock.sendall(data)
        return True
    return respond


@pytest.mark.parametrize("method, wire, body, closes", [
    # an interim 100 and its fields are skipped
    ("GET", b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"abc", False),
    ("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", False),
    # a HEAD's answer has no body whatever its Content-Length says; a 204 none at all,
    # and the connection stays open without a Content-Length
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", b"", False),
    ("DELETE", b"HTTP/1.1 204 No Content\r\n\r\n", b"", False),
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", b"ok", True),
    ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
])
def test_response_framing_is_http_clients(fake, method, wire, body, closes):
    backend = fake(raw_reply(wire))
    resp = backend.client().request(method, "bkt", "k", "")
    raw = resp._raw._original_response
    assert isinstance(raw, BackendHTTPResponse)
    assert resp.status in (200, 204) and "X-Interim" not in dict(resp.headers)
    assert b"".join(resp.pieces()) == body
    assert raw.will_close is closes


def test_tls_backend_responses_are_read_with_the_fast_head(fake, tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    backend = fake(lambda seen, sock: reply(sock, body=b"sealed", headers={"ETag": '"t"'}),
                   tls=context)
    client = backend.client(ca_bundle=str(cert))
    for _ in range(2):      # the second on the kept-alive TLS connection
        resp = client.request("GET", "bkt", "k", "")
        assert isinstance(resp._raw._original_response, BackendHTTPResponse)
        assert resp.header("etag") == '"t"' and b"".join(resp.pieces()) == b"sealed"
    assert backend.connections == 1
