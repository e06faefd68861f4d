"""Sending a request to the backend, and its answer as the client's.

Every operation goes through here: ``send`` forwards (allowlisted headers and
query, re-signed by the client), ``relay`` streams a success back, ``read_result``
parses a small XML result, and ``backend_error`` turns a backend's error into the
S3 error encproxy would have raised itself.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.s3 import xml
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import (
    BackendBroken,
    BackendResponse,
    BodySource,
    S3BackendClient,
)
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request

log = logging.getLogger("encproxy.s3backend")

# What is read of a body before the response starts (a reader above may only want the
# headers: the encryption layer looks at an object's metadata first).
FIRST_PIECE = 64 * 1024
MAX_ERROR_BODY = 64 * 1024
MAX_RESULT_BODY = 8 * 1024 * 1024
# Elements of a backend's error body that describe the backend, not the request.
BACKEND_ERROR_FIELDS = {"Code", "Message", "RequestId", "HostId", "Resource"}
# Codes for error statuses that come without a body (HEAD).
STATUS_CODES = {301: "PermanentRedirect", 307: "TemporaryRedirect", 400: "BadRequest",
                403: "AccessDenied", 405: "MethodNotAllowed", 409: "Conflict",
                411: "MissingContentLength", 412: "PreconditionFailed", 416: "InvalidRange",
                500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable"}
# Operations on an upload: a missing upload is NoSuchUpload, whatever the backend says.
UPLOAD_OPERATIONS = {"UploadPart", "UploadPartCopy", "ListParts", "AbortMultipartUpload",
                     "CompleteMultipartUpload"}
# Headers an error answer keeps (a 304 must say which version is current).
ERROR_HEADERS = {"etag", "last-modified", "x-amz-bucket-region", "x-amz-delete-marker",
                 "x-amz-version-id"}


# -- sending ---------------------------------------------------------------------------
def send(client: S3BackendClient, req: S3Request, *, body: bytes | BodySource | None = None,
         method: str | None = None, query: str | None = None,
         headers: dict[str, str] | None = None) -> BackendResponse:
    """The client's request as the backend gets it; ``method``, ``query`` and ``headers``
    (added to the forwarded ones) change it.  A streamed body of a client that sent
    ``Expect: 100-continue`` waits for the backend's go-ahead where the backend decides
    whether the caller may write (``S3BackendClient.backend_authorizes``)."""
    out = forwarding.forward_headers(req.headers)
    out.update(forwarding.plain_checksum_headers(req.operation, req.headers))
    if "x-amz-copy-source" in req.headers:
        out["x-amz-copy-source"] = forwarding.encode_copy_source(
            parse_copy_source(req.headers["x-amz-copy-source"]))
    if isinstance(body, bytes) and body:
        # Whatever digest the client sent described its body; this one is ours.
        out["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    out.update(headers or {})
    if query is None:
        query = forwarding.forward_query(req.environ.get(env.RAW_QUERY, ""))
    expect = client.backend_authorizes and (
        bool(req.environ.get(env.EXPECTS_CONTINUE))
        or req.headers.get("expect", "").lower() == "100-continue")
    return client.request(method or req.method, req.bucket, req.key, query, out, body,
                          expect_continue=expect)


def small_body(req: S3Request) -> bytes:
    return req.read_small_body(xml.MAX_REQUEST_XML)


# -- answers ---------------------------------------------------------------------------
def relay(req: S3Request, resp: BackendResponse, status: int | None = None,
          extra: list[tuple[str, str]] | None = None) -> Response:
    """The backend's answer as the client's: errors rendered as encproxy's own."""
    if resp.status >= 300:
        raise backend_error(req, resp)
    headers = forwarding.relay_headers(resp.headers) + (extra or [])
    if req.method == "HEAD" or resp.status in (204, 304):
        resp.close()
        return Response(None, status=status or resp.status, headers=headers)
    # The first piece is read now: a backend that breaks before sending any of the
    # body is a 503 the client can read. Once the response has started, a break can
    # only abort the connection (BackendBroken propagates from the iterator).
    pieces = resp.pieces(first=FIRST_PIECE)
    try:
        first = next(pieces, b"")
    except BackendBroken as exc:
        log.warning("backend answer to %s %s broke before its body: %s", req.method,
                    req.environ.get(env.RAW_PATH), exc)
        raise errors.ServiceUnavailable(
            "The storage backend failed while answering; please retry.") from None
    return Response(_prepend(first, pieces), status=status or resp.status,
                    headers=headers, direct_passthrough=True)


