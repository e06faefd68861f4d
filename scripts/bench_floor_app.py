"""A WSGI app that does nothing: bench-small's floor (scripts/bench_small.py).

Served by gunicorn's gthread worker with encproxy's shipped workers, threads and
keep-alive, it shows what a request costs before any work of encproxy's: the HTTP
server, its threads and the WSGI call.  A PUT's body is read and dropped; a GET
answers 4 KiB of zeros; everything else answers 200 with no body.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = bytes(4096)


def app(environ: dict[str, Any],
        start_response: Callable[[str, list[tuple[str, str]]], Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "PUT":
        environ["wsgi.input"].read()
    if method == "GET" and path.count("/") > 1:      # an object
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(BODY))), ("ETag", '"floor"')])
        return [BODY]
    start_response("200 OK", [("Content-Length", "0"), ("ETag", '"floor"')])
    return [b""]
