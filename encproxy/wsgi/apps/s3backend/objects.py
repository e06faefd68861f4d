"""The S3 backend's object operations: reads (``?partNumber`` where the backend ignores
it), writes, deletes and copies; the write and copy steps multipart uploads share."""
from __future__ import annotations

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.s3 import metadata, preconditions, xml
from encproxy.s3.copy_source import CopySource, parse_copy_source
from encproxy.s3.dates import parse_http_date
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import BackendResponse, BodySource, S3BackendClient
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.s3backend.relay import (
    backend_error,
    quoted,
    read_result,
    relay,
    result_headers,
    send,
    small_body,
)
from encproxy.wsgi.apps.s3backend.trailer import TrailedBody
from encproxy.wsgi.request import S3Request

MAX_PUT_SIZE = 5 * 1024**3
MAX_DELETE_OBJECTS = 1000
COPY_CONDITION_PREFIX = "x-amz-copy-source-if-"


class ObjectOperations:
    client: S3BackendClient
    trailing_checksums: bool   # [backend] trailing_checksums

    # -- reads ------------------------------------------------------------------------
    def op_GetObject(self, req: S3Request) -> Response:
        return self._read(req)

    def op_HeadObject(self, req: S3Request) -> Response:
        return self._read(req)

    def _read(self, req: S3Request) -> Response:
        if "partNumber" in req.query:
            req.int_param("partNumber", 1, 1, 10000)
            if "range" in req.headers:
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber "
                                            "query parameter.")
        resp = send(self.client, req)
        if resp.status == 200 and "partNumber" in req.query and \
                resp.header("content-range") is None:
            return _part_ignored(req, resp)
        # The backend answers its checksum only to x-amz-checksum-mode (forwarded) and
        # only for a whole-object read, as S3.
        return relay(req, resp, extra=forwarding.checksum_answers(resp.headers))

    # -- writes -----------------------------------------------------------------------
    def op_PutObject(self, req: S3Request) -> Response:
        check_metadata(req)
        return written(req, upload(self.client, req, self.trailing_checksums))

    def op_DeleteObjects(self, req: S3Request) -> Response:
        if not ("content-md5" in req.headers or "x-amz-trailer" in req.headers
                or any(h.startswith("x-amz-checksum-") for h in req.headers)):
            raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
        body = small_body(req)
        request = xml.parse(body)
        if request.tag != "Delete" or not 1 <= len(request.findall("Object")) <= \
                MAX_DELETE_OBJECTS:
            raise errors.MalformedXML()
        quiet = (xml.child_text(request, "Quiet") or "").strip().lower() == "true"
        resp = send(self.client, req, body=body)
        result = read_result(req, resp)
        if quiet:
            # Quiet mode reports errors only (moto lists the deleted keys anyway).
            for deleted in result.findall("Deleted"):
                result.remove(deleted)
        return Response(xml.render_element(result), status=200,
                        headers=result_headers(resp))

    def op_CopyObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        check_metadata(req)
        source = parse_copy_source(req.headers["x-amz-copy-source"])
        if directive == "COPY" and (source.bucket, source.key) == (req.bucket, req.key) and \
                source.version_id is None and not any(
                    h in req.headers for h in ("x-amz-storage-class",
                                               "x-amz-website-redirect-location")):
            raise errors.InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to "
                "itself without changing the object's metadata, storage class, website "
                "redirect location or encryption attributes.")
        if any(h.startswith(COPY_CONDITION_PREFIX) for h in req.headers):
            check_source(self.client, req, source)
        return copy_result(req, send(self.client, req))


