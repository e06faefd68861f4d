"""The S3 backend's multipart upload operations: checked before they are forwarded, and
completions sent with numbers and ETags only."""
from __future__ import annotations

from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.s3 import xml
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.ranges import parse_copy_range
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import S3BackendClient
from encproxy.wsgi.apps.s3backend.objects import (
    check_metadata,
    check_source,
    copy_result,
    upload,
    written,
)
from encproxy.wsgi.apps.s3backend.relay import (
    quoted,
    read_result,
    relay,
    result_headers,
    send,
    small_body,
)
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response


class MultipartOperations:
    client: S3BackendClient

    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        check_metadata(req)
        return relay(req, send(self.client, req))

    def op_UploadPart(self, req: S3Request) -> Response:
        _part_number(req)
        _upload_id(req)
        return written(req, upload(self.client, req))

    def op_UploadPartCopy(self, req: S3Request) -> Response:
        _part_number(req)
        _upload_id(req)
        source = parse_copy_source(req.headers["x-amz-copy-source"])
        size = check_source(self.client, req, source)
        if "x-amz-copy-source-range" in req.headers:
            parse_copy_range(req.headers["x-amz-copy-source-range"], size)
        return copy_result(req, send(self.client, req))

    def op_ListParts(self, req: S3Request) -> Response:
        _upload_id(req)
        req.int_param("max-parts", 1000, 0, 1000)
        req.int_param("part-number-marker", 0, 0, 10000)
        return relay(req, send(self.client, req))

    def op_CompleteMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = _upload_id(req)
        body = _completion(upload_id, small_body(req))
        resp = send(self.client, req, body=body, headers={"content-type": "application/xml"})
        result = read_result(req, resp)
        etag = xml.child_text(result, "ETag") or ""
        if not etag.strip('"'):
            # Ceph RGW answers an empty ETag; the object has the real one.
            version = resp.header("x-amz-version-id")
            head = self.client.request("HEAD", req.bucket, req.key, "" if version is None else
                                       "versionId=" + forwarding.quote_key(version))
            head.close()
            etag = head.header("etag") or "" if head.status == 200 else ""
        root = xml.Node("CompleteMultipartUploadResult")
        host = req.headers.get("host", "localhost")
        root.add("Location", f"http://{host}/{req.bucket}/{quote(req.key)}")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("ETag", quoted(etag) if etag else "")
        return xml_response(root, environ=req.environ, headers=dict(result_headers(resp)))


def _completion(upload_id: str, body: bytes) -> bytes:
    """The client's CompleteMultipartUpload body, checked, as the backend gets it.

    Only numbers and ETags go on: the client's part checksums describe bodies the
    backend may never have seen (they are not forwarded), and it would check them.
    """
    root_in = xml.parse(body)
    if root_in.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    out = xml.Node("CompleteMultipartUpload")
    previous = 0
    for p in root_in.findall("Part"):
        number, etag = xml.child_text(p, "PartNumber"), xml.child_text(p, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise errors.MalformedXML()
        n = int(number)
        if not 1 <= n <= 10000:
            raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(n), ETag=etag)
        if n <= previous:  # moto and Ceph RGW do not check the order
            raise errors.InvalidPartOrder(UploadId=upload_id)
        previous = n
        out.add("Part", [xml.Node("PartNumber", n), xml.Node("ETag", quoted(etag.strip()))])
    if not previous:
        raise errors.MalformedXML()
    return xml.render(out)


def _upload_id(req: S3Request) -> str:
    upload_id = req.query.get("uploadId", "")
    if not upload_id:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload_id


def _part_number(req: S3Request) -> int:
    text = req.query.get("partNumber", "")
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, "
                                     "inclusive", ArgumentName="partNumber",
                                     ArgumentValue=text)
    return int(text)
