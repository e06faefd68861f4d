"""Any S3 server as a WSGI app that speaks plain S3: forwarding, re-signed.

``S3BackendApp`` is to an S3 server what ``FileStoreApp`` is to a local
directory: the bottom of encproxy's stack, usable on its own, trusting its
caller (authentication and body verification happen above it).  Every request
it forwards is re-signed with the backend's credentials by
:class:`~encproxy.s3backend.client.S3BackendClient`; what it forwards and what
it relays is decided by the allowlists of :mod:`encproxy.s3backend.forwarding`.

It behaves like the file store: the same operations, the same validation
before anything reaches the backend (bucket names, metadata size, storage
classes, part numbers, list arguments, copy rules), the same answers where
the client's view differs from the backend's (GetBucketLocation and HeadBucket
report encproxy's region, CreateBucket of an existing bucket is
BucketAlreadyOwnedByYou).  Backend errors come back as the same S3 errors,
rendered by ``encproxy.wsgi.responses`` like encproxy's own; an unreachable
backend is 503 ServiceUnavailable.  Bucket and object configuration
subresources (tagging, ACLs, policy, versioning, lifecycle, ...) pass through
verbatim; what reads or writes object bodies and is not implemented is
refused with NotImplemented.  Known differences between backends, and what
encproxy does about them, are in docs/BACKENDS.md.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote_plus

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.s3 import metadata, preconditions, xml
from encproxy.s3.copy_source import CopySource, parse_copy_source
from encproxy.s3.dates import parse_http_date
from encproxy.s3.names import check_bucket_name
from encproxy.s3.ranges import parse_copy_range
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import (
    BackendBroken,
    BackendConfig,
    BackendResponse,
    BodySource,
    S3BackendClient,
)
from encproxy.settings import Settings
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import s3_error_boundary, xml_response

log = logging.getLogger("encproxy.s3backend")

MAX_PUT_SIZE = 5 * 1024**3
MAX_DELETE_OBJECTS = 1000
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
COPY_CONDITION_PREFIX = "x-amz-copy-source-if-"
# Operations on an upload: a missing upload is NoSuchUpload, whatever the backend says.
UPLOAD_OPERATIONS = {"UploadPart", "UploadPartCopy", "ListParts", "AbortMultipartUpload",
                     "CompleteMultipartUpload"}
# Headers an error answer keeps (a 304 must say which version is current).
ERROR_HEADERS = {"etag", "last-modified", "x-amz-bucket-region", "x-amz-delete-marker",
                 "x-amz-version-id"}


class S3BackendApp:
    def __init__(self, client: S3BackendClient, region: str) -> None:
        self.client = client
        self.region = region
        self._app = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._app(environ, start_response)

    # -- dispatch -------------------------------------------------------------------
    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        op = req.operation
        kind = forwarding.disposition(op)
        if kind == forwarding.REFUSE:
            if op is None and req.method not in ("GET", "PUT", "POST", "DELETE", "HEAD"):
                raise errors.MethodNotAllowed(Method=req.method, ResourceType="OBJECT")
            raise forwarding.refusal(op)
        assert op is not None
        forwarding.check_parameters(op, req.query)
        if req.bucket is not None and op != "CreateBucket":
            check_bucket_name(req.bucket)
        handler: Callable[[S3Request], Response] | None = getattr(self, "op_" + op, None)
        if handler is not None:
            return handler(req)
        if op in forwarding.VERBATIM_BODIES:
            return self._relay(req, self._send(req, body=self._small_body(req)))
        return self._relay(req, self._send(req))

    # -- sending and relaying ---------------------------------------------------------
    def _send(self, req: S3Request, *, body: bytes | BodySource | None = None,
              method: str | None = None, query: str | None = None,
              headers: dict[str, str] | None = None) -> BackendResponse:
        out = forwarding.forward_headers(req.headers)
        if "x-amz-copy-source" in req.headers:
            out["x-amz-copy-source"] = forwarding.encode_copy_source(
                parse_copy_source(req.headers["x-amz-copy-source"]))
        if isinstance(body, bytes) and body:
            # Whatever digest the client sent described its body; this one is ours.
            out["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        out.update(headers or {})
        if query is None:
            query = forwarding.forward_query(req.environ.get(env.RAW_QUERY, ""))
        return self.client.request(method or req.method, req.bucket, req.key, query, out, body)

    @staticmethod
    def _small_body(req: S3Request) -> bytes:
        return req.read_small_body(xml.MAX_REQUEST_XML)

    def _relay(self, req: S3Request, resp: BackendResponse, status: int | None = None,
               extra: list[tuple[str, str]] | None = None) -> Response:
        """The backend's answer as the client's: errors rendered as encproxy's own."""
        if resp.status >= 300:
            raise self._error(req, resp)
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

    def _read_result(self, req: S3Request, resp: BackendResponse) -> Any:
        """A small XML success body, parsed; an ``<Error>`` inside a 200 (S3 sends those
        for long copies and completions) is raised as the error it is."""
        if resp.status >= 300:
            raise self._error(req, resp)
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
            raise self._error_from_xml(req, resp, root, 500)
        return root

    def _error(self, req: S3Request, resp: BackendResponse) -> errors.S3Error:
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
            return self._error_from_xml(req, resp, root, resp.status)
        if resp.status == 304:
            err: errors.S3Error = errors.NotModified()
        else:
            err = errors.relayed(self._status_code(req, resp.status), resp.status)
        err.headers.update({k: v for k, v in resp.headers if k.lower() in ERROR_HEADERS})
        return err

    def _error_from_xml(self, req: S3Request, resp: BackendResponse, root: Any,
                        status: int) -> errors.S3Error:
        code = self._upload_code(req, xml.child_text(root, "Code") or
                                 self._status_code(req, status))
        fields = {child.tag: child.text or "" for child in root
                  if isinstance(child.tag, str) and child.tag not in BACKEND_ERROR_FIELDS
                  and len(child) == 0}
        err = errors.relayed(code, status, xml.child_text(root, "Message") or None, **fields)
        err.headers.update({k: v for k, v in resp.headers if k.lower() in ERROR_HEADERS})
        log.debug("backend answered %s %s with %s (backend request id %s)", req.method,
                  req.environ.get(env.RAW_PATH), code, resp.header("x-amz-request-id"))
        return err

    @staticmethod
    def _upload_code(req: S3Request, code: str) -> str:
        # Ceph RGW answers an unknown upload id with NoSuchKey where S3 says NoSuchUpload.
        if code == "NoSuchKey" and req.operation in UPLOAD_OPERATIONS:
            return "NoSuchUpload"
        return code

    def _status_code(self, req: S3Request, status: int) -> str:
        if status == 416 and "partNumber" in req.query:
            return "InvalidPartNumber"
        if status == 404:
            if req.key is not None:
                return self._upload_code(req, "NoSuchKey")
            return "NoSuchBucket" if req.bucket is not None else "NotFound"
        return STATUS_CODES.get(status, "InternalError" if status >= 500 else "BadRequest")

    # -- buckets ----------------------------------------------------------------------
    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        check_bucket_name(req.bucket)
        body = self._small_body(req)
        if body.strip():
            config = xml.parse(body)
            if config.tag != "CreateBucketConfiguration":
                raise errors.MalformedXML()
            constraint = xml.child_text(config, "LocationConstraint")
            if constraint and constraint != self.region:
                raise errors.IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible for the region "
                    f"specific endpoint this request was sent to.")
        # S3 in us-east-1 (and backends copying it) answers 200 to a second CreateBucket
        # by its owner; encproxy answers as for any other region.
        head = self.client.request("HEAD", req.bucket, None)
        head.close()
        if head.status == 200:
            raise errors.BucketAlreadyOwnedByYou(BucketName=req.bucket)
        if head.status == 403:
            raise errors.relayed("BucketAlreadyExists", 409,
                                 "The requested bucket name is not available.",
                                 BucketName=req.bucket)
        backend_region = self.client.config.region
        config_body = b""
        if backend_region != "us-east-1":
            root = xml.Node("CreateBucketConfiguration")
            root.add("LocationConstraint", backend_region)
            config_body = xml.render(root)
        resp = self._send(req, body=config_body, query="")
        if resp.status >= 300:
            raise self._error(req, resp)
        resp.close()
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def op_HeadBucket(self, req: S3Request) -> Response:
        resp = self._send(req)
        if resp.status >= 300:
            raise self._error(req, resp)
        resp.close()
        return Response(None, status=200, headers={"x-amz-bucket-region": self.region})

    def op_GetBucketLocation(self, req: S3Request) -> Response:
        resp = self._send(req, method="HEAD", query="")
        if resp.status >= 300:
            raise self._error(req, resp)
        resp.close()
        # The region clients sign for, not the backend's; us-east-1 is an empty constraint.
        return xml_response(xml.Node("LocationConstraint",
                                     None if self.region == "us-east-1" else self.region),
                            environ=req.environ)

    # -- listing arguments, checked as the file store checks them ----------------------
    @staticmethod
    def _check_list_arguments(req: S3Request, max_name: str) -> None:
        encoding = req.query.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                         ArgumentName="encoding-type", ArgumentValue=encoding)
        req.int_param(max_name, 1000, 0, 1000)

    def op_ListObjects(self, req: S3Request) -> Response:
        self._check_list_arguments(req, "max-keys")
        return self._relay(req, self._send(req))

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        if req.query.get("list-type") != "2":
            raise errors.InvalidArgument("Invalid List Type specified in Request",
                                         ArgumentName="list-type",
                                         ArgumentValue=req.query.get("list-type", ""))
        self._check_list_arguments(req, "max-keys")
        token = req.query.get("continuation-token")
        replace = {} if token is None else {
            "continuation-token": forwarding.unwrap_token(token)}
        query = forwarding.forward_query(req.environ.get(env.RAW_QUERY, ""), replace)
        resp = self._send(req, query=query)
        root = self._read_result(req, resp)
        for name, value in (("ContinuationToken", token), ("NextContinuationToken", None)):
            el = root.find(name)
            if el is not None:
                el.text = value if value is not None else forwarding.wrap_token(el.text or "")
        return Response(xml.render_element(root), status=200, headers=self._result_headers(resp))

    def op_ListMultipartUploads(self, req: S3Request) -> Response:
        self._check_list_arguments(req, "max-uploads")
        resp = self._send(req)
        root = self._read_result(req, resp)
        if (xml.child_text(root, "IsTruncated") or "").strip() != "true":
            # A whole listing in S3's order: by key (UTF-8 bytes), then by initiation.
            # Ceph RGW orders one key's uploads by upload id, moto does not sort at all.
            url = (xml.child_text(root, "EncodingType") or "") == "url"
            uploads = root.findall("Upload")
            if uploads:
                at = list(root).index(uploads[0])
                for upload in uploads:
                    root.remove(upload)

                def order(upload: Any) -> tuple[bytes, str]:
                    key = xml.child_text(upload, "Key") or ""
                    return ((unquote_plus(key) if url else key).encode("utf-8"),
                            xml.child_text(upload, "Initiated") or "")

                for offset, upload in enumerate(sorted(uploads, key=order)):
                    root.insert(at + offset, upload)
        return Response(xml.render_element(root), status=200, headers=self._result_headers(resp))

    def op_ListParts(self, req: S3Request) -> Response:
        self._upload_id(req)
        req.int_param("max-parts", 1000, 0, 1000)
        req.int_param("part-number-marker", 0, 0, 10000)
        return self._relay(req, self._send(req))

    # -- objects ----------------------------------------------------------------------
    @staticmethod
    def _check_metadata(req: S3Request) -> None:
        metadata.user_metadata(req.headers)   # MetadataTooLarge
        metadata.storage_class(req.headers)   # InvalidStorageClass

    def _upload(self, req: S3Request) -> BackendResponse:
        length = req.content_length()
        if length > MAX_PUT_SIZE:
            raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_SIZE))
        return self._send(req, body=BodySource(req.body, length) if length else b"")

    def _written(self, req: S3Request, resp: BackendResponse) -> Response:
        if resp.status >= 300:
            raise self._error(req, resp)
        resp.close()
        headers = forwarding.relay_headers(resp.headers)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        for alg, value in (req.environ.get(env.BODY_CHECKSUMS) or {}).items():
            headers.append((f"x-amz-checksum-{alg}", value))
        return Response(b"", status=200, headers=headers)

    def op_PutObject(self, req: S3Request) -> Response:
        self._check_metadata(req)
        return self._written(req, self._upload(req))

    def op_UploadPart(self, req: S3Request) -> Response:
        self._part_number(req)
        self._upload_id(req)
        return self._written(req, self._upload(req))

    def _read(self, req: S3Request) -> Response:
        if "partNumber" in req.query:
            req.int_param("partNumber", 1, 1, 10000)
            if "range" in req.headers:
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber "
                                            "query parameter.")
        resp = self._send(req)
        if resp.status == 200 and "partNumber" in req.query and \
                resp.header("content-range") is None:
            return self._part_ignored(req, resp)
        return self._relay(req, resp)

    def _part_ignored(self, req: S3Request, resp: BackendResponse) -> Response:
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
            return self._relay(req, resp)
        return self._relay(req, resp, status=206,
                           extra=[("Content-Range", f"bytes 0-{size - 1}/{size}")])

    def op_GetObject(self, req: S3Request) -> Response:
        return self._read(req)

    def op_HeadObject(self, req: S3Request) -> Response:
        return self._read(req)

    def op_DeleteObjects(self, req: S3Request) -> Response:
        if not ("content-md5" in req.headers or "x-amz-trailer" in req.headers
                or any(h.startswith("x-amz-checksum-") for h in req.headers)):
            raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
        body = self._small_body(req)
        request = xml.parse(body)
        if request.tag != "Delete" or not 1 <= len(request.findall("Object")) <= \
                MAX_DELETE_OBJECTS:
            raise errors.MalformedXML()
        quiet = (xml.child_text(request, "Quiet") or "").strip().lower() == "true"
        resp = self._send(req, body=body)
        result = self._read_result(req, resp)
        if quiet:
            # Quiet mode reports errors only (moto lists the deleted keys anyway).
            for deleted in result.findall("Deleted"):
                result.remove(deleted)
        return Response(xml.render_element(result), status=200,
                        headers=self._result_headers(resp))

    def op_CopyObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        self._check_metadata(req)
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
            self._check_source(req, source)
        return self._copy_result(req, self._send(req))

    def _check_source(self, req: S3Request, source: CopySource) -> int:
        """The copy source's size, after checking ``x-amz-copy-source-if-*`` on it.

        Ceph RGW and moto ignore those conditions; encproxy evaluates them
        (they still go to the backend too, for backends that honour them).
        """
        query = "" if source.version_id is None else forwarding.forward_query(
            "versionId=" + forwarding.quote_key(source.version_id))
        head = self.client.request("HEAD", source.bucket, source.key, query)
        if head.status == 404:
            head.close()
            raise errors.NoSuchKey(Key=source.key)
        if head.status >= 300:
            raise self._error(req, head)
        head.close()
        etag = head.header("etag") or ""
        last_modified = parse_http_date(head.header("last-modified") or "") or 0.0
        preconditions.check(req.headers, etag, last_modified, prefix=COPY_CONDITION_PREFIX)
        return head.content_length or 0

    def _copy_result(self, req: S3Request, resp: BackendResponse) -> Response:
        root = self._read_result(req, resp)
        etag = root.find("ETag")
        if etag is not None and etag.text:
            etag.text = _quoted(etag.text)  # Ceph RGW leaves copy ETags unquoted
        return Response(xml.render_element(root), status=200, headers=self._result_headers(resp))

    @staticmethod
    def _result_headers(resp: BackendResponse) -> list[tuple[str, str]]:
        return [(k, v) for k, v in forwarding.relay_headers(resp.headers)
                if k.lower() != "content-length"]

    # -- multipart --------------------------------------------------------------------
    @staticmethod
    def _upload_id(req: S3Request) -> str:
        upload_id = req.query.get("uploadId", "")
        if not upload_id:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return upload_id

    @staticmethod
    def _part_number(req: S3Request) -> int:
        text = req.query.get("partNumber", "")
        if not text.isdigit() or not 1 <= int(text) <= 10000:
            raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, "
                                         "inclusive", ArgumentName="partNumber",
                                         ArgumentValue=text)
        return int(text)

    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        self._check_metadata(req)
        return self._relay(req, self._send(req))

    def op_UploadPartCopy(self, req: S3Request) -> Response:
        self._part_number(req)
        self._upload_id(req)
        source = parse_copy_source(req.headers["x-amz-copy-source"])
        size = self._check_source(req, source)
        if "x-amz-copy-source-range" in req.headers:
            parse_copy_range(req.headers["x-amz-copy-source-range"], size)
        return self._copy_result(req, self._send(req))

    def op_CompleteMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = self._upload_id(req)
        root_in = xml.parse(self._small_body(req))
        if root_in.tag != "CompleteMultipartUpload":
            raise errors.MalformedXML()
        # Only numbers and ETags go on: the client's part checksums describe bodies the
        # backend may never have seen (they are not forwarded), and it would check them.
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
            out.add("Part", [xml.Node("PartNumber", n), xml.Node("ETag", _quoted(etag.strip()))])
        if not previous:
            raise errors.MalformedXML()
        resp = self._send(req, body=xml.render(out),
                          headers={"content-type": "application/xml"})
        result = self._read_result(req, resp)
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
        root.add("ETag", _quoted(etag) if etag else "")
        return xml_response(root, environ=req.environ, headers=dict(self._result_headers(resp)))


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def _quoted(etag: str) -> str:
    return '"' + etag.strip().strip('"') + '"'


def build_s3_backend(settings: Settings) -> S3BackendApp:
    """The app for ``[backend] type = s3``; ConfigError for a CA bundle it cannot read."""
    ca_bundle = None
    if settings.get("backend", "ca_bundle"):
        path = settings.path("backend", "ca_bundle")
        if not path.is_file():
            raise ConfigError("backend", "ca_bundle", f"cannot read {path}")
        ca_bundle = str(path)
    config = BackendConfig(
        endpoint=settings.get("backend", "endpoint"),
        access_key=settings.get("backend", "access_key"),
        secret_key=settings.get("backend", "secret_key"),
        region=settings.get("backend", "region"),
        addressing=settings.get("backend", "addressing"),
        tls_verify=settings.get("backend", "tls_verify"),
        ca_bundle=ca_bundle,
        connect_timeout=settings.get("backend", "connect_timeout"),
        read_timeout=settings.get("backend", "read_timeout"),
        pool_size=settings.get("backend", "pool_size"))
    return S3BackendApp(S3BackendClient(config), region=settings.get("server", "region"))
