"""``Expect: 100-continue`` toward the backend: its answer before the body is sent.

Where the backend, not encproxy, decides whether a request may write (an anonymous
caller's request, sent unsigned, or a client signed through as a backend user of
its own), a client that sent ``Expect: 100-continue`` must get the backend's refusal
before it sends its body, as it would from the backend itself: encproxy answers
"100 Continue" only when it first reads the client's body, which it does only once
the backend has answered "100 Continue" to encproxy's own request.

``requests`` and urllib3 cannot wait for an interim response, so this speaks
HTTP/1.1 on a connection of its own (never returned to the pool): the request
line and headers, then a wait of at most ``wait`` seconds for the backend's first
answer.  A "100 Continue" lets the body go; a final answer (a 403, say) is
returned without sending it, and the connection is closed after; no answer in
time sends the body anyway (RFC 9110 §10.1.1: a server need not answer 100).
"""
from __future__ import annotations

import http.client
import io
import select
import socket
from collections.abc import Iterable, Mapping
from typing import Any

#: The largest interim or final header block read before the body is sent.
MAX_HEAD = 64 * 1024


class _Replayed(io.RawIOBase):
    """The bytes of a response head already read, then the rest from the socket."""

    def __init__(self, head: bytes, sock: socket.socket) -> None:
        self._head = memoryview(head)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._sock.recv_into(buffer)


class _ReplayedSocket:
    """What ``http.client.HTTPResponse`` reads a response from (its ``makefile``)."""

    def __init__(self, head: bytes, sock: socket.socket) -> None:
        self._head, self._sock = head, sock

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_Replayed(self._head, self._sock))


def _read_head(sock: socket.socket) -> bytes:
    """One response's status line and headers, up to the empty line, byte by byte (so
    that nothing after them is consumed)."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise http.client.RemoteDisconnected("the backend closed before answering")
        head += byte
        if len(head) > MAX_HEAD:
            raise http.client.LineTooLong("response head")
    return bytes(head)


def _status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise http.client.BadStatusLine(repr(head[:80]))
    return int(parts[1])


def send_expecting(conn: http.client.HTTPConnection, method: str, path: str,
                   headers: Mapping[str, str], body: Iterable[bytes], wait: float
                   ) -> tuple[http.client.HTTPResponse, bool]:
    """Send ``method path`` with ``Expect: 100-continue`` on the connected ``conn``;
    the backend's response and whether the body was sent."""
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.putheader("expect", "100-continue")
    conn.endheaders()
    sock = conn.sock
    assert sock is not None
    # An SSL socket may hold decrypted bytes that select() does not see.
    pending = getattr(sock, "pending", lambda: 0)()
    ready = pending > 0 or bool(select.select([sock], [], [], wait)[0])
    if ready:
        head = _read_head(sock)
        if _status(head) != 100:
            response = http.client.HTTPResponse(_ReplayedSocket(head, sock),  # type: ignore[arg-type]
                                                method=method)
            response.begin()
            return response, False
    for piece in body:
        conn.send(piece)
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()          # skips a "100 Continue" that came after the wait
    return response, True


__all__ = ["MAX_HEAD", "send_expecting"]
