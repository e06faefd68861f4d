"""The S3 backend's multipart upload operations: checked before they are forwarded, and
completions sent with numbers and ETags only."""
from __future__ import annotations

from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import checksums, errors
from encproxy.s3 import xml
from encproxy.s3.checksum_headers import XML_NAMES
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
    trailing_checksums: bool   # [backend] trailing_checksums

    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        check_metadata(req)
        resp = send(self.client, req)
        return relay(req, resp, extra=forwarding.checksum_answers(resp.headers))

    def op_UploadPart(self, req: S3Request) -> Response:
        _part_number(req)
        _upload_id(req)
        return written(req, upload(self.client, req, self.trailing_checksums))

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
        whole = checksums.checksum_header_names(req.headers)
        if whole:
            # The whole object's checksum: not every backend checks it (moto, Ceph RGW
            # 16.2), and encproxy cannot without the parts' checksums: refused, never
            # left unchecked.
            raise errors.NotImplementedError_(
                "encproxy does not verify the whole-object checksum of an unencrypted "
                "multipart upload on an S3 backend.", Header=whole[0])
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
        for child in result:   # the object's checksum, as the backend computed it
            if isinstance(child.tag, str) and child.tag.startswith("Checksum") and \
                    child.tag in _CHECKSUM_ELEMENTS:
                root.add(child.tag, child.text or "")
        return xml_response(root, environ=req.environ, headers=dict(result_headers(resp)))


# The checksum elements of a Complete's parts and result (S3's names).
_CHECKSUM_ELEMENTS = frozenset({"Checksum" + name for name in XML_NAMES.values()}
                               | {"ChecksumType"})


def _completion(upload_id: str, body: bytes) -> bytes:
    """The client's CompleteMultipartUpload body, checked, as the backend gets it.

    Numbers, ETags and the parts' checksums go on.  The encryption layer sends its
    own Complete for an encrypted upload (numbers and ETags of ciphertext parts), so
    the checksums found here are those of a plain upload's parts, whose checksums
    were forwarded with them (``forwarding.plain_checksum_headers``).
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
        children = [xml.Node("PartNumber", n), xml.Node("ETag", quoted(etag.strip()))]
        children += [xml.Node(child.tag, (child.text or "").strip()) for child in p
                     if isinstance(child.tag, str) and child.tag in _CHECKSUM_ELEMENTS
                     and child.tag != "ChecksumType"]
        out.add("Part", children)
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
