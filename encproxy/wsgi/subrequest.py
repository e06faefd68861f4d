"""Plain S3 requests from a layer to the app below it: the one sub-request API.

Middleware keeps its own state (bucket configurations, upload records) in the
backend through the same WSGI interface clients use, so it works over any
backend app; the encryption layer also sends ciphertext and reads ranges this
way.  Two kinds of request:

* **clean** (``request``, ``stream``): built from scratch; only the headers named
  by the caller reach the app below, never the client's (its signature,
  checksums, SSE headers), so nothing the client said about its plaintext is
  applied to ciphertext.  Only the request id (and, for an anonymous caller, its
  anonymity) is taken from the parent request.
* **derived** (``derived_environ``, then ``run`` or ``open_stream``): the client's
  own request with named headers changed, for the operations encproxy relays.

``request``/``run`` read the (small: XML, JSON) answer whole; ``stream`` and
``open_stream`` leave the body to the caller, who must close it.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from encproxy import errors
from encproxy.s3 import xml
from encproxy.wsgi import environ as env
from encproxy.wsgi.responses import WSGIApp

Environ = dict[str, Any]


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...

# Sub-responses are XML or JSON; ListBuckets of 10,000 buckets is about 1.5 MiB.
MAX_SUBRESPONSE = 8 * 1024 * 1024


@dataclass(frozen=True)
class SubResponse:
    status: int
    headers: dict[str, str]   # lower-case names
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_code(self) -> str | None:
        """The S3 error code of an error body, if it has one."""
        if self.ok or not self.body:
            return None
        try:
            root = xml.parse(self.body)
        except errors.S3Error:
            return None
        return xml.child_text(root, "Code")


def request_environ(parent: dict[str, Any] | None, method: str, bucket: str,
                    key: str | None = None, query: str = "",
                    headers: dict[str, str] | None = None, body: Any = None,
                    length: int = 0) -> dict[str, Any]:
    """A clean WSGI environ for ``method /bucket/key?query`` with exactly these headers
    (``bucket`` empty: the service, ``GET /`` being ListBuckets).

    Only the request id and who the caller is (its access key, or its anonymity) are
    taken from ``parent``: nothing the client sent (its signature, checksums, SSE
    headers) reaches the app below unless named here.  A caller stays who it is in
    every request made for it, so that an S3 backend gets them all unsigned for an
    anonymous caller, or signed as the backend identity mapped to the caller's
    credential, and its own ACLs and policies decide (``S3BackendApp``; encproxy's
    internal bucket excepted).
    """
    raw_path = "/" + bucket + ("/" + quote(key, safe="/~") if key is not None else "")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": raw_path,
        "QUERY_STRING": query, "SERVER_NAME": "encproxy", "SERVER_PORT": "0",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "encproxy",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": body if body is not None else io.BytesIO(b""),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "CONTENT_LENGTH": str(length),
        env.BUCKET: bucket or None, env.KEY: key, env.RAW_PATH: raw_path, env.RAW_QUERY: query,
        env.REQUEST_ID: (parent or {}).get(env.REQUEST_ID, "subrequest"),
    }
    if parent is not None and parent.get(env.ANONYMOUS):
        environ[env.ANONYMOUS] = True
    if parent is not None and parent.get(env.ACCESS_KEY):
        environ[env.ACCESS_KEY] = parent[env.ACCESS_KEY]
    if parent is not None and (parent.get(env.EXPECTS_CONTINUE) or str(
            parent.get("HTTP_EXPECT", "")).lower() == "100-continue"):
        environ[env.EXPECTS_CONTINUE] = True
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            environ["CONTENT_TYPE"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def request(app: WSGIApp, parent: Environ | None, method: str, bucket: str,
            key: str | None = None, query: str = "", headers: dict[str, str] | None = None,
            body: bytes | Readable | None = None, length: int | None = None) -> SubResponse:
    """A clean request; its (small) answer read whole.  ``body``: bytes, or a reader of
    ``length`` bytes."""
    return run(app, _clean(parent, method, bucket, key, query, headers, body, length))


def stream(app: WSGIApp, parent: Environ | None, method: str, bucket: str,
           key: str | None = None, query: str = "", headers: dict[str, str] | None = None,
           body: bytes | Readable | None = None, length: int | None = None
           ) -> StreamingResponse:
    """A clean request; its answer's body left unread, for the caller to stream and close."""
    return open_stream(app, _clean(parent, method, bucket, key, query, headers, body, length))


def _clean(parent: Environ | None, method: str, bucket: str, key: str | None, query: str,
           headers: dict[str, str] | None, body: bytes | Readable | None,
           length: int | None) -> Environ:
    if body is None:
        return request_environ(parent, method, bucket, key, query, headers)
    if isinstance(body, bytes):
        return request_environ(parent, method, bucket, key, query, headers,
                               io.BytesIO(body), len(body))
    if length is None:
        raise ValueError("a streamed sub-request body needs its length")
    return request_environ(parent, method, bucket, key, query, headers, body, length)


