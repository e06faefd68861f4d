"""encproxy.slow_clients: the request-head collector and the deadline-bound socket."""
from __future__ import annotations

import socket

import pytest

from encproxy.slow_clients import HeadReader, Limits, PacedSocket

LIMITS = Limits(header_timeout=10, body_timeout=5, body_min_rate=100, client_timeout=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- HeadReader -----------------------------------------------------------------------

def test_head_is_complete_only_at_the_blank_line():
    head = HeadReader(deadline=5, max_size=1024)
    head.feed(b"GET /b/k HTTP/1.1\r\nHost: x\r\n")
    assert not head.complete and not head.ready
    head.feed(b"\r\n")
    assert head.complete and head.ready


def test_head_too_large_for_the_poller_is_ready_without_being_complete():
    head = HeadReader(deadline=5, max_size=64)
    head.feed(b"GET / HTTP/1.1\r\n" + b"x-a: b\r\n" * 10)
    assert not head.complete and head.ready


def test_bare_lf_is_handed_on_at_once_for_gunicorn_to_refuse():
    head = HeadReader(deadline=5, max_size=1024, data=b"GET / HTTP/1.1\nHost: x\n")
    assert head.ready


def test_deadline():
    head = HeadReader(deadline=5, max_size=1024)
    assert not head.expired(4.9) and head.expired(5)


@pytest.mark.parametrize("wire,probe", [
    (b"GET /_encproxy/health HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"HEAD /_encproxy/ready?x=1 HTTP/1.1\r\n\r\n", True),
    (b"\r\nGET /_encproxy/metrics HTTP/1.0\r\nAuthorization: Bearer t\r\n\r\n", True),
    (b"GET /_encproxy/health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", True),
    # A body to wait for, another path or method, or an unfinished head: a normal request.
    (b"GET /_encproxy/health HTTP/1.1\r\nContent-Length: 10\r\n\r\n", False),
    (b"GET /_encproxy/health HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", False),
    (b"PUT /_encproxy/health HTTP/1.1\r\n\r\n", False),
    (b"GET /_encproxy/healthz HTTP/1.1\r\n\r\n", False),
    (b"GET /bucket/_encproxy/health HTTP/1.1\r\n\r\n", False),
    (b"GET /_encproxy/health HTTP/1.1\r\nHost: x\r\n", False),
])
def test_operations_probe(wire, probe):
    assert HeadReader(deadline=5, max_size=4096, data=wire).operations_probe is probe


# -- PacedSocket ----------------------------------------------------------------------

@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_head_deadline_is_fixed(pair):
    server, client = pair
    clock = Clock()
    paced = PacedSocket(server, LIMITS, clock)
    paced.begin_head(clock.now + 3)
    client.sendall(b"abc")
    assert paced.recv(10) == b"abc"
    clock.now += 2.9
    assert 0 < paced.remaining() <= 0.1 + 1e-9
    clock.now += 0.1
    with pytest.raises(TimeoutError):
        paced.recv(10)  # without waiting: the deadline has passed


def test_body_deadline_grows_with_the_bytes_received(pair):
    server, client = pair
    clock = Clock()
    paced = PacedSocket(server, LIMITS, clock)
    paced.begin_body()
    assert paced.remaining() == pytest.approx(5)
    client.sendall(b"x" * 300)
    got = 0
    while got < 300:
        got += len(paced.recv(300 - got))
    # 300 bytes at a minimum of 100 B/s earn 3 more seconds.
    assert paced.remaining() == pytest.approx(8)
    clock.now += 7.9
    client.sendall(b"y")
    buffer = bytearray(10)
    assert paced.recv_into(buffer, 10) == 1
    clock.now += 0.2
    with pytest.raises(TimeoutError):
        paced.recv_into(buffer, 10)


def test_each_read_waits_at_most_what_is_left(pair):
    server, _client = pair
    clock = Clock()
    paced = PacedSocket(server, Limits(10, 0.2, 100, 60), clock)
    paced.begin_body()
    with pytest.raises(TimeoutError):  # the real socket timed out, after about 0.2 s
        paced.recv(10)


def test_socket_timeout_is_restored_and_outer_timeouts_apply(pair):
    server, client = pair
    server.settimeout(None)
    paced = PacedSocket(server, LIMITS)
    paced.begin_body()
    client.sendall(b"z")
    assert paced.recv(1) == b"z"
    assert server.gettimeout() is None  # writing the response is not bounded by reads
    paced.settimeout(0.05)  # as gunicorn's drain does: its own, shorter limit
    assert paced.gettimeout() == 0.05
    with pytest.raises(TimeoutError):
        paced.recv(1)
    assert paced.fileno() == server.fileno()  # everything else is the socket's


class CountingSocket:
    """A socket stand-in that counts settimeout calls (each is a system call)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.sets = 0

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, value: float | None) -> None:
        self.sets += 1
        self.timeout = value

    def recv(self, size: int) -> bytes:
        return b"x" * size


def test_no_timeout_changes_while_the_socket_is_already_bounded_enough():
    sock = CountingSocket(timeout=60)  # the gateway's client_timeout
    paced = PacedSocket(sock, Limits(10, 100, 1, 60))
    paced.begin_body()  # 100 s left: the socket's 60 s bound is the tighter one
    assert paced.recv(4) == b"xxxx" and sock.sets == 0
    tight = PacedSocket(sock, Limits(10, 5, 1, 60))
    tight.begin_body()  # 5 s left: bounded for this read, then the 60 s restored
    tight.recv(1)
    assert sock.sets == 2 and sock.timeout == 60
