"""POST Object (browser uploads): the form's file stored exactly as a PutObject would be.

The authentication layer has read the form up to its file and authorized it
(``encproxy.wsgi.auth.post_form``, ``encproxy.s3.post_policy``): the fields are
in ``environ.POST_FORM`` and ``wsgi.input`` is the file's data, verified as it
streams.  Here the form becomes an ordinary PutObject -- the key (``${filename}``
replaced), and headers from the fields: content headers, ``x-amz-meta-*``,
``x-amz-server-side-encryption*``, ``x-amz-storage-class``, ``acl``, ``tagging``
-- handed to :func:`~encproxy.wsgi.encryption.writes.put_object`.  So the file is
encrypted exactly as a PUT's body (the form's encryption fields, else the
bucket's default, else the server's), or stored as sent where a PUT would be;
no backend ever sees the POST.

The answer is S3's: 204, or 200 / 201 as ``success_action_status`` asks (201
with a ``PostResponse``), or a 303 to ``success_action_redirect`` (``redirect``)
with the bucket, key and ETag in its query; ``ETag`` and ``Location`` headers
in every case.  A refused PutObject is answered as it was refused.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy.s3 import post_policy, xml
from encproxy.s3.form_data import FormHead
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.auth.post_form import read_form
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.writes import put_object
from encproxy.wsgi.request import S3Request

#: What the PutObject keeps of the POST's environ besides the headers it is given.
_KEPT = ("wsgi.url_scheme", env.ACCESS_KEY, env.BODY_CHECKSUMS, "REMOTE_ADDR")
#: Headers of the PutObject's answer that are not the POST's.
_NOT_RELAYED = frozenset({"content-length", "content-type"})


def post_object(ctx: EncryptionContext, req: S3Request) -> Response:
    assert req.bucket is not None
    head = req.environ.get(env.POST_FORM)
    if not isinstance(head, FormHead):
        # No authentication layer above this one read the form: read it here.
        head = read_form(req.environ)
    fields = head.by_name
    key = post_policy.object_key(fields, head.file.filename)
    put = S3Request.of(put_environ(req.environ, req.bucket, key,
                                   post_policy.put_headers(fields, head.file.content_type),
                                   head.file_length))
    stored = put_object(ctx, put)
    if not 200 <= stored.status_code < 300:
        return stored
    return answer(req, key, stored, fields)


def put_environ(environ: dict[str, Any], bucket: str, key: str, headers: dict[str, str],
                length: int) -> dict[str, Any]:
    """The PutObject the form describes: only the form's headers, the file as its body.

    Field values are text; headers travel in the environ as their bytes in latin-1
    (PEP 3333), so the values go as their UTF-8 bytes, as a PUT's headers would.
    """
    wire = {name: value.encode("utf-8").decode("latin-1") for name, value in headers.items()}
    put = subrequest.request_environ(environ, "PUT", bucket, key, headers=wire,
                                     body=environ["wsgi.input"], length=length)
    for name in _KEPT:
        if name in environ:
            put[name] = environ[name]
    return put


def answer(req: S3Request, key: str, stored: Response, fields: dict[str, str]) -> Response:
    """S3's answer to a POST that stored ``key``: status, ETag, Location, body."""
    assert req.bucket is not None
    etag = stored.headers.get("ETag", "")
    headers = [(name, value) for name, value in stored.headers.items()
               if name.lower() not in _NOT_RELAYED]
    location = object_url(req.environ, key)
    headers.append(("Location", location))
    redirect = post_policy.redirect_target(fields)
    if redirect is not None:
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in
                         (("bucket", req.bucket), ("key", key), ("etag", etag)))
        target = redirect + ("&" if "?" in redirect else "?") + query
        return Response(b"", status=303, headers=[
            (name, value) for name, value in headers if name != "Location"] + [
            ("Location", target)])
    status = post_policy.success_status(fields)
    if status == 201:
        body = xml.render(xml.fields("PostResponse", {
            "Location": location, "Bucket": req.bucket, "Key": key, "ETag": etag}),
            namespace=None)
        return Response(body, status=201, headers=headers, content_type="application/xml")
    return Response(b"", status=status, headers=headers)


def object_url(environ: dict[str, Any], key: str) -> str:
    """The URL of the stored object, by the address the client used for the bucket."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "localhost")
    path = (environ.get(env.RAW_PATH) or "/").rstrip("/")
    return f"{scheme}://{host}{path}/{quote(key, safe='/~')}"
