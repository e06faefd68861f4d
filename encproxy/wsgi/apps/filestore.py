"""The embedded file store as a WSGI app that speaks plain S3.

It trusts its caller: authentication and body verification happen in the
layers above (``encproxy.wsgi.auth.middleware``), which hand it a verified body stream.
Storage itself is ``encproxy.filestore``; this module only maps S3 requests
onto it and renders S3 responses.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.io_sizes import PIECE
from encproxy.s3 import metadata, preconditions, xml
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.dates import http_date, iso8601
from encproxy.s3.multipart_xml import parse_complete
from encproxy.s3.names import check_bucket_name, check_key
from encproxy.s3.ranges import ByteRange, parse_copy_range, parse_range
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import s3_error_boundary, xml_response

MAX_PUT_SIZE = 5 * 1024**3
MAX_DELETE_OBJECTS = 1000
OWNER_ID = hashlib.sha256(b"encproxy-owner").hexdigest()
OWNER_NAME = "encproxy"
# Canned ACLs that mean what the file store does anyway; anything else is refused.
HARMLESS_ACLS = {"private", "bucket-owner-full-control"}
# Request headers for features the file store does not offer: refusing them is
# honest, ignoring them would silently drop what the client asked for.
UNSUPPORTED_WRITE_HEADERS = (
    "x-amz-tagging", "x-amz-website-redirect-location", "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
    "x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-grant-read", "x-amz-grant-write",
    "x-amz-grant-read-acp", "x-amz-grant-write-acp", "x-amz-grant-full-control",
)


def _quoted(etag: str) -> str:
    return '"' + etag.strip('"') + '"'


class FileStoreApp:
    def __init__(self, store: FileStore, region: str) -> None:
        self.store = store
        self.region = region
        self._app = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._app(environ, start_response)

    # -- dispatch -------------------------------------------------------------------
    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        op = req.operation
        handler: Callable[[S3Request], Response] | None = \
            getattr(self, "op_" + op, None) if op else None
        if handler is None:
            if op is None and req.method not in ("GET", "PUT", "POST", "DELETE", "HEAD"):
                raise errors.MethodNotAllowed(Method=req.method, ResourceType="OBJECT")
            raise errors.NotImplementedError_(
                f"encproxy's file store does not implement {op or 'this request'}.")
        if req.bucket is not None and op != "CreateBucket":
            check_bucket_name(req.bucket)
        return handler(req)

    # -- service and buckets ----------------------------------------------------------
    def op_ListBuckets(self, req: S3Request) -> Response:
        root = xml.Node("ListAllMyBucketsResult")
        root.add("Owner", [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)])
        buckets = root.add("Buckets")
        for b in self.store.list_buckets():
            buckets.add("Bucket", [xml.Node("Name", b.name),
                                   xml.Node("CreationDate", iso8601(b.created))])
        return xml_response(root, environ=req.environ)

    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        check_bucket_name(req.bucket)
        self._refuse_acl(req)
        body = req.read_small_body(xml.MAX_REQUEST_XML)
        if body.strip():
            config = xml.parse(body)
            if config.tag != "CreateBucketConfiguration":
                raise errors.MalformedXML()
            constraint = xml.child_text(config, "LocationConstraint")
            if constraint and constraint != self.region:
                raise errors.IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible for the region "
                    f"specific endpoint this request was sent to.")
        self.store.create_bucket(req.bucket)
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def op_HeadBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        return Response(b"", status=200, headers={"x-amz-bucket-region": self.region})

    def op_DeleteBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.delete_bucket(req.bucket)
        return Response(b"", status=204)

    def op_GetBucketLocation(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        # us-east-1 is reported as an empty constraint, as S3 does.
        return xml_response(xml.Node("LocationConstraint",
                                     None if self.region == "us-east-1" else self.region),
                            environ=req.environ)

    # -- listing ----------------------------------------------------------------------
    def _list_params(self, req: S3Request) -> tuple[str, str | None, int, bool]:
        encoding = req.query.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                         ArgumentName="encoding-type", ArgumentValue=encoding)
        max_keys = req.int_param("max-keys", 1000, 0, 1000)
        delimiter = req.query.get("delimiter") or None
        return req.query.get("prefix", ""), delimiter, max_keys, encoding == "url"

    def _contents(self, records: list[ObjectRecord], encode: Callable[[str], str],
                  owner: bool) -> list[xml.Node]:
        out = []
        for r in records:
            node = xml.Node("Contents")
            node.add("Key", encode(r.key))
            node.add("LastModified", iso8601(r.last_modified))
            node.add("ETag", _quoted(r.etag))
            node.add("Size", r.size)
            if owner:
                node.add("Owner", [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)])
            node.add("StorageClass", r.meta.storage_class)
            out.append(node)
        return out

    @staticmethod
    def _encoder(url: bool) -> Callable[[str], str]:
        if not url:
            return lambda s: s
        return lambda s: quote(s, safe="/")  # S3's encoding-type=url keeps '/'

    def op_ListObjects(self, req: S3Request) -> Response:
        assert req.bucket is not None
        prefix, delimiter, max_keys, url = self._list_params(req)
        marker = req.query.get("marker", "")
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=marker or None, max_keys=max_keys)
        enc = self._encoder(url)
        root = xml.Node("ListBucketResult")
        root.add("Name", req.bucket)
        root.add("Prefix", enc(prefix))
        root.add("Marker", enc(marker))
        if result.is_truncated and delimiter and result.next_marker:
            root.add("NextMarker", enc(result.next_marker))
        root.add("MaxKeys", max_keys)
        if delimiter:
            root.add("Delimiter", enc(delimiter))
        root.add("IsTruncated", result.is_truncated)
        root.extend(self._contents(result.contents, enc, owner=True))
        root.extend(xml.Node("CommonPrefixes", xml.Node("Prefix", enc(p)))
                    for p in result.common_prefixes)
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        assert req.bucket is not None
        if req.query.get("list-type") != "2":
            raise errors.InvalidArgument("Invalid List Type specified in Request",
                                         ArgumentName="list-type",
                                         ArgumentValue=req.query.get("list-type", ""))
        prefix, delimiter, max_keys, url = self._list_params(req)
        token = req.query.get("continuation-token")
        start_after = req.query.get("start-after", "")
        after = _decode_token(token) if token is not None else (start_after or None)
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=after, max_keys=max_keys)
        enc = self._encoder(url)
        root = xml.Node("ListBucketResult")
        root.add("Name", req.bucket)
        root.add("Prefix", enc(prefix))
        if token is not None:
            root.add("ContinuationToken", token)
        if start_after:
            root.add("StartAfter", enc(start_after))
        root.add("KeyCount", len(result.contents) + len(result.common_prefixes))
        root.add("MaxKeys", max_keys)
        if delimiter:
            root.add("Delimiter", enc(delimiter))
        root.add("IsTruncated", result.is_truncated)
        if result.is_truncated and result.next_marker:
            root.add("NextContinuationToken", _encode_token(result.next_marker))
        owner = req.query.get("fetch-owner") == "true"
        root.extend(self._contents(result.contents, enc, owner=owner))
        root.extend(xml.Node("CommonPrefixes", xml.Node("Prefix", enc(p)))
                    for p in result.common_prefixes)
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)

    # -- objects ----------------------------------------------------------------------
    def _meta_from_request(self, req: S3Request) -> ObjectMeta:
        for name in UNSUPPORTED_WRITE_HEADERS:
            if name in req.headers:
                raise errors.NotImplementedError_(
                    f"The {name} header is not supported by encproxy's file store.",
                    Header=name)
        self._refuse_acl(req)
        return ObjectMeta(content_headers=metadata.content_headers(req.headers),
                          user_metadata=metadata.user_metadata(req.headers),
                          storage_class=metadata.storage_class(req.headers))

    @staticmethod
    def _refuse_acl(req: S3Request) -> None:
        acl = req.headers.get("x-amz-acl")
        if acl is not None and acl not in HARMLESS_ACLS:
            raise errors.NotImplementedError_(
                f"The canned ACL {acl!r} is not supported by encproxy's file store.",
                Header="x-amz-acl")

    def _put_length(self, req: S3Request) -> int:
        length = req.content_length()
        if length > MAX_PUT_SIZE:
            raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_SIZE))
        return length

    @staticmethod
    def _checksum_headers(req: S3Request) -> dict[str, str]:
        sums = req.environ.get(env.BODY_CHECKSUMS) or {}
        return {f"x-amz-checksum-{alg}": value for alg, value in sums.items()}

    def op_PutObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        meta = self._meta_from_request(req)
        length = self._put_length(req)
        record = self.store.put_object(req.bucket, req.key, req.body, length, meta,
                                       digest_of=req.environ.get(env.STORED_DIGEST))
        return Response(b"", status=200,
                        headers={"ETag": _quoted(record.etag), **self._checksum_headers(req)})

    def _object_headers(self, record: ObjectRecord) -> list[tuple[str, str]]:
        headers = [("ETag", _quoted(record.etag)),
                   ("Last-Modified", http_date(record.last_modified)),
                   ("Accept-Ranges", "bytes")]
        headers.extend(metadata.response_headers(record.meta.content_headers,
                                                 record.meta.user_metadata))
        if record.meta.storage_class != "STANDARD":
            headers.append(("x-amz-storage-class", record.meta.storage_class))
        return headers

    def _check_conditions(self, req: S3Request, record: ObjectRecord) -> None:
        try:
            preconditions.check(req.headers, record.etag, record.last_modified)
        except errors.NotModified as exc:
            exc.headers.update({"ETag": _quoted(record.etag),
                                "Last-Modified": http_date(record.last_modified)})
            raise

    def _part_range(self, req: S3Request,
                    record: ObjectRecord) -> tuple[ByteRange | None, int | None]:
        if "partNumber" not in req.query:
            return None, None
        number = req.int_param("partNumber", 1, 1, 10000)
        if "range" in req.headers:
            raise errors.InvalidRequest("Cannot specify both Range header and partNumber query "
                                        "parameter.")
        sizes = record.part_sizes or (record.size,)
        if number > len(sizes):
            raise errors.InvalidPartNumber()
        first = sum(sizes[: number - 1])
        size = sizes[number - 1]
        if size == 0:
            return None, len(sizes)
        return ByteRange(first, first + size - 1, record.size), len(sizes)

    def _read(self, req: S3Request, head: bool) -> Response:
        assert req.bucket is not None and req.key is not None
        if "versionId" in req.query and req.query["versionId"] != "null":
            raise errors.NoSuchVersion(Key=req.key, VersionId=req.query["versionId"])
        record, reader = self.store.open_object(req.bucket, req.key)
        try:
            self._check_conditions(req, record)
            byte_range, parts_count = self._part_range(req, record)
            if parts_count is None:
                byte_range = parse_range(req.headers.get("range"), record.size)
        except BaseException:
            reader.close()
            raise
        headers = self._object_headers(record)
        if parts_count is not None and record.part_sizes:
            headers.append(("x-amz-mp-parts-count", str(parts_count)))
        for param, header in metadata.RESPONSE_OVERRIDES.items():
            if param in req.query:
                headers = [(k, v) for k, v in headers if k.lower() != header.lower()]
                headers.append((header, req.query[param]))
        first, length = (0, record.size) if byte_range is None else (byte_range.first,
                                                                      byte_range.length)
        status = 200
        if byte_range is not None:
            status = 206
            headers.append(("Content-Range", byte_range.content_range()))
        headers.append(("Content-Length", str(length)))
        if head:
            reader.close()
            return Response(None, status=status, headers=headers)
        return Response(_stream(reader, first, length), status=status, headers=headers,
                        direct_passthrough=True)

    def op_GetObject(self, req: S3Request) -> Response:
        return self._read(req, head=False)

    def op_HeadObject(self, req: S3Request) -> Response:
        return self._read(req, head=True)

    def op_DeleteObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        self.store.delete_object(req.bucket, req.key)
        return Response(b"", status=204)

    def op_DeleteObjects(self, req: S3Request) -> Response:
        assert req.bucket is not None
        if not ("content-md5" in req.headers or "x-amz-trailer" in req.headers
                or any(h.startswith("x-amz-checksum-") for h in req.headers)):
            raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
        root_in = xml.parse(req.read_small_body(xml.MAX_REQUEST_XML))
        if root_in.tag != "Delete":
            raise errors.MalformedXML()
        objects = root_in.findall("Object")
        if not objects or len(objects) > MAX_DELETE_OBJECTS:
            raise errors.MalformedXML()
        quiet = (xml.child_text(root_in, "Quiet") or "").strip().lower() == "true"
        self.store.require_bucket(req.bucket)
        out = xml.Node("DeleteResult")
        for obj in objects:
            key = xml.child_text(obj, "Key")
            if key is None:
                raise errors.MalformedXML()
            try:
                check_key(key)
                if not key:
                    raise errors.InvalidArgument("Key must not be empty", ArgumentName="Key")
                self.store.delete_object(req.bucket, key)
            except errors.S3Error as exc:
                out.add("Error", [xml.Node("Key", key), xml.Node("Code", exc.code),
                                  xml.Node("Message", exc.message)])
                continue
            if not quiet:
                out.add("Deleted", xml.Node("Key", key))
        return xml_response(out, environ=req.environ)

    def _copy_source(self, req: S3Request) -> tuple[str, str, ObjectRecord]:
        source = parse_copy_source(req.headers["x-amz-copy-source"])
        if source.version_id is not None and source.version_id != "null":
            raise errors.NoSuchVersion(Key=source.key, VersionId=source.version_id)
        bucket, key = source.bucket, source.key
        record = self.store.head_object(bucket, key)
        preconditions.check(req.headers, record.etag, record.last_modified,
                            prefix="x-amz-copy-source-if-")
        return bucket, key, record

    def op_CopyObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        meta = self._meta_from_request(req)
        src_bucket, src_key, src = self._copy_source(req)
        if directive == "COPY":
            if (src_bucket, src_key) == (req.bucket, req.key) and \
                    "x-amz-storage-class" not in req.headers:
                raise errors.InvalidRequest(
                    "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata, storage class, website "
                    "redirect location or encryption attributes.")
            meta = ObjectMeta(content_headers=src.meta.content_headers,
                              user_metadata=src.meta.user_metadata,
                              storage_class=metadata.storage_class(req.headers)
                              if "x-amz-storage-class" in req.headers else src.meta.storage_class)
        record = self.store.copy_object(src_bucket, src_key, req.bucket, req.key, meta)
        root = xml.Node("CopyObjectResult")
        root.add("LastModified", iso8601(record.last_modified))
        root.add("ETag", _quoted(record.etag))
        return xml_response(root, environ=req.environ)

    # -- multipart --------------------------------------------------------------------
    def _upload_id(self, req: S3Request) -> str:
        upload_id = req.query.get("uploadId", "")
        if not upload_id:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return upload_id

    def _part_number(self, req: S3Request) -> int:
        text = req.query.get("partNumber", "")
        if not text.isdigit() or not 1 <= int(text) <= 10000:
            raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, "
                                         "inclusive", ArgumentName="partNumber",
                                         ArgumentValue=text)
        return int(text)

    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        meta = self._meta_from_request(req)
        upload_id = self.store.create_upload(req.bucket, req.key, meta)
        root = xml.Node("InitiateMultipartUploadResult")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("UploadId", upload_id)
        return xml_response(root, environ=req.environ)

    def op_UploadPart(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        number = self._part_number(req)
        upload_id = self._upload_id(req)
        length = self._put_length(req)
        part = self.store.upload_part(req.bucket, req.key, upload_id, number, req.body, length)
        return Response(b"", status=200,
                        headers={"ETag": _quoted(part.etag), **self._checksum_headers(req)})

    def op_UploadPartCopy(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        number = self._part_number(req)
        upload_id = self._upload_id(req)
        src_bucket, src_key, src = self._copy_source(req)
        header = req.headers.get("x-amz-copy-source-range")
        byte_range = parse_copy_range(header, src.size) if header else None
        part = self.store.upload_part_copy(
            req.bucket, req.key, upload_id, number, src_bucket, src_key,
            None if byte_range is None else (byte_range.first, byte_range.last))
        root = xml.Node("CopyPartResult")
        root.add("LastModified", iso8601(part.last_modified))
        root.add("ETag", _quoted(part.etag))
        return xml_response(root, environ=req.environ)

    def op_CompleteMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = self._upload_id(req)
        parts = parse_complete(req.read_small_body(xml.MAX_REQUEST_XML))
        record = self.store.complete_upload(req.bucket, req.key, upload_id, parts)
        root = xml.Node("CompleteMultipartUploadResult")
        host = req.headers.get("host", "localhost")
        root.add("Location", f"http://{host}/{req.bucket}/{quote(req.key)}")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("ETag", _quoted(record.etag))
        return xml_response(root, environ=req.environ)

    def op_AbortMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        self.store.abort_upload(req.bucket, req.key, self._upload_id(req))
        return Response(b"", status=204)

    def op_ListParts(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = self._upload_id(req)
        max_parts = req.int_param("max-parts", 1000, 0, 1000)
        marker = req.int_param("part-number-marker", 0, 0, 10000)
        listing = self.store.list_parts(req.bucket, req.key, upload_id,
                                        part_number_marker=marker, max_parts=max_parts)
        root = xml.Node("ListPartsResult")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("UploadId", upload_id)
        root.add("Initiator", [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)])
        root.add("Owner", [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)])
        root.add("StorageClass", listing.upload.meta.storage_class)
        root.add("PartNumberMarker", marker)
        if listing.next_marker is not None:
            root.add("NextPartNumberMarker", listing.next_marker)
        root.add("MaxParts", max_parts)
        root.add("IsTruncated", listing.is_truncated)
        for part in listing.parts:
            root.add("Part", [xml.Node("PartNumber", part.number),
                              xml.Node("LastModified", iso8601(part.last_modified)),
                              xml.Node("ETag", _quoted(part.etag)),
                              xml.Node("Size", part.size)])
        return xml_response(root, environ=req.environ)

    def op_ListMultipartUploads(self, req: S3Request) -> Response:
        assert req.bucket is not None
        prefix, delimiter, _, url = self._list_params(req)
        max_uploads = req.int_param("max-uploads", 1000, 0, 1000)
        key_marker = req.query.get("key-marker", "")
        id_marker = req.query.get("upload-id-marker", "") if key_marker else ""
        listing = self.store.list_uploads(req.bucket, prefix=prefix, delimiter=delimiter,
                                          key_marker=key_marker or None,
                                          upload_id_marker=id_marker or None,
                                          max_uploads=max_uploads)
        enc = self._encoder(url)
        root = xml.Node("ListMultipartUploadsResult")
        root.add("Bucket", req.bucket)
        root.add("KeyMarker", enc(key_marker))
        root.add("UploadIdMarker", id_marker)
        if listing.is_truncated:
            root.add("NextKeyMarker", enc(listing.next_key_marker or ""))
            root.add("NextUploadIdMarker", listing.next_upload_id_marker or "")
        if delimiter:
            root.add("Delimiter", enc(delimiter))
        root.add("Prefix", enc(prefix))
        root.add("MaxUploads", max_uploads)
        root.add("IsTruncated", listing.is_truncated)
        for up in listing.uploads:
            root.add("Upload", [
                xml.Node("Key", enc(up.key)), xml.Node("UploadId", up.upload_id),
                xml.Node("Initiator", [xml.Node("ID", OWNER_ID),
                                       xml.Node("DisplayName", OWNER_NAME)]),
                xml.Node("Owner", [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)]),
                xml.Node("StorageClass", up.meta.storage_class),
                xml.Node("Initiated", iso8601(up.initiated))])
        root.extend(xml.Node("CommonPrefixes", xml.Node("Prefix", enc(p)))
                    for p in listing.common_prefixes)
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


def _stream(reader: Any, first: int, length: int) -> Iterator[bytes]:
    try:
        reader.seek(first)
        left = length
        while left > 0:
            piece = reader.read(min(PIECE, left))
            if not piece:
                # The file shrank under us: abort rather than send a short body.
                raise OSError("object body ended early")
            left -= len(piece)
            yield piece
    finally:
        reader.close()
