"""SigV4 authentication as WSGI middleware: verify the request, then hand it on.

``AuthenticationMiddleware(app, secret_lookup, region)`` refuses anonymous
and badly signed requests with the S3 error AWS would send, and otherwise
calls ``app`` with an environ in which:

* ``encproxy.access_key`` (``environ.ACCESS_KEY``) names the caller;
* ``wsgi.input`` is a :class:`~encproxy.wsgi.auth.body.VerifiedBody` when the
  request has a body: ``aws-chunked`` framing removed, signatures and digests
  checked as it streams, the final bytes withheld until they all pass;
  ``wsgi.input_terminated`` is set, since that stream ends by itself;
* for ``aws-chunked`` bodies, ``CONTENT_LENGTH`` is the decoded length,
  ``aws-chunked`` is gone from ``HTTP_CONTENT_ENCODING`` (the header too, if
  nothing else was in it) and ``HTTP_TRANSFER_ENCODING`` is dropped;
* ``encproxy.body_checksums`` (``environ.BODY_CHECKSUMS``) is filled with
  ``{algorithm: base64}`` once the body has verified (at once for a request
  without a body), for the app to echo as ``x-amz-checksum-*``.

The inner app's response passes through untouched: only a failure *before*
delegating is rendered here, through the same error boundary every layer
uses.  The signature is checked against the request target exactly as the
client sent it (``environ.RAW_PATH`` / ``RAW_QUERY``, which the outer layer
sets), never against the decoded ``PATH_INFO``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import sigv4
from encproxy.wsgi import environ as env
from encproxy.wsgi.auth.body import IO_SIZE, BodySpec, VerifiedBody, verify_empty_body
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wire_bytes(value: str) -> bytes:
    """Bytes of a WSGI string: WSGI carries request bytes as latin-1 text (PEP 3333).

    A string that cannot be latin-1 did not come from the wire that way, so
    it is taken as text and encoded as UTF-8.
    """
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers with lower-case, dash-separated names, values as received.

    WSGI merges repeated headers with ``,`` and spells ``-`` as ``_``; a
    header sent with an underscore in its name cannot be told apart (gunicorn
    drops those by default).
    """
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            headers[key[5:].lower().replace("_", "-")] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def raw_target(environ: dict[str, Any]) -> tuple[bytes, bytes]:
    """The path and query exactly as sent, preferring what the outer layer recorded."""
    path = environ.get(env.RAW_PATH)
    query = environ.get(env.RAW_QUERY)
    if path is None:
        uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if uri:
            path, separator, uri_query = uri.partition("?")
            if query is None and separator:
                query = uri_query
        else:
            raw = wire_bytes(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
            path = quote(raw, safe="/~")
    if query is None:
        query = environ.get("QUERY_STRING", "")
    return wire_bytes(path or "/"), wire_bytes(query)


def strip_aws_chunked(environ: dict[str, Any]) -> None:
    """Remove the ``aws-chunked`` coding: the inner app sees the decoded body."""
    codings = [c.strip() for c in environ.get("HTTP_CONTENT_ENCODING", "").split(",")]
    kept = [c for c in codings if c and c.lower() != "aws-chunked"]
    if kept:
        environ["HTTP_CONTENT_ENCODING"] = ",".join(kept)
    else:
        environ.pop("HTTP_CONTENT_ENCODING", None)


class AuthenticationMiddleware:
    """Verify SigV4 (header or presigned) and the body's claims, then call ``app``.

    ``secret_lookup(access_key)`` returns the secret or None; it is called
    per request, so credentials can be reloaded behind it.  ``region`` is
    the region clients must sign for (None accepts any).  ``clock`` returns
    the current time as an aware datetime; tests freeze it.
    """

    def __init__(self, app: WSGIApp, secret_lookup: sigv4.SecretLookup,
                 region: str | None = sigv4.DEFAULT_REGION, clock: Clock = _utc_now,
                 io_size: int = IO_SIZE) -> None:
        self.app = app
        self.secret_lookup = secret_lookup
        self.region = region
        self.clock = clock
        self.io_size = io_size

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        try:
            self.authenticate(environ)
        except Exception as exc:  # rendered (or logged) by the shared boundary
            failure = exc

            def fail(_environ: dict[str, Any]) -> Response:
                raise failure

            return s3_error_boundary(fail)(environ, start_response)
        return self.app(environ, start_response)

    def authenticate(self, environ: dict[str, Any]) -> sigv4.VerifiedRequest:
        """Verify the request and prepare ``environ`` for the inner app; raise S3Error."""
        headers = request_headers(environ)
        path, query = raw_target(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        verified = sigv4.verify(method, path, query, headers, self.secret_lookup,
                                self.clock(), region=self.region)
        self._install_body(environ, headers, verified)
        environ[env.ACCESS_KEY] = verified.access_key
        environ.pop(env.REQUEST, None)  # the body and its length changed: parse again
        return verified

    def _install_body(self, environ: dict[str, Any], headers: dict[str, str],
                      verified: sigv4.VerifiedRequest) -> None:
        chunked_transfer = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        spec = BodySpec.from_headers(headers, verified.payload_hash,
                                     method=environ.get("REQUEST_METHOD", "GET"),
                                     chunked_transfer=chunked_transfer)
        # One dict, filled in place: inner layers may work on copies of the environ.
        sums: dict[str, str] = environ.setdefault(env.BODY_CHECKSUMS, {})
        if not spec.has_body:
            sums.update(verify_empty_body(spec) or {})
            return

        def record(checks: dict[str, str]) -> None:
            sums.update(checks)

        environ["wsgi.input"] = VerifiedBody(environ["wsgi.input"].read, spec, signing=verified,
                                             io_size=self.io_size, on_verified=record)
        environ["wsgi.input_terminated"] = True
        if spec.aws_chunked:
            environ["CONTENT_LENGTH"] = str(spec.decoded_length)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            strip_aws_chunked(environ)
