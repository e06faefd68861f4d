"""The outermost WSGI layer: request id, raw request target, and addressing.

It resolves path-style (``/bucket/key``) and virtual-hosted-style
(``bucket.<hostname>/key``) requests once, and records the result in the
environ (``encproxy.wsgi.environ``) for every inner layer.  Keys are decoded
from the raw target the client sent, never from PATH_INFO, which WSGI
decodes as latin-1 and which loses the difference between ``%2F`` and ``/``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from encproxy import errors
from encproxy.s3.names import check_key
from encproxy.wsgi import environ as env
from encproxy.wsgi.responses import WSGIApp, error_response, new_request_id


class Gateway:
    def __init__(self, app: WSGIApp, hostnames: Iterable[str],
                 client_timeout: float | None = None) -> None:
        self.app = app
        self.client_timeout = client_timeout
        # Longest first: with "localhost" and "s3.localhost", b.s3.localhost is bucket b.
        self.suffixes = tuple(sorted(("." + h.lower() for h in hostnames), key=len,
                                     reverse=True))

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        rid = new_request_id()
        environ[env.REQUEST_ID] = rid

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(k.lower() == "x-amz-request-id" for k, _ in headers):
                headers.append(("x-amz-request-id", rid))
            headers.append(("x-amz-id-2", rid))
            if exc_info:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        sock = environ.get("gunicorn.socket")
        if sock is not None and self.client_timeout:
            # gunicorn's threads read request bodies with blocking sockets: without a
            # timeout, a client that stalls mid-upload holds a thread forever.
            sock.settimeout(self.client_timeout)
        try:
            self.resolve(environ)
        except errors.S3Error as err:
            return error_response(err, environ)(environ, start)
        return self.app(environ, start)

    def resolve(self, environ: dict[str, Any]) -> None:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not raw:
            # Not gunicorn: rebuild from the decoded parts (tests through werkzeug).
            from urllib.parse import quote
            path_info = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
            raw = quote(path_info, safe="/~") + (
                "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        if raw.startswith(("http://", "https://")):
            parts = urlsplit(raw)
            raw = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query = raw.partition("?")
        # Servers other than gunicorn may leave the query out of RAW_URI.
        query = query or environ.get("QUERY_STRING", "")
        if not path.startswith("/"):
            raise errors.InvalidURI()
        environ[env.RAW_PATH] = path
        environ[env.RAW_QUERY] = query
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidURI() from None

        host = (environ.get("HTTP_HOST") or "").lower()
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        bucket: str | None = None
        for suffix in self.suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                bucket = host[: -len(suffix)]
                break
        if bucket is not None:
            rest = decoded[1:]
        else:
            first, _, rest = decoded[1:].partition("/")
            bucket = first or None
        key = rest or None
        if key is not None:
            check_key(key)
        environ[env.BUCKET] = bucket
        environ[env.KEY] = key