def failure(status: int, body: bytes) -> errors.S3Error:
    """The app below answered an error to a request made for the client: the same
    error for the client (its code, status and message)."""
    code, message, fields = None, None, {}
    if body:
        try:
            root = xml.parse(body, max_size=MAX_SUBRESPONSE)
            code, message = xml.child_text(root, "Code"), xml.child_text(root, "Message")
            # The error's details that describe the client's request.  Never BucketName
            # or Key: a sub-request may have been for the internal bucket.
            fields = {child.tag: child.text or "" for child in root
                      if child.tag in _DETAILS and len(child) == 0}
        except errors.S3Error:
            pass
    if not code:
        return internal_failure(status)
    return errors.relayed(code, status, message or None, **fields)


_DETAILS = frozenset({"ArgumentName", "ArgumentValue", "UploadId", "PartNumber", "ETag",
                      "Condition", "ProposedSize", "MinSizeAllowed", "MaxSizeAllowed",
                      "VersionId", "Method", "ResourceType"})


def internal_failure(status: int) -> errors.S3Error:
    """The app below failed a request made for encproxy's own bookkeeping."""
    return errors.ServiceUnavailable() if status == 503 else errors.InternalError()


def quote_param(value: str) -> str:
    """A query parameter value, percent-encoded as S3 signs it."""
    return quote(value, safe="-_.~")


class IterReader:
    """``read(n)`` over an iterator of byte pieces (an encryptor's output), to be
    a sub-request's ``wsgi.input``."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buffer = b""
        self._offset = 0

    def read(self, n: int = -1) -> bytes:
        if self._offset >= len(self._buffer):
            self._buffer = next(self._pieces, b"")
            self._offset = 0
        if n < 0:
            n = len(self._buffer) - self._offset
        piece = self._buffer[self._offset:self._offset + n]
        self._offset += len(piece)
        return piece


def run(app: WSGIApp, environ: dict[str, Any]) -> SubResponse:
    """Call ``app`` and collect its whole (small) response."""
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = {k.lower(): v for k, v in response_headers}
        return lambda data: None

    result = app(environ, start_response)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in result:
            size += len(chunk)
            if size > MAX_SUBRESPONSE:
                raise errors.InternalError()
            chunks.append(bytes(chunk))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return SubResponse(captured["status"], captured["headers"], b"".join(chunks))


@dataclass
class StreamingResponse:
    """A response from the app below whose body has not been read yet."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def read_all(self, limit: int = MAX_SUBRESPONSE) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in self.body:
                size += len(chunk)
                if size > limit:
                    raise errors.InternalError()
                chunks.append(bytes(chunk))
        finally:
            self.close()
        return b"".join(chunks)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def open_stream(app: WSGIApp, environ: dict[str, Any]) -> StreamingResponse:
    """Call ``app`` and return its status and headers; the body is read by the caller."""
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = list(response_headers)
        return lambda data: None

    result = app(environ, start_response)
    if "status" not in captured:
        # A lazy app starts its response with its first body item.
        iterator = iter(result)
        first = next(iterator, None)
        body: Iterable[bytes] = _prepend(first, iterator, result)
    else:
        body = result
    return StreamingResponse(captured["status"], captured["headers"], body)


def _prepend(first: bytes | None, rest: Iterator[bytes], original: Any) -> Iterator[bytes]:
    try:
        if first is not None:
            yield first
        yield from rest
    finally:
        close = getattr(original, "close", None)
        if close is not None:
            close()


def derived_environ(environ: dict[str, Any], *, method: str | None = None,
                    drop: Iterable[str] = (), headers: dict[str, str] | None = None,
                    query: str | None = None, body: Any = None,
                    content_length: int | None = None) -> dict[str, Any]:
    """A copy of ``environ`` for a request to the app below, with headers changed.

    ``drop`` names headers (any case) to remove; ``headers`` sets headers.
    """
    new = dict(environ)
    for name in drop:
        key = environ_key(name)
        new.pop(key, None)
    for name, value in (headers or {}).items():
        new[environ_key(name)] = value
    if method is not None:
        new["REQUEST_METHOD"] = method
    if query is not None:
        new[env.RAW_QUERY] = query
        new["QUERY_STRING"] = query
    if body is not None:
        new["wsgi.input"] = body
    if content_length is not None:
        new["CONTENT_LENGTH"] = str(content_length)
    return new


def environ_key(name: str) -> str:
    """The WSGI environ key of request header ``name``."""
    upper = name.upper().replace("-", "_")
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
