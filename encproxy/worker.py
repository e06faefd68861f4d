"""encproxy's gunicorn worker: gthread, hardened against slow clients (docs/ARCHITECTURE.md).

gunicorn's gthread worker gives a connection to a thread as soon as it is
readable, and the thread then blocks until the request head is parsed: a
client sending a header line every few seconds holds a thread, and a few
dozen such clients stall every thread (``/_encproxy/health`` included).
:class:`EncproxyWorker` changes what a thread is given:

* **Heads in the poller.** A connection (new, or kept alive and readable again)
  stays in the worker's event loop, read without blocking into a
  :class:`~encproxy.slow_clients.HeadReader`, until its request head is
  complete; only then does a thread parse it.  A head not complete within
  ``[server] header_timeout`` is answered ``RequestTimeout`` and closed by the
  loop.  TLS handshakes are done there too, without blocking.
* **A lane for probes.** A complete ``GET``/``HEAD`` of ``/_encproxy/health``,
  ``ready`` or ``metrics`` without a body runs on two threads of its own, so
  probes are answered while every request thread is busy.
* **Body deadlines.** The socket gunicorn's parser reads from is wrapped in a
  :class:`~encproxy.slow_clients.PacedSocket` (the socket reader of
  ``wsgi/edge/socket_input`` reads through it too), so a body that falls
  below ``body_min_rate`` after ``body_timeout`` fails with RequestTimeout.
* **Connection: close when the body is not drained.** gunicorn drains at most
  64 KiB of an unread body before it reuses a connection, and otherwise
  closes it after having answered ``Connection: keep-alive``.  The response
  says ``close`` (and the connection is closed) whenever the body will not be
  drained, or the application says ``Connection: close``.
* **Closing without blocking the loop.** gunicorn's graceful close lingers up to
  2 s reading on the event loop's thread; here the loop half-closes and
  drains (2 s, 1 MiB at most) between its other work.
* **Connections spread by count.** A worker holding more connections than a
  sibling leaves a new one to it for a moment (:mod:`encproxy.accept_balance`):
  kept-alive connections stay with the worker that accepted them, and two on one
  worker share one interpreter lock while the other idles.
* **The next request in the same thread.** A thread that has answered a kept-alive
  request waits up to ``NEXT_REQUEST_WAIT`` for the connection's next one when no
  other connection waits for a thread; if a whole head is there by then, it serves
  it at once, without the round trip through the event loop (a wake-up, two poller
  changes, the head read there and a hand-over to a thread).  Anything less than a
  whole head goes back to the loop as before, so a slow head still holds no thread.
* **S3 errors.** gunicorn's own errors (bad request line, huge headers) are
  answered as S3 XML errors (:func:`encproxy.wsgi.responses.error_response`).
* **Unknown expectations are ignored.** gunicorn refuses an ``Expect`` other than
  ``100-continue`` (417, RFC 9110); S3 ignores it (an empty ``Expect`` or
  ``Expect: 200`` is accepted, as ceph/s3-tests' header tests record), so
  :class:`UnknownExpectIgnored` does too.

It leans on gthread internals (``TConn``, ``enqueue_req``, ``finish_request``,
the ``poller`` and ``method_queue``) and on the HTTP parser's (``mesg_class``,
``_apply_header_policy``); tests/unit/test_worker.py pins them.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import select
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import sock as gsock
from gunicorn import util
from gunicorn.http import RequestParser, get_parser
from gunicorn.http import errors as herrors
from gunicorn.http.message import Request
from gunicorn.workers.gthread import TConn, ThreadWorker

from encproxy import errors
from encproxy.accept_balance import AcceptBalance, ConnectionTable
from encproxy.slow_clients import HeadReader, Limits, PacedSocket
from encproxy.wsgi.responses import error_response

log = logging.getLogger("encproxy.server")

#: gunicorn drains up to 64 KiB of a body the application did not read; a body
#: with this much or more left is not drained, and its connection is closed.
DRAIN_LIMIT = 64 * 1024
#: The most head bytes the event loop holds per connection before a thread reads on.
MAX_POLLED_HEAD = 64 * 1024
SWEEP_INTERVAL = 0.25    # seconds between looks for expired heads and lingering closes
#: Threads per worker for /_encproxy/* probes.
PROBE_THREADS = 2
#: Seconds a thread that answered a kept-alive request waits for the next on the same
#: connection before it gives the connection back to the event loop.
NEXT_REQUEST_WAIT = 0.002
#: How long, and for how many bytes, a closing connection takes the client's unread bytes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
# What a thread finds after answering a kept-alive request (EncproxyWorker._next_head).
_HERE, _LATER, _CLOSED = object(), object(), object()


def _is_close(headers: Iterable[tuple[str, str]]) -> bool:
    return any(k.lower() == "connection" and "close" in v.lower() for k, v in headers)


def body_drainable(body: Any) -> bool:
    """Whether gunicorn will drain what is left of ``body`` (its ``wsgi.input``)."""
    if body is None or getattr(body, "failed", False):
        return body is None
    reader: Any = getattr(body, "reader", None)
    paced = getattr(getattr(reader, "unreader", None), "sock", None)
    if isinstance(paced, PacedSocket) and paced.remaining() <= 0:
        return False  # out of time: the drain would fail at once
    kind = type(reader).__name__
    if kind == "LengthReader":
        return int(reader.length) < DRAIN_LIMIT
    if kind == "ChunkedReader":
        return reader.parser is None  # the last chunk and trailers are read
    return False  # a body that ends with the connection, or something unknown


class UnknownExpectIgnored(Request):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's HTTP/1 request, except that an ``Expect`` header S3 does not know is ignored.

    gunicorn answers any expectation but ``100-continue`` with 417; AWS S3 accepts the
    request as if the header were absent (ceph/s3-tests ``test_*_create_bad_expect_*``).
    ``100-continue`` keeps gunicorn's handling (the worker answers it, see handle_request).
    """

    def _apply_header_policy(self, name: str, value: str, *args: Any, **kwargs: Any) -> Any:
        if name == "EXPECT" and value.lower() != "100-continue":
            self._policy_expect_continue = False  # this request only; the class keeps True
            try:
                return super()._apply_header_policy(name, value, *args, **kwargs)
            finally:
                del self._policy_expect_continue
        return super()._apply_header_policy(name, value, *args, **kwargs)


