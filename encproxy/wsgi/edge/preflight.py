"""CORS, before authentication: preflights (``OPTIONS``) answered, and the CORS headers
of every other answer to a request that carries ``Origin``.

S3 never authenticates a preflight (``encproxy.s3.preflight``), so this layer
sits between the gateway (which resolved the bucket and key) and the
authentication layer, and hands every ``OPTIONS`` request to the backend's
``answer``: the file store evaluates the bucket's CORS rules; an S3 backend gets
the preflight unsigned, with nothing but its CORS headers, and decides by its own
rules.  A preflight reaches no other layer: it never unwraps a key, reads an
object or writes one.

Any other request with ``Origin`` goes on, and its answer gets the headers
``cors_headers`` gives (the file store's, from the same rules), whatever the
answer: a success, or an error from any layer below, authentication's included
(S3 adds them to errors too: ceph/s3-tests expect them on a 403 and a 404).
They are decided before the request goes on, from the request alone.  Without
``cors_headers`` (an S3 backend) answers carry no CORS headers: a known gap,
docs/BACKENDS.md.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary

PreflightAnswer = Callable[[S3Request], Response]
#: The CORS headers for the answer to a request other than a preflight (none: []).
CorsHeaders = Callable[[S3Request], list[tuple[str, str]]]


class CorsLayer:
    def __init__(self, app: WSGIApp, answer: PreflightAnswer,
                 cors_headers: CorsHeaders | None = None) -> None:
        self.app = app
        self._preflight = s3_error_boundary(lambda environ: answer(S3Request.of(environ)))
        self._cors_headers = cors_headers

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "").upper() == "OPTIONS":
            return self._preflight(environ, start_response)
        if self._cors_headers is None or not environ.get("HTTP_ORIGIN"):
            return self.app(environ, start_response)
        added = self._cors_headers(S3Request.of(environ))
        if not added:
            return self.app(environ, start_response)

        names = {name.lower() for name, _ in added}

        def with_cors(status: str, headers: list[tuple[str, str]],
                      exc_info: Any = None) -> Any:
            # The app below never sets these; if it did, the rules' answer replaces them.
            kept = [(k, v) for k, v in headers if k.lower() not in names]
            return start_response(status, kept + added, exc_info)

        return self.app(environ, with_cors)
