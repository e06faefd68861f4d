"""Request bodies read straight from the client socket, for less copying than gunicorn's.

gunicorn's ``wsgi.input`` passes every byte of a body through two ``BytesIO``
buffers (its unreader's and its ``Body``'s), several copies per byte: on a
pass-through upload that was a third of encproxy's CPU time (docs/PERFORMANCE.md).
:class:`SocketInputLayer`, the outermost WSGI layer, replaces it, for bodies of a
known length, with :class:`SocketBody`: ``recv_into`` a fresh buffer until the
piece asked for is complete, then one copy into ``bytes``.

It leans on gunicorn internals, checked by duck typing, and falls back to
gunicorn's own reader when anything does not look as expected:

* ``wsgi.input`` is gunicorn's ``Body`` with a ``LengthReader`` (``reader.length``
  is what is left of the body, ``reader.unreader`` holds read-ahead in ``buf``);
* ``reader.unreader.sock`` (else ``environ["gunicorn.socket"]``) is the client's
  socket; under encproxy's worker it is a ``PacedSocket``, so the body deadline
  (``[server] body_timeout``, ``body_min_rate``) bounds these reads too.

What gunicorn had already read ahead is served first, and whatever lies beyond the
body in it (a pipelined next request) is given back; ``reader.length`` is kept up
to date, so that gunicorn knows the body is consumed and parses the next request
on a keep-alive connection as usual. A failed read (timeout, reset) marks the body
failed, as gunicorn does, so the connection is closed instead of reused. The
socket's timeout (``[server] client_timeout``, set by the gateway) applies to
every ``recv_into``. Its own tests: tests/unit/test_socket_input.py (gunicorn's parser
over a socket pair) and tests/api/test_socket_input_server.py (the real server).
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

#: Bodies smaller than this keep gunicorn's reader: nothing to gain.
MIN_LENGTH = 256 * 1024
#: The largest piece one ``read`` assembles.
MAX_PIECE = 4 * 1024 * 1024


class SocketBody(io.RawIOBase):
    """``read(n)`` of a gunicorn request body of known length, from the socket itself."""

    def __init__(self, body: Any, sock: Any) -> None:
        super().__init__()
        self._body = body
        self._reader = body.reader
        self._unreader = body.reader.unreader
        self._sock = sock

    def readable(self) -> bool:
        return True

    @property
    def left(self) -> int:
        """Bytes of the body not yet read."""
        return int(self._reader.length)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def read(self, size: int | None = -1) -> bytes:
        left = self.left
        if size is None or size < 0:
            size = left
        size = min(size, left, MAX_PIECE)
        if size <= 0:
            return b""
        held = self._held(size)
        if len(held) == size:
            self._reader.length -= size
            return held
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = len(held)
        view[:got] = held
        try:
            while got < size:
                n = self._sock.recv_into(view[got:], size - got)
                if n == 0:
                    break  # the client went away: a short body, the caller's to judge
                got += n
        except BaseException:
            self._body.failed = True  # where the next request starts is unknown now
            raise
        finally:
            view.release()
        if got < size:
            self._body.failed = True
        self._reader.length -= got
        return bytes(buffer) if got == size else bytes(buffer[:got])

    def _held(self, size: int) -> bytes:
        """Up to ``size`` bytes gunicorn read ahead; the rest (maybe the next request) stays."""
        held: bytes = self._unreader.buf.getvalue()
        if not held:
            return b""
        self._unreader.buf = io.BytesIO()
        if len(held) > size:
            self._unreader.unread(held[size:])
            held = held[:size]
        return held


def _applies(environ: dict[str, Any]) -> tuple[Any, Any] | None:
    """The gunicorn body and socket, if the fast reader can take over this request."""
    body = environ.get("wsgi.input")
    # The socket gunicorn's parser reads from: under encproxy's worker, the client
    # socket wrapped with the request's read deadline (encproxy.slow_clients).
    sock = getattr(getattr(getattr(body, "reader", None), "unreader", None), "sock", None) \
        or environ.get("gunicorn.socket")
    if sock is None or body is None or not hasattr(sock, "recv_into"):
        return None
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "0")
    except ValueError:
        return None
    reader = getattr(body, "reader", None)
    unreader = getattr(reader, "unreader", None)
    if length < MIN_LENGTH or type(reader).__name__ != "LengthReader" or \
            getattr(reader, "length", None) != length or \
            not isinstance(getattr(body, "buf", None), io.BytesIO) or body.buf.getvalue() or \
            not isinstance(getattr(unreader, "buf", None), io.BytesIO) or \
            not callable(getattr(unreader, "unread", None)):
        return None
    return body, sock


class SocketInputLayer:
    """Install :class:`SocketBody` as ``wsgi.input`` where it applies; then call ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        found = _applies(environ)
        if found is not None:
            environ["wsgi.input"] = SocketBody(*found)
        return self.app(environ, start_response)
