"""The file store's CORS: the answer to a preflight, and the headers of the answer to
any other request that carries ``Origin``, both from the rules kept in the bucket
record (PutBucketCors; ``encproxy.s3.cors``).  The CORS layer
(``wsgi.edge.preflight``) calls them, before authentication: the rules are read
once per such request, from the one small bucket record."""
from __future__ import annotations

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.store import FileStore
from encproxy.s3 import cors
from encproxy.s3.names import check_bucket_name
from encproxy.s3.preflight import check_preflight, no_cors_configuration
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import request_id


def answer_preflight(store: FileStore, req: S3Request) -> Response:
    """200 with the matching rule's headers; 403 AccessForbidden when the bucket has
    no CORS configuration or no rule allows the preflight; NoSuchBucket."""
    check_preflight(req.headers)
    method = req.headers["access-control-request-method"]
    if req.bucket is None:
        raise no_cors_configuration(method)
    check_bucket_name(req.bucket)
    rules = store.bucket(req.bucket).cors          # NoSuchBucket
    if rules is None:
        raise no_cors_configuration(method)
    resp = Response(b"", status=200, headers=cors.preflight_headers(rules, req.headers))
    resp.headers["x-amz-request-id"] = request_id(req.environ)
    return resp


def response_cors_headers(store: FileStore, req: S3Request) -> list[tuple[str, str]]:
    """The CORS headers for the answer to ``req`` (not a preflight), whatever that
    answer turns out to be, errors included; none without ``Origin``, outside a bucket,
    or when the bucket has no rule that matches (or cannot be read: then the request
    fails on its own, and says why)."""
    if not req.headers.get("origin") or req.bucket is None:
        return []
    try:
        check_bucket_name(req.bucket)
        rules = store.bucket(req.bucket).cors
    except errors.S3Error:
        return []
    return [] if rules is None else cors.actual_headers(rules, req.method, req.headers)