class _Conn(TConn):  # type: ignore[misc]  # gunicorn is untyped
    """A gthread connection whose graceful close is left to the worker's event loop."""

    def __init__(self, worker: EncproxyWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker
        self.head: HeadReader | None = None
        self.handshaken = False
        # Whether this worker's loop watches the socket for its head.  Kept here so
        # that the loop never asks the poller about a socket it does not hold: the
        # poller's KeyError formats the socket (a getsockname and a getpeername),
        # once a request on every keep-alive connection.
        self.watched = False

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            util.close(self.sock)


class EncproxyWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """See the module docstring."""

    wsgi: Callable[..., Any]  # set by gunicorn's load_wsgi
    #: This worker's slot in the master's ConnectionTable, set by the master before it
    #: forks (encproxy.server); None: it takes every connection it is woken for.
    accept_slot: int | None = None

    def init_process(self) -> None:
        table: ConnectionTable | None = getattr(self.app, "connection_table", None)
        self.prepare(self.app.settings, None if table is None or self.accept_slot is None
                     else AcceptBalance(table, self.accept_slot))
        super().init_process()  # gunicorn's: loads the app, then runs the loop

    def prepare(self, settings: Any, balance: AcceptBalance | None = None) -> None:
        """What this worker adds to gthread's state (``settings``: encproxy's Settings;
        ``balance``: its side of the workers' connection table, if it shares one)."""
        self.balance = balance
        self.limits = Limits(header_timeout=settings.get("server", "header_timeout"),
                             body_timeout=settings.get("server", "body_timeout"),
                             body_min_rate=settings.get("server", "body_min_rate"),
                             client_timeout=settings.get("server", "client_timeout"))
        self.probe_pool = futures.ThreadPoolExecutor(PROBE_THREADS,
                                                     thread_name_prefix="encproxy-probe")
        self.heads: set[_Conn] = set()
        self.next_sweep = 0.0   # when murder_pending next looks for expired heads
        self.lingering: dict[Any, list[float]] = {}  # socket -> [deadline, bytes taken]

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.balance is not None:
                self.balance.vacate()
            self.probe_pool.shutdown(wait=False)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = partial(self.serve, self.wsgi)

    # -- accepting, and heads read in the event loop ------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop enables accepting whenever it is below worker_connections; a
        # pause (accept) keeps the listener out of this worker's poller until it ends.
        # Leaving (alive false), the worker no longer counts as a place for connections.
        if self.balance is not None:
            if enabled and self.balance.keeps_pausing(self.nr_conns, time.monotonic()):
                enabled = False
            if not self.alive:
                self.balance.vacate()
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        balance = self.balance
        if balance is not None and self.alive:
            now = time.monotonic()
            balance.publish(self.nr_conns, now)
            if balance.paused(now):
                # Wake when the pause ends, to take the connection if it still waits.
                timeout = min(timeout, balance.paused_until - now)
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener: Any) -> None:
        if self.balance is not None and self.balance.yields(self.nr_conns, time.monotonic()):
            self.set_accept_enabled(False)  # a sibling holding fewer takes it, or we do later
            return
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if self.balance is not None:
            self.balance.publish(self.nr_conns, time.monotonic())
        conn = _Conn(self, self.cfg, client, addr, listener.getsockname())
        deadline = time.monotonic() + self.limits.header_timeout
        if self.cfg.is_ssl:
            # The handshake is stepped by the loop (_step), never waited for by a thread.
            try:
                conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                    client, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
            except OSError:
                self.nr_conns -= 1
                util.close(client)
                return
        conn.initialized = True  # the parser is made here, never by gunicorn's init()
        conn.parser = get_parser(self.cfg, conn.sock, addr)
        if isinstance(conn.parser, RequestParser):
            conn.parser.mesg_class = UnknownExpectIgnored
        conn.parser.unreader.sock = PacedSocket(conn.sock, self.limits)
        conn.head = HeadReader(deadline, MAX_POLLED_HEAD)
        conn.handshaken = not self.cfg.is_ssl
        self.heads.add(conn)
        self._step(conn)

    def enqueue_req(self, conn: _Conn) -> None:
        """Every way gthread hands a connection to a thread: wait for its head first."""
        buffered = conn.parser.unreader.take_buffered()
        conn.head = HeadReader(time.monotonic() + self.limits.header_timeout,
                               MAX_POLLED_HEAD, buffered)
        self.heads.add(conn)
        conn.sock.setblocking(False)
        self._step(conn)

    def _step(self, conn: _Conn) -> None:
        """Make progress on a connection's handshake and head; dispatch it when ready."""
        try:
            if not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            self._read_head(conn)
        except ssl.SSLWantReadError:
            self._watch(conn, _READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, _WRITE)
            return
        except (OSError, EOFError):
            self._drop(conn)
            return
        assert conn.head is not None
        if conn.head.ready:
            self._unwatch(conn)
            self._dispatch(conn)
        else:
            self._watch(conn, _READ)

    def _read_head(self, conn: _Conn) -> None:
        head = conn.head
        assert head is not None
        while not head.ready:
            try:
                data = conn.sock.recv(MAX_POLLED_HEAD)
            except BlockingIOError:
                return
            if not data:
                raise EOFError("the client closed before its request head")
            head.feed(data)

    def _watch(self, conn: _Conn, events: int) -> None:
        callback = partial(self._on_event, conn)
        if conn.watched:
            self.poller.modify(conn.sock, events, callback)
        else:
            self.poller.register(conn.sock, events, callback)
            conn.watched = True

    def _unwatch(self, conn: _Conn) -> None:
        self.heads.discard(conn)
        if conn.watched:
            conn.watched = False
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _on_event(self, conn: _Conn, _fileobj: Any) -> None:
        self._step(conn)

    def _drop(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        util.close(conn.sock)

    def _dispatch(self, conn: _Conn) -> None:
        """Give a connection whose head is complete (or large) to a thread."""
        head = conn.head
        assert head is not None
        conn.head = None
        conn.sock.setblocking(True)
        conn.parser.unreader.unread(bytes(head.data))
        paced = conn.parser.unreader.sock
        if isinstance(paced, PacedSocket):
            paced.begin_head(head.deadline)
        if head.operations_probe:
            # One request only: the probe lane's threads never go on to serve what follows.
            future = self.probe_pool.submit(super().handle, conn)
        else:
            future = self.tpool.submit(self.handle, conn)
        future.add_done_callback(
            lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    # -- deadlines, checked by gthread's loop about once a second ---------------------

    def murder_pending(self) -> None:
        super().murder_pending()
        # gthread calls this after every batch of events; deadlines are whole seconds,
        # so four sweeps a second are enough, and a busy loop is not slowed by them.
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_INTERVAL
        for conn in [c for c in self.heads if c.head is not None and c.head.expired(now)]:
            self._unwatch(conn)
            self._refuse_late(conn)
        for sock in [s for s, (until, _) in self.lingering.items() if until <= now]:
            self._end_linger(sock)

    def _refuse_late(self, conn: _Conn) -> None:
        """A head that did not arrive in time: RequestTimeout if anything came, then close."""
        self.nr_conns -= 1
        head = conn.head
        if head is not None and head.data and conn.handshaken:
            err = errors.RequestTimeout()
            with contextlib.suppress(OSError):
                conn.sock.send(render_error(err, "GET", "/"))
        self.linger(conn)

    # -- closing ----------------------------------------------------------------------

    def linger(self, conn: _Conn) -> None:
        """Half-close, then take what the client still sends for a while, in the loop.

        Closing a socket with unread bytes makes the kernel send a reset, which
        can destroy the response the client has not read yet (RFC 9112 §9.6).
        The caller has already counted the connection out of ``nr_conns``.
        """
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            util.close(sock)
            return
        self.lingering[sock] = [time.monotonic() + LINGER_SECONDS, 0]
        try:
            self.poller.register(sock, _READ, self._on_linger)
        except (KeyError, ValueError, OSError):
            self._end_linger(sock)

    def _on_linger(self, sock: Any) -> None:
        state = self.lingering.get(sock)
        try:
            while state is not None and state[1] < LINGER_BYTES:
                data = sock.recv(65536)
                if not data:
                    break
                state[1] += len(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: Any) -> None:
        self.lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        util.close(sock)

    # -- the next request on a connection, in the same thread ---------------------------

    def handle(self, conn: Any) -> Any:
        result = super().handle(conn)
        while result is True and self.alive:
            following = self._next_head(conn)
            if following is not _HERE:
                # _CLOSED: the client has closed; gthread's finish_request closes it now.
                return following is not _CLOSED
            result = super().handle(conn)
        return result

    def _next_head(self, conn: Any) -> object:
        """``_HERE`` if the connection's next request head has come whole within
        ``NEXT_REQUEST_WAIT`` (it is then in the parser's buffer, under its deadline);
        ``_CLOSED`` if the client closed instead; else ``_LATER``, for the event loop.
        Bytes of an incomplete head are left in the parser's buffer, for the loop to go
        on with (gthread's finish_request hands a connection with buffered bytes to
        enqueue_req)."""
        unreader = conn.parser.unreader
        waiting = getattr(self.tpool, "_work_queue", None)   # the executor's queue
        if waiting is None or waiting.qsize() or unreader.buf.getvalue() or \
                not isinstance(conn.sock, socket.socket) or isinstance(conn.sock, ssl.SSLSocket):
            return _LATER   # others wait for a thread; bytes already read ahead; TLS
        poll = select.poll()
        poll.register(conn.sock, select.POLLIN)
        if not poll.poll(NEXT_REQUEST_WAIT * 1000):
            return _LATER
        try:
            data = conn.sock.recv(MAX_POLLED_HEAD, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return _LATER
        except OSError:
            return _CLOSED  # reset: nothing more can be read or answered
        if not data:
            return _CLOSED
        head = HeadReader(time.monotonic() + self.limits.header_timeout, MAX_POLLED_HEAD, data)
        unreader.unread(data)
        if not head.complete:
            return _LATER
        paced = unreader.sock
        if isinstance(paced, PacedSocket):
            paced.begin_head(head.deadline)
        return _HERE

    # -- the application, and gunicorn's own errors ----------------------------------

    def handle_request(self, req: Any, conn: Any) -> Any:
        # gunicorn answers "Expect: 100-continue" as it builds the environ, before any
        # authentication; S3 answers it only once the request is accepted.  The paced
        # socket sends it when the application first reads the body (PacedSocket).
        if getattr(req, "_expected_100_continue", False):
            paced = conn.parser.unreader.sock
            if isinstance(paced, PacedSocket):
                req._expected_100_continue = False
                paced.expect_continue()
        return super().handle_request(req, conn)

    def serve(self, app: Callable[..., Any], environ: dict[str, Any],
              start_response: Callable[..., Any]) -> Any:
        """Call ``app`` with the body deadline running and Connection: close honoured."""
        body = environ.get("wsgi.input")
        paced = getattr(getattr(getattr(body, "reader", None), "unreader", None), "sock", None)
        if isinstance(paced, PacedSocket):
            paced.begin_body()
        response = getattr(start_response, "__self__", None)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            owed = isinstance(paced, PacedSocket) and paced.withdraw_continue()
            if owed or _is_close(headers) or not body_drainable(body):
                force_close = getattr(response, "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        err = gunicorn_error(exc)
        if isinstance(err, errors.InternalError):
            log.exception("error handling request", exc_info=exc)
        else:
            # The message quotes what the client sent; the log's redaction filter removes
            # signatures and credentials from it (logjson).
            log.warning("Invalid request from %s: %s", (addr or ("",))[0], exc)
        if isinstance(exc, ssl.SSLError):
            return  # no HTTP answer can be read over a broken TLS session
        method = getattr(req, "method", None) or "GET"
        path = getattr(req, "path", None) or "/"
        try:
            util.write_nonblock(client, render_error(err, method, path))
        except Exception:  # noqa: BLE001 - the client may be gone; it is closed next
            log.debug("failed to send an error response")


_CLIENT_ERRORS: tuple[tuple[type[BaseException], Callable[[], errors.S3Error]], ...] = (
    (herrors.LimitRequestLine, lambda: errors.InvalidURI("The request line is too long.")),
    (herrors.LimitRequestHeaders, lambda: errors.InvalidRequest(
        "Your request header section exceeds the maximum allowed size.")),
    (herrors.UnsupportedTransferCoding, lambda: errors.NotImplementedError_(
        "A header you provided implies functionality that is not implemented.")),
    (herrors.ConfigurationProblem, errors.InternalError),
    (herrors.ForbiddenProxyRequest, errors.AccessDenied),
    (herrors.ParseException, lambda: errors.InvalidRequest("The request is malformed.")),
)


def gunicorn_error(exc: BaseException) -> errors.S3Error:
    """The S3 error for an exception gunicorn reports (parse errors; else InternalError)."""
    if isinstance(exc, (herrors.InvalidResponseHeader, herrors.InvalidResponseHeaderName)):
        return errors.InternalError()  # the application's fault, not the client's
    for kind, make in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return make()
    return errors.InternalError()


def render_error(err: errors.S3Error, method: str, path: str) -> bytes:
    """A whole HTTP/1.1 response for ``err``, rendered by wsgi.responses; it closes."""
    response = error_response(err, {"REQUEST_METHOD": method, "PATH_INFO": path})
    body = response.get_data()
    status = HTTPStatus(response.status_code)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()
              if name.lower() not in ("connection", "content-length")]
    lines.append(f"Content-Length: {len(body) if method != 'HEAD' else 0}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
