"""Requests of the encryption layer to the app below, built from scratch.

``subrequest.call`` sends small bodies and reads whole answers.  Multipart
uploads and copies also need requests with streamed bodies (an encrypted part,
a held segment) and answers read as streams (a ciphertext range).  Every such
request is built here from a clean environ: only the headers named by the
caller reach the app below, never the client's (its signature, checksums,
SSE headers), so that nothing the client said about its plaintext is applied
to ciphertext.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from encproxy import errors
from encproxy.s3 import xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp


environ_for = subrequest.request_environ


def open_stream(app: WSGIApp, parent: dict[str, Any] | None, method: str, bucket: str,
                key: str | None = None, query: str = "", headers: dict[str, str] | None = None,
                body: Any = None, length: int = 0) -> subrequest.StreamingResponse:
    return subrequest.open_stream(app, environ_for(parent, method, bucket, key, query, headers,
                                                   body, length))


def call(app: WSGIApp, parent: dict[str, Any] | None, method: str, bucket: str,
         key: str | None = None, query: str = "", headers: dict[str, str] | None = None,
         body: Any = None, length: int = 0) -> subrequest.SubResponse:
    """Like ``open_stream``, with the (small) answer read whole."""
    return subrequest.run(app, environ_for(parent, method, bucket, key, query, headers, body,
                                           length))


def failure(status: int, body: bytes) -> errors.S3Error:
    """The app below answered an error to a request made for the client: the same
    error for the client (its code, status and message)."""
    code, message = None, None
    if body:
        try:
            root = xml.parse(body, max_size=subrequest.MAX_SUBRESPONSE)
            code, message = xml.child_text(root, "Code"), xml.child_text(root, "Message")
        except errors.S3Error:
            pass
    if not code:
        if status == 503:
            return errors.ServiceUnavailable()
        return errors.InternalError()
    return errors.relayed(code, status, message or None)


def internal_failure(status: int) -> errors.S3Error:
    """The app below failed a request made for encproxy's own bookkeeping."""
    return errors.ServiceUnavailable() if status == 503 else errors.InternalError()


def quote_param(value: str) -> str:
    return quote(value, safe="-_.~")
