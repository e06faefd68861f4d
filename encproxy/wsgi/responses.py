"""Rendering of S3 errors, in one place, and the error boundary every layer uses."""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.s3 import xml
from encproxy.wsgi import environ as env

log = logging.getLogger("encproxy")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


def request_id(environ: dict[str, Any]) -> str:
    rid = environ.get(env.REQUEST_ID)
    if not rid:
        rid = environ[env.REQUEST_ID] = new_request_id()
    return rid


def xml_response(root: xml.Node, status: int = 200, environ: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    resp = Response(xml.render(root), status=status, content_type="application/xml",
                    headers=headers)
    if environ is not None:
        resp.headers["x-amz-request-id"] = request_id(environ)
    return resp


def error_response(err: errors.S3Error, environ: dict[str, Any]) -> Response:
    rid = request_id(environ)
    headers = {"x-amz-request-id": rid, **err.headers}
    if err.status == 304 or environ.get("REQUEST_METHOD") == "HEAD":
        # HEAD and 304 carry no body; clients read the code from the status.
        return Response(b"", status=err.status, headers=headers)
    root = xml.Node("Error")
    root.add("Code", err.code)
    root.add("Message", err.message)
    for name, value in err.fields.items():
        root.add(name, value)
    root.add("Resource", environ.get(env.RAW_PATH) or environ.get("PATH_INFO", "/"))
    root.add("RequestId", rid)
    return Response(xml.render(root, namespace=None), status=err.status,
                    content_type="application/xml", headers=headers)


def s3_error_boundary(handler: Callable[[dict[str, Any]], Response]) -> WSGIApp:
    """Turn a handler ``environ -> Response`` into a WSGI app that renders errors.

    An S3Error raised before the response starts becomes its XML error; any
    other exception is logged with its traceback and becomes a bare
    InternalError, so that no traceback ever reaches a client.  Errors raised
    while a body streams cannot be rendered any more: they propagate, and the
    server aborts the connection.
    """
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            response = handler(environ)
        except errors.S3Error as err:
            response = error_response(err, environ)
        except Exception:
            log.exception("unexpected error handling %s %s (request %s)",
                          environ.get("REQUEST_METHOD"), environ.get(env.RAW_PATH),
                          request_id(environ))
            response = error_response(errors.InternalError(), environ)
        return response(environ, start_response)
    return app


def relayed(status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str], body: bytes,
            extra: Mapping[str, str] | None = None) -> Response:
    """A response of the app below, read whole, passed on (with ``extra`` headers)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out = [(k, v) for k, v in pairs if k.lower() != "content-length"]
    out += list((extra or {}).items())
    return Response(body, status=status, headers=out)