def _part_ignored(req: S3Request, resp: BackendResponse) -> Response:
    """The backend answered ``?partNumber`` with the whole object (Ceph RGW, moto).

    For a single-part object that is part 1, as S3 answers it; the part of
    a multipart object cannot be cut out without its boundaries, which the
    backend did not give: refused, never answered with the wrong bytes.
    """
    number = req.int_param("partNumber", 1, 1, 10000)
    parts = forwarding.parts_in_etag(resp.header("etag") or "")
    size = resp.content_length
    # moto's HEAD answers with the part's size and MD5 but a 200, no Content-Range and
    # a parts count: anything that says "multipart" is refused.
    if parts != 0 or size is None or resp.header("x-amz-mp-parts-count") is not None:
        resp.close()
        raise errors.NotImplementedError_(
            "This storage backend does not support reading a multipart object by part "
            "number; use a Range request.")
    if number != 1:
        resp.close()
        raise errors.InvalidPartNumber()
    if size == 0:
        return relay(req, resp)
    return relay(req, resp, status=206,
                 extra=[("Content-Range", f"bytes 0-{size - 1}/{size}")])


# -- steps that multipart uploads share --------------------------------------------------
def check_metadata(req: S3Request) -> None:
    metadata.user_metadata(req.headers)   # MetadataTooLarge
    metadata.storage_class(req.headers)   # InvalidStorageClass


def upload(client: S3BackendClient, req: S3Request, trailing_checksums: bool = False
           ) -> BackendResponse:
    """The request's body sent on, streamed.

    A plain body whose client sent its checksum in an ``aws-chunked`` trailer goes with
    that checksum in a trailer of its own when the backend takes one
    (``trailing_checksums``, :mod:`.trailer`); otherwise without it."""
    length = req.content_length()
    if length > MAX_PUT_SIZE:
        raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_SIZE))
    algorithm = forwarding.trailing_algorithm(req.operation, req.headers) \
        if trailing_checksums and length else None
    if algorithm is None:
        return send(client, req, body=BodySource(req.body, length) if length else b"")
    sums: dict[str, str] = req.environ.setdefault(env.BODY_CHECKSUMS, {})
    body = TrailedBody(req.body, length, algorithm, lambda: sums.get(algorithm))
    framing = body.headers()
    coding = forwarding.forward_headers(req.headers).get("content-encoding")
    if coding:   # the client's own coding stays, under aws-chunked (as S3 takes both)
        framing["content-encoding"] = "aws-chunked," + coding
    return send(client, req, body=body, headers=framing)


def written(req: S3Request, resp: BackendResponse) -> Response:
    """The answer to a write: the backend's headers and the checksums of the body."""
    if resp.status >= 300:
        raise backend_error(req, resp)
    resp.close()
    headers = forwarding.relay_headers(resp.headers)
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    verified = req.environ.get(env.BODY_CHECKSUMS) or {}
    for alg, value in verified.items():
        headers.append((f"x-amz-checksum-{alg}", value))
    # Only what encproxy verified is echoed; of the backend's answer, its type.
    if verified:
        headers += [(k, v) for k, v in forwarding.checksum_answers(resp.headers)
                    if k == "x-amz-checksum-type"]
    return Response(b"", status=200, headers=headers)


def check_source(client: S3BackendClient, req: S3Request, source: CopySource) -> int:
    """The copy source's size, after checking ``x-amz-copy-source-if-*`` on it.

    Ceph RGW and moto ignore those conditions; encproxy evaluates them
    (they still go to the backend too, for backends that honour them).
    """
    query = "" if source.version_id is None else forwarding.forward_query(
        "versionId=" + forwarding.quote_key(source.version_id))
    head = client.request("HEAD", source.bucket, source.key, query)
    if head.status == 404:
        head.close()
        raise errors.NoSuchKey(Key=source.key)
    if head.status >= 300:
        raise backend_error(req, head)
    head.close()
    etag = head.header("etag") or ""
    last_modified = parse_http_date(head.header("last-modified") or "") or 0.0
    preconditions.check(req.headers, etag, last_modified, prefix=COPY_CONDITION_PREFIX)
    return head.content_length or 0


def copy_result(req: S3Request, resp: BackendResponse) -> Response:
    root = read_result(req, resp)
    etag = root.find("ETag")
    if etag is not None and etag.text:
        etag.text = quoted(etag.text)  # Ceph RGW leaves copy ETags unquoted
    return Response(xml.render_element(root), status=200, headers=result_headers(resp))
