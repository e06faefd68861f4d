"""The file store's multipart upload operations, their listings included."""
from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import checksums, errors
from encproxy.checksums import to_base64
from encproxy.filestore.store import FileStore
from encproxy.format.checksum import StoredChecksum
from encproxy.s3 import checksum_headers as s3_checksums
from encproxy.s3 import conditional_writes, xml
from encproxy.s3.dates import iso8601
from encproxy.s3.multipart_xml import parse_complete
from encproxy.s3.ranges import parse_copy_range
from encproxy.wsgi.apps.filestore.common import (
    checksum_headers,
    common_prefixes,
    copy_source,
    copy_source_headers,
    encoder,
    list_params,
    meta_from_request,
    owner_nodes,
    put_length,
    quoted,
    tags_from_request,
    written_headers,
)
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response


class MultipartOperations:
    store: FileStore

    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        meta = meta_from_request(req)
        settings = s3_checksums.upload_settings(req.headers)
        upload_id = self.store.create_upload(req.bucket, req.key, meta, tags_from_request(req),
                                             settings)
        root = xml.Node("InitiateMultipartUploadResult")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("UploadId", upload_id)
        return xml_response(root, environ=req.environ, headers=None if settings is None
                            else s3_checksums.upload_headers(*settings))

    def op_UploadPart(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        number = _part_number(req)
        upload_id = _upload_id(req)
        length = put_length(req)
        part = self.store.upload_part(req.bucket, req.key, upload_id, number, req.body, length,
                                      s3_checksums.sent_algorithm(req.headers))
        return Response(b"", status=200,
                        headers={"ETag": quoted(part.etag), **checksum_headers(req)})

    def op_UploadPartCopy(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        number = _part_number(req)
        upload_id = _upload_id(req)
        src_bucket, src_key, src = copy_source(self.store, req)
        header = req.headers.get("x-amz-copy-source-range")
        byte_range = parse_copy_range(header, src.size) if header else None
        part = self.store.upload_part_copy(
            req.bucket, req.key, upload_id, number, src_bucket, src_key,
            None if byte_range is None else (byte_range.first, byte_range.last),
            src_version=src.version_id)
        root = xml.Node("CopyPartResult")
        root.add("LastModified", iso8601(part.last_modified))
        root.add("ETag", quoted(part.etag))
        if part.checksum is not None and _declared(self.store, req, upload_id):
            root.add("Checksum" + s3_checksums.XML_NAMES[part.checksum[0]],
                     to_base64(part.checksum[1]))
        return xml_response(root, environ=req.environ,
                            headers=copy_source_headers(self.store, req, src_bucket, src))

    def op_CompleteMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = _upload_id(req)
        condition = conditional_writes.precondition(req.headers, req.key)
        body = req.read_small_body(xml.MAX_REQUEST_XML)
        parts = parse_complete(body)
        named = _named_part_checksums(body)
        claim = _whole_object_claim(req.headers)
        if named:
            self._check_part_checksums(req, upload_id, named)

        def expected(checksum: StoredChecksum | None, count: int) -> None:
            if claim is not None:
                _check_whole_object(claim, checksum)

        record = self.store.complete_upload(req.bucket, req.key, upload_id, parts,
                                            precondition=condition, expected=expected)
        root = xml.Node("CompleteMultipartUploadResult")
        host = req.headers.get("host", "localhost")
        root.add("Location", f"http://{host}/{req.bucket}/{quote(req.key)}")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("ETag", quoted(record.etag))
        if record.checksum is not None:
            s3_checksums.add_elements(root, record.checksum, record.parts_count)
        return xml_response(root, environ=req.environ,
                            headers=written_headers(record.version_id))

    def op_AbortMultipartUpload(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        self.store.abort_upload(req.bucket, req.key, _upload_id(req))
        return Response(b"", status=204)

    def op_ListParts(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = _upload_id(req)
        max_parts = req.int_param("max-parts", 1000, 0, 1000)
        marker = req.int_param("part-number-marker", 0, 0, 10000)
        listing = self.store.list_parts(req.bucket, req.key, upload_id,
                                        part_number_marker=marker, max_parts=max_parts)
        root = xml.Node("ListPartsResult")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("UploadId", upload_id)
        root.add("Initiator", owner_nodes())
        root.add("Owner", owner_nodes())
        root.add("StorageClass", listing.upload.meta.storage_class)
        declared = listing.upload.checksum
        if declared is not None:
            root.add("ChecksumAlgorithm", s3_checksums.XML_NAMES[declared[0]])
            root.add("ChecksumType", declared[1])
        root.add("PartNumberMarker", marker)
        if listing.next_marker is not None:
            root.add("NextPartNumberMarker", listing.next_marker)
        root.add("MaxParts", max_parts)
        root.add("IsTruncated", listing.is_truncated)
        for part in listing.parts:
            node = root.add("Part", [xml.Node("PartNumber", part.number),
                                     xml.Node("LastModified", iso8601(part.last_modified)),
                                     xml.Node("ETag", quoted(part.etag)),
                                     xml.Node("Size", part.size)])
            # Part checksums are shown for an upload that declared its algorithm (its
            # parts' CRC64NVME otherwise serves only the object's default checksum).
            if declared is not None and part.checksum is not None \
                    and part.checksum[0] == declared[0]:
                node.add("Checksum" + s3_checksums.XML_NAMES[declared[0]],
                         to_base64(part.checksum[1]))
        return xml_response(root, environ=req.environ)

    def op_ListMultipartUploads(self, req: S3Request) -> Response:
        assert req.bucket is not None
        prefix, delimiter, _, url = list_params(req)
        max_uploads = req.int_param("max-uploads", 1000, 0, 1000)
        key_marker = req.query.get("key-marker", "")
        id_marker = req.query.get("upload-id-marker", "") if key_marker else ""
        listing = self.store.list_uploads(req.bucket, prefix=prefix, delimiter=delimiter,
                                          key_marker=key_marker or None,
                                          upload_id_marker=id_marker or None,
                                          max_uploads=max_uploads)
        enc = encoder(url)
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
                xml.Node("Initiator", owner_nodes()),
                xml.Node("Owner", owner_nodes()),
                xml.Node("StorageClass", up.meta.storage_class),
                xml.Node("Initiated", iso8601(up.initiated))])
        root.extend(common_prefixes(listing.common_prefixes, enc))
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)


    def _check_part_checksums(self, req: S3Request, upload_id: str,
                              named: dict[int, tuple[str, str]]) -> None:
        """The part checksums a Complete names must be the parts' (InvalidPart, as S3)."""
        assert req.bucket is not None and req.key is not None
        marker = 0
        while True:
            listing = self.store.list_parts(req.bucket, req.key, upload_id,
                                            part_number_marker=marker)
            for part in listing.parts:
                claim = named.get(part.number)
                if claim is None:
                    continue
                algorithm, value = claim
                if part.checksum is None or part.checksum[0] != algorithm or \
                        to_base64(part.checksum[1]) != value:
                    raise errors.InvalidPart(UploadId=upload_id,
                                             PartNumber=str(part.number))
            if listing.next_marker is None:
                return
            marker = listing.next_marker


def _declared(store: FileStore, req: S3Request, upload_id: str) -> bool:
    """Whether the upload declared a checksum algorithm."""
    assert req.bucket is not None and req.key is not None
    return store.list_parts(req.bucket, req.key, upload_id,
                            max_parts=0).upload.checksum is not None


def _named_part_checksums(body: bytes) -> dict[int, tuple[str, str]]:
    """The (algorithm, base64 value) a Complete's XML gives each part it names."""
    names = {"Checksum" + xml_name: algorithm
             for algorithm, xml_name in s3_checksums.XML_NAMES.items()}
    out: dict[int, tuple[str, str]] = {}
    for part in xml.parse(body).findall("Part"):
        number = (xml.child_text(part, "PartNumber") or "").strip()
        for child in part:
            if isinstance(child.tag, str) and child.tag in names and number.isdigit():
                out[int(number)] = (names[child.tag], (child.text or "").strip())
    return out


def _whole_object_claim(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """CompleteMultipartUpload's ``x-amz-checksum-<algorithm>``: (algorithm, value without
    a ``-N``), the checksum of the whole object as AWS defines it (not of the XML)."""
    names = checksums.checksum_header_names(headers)
    if not names:
        return None
    if len(names) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    algorithm = checksums.checksum_algorithm(names[0])
    value = headers[names[0]].strip()
    head, dash, count = value.rpartition("-")
    return algorithm, head if dash and count.isdigit() else value


def _check_whole_object(claim: tuple[str, str], checksum: StoredChecksum | None) -> None:
    algorithm, value = claim
    if checksum is None:
        raise errors.NotImplementedError_(
            "encproxy's file store cannot verify the whole-object checksum of an upload "
            "whose parts were stored without checksums.")
    if checksum.algorithm != algorithm or checksum.value() != value:
        raise errors.BadDigest(f"The {checksums.display_name(algorithm)} you specified did "
                               "not match the calculated checksum.")


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
