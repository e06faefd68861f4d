"""An S3 backend's answer to a CORS preflight: the backend's own CORS rules decide.

A preflight S3 cannot evaluate is refused here, as S3 refuses it; a valid one
goes unsigned (a browser's carries no credentials, and encproxy's
would let the backend answer as for its owner), with only the headers a
preflight is decided by; the answer comes back with its CORS headers.
"""
from __future__ import annotations

from werkzeug.wrappers import Response

from encproxy.s3.names import check_bucket_name
from encproxy.s3.preflight import CORS_RESPONSE_HEADERS, PREFLIGHT_HEADERS, check_preflight
from encproxy.s3backend.client import S3BackendClient
from encproxy.wsgi.apps.s3backend.relay import backend_error
from encproxy.wsgi.request import S3Request


def answer_preflight(client: S3BackendClient, req: S3Request) -> Response:
    check_preflight(req.headers)    # what S3 refuses before its rules, whatever the backend
    if req.bucket is not None:
        check_bucket_name(req.bucket)
    headers = {name: req.headers[name] for name in PREFLIGHT_HEADERS if name in req.headers}
    resp = client.request("OPTIONS", req.bucket, req.key, headers=headers, signed=False)
    if resp.status >= 300:
        raise backend_error(req, resp)
    resp.close()
    return Response(None, status=resp.status, headers=[
        (name, value) for name, value in resp.headers if name.lower() in CORS_RESPONSE_HEADERS])