def read_result(req: S3Request, resp: BackendResponse) -> Any:
    """A small XML success body, parsed; an ``<Error>`` inside a 200 (S3 sends those
    for long copies and completions) is raised as the error it is."""
    return read_result_source(req, resp)[0]


def read_result_source(req: S3Request, resp: BackendResponse) -> tuple[Any, bytes]:
    """:func:`read_result`, and the body it was parsed from."""
    if resp.status >= 300:
        raise backend_error(req, resp)
    try:
        body = resp.read_all(MAX_RESULT_BODY)
    except BackendBroken as exc:
        log.warning("backend answer to %s %s broke: %s", req.method,
                    req.environ.get(env.RAW_PATH), exc)
        raise errors.ServiceUnavailable() from None
    try:
        root = xml.parse(body, max_size=MAX_RESULT_BODY)
    except errors.MalformedXML:
        log.warning("backend answered %s %s with a body that is not XML", req.method,
                    req.environ.get(env.RAW_PATH))
        raise errors.InternalError() from None
    if root.tag == "Error":
        raise _error_from_xml(req, resp, root, 500)
    return root, body


def result_headers(resp: BackendResponse) -> list[tuple[str, str]]:
    """The relayed headers of an answer whose body encproxy rewrites."""
    return [(k, v) for k, v in forwarding.relay_headers(resp.headers)
            if k.lower() != "content-length"]


def quoted(etag: str) -> str:
    return '"' + etag.strip().strip('"') + '"'


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


# -- errors ----------------------------------------------------------------------------
def backend_error(req: S3Request, resp: BackendResponse) -> errors.S3Error:
    """The error a backend's error answer (``resp.status >= 300``) stands for; the
    response is closed."""
    body = b""
    if req.method != "HEAD" and resp.status != 304:
        try:
            body = resp.read_all(MAX_ERROR_BODY)
        except BackendBroken:
            body = b""
    resp.close()
    root = None
    if body.strip():
        try:
            root = xml.parse(body, max_size=MAX_ERROR_BODY)
        except errors.S3Error:
            root = None
    if root is not None and root.tag == "Error":
        return _error_from_xml(req, resp, root, resp.status)
    if resp.status == 304:
        err: errors.S3Error = errors.NotModified()
    else:
        err = errors.relayed(_status_code(req, resp.status), resp.status)
    err.headers.update({k: v for k, v in resp.headers if k.lower() in ERROR_HEADERS})
    return err


def _error_from_xml(req: S3Request, resp: BackendResponse, root: Any,
                    status: int) -> errors.S3Error:
    code = _upload_code(req, xml.child_text(root, "Code") or _status_code(req, status))
    fields = {child.tag: child.text or "" for child in root
              if isinstance(child.tag, str) and child.tag not in BACKEND_ERROR_FIELDS
              and len(child) == 0}
    err = errors.relayed(code, status, xml.child_text(root, "Message") or None, **fields)
    err.headers.update({k: v for k, v in resp.headers if k.lower() in ERROR_HEADERS})
    log.debug("backend answered %s %s with %s (backend request id %s)", req.method,
              req.environ.get(env.RAW_PATH), code, resp.header("x-amz-request-id"))
    return err


def _upload_code(req: S3Request, code: str) -> str:
    # Ceph RGW answers an unknown upload id with NoSuchKey where S3 says NoSuchUpload.
    if code == "NoSuchKey" and req.operation in UPLOAD_OPERATIONS:
        return "NoSuchUpload"
    return code


def _status_code(req: S3Request, status: int) -> str:
    if status == 416 and "partNumber" in req.query:
        return "InvalidPartNumber"
    if status == 404:
        if req.key is not None:
            return _upload_code(req, "NoSuchKey")
        return "NoSuchBucket" if req.bucket is not None else "NotFound"
    return STATUS_CODES.get(status, "InternalError" if status >= 500 else "BadRequest")
