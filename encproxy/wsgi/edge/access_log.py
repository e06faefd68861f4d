"""The request layer: one JSON access line and the request metrics per request,
and the request body limit (docs/OPERATIONS.md §3, §4).

``RequestLog(app, access_log=True, max_body=5 GiB)`` sits above the gateway.
It counts the body bytes read from the client (a thin wrapper over
``wsgi.input``: one addition per read) and sent back (one per response piece),
and when the response is over -- sent, failed or abandoned by the client -- it
writes one line to the ``encproxy.access`` logger and records the request's
metrics.  The line::

    {"time": "...Z", "request_id": "...", "remote_addr": "...", "method": "PUT",
     "operation": "PutObject", "bucket": "b", "key": "k", "status": 200,
     "bytes_in": 1048576, "bytes_out": 0, "duration_ms": 12.3,
     "access_key": "...", "auth": "header", "complete": true, "user_agent": "..."}

It is built from fields chosen one by one: never the query string, never a
header value other than the user agent.  The access key *id* names the caller
(AWS's logs name it too); its secret, the signature, a security token and
SSE-C keys are never in the environ values read here.  ``complete`` is false
when the response body did not reach its end (the client went away, or an
integrity failure aborted the connection).

``max_body`` refuses, with EntityTooLarge and before anything is read, a request
that declares a longer body (``Content-Length``, or for ``aws-chunked`` bodies
``x-amz-decoded-content-length``); a body that declares no length is cut off
with the same error once it grows past the limit.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from encproxy import errors, metrics
from encproxy.logjson import ACCESS_LOGGER
from encproxy.wsgi import environ as env
from encproxy.wsgi.auth.access import DECISION
from encproxy.wsgi.responses import WSGIApp, error_response

access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("encproxy.access_layer")

DEFAULT_MAX_BODY = 5 * 1024**3
MAX_USER_AGENT = 256


class CountingInput:
    """``wsgi.input`` with the bytes read counted (and capped when no length was declared)."""

    def __init__(self, inner: Any, limit: int | None) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def _add(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.limit))
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._add(self.inner.read(size) if size is not None else self.inner.read())

    def readline(self, size: int | None = -1) -> bytes:
        return self._add(self.inner.readline(size) if size is not None else
                         self.inner.readline())

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return [self._add(line) for line in self.inner.readlines(hint)]

    def __iter__(self) -> Iterator[bytes]:
        for line in self.inner:
            yield self._add(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def declared_length(environ: dict[str, Any]) -> int | None:
    """The body length the request announces (decoded length for aws-chunked), if any."""
    for name in ("HTTP_X_AMZ_DECODED_CONTENT_LENGTH", "CONTENT_LENGTH"):
        text = environ.get(name)
        if text and text.strip().isdigit():
            return int(text)
    return None


def operation_of(environ: dict[str, Any]) -> str:
    if env.BUCKET not in environ:  # addressing was never resolved (bad URI, refused early)
        return "unknown"
    try:
        from encproxy.wsgi.request import S3Request
        return S3Request.of(environ).operation or "unknown"
    except Exception:
        return "unknown"


def auth_kind(environ: dict[str, Any]) -> str:
    if environ.get("HTTP_AUTHORIZATION"):
        return "header"
    query = environ.get(env.RAW_QUERY, environ.get("QUERY_STRING", ""))
    if "X-Amz-Signature=" in query or "Signature=" in query:
        return "presigned"
    return "anonymous"


class _Exchange:
    """What one request did, filled in as it goes."""

    __slots__ = ("started", "status", "sent", "complete", "body", "done")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.status = 0
        self.sent = 0
        self.complete = False
        self.body: CountingInput | None = None
        self.done = False


class RequestLog:
    def __init__(self, app: WSGIApp, *, access_log: bool = True,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.access_log = access_log
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        ex = _Exchange()
        metrics.request_started()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            ex.status = int(status[:3])
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        try:
            declared = declared_length(environ)
            if declared is not None and declared > self.max_body:
                result: Iterable[bytes] = error_response(errors.EntityTooLarge(
                    ProposedSize=str(declared), MaxSizeAllowed=str(self.max_body)),
                    environ)(environ, start)
            else:
                if "wsgi.input" in environ:
                    ex.body = CountingInput(environ["wsgi.input"],
                                            None if declared is not None else self.max_body)
                    environ["wsgi.input"] = ex.body
                result = self.app(environ, start)
        except BaseException:
            ex.status = ex.status or 500
            self._finish(environ, ex)
            raise
        return _ObservedBody(result, lambda: self._finish(environ, ex), ex)

    def _finish(self, environ: dict[str, Any], ex: _Exchange) -> None:
        if ex.done:
            return
        ex.done = True
        seconds = time.monotonic() - ex.started
        operation = operation_of(environ)
        received = ex.body.count if ex.body is not None else 0
        status = ex.status or 500
        try:
            metrics.request_finished(operation, status, seconds, received, ex.sent)
        except Exception:  # metrics must never fail a request
            log.exception("recording request metrics failed")
        if not self.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        line = {
            "request_id": environ.get(env.REQUEST_ID),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "operation": operation,
            "bucket": environ.get(env.BUCKET),
            "key": environ.get(env.KEY),
            "status": status,
            "bytes_in": received,
            "bytes_out": ex.sent,
            "duration_ms": round(seconds * 1000, 3),
            "access_key": environ.get(env.ACCESS_KEY),
            "auth": auth_kind(environ),
            "access": environ.get(DECISION) or ("acl" if environ.get(env.ANONYMOUS) else None),
            "complete": ex.complete,
            "user_agent": (environ.get("HTTP_USER_AGENT") or "")[:MAX_USER_AGENT] or None,
        }
        access_log.info("access", extra={"access": line})


class _ObservedBody:
    """The response body, counted; the exchange is finished when the server closes it."""

    def __init__(self, inner: Iterable[bytes], finish: Callable[[], None], ex: _Exchange) -> None:
        self.inner = inner
        self.finish = finish
        self.ex = ex

    def __iter__(self) -> Iterator[bytes]:
        ex = self.ex
        for piece in self.inner:
            ex.sent += len(piece)
            yield piece
        ex.complete = True

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.finish()


__all__ = ["CountingInput", "DEFAULT_MAX_BODY", "RequestLog", "declared_length", "operation_of"]
