"""The file store's object operations: writes, reads (ranges, parts, conditions), deletes
and copies."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from werkzeug.wrappers import Response

from encproxy import checksums, errors
from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.io_sizes import PIECE
from encproxy.s3 import acl, conditional_writes, metadata, preconditions, tagging, xml
from encproxy.s3 import checksum_headers as s3_checksums
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.dates import http_date, iso8601
from encproxy.s3.names import check_key
from encproxy.s3.ranges import ByteRange, parse_range
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.filestore.common import (
    check_version_id,
    checksum_headers,
    copy_source,
    copy_source_headers,
    deleted_headers,
    is_version_id,
    meta_from_request,
    put_length,
    quoted,
    tags_from_request,
    version_headers,
    version_of,
    written_headers,
)
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response

MAX_DELETE_OBJECTS = 1000


class ObjectOperations:
    store: FileStore

    def op_PutObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        meta = meta_from_request(req)
        length = put_length(req)
        tags = tags_from_request(req)
        condition = conditional_writes.precondition(req.headers, req.key)
        # The client's algorithm (its header or trailer: the encryption layer removes
        # both from the ciphertext it writes, which keeps none); else CRC64NVME.
        record = self.store.put_object(req.bucket, req.key, req.body, length, meta,
                                       digest_of=req.environ.get(env.STORED_DIGEST),
                                       precondition=condition, tags=tags,
                                       checksum_algorithm=s3_checksums.sent_algorithm(
                                           req.headers),
                                       listing_facts=req.environ.get(env.LISTING_FACTS))
        headers = {"ETag": quoted(record.etag), **checksum_headers(req),
                   **written_headers(record.version_id)}
        if record.checksum is not None:   # what it keeps, as S3 answers it
            for name, value in s3_checksums.response_headers(record.checksum).items():
                headers.setdefault(name, value)
        return Response(b"", status=200, headers=headers)

    def _read(self, req: S3Request, head: bool) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        try:
            record, reader = self.store.open_object(req.bucket, req.key, version)
        except errors.NoSuchKey as exc:
            # S3 says whether the key's latest version is a delete marker (the store
            # sets "true" and the marker's version id when it is).
            exc.headers.setdefault("x-amz-delete-marker", "false")
            raise
        try:
            _check_conditions(req, record)
            byte_range, parts_count = _part_range(req, record)
            if parts_count is None:
                byte_range = parse_range(req.headers.get("range"), record.size)
        except BaseException:
            reader.close()
            raise
        headers = _object_headers(record)
        if record.checksum is not None and s3_checksums.mode_enabled(req.headers):
            # As S3: a whole-object read answers the object's checksum; a partNumber read
            # of a multipart object its part's; a Range, none.
            if byte_range is None and parts_count is None:
                headers.extend(s3_checksums.response_headers(
                    record.checksum, record.parts_count).items())
            elif parts_count is not None and record.part_sizes:
                part = record.part_checksum(req.int_param("partNumber", 1, 1, 10000))
                if part is not None:
                    headers.extend(s3_checksums.response_headers(part).items())
        headers.extend(version_headers(self.store, req.bucket, record.version_id,
                                       version is not None, record.bucket_versioned).items())
        if record.tag_count:
            headers.append(("x-amz-tagging-count", str(record.tag_count)))
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
        version = version_of(req)   # checked before anything is deleted
        result = self.store.delete_object(req.bucket, req.key, version)
        return Response(b"", status=204, headers=deleted_headers(result))

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
            version = xml.child_text(obj, "VersionId")
            named = [xml.Node("Key", key)] + (
                [] if version is None else [xml.Node("VersionId", version)])
            try:
                check_key(key)
                if not key:
                    raise errors.InvalidArgument("Key must not be empty", ArgumentName="Key")
                if version is not None and not is_version_id(version):
                    # S3 reports a version id it could never have issued as NoSuchVersion
                    # here, where GET, HEAD and DELETE say InvalidArgument.
                    raise errors.NoSuchVersion()
                result = self.store.delete_object(req.bucket, key, version)
            except errors.S3Error as exc:
                out.add("Error", [*named, xml.Node("Code", exc.code),
                                  xml.Node("Message", exc.message)])
                continue
            if not quiet:
                if result.delete_marker:
                    assert result.version_id is not None
                    named += [xml.Node("DeleteMarker", True),
                              xml.Node("DeleteMarkerVersionId", result.version_id)]
                out.add("Deleted", named)
        return xml_response(out, environ=req.environ)

    def op_CopyObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        if req.environ.get(env.IN_PLACE):
            return self._rewrite_in_place(req)
        directive = req.headers.get("x-amz-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.",
                                         ArgumentName="x-amz-metadata-directive",
                                         ArgumentValue=directive)
        meta = meta_from_request(req)
        tag_directive = tagging.directive(req.headers.get("x-amz-tagging-directive"))
        replaced_tags = tags_from_request(req)
        condition = conditional_writes.precondition(req.headers, req.key)
        src_bucket, src_key, src = copy_source(self.store, req)
        tags = replaced_tags if tag_directive == "REPLACE" else \
            self.store.object_tags(src_bucket, src_key, src.version_id)[1]
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
                              if "x-amz-storage-class" in req.headers else src.meta.storage_class,
                              acl=meta.acl)
        if (src_bucket, src_key) == (req.bucket, req.key) and not acl.has_acl_headers(req.headers):
            # A copy gets its own ACL (private unless the request gives one), as in S3,
            # except a copy onto itself: that is how encproxy re-wraps keys (rotation,
            # UpdateObjectEncryption), which must not make a public object private.
            meta = dataclasses.replace(meta, acl=src.meta.acl)
        record = self.store.copy_object(src_bucket, src_key, req.bucket, req.key, meta,
                                        precondition=condition, src_version=src.version_id,
                                        tags=tags,
                                        checksum_algorithm=_copy_algorithm(req.headers))
        root = xml.Node("CopyObjectResult")
        root.add("LastModified", iso8601(record.last_modified))
        root.add("ETag", quoted(record.etag))
        if record.checksum is not None:   # the copy's, as S3 shows it
            s3_checksums.add_elements(root, record.checksum)
        headers = written_headers(record.version_id)
        headers.update(copy_source_headers(self.store, req, src_bucket, src))
        return xml_response(root, environ=req.environ, headers=headers)

    def _rewrite_in_place(self, req: S3Request) -> Response:
        """The encryption layer's in-place rewrite (``environ.IN_PLACE``): the version the
        copy source names gets the request's user metadata, nothing else changes, and
        the answer is the CopyObjectResult of that same version (its ETag, Last-Modified
        and version id).  Only ever conditional on the ETag the caller read."""
        assert req.bucket is not None and req.key is not None
        source = parse_copy_source(req.headers["x-amz-copy-source"])
        expected = req.headers.get("x-amz-copy-source-if-match")
        if (source.bucket, source.key) != (req.bucket, req.key) or expected is None or \
                req.headers.get("x-amz-metadata-directive") != "REPLACE":
            raise errors.InternalError("An in-place rewrite is a conditional REPLACE copy "
                                       "of an object onto itself.")
        version = None if source.version_id is None else check_version_id(source.version_id)
        record = self.store.replace_user_metadata(req.bucket, req.key, version,
                                                  metadata.user_metadata(req.headers),
                                                  expected)
        root = xml.Node("CopyObjectResult")
        root.add("LastModified", iso8601(record.last_modified))
        root.add("ETag", quoted(record.etag))
        headers = written_headers(record.version_id)
        if source.version_id is not None:
            headers["x-amz-copy-source-version-id"] = record.version_id
        return xml_response(root, environ=req.environ, headers=headers)


def _object_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    headers = [("ETag", quoted(record.etag)),
               ("Last-Modified", http_date(record.last_modified)),
               ("Accept-Ranges", "bytes")]
    headers.extend(metadata.response_headers(record.meta.content_headers,
                                             record.meta.user_metadata))
    if record.meta.storage_class != "STANDARD":
        headers.append(("x-amz-storage-class", record.meta.storage_class))
    return headers


def _check_conditions(req: S3Request, record: ObjectRecord) -> None:
    try:
        preconditions.check(req.headers, record.etag, record.last_modified)
    except errors.NotModified as exc:
        exc.headers.update({"ETag": quoted(record.etag),
                            "Last-Modified": http_date(record.last_modified)})
        raise


def _copy_algorithm(headers: Mapping[str, str]) -> str | None:
    """The algorithm CopyObject's ``x-amz-checksum-algorithm`` asks the copy's checksum
    to be computed with (None: none named); InvalidRequest for one S3 does not have."""
    named = headers.get(s3_checksums.ALGORITHM_HEADER, "").strip()
    if not named:
        return None
    algorithm = checksums.checksum_algorithm(checksums.CHECKSUM_HEADER_PREFIX + named.lower())
    if algorithm not in s3_checksums.XML_NAMES:
        raise errors.InvalidRequest("Checksum algorithm provided is unsupported.")
    return algorithm


def _part_range(req: S3Request, record: ObjectRecord) -> tuple[ByteRange | None, int | None]:
    """The bytes of ``?partNumber`` and the object's parts count; (None, None) without it."""
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
