"""Time limits for reading requests: what the server's worker (encproxy.worker) enforces.

Pure module (stdlib only).  Two pieces, each with its own unit tests
(tests/unit/test_slow_clients.py):

* :class:`HeadReader` collects a request head (request line and headers) that
  the worker reads from a non-blocking socket in its poller, and says when it
  is complete, when it has grown too large to wait for in the poller, and
  whether the request is an operations probe (``GET /_encproxy/health``) with
  no body, which the worker serves on threads of its own;
* :class:`PacedSocket` wraps the socket gunicorn's parser reads from, so that
  every ``recv`` is bounded by the request's deadline: the head's
  (``[server] header_timeout``) while a head is read by a thread, then the
  body's, ``start + body_timeout + received / body_min_rate``, and never waits
  longer than ``client_timeout`` for one piece.  Past the deadline a read
  raises ``TimeoutError`` without touching the socket, which the request
  layers already turn into ``RequestTimeout`` (and the worker into a closed
  connection).  A rule on the running total, not on each read: a client that
  sends a byte a second keeps no single read waiting, but runs out of time.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The reserved paths answered by the operations layer (wsgi/edge/operations).
OPERATIONS_PATHS = frozenset({"/_encproxy/health", "/_encproxy/ready", "/_encproxy/metrics"})

_REQUEST_LINE_RE = re.compile(rb"(?:\r\n)?([A-Z]+) (\S+) HTTP/1\.[01]\r\n")
_BODY_HEADER_RE = re.compile(rb"\r\n(?:content-length:[ \t]*0*[1-9]|transfer-encoding:)",
                             re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """``[server]`` limits on reading a request (seconds, bytes per second)."""

    header_timeout: float
    body_timeout: float
    body_min_rate: int
    client_timeout: float


class HeadReader:
    """The bytes of one request head as they arrive, with the head's deadline.

    ``max_size`` bounds what the poller holds per connection: a larger head
    (gunicorn allows more) is handed to a thread, which reads the rest under
    the same deadline through :class:`PacedSocket`.
    """

    def __init__(self, deadline: float, max_size: int, data: bytes = b"") -> None:
        self.deadline = deadline
        self.max_size = max_size
        self.data = bytearray(data)

    def feed(self, data: bytes) -> None:
        self.data += data

    @property
    def complete(self) -> bool:
        """The head has ended (or cannot be a valid head: gunicorn will say why)."""
        data = self.data
        # A bare LF never ends a head the way gunicorn reads it: let it refuse now.
        return b"\r\n\r\n" in data or data.count(b"\n") != data.count(b"\r\n")

    @property
    def ready(self) -> bool:
        """Time to hand the connection to a thread."""
        return self.complete or len(self.data) >= self.max_size

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    @property
    def operations_probe(self) -> bool:
        """A complete ``GET``/``HEAD`` of a reserved path, with no body to wait for."""
        if b"/_encproxy/" not in self.data:   # every S3 request: the cheap answer first
            return False
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            return False
        match = _REQUEST_LINE_RE.match(self.data)
        if match is None or match.group(1) not in (b"GET", b"HEAD"):
            return False
        path = match.group(2).split(b"?", 1)[0]
        if path.decode("latin-1") not in OPERATIONS_PATHS:
            return False
        return _BODY_HEADER_RE.search(self.data, 0, end + 2) is None


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class PacedSocket:
    """``recv``/``recv_into`` of ``sock`` under one request's deadline; see the module doc.

    Everything else (``send``, ``fileno``, ...) is the socket's own.  The
    socket's timeout is restored after each read, so that writing the
    response is not bounded by what was left of the read deadline.
    """

    def __init__(self, sock: Any, limits: Limits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.limits = limits
        self.clock = clock
        self._start = clock()
        self._allowance = limits.header_timeout
        self._rate: float | None = None   # None: a fixed deadline (the head)
        self._received = 0
        self._outer: float | None = None  # a caller's own settimeout (gunicorn's drain)
        self._continue = False            # a "100 Continue" owed before the first body read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def begin_head(self, deadline: float) -> None:
        """The rest of a head must arrive by ``deadline`` (a ``clock`` value)."""
        self._start, self._allowance, self._rate = deadline, 0.0, None
        self._received = 0

    def begin_body(self) -> None:
        """A body starts now: ``body_timeout`` plus a second per ``body_min_rate`` bytes."""
        self._start, self._allowance = self.clock(), self.limits.body_timeout
        self._rate = float(self.limits.body_min_rate)
        self._received = 0

    def expect_continue(self) -> None:
        """The client asked ``Expect: 100-continue``: answer it when the application
        first reads the body, that is after it has authenticated the request (S3
        answers an error instead, and the client then sends no body)."""
        self._continue = True

    def withdraw_continue(self) -> bool:
        """The response starts: no "100 Continue" may follow it.  True if one was owed
        and never sent (the client may or may not send its body: close after)."""
        owed, self._continue = self._continue, False
        return owed

    def remaining(self) -> float:
        """Seconds left before the deadline, at the bytes received so far."""
        earned = self._received / self._rate if self._rate else 0.0
        return self._start + self._allowance + earned - self.clock()

    def settimeout(self, timeout: float | None) -> None:
        self._outer = timeout

    def gettimeout(self) -> float | None:
        return self._outer

    def recv(self, size: int, *flags: int) -> bytes:
        data: bytes = self._paced(lambda: self.sock.recv(size, *flags))
        self._received += len(data)
        return data

    def recv_into(self, buffer: Any, size: int = 0, *flags: int) -> int:
        n: int = self._paced(lambda: self.sock.recv_into(buffer, size, *flags))
        self._received += n
        return n

    def _paced(self, read: Callable[[], Any]) -> Any:
        if self._continue:
            self._continue = False
            self.sock.sendall(CONTINUE)
        left = self.remaining()
        if left <= 0:
            raise TimeoutError("request read deadline passed")
        timeout = min(left, self.limits.client_timeout)
        if self._outer is not None:
            timeout = min(timeout, self._outer)
        previous = self.sock.gettimeout()
        if previous is not None and previous <= timeout:
            return read()  # already bounded enough: no system calls to set and restore
        self.sock.settimeout(timeout)
        try:
            return read()
        finally:
            self.sock.settimeout(previous)
