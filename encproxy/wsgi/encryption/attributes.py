"""GetObjectAttributes, answered by encproxy from HEAD and the object's own framing.

It is never forwarded: Ceph RGW fails it, the file store does not implement it,
and for an encrypted object a backend would report ciphertext sizes.  Sizes are
plaintext sizes; the ETag is the one HEAD and GET report; for an encrypted
multipart object ``ObjectParts`` lists each part's number and plaintext size
(from the index, or the checked headers).  For a plain multipart object only
``TotalPartsCount`` is known (the ``-N`` of its ETag): its part boundaries are
not (no backend call tells them reliably) unless the store keeps the object's
checksum: then HEADs with ``partNumber`` in checksum mode tell each part's size and
checksum.  ``Checksum`` is the sealed checksum of an encrypted object (FORMAT.md §15;
for a multipart one, also each part's in ``ObjectParts``); a plain object's is the one
the store below answers to HEAD in checksum mode (the file store's own; an S3
backend's, relayed).
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from werkzeug.wrappers import Response

from encproxy import checksums, errors
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum
from encproxy.s3 import checksum_headers, sse, xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.layouts import backend_parts
from encproxy.wsgi.encryption.sources import Source, open_source, source_checksum
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


def _int_header(req: S3Request, name: str, default: int) -> int:
    text = req.headers.get(name)
    if text is None:
        return default
    if not text.strip().isdigit():
        raise errors.InvalidArgument(f"Invalid value for {name}", ArgumentName=name,
                                     ArgumentValue=text)
    return int(text)


def get_object_attributes(ctx: EncryptionContext, req: S3Request) -> Response:
    assert req.bucket is not None and req.key is not None
    wanted = [a.strip() for a in req.headers.get("x-amz-object-attributes", "").split(",")
              if a.strip()]
    if not wanted:
        raise errors.InvalidRequest("The x-amz-object-attributes header specifying the "
                                    "attributes to be retrieved is either missing or empty")
    for name in wanted:
        if name not in ATTRIBUTES:
            raise errors.InvalidArgument("Invalid attribute name specified.",
                                         ArgumentName="x-amz-object-attributes",
                                         ArgumentValue=name)
    max_parts = min(_int_header(req, "x-amz-max-parts", 1000), 1000)
    marker = _int_header(req, "x-amz-part-number-marker", 0)
    customer = sse.parse_customer_key(req.headers)
    src = open_source(ctx, req, req.bucket, req.key, req.query.get("versionId"), customer)

    root = xml.Node("GetObjectAttributesResponse")
    if "ETag" in wanted:
        root.add("ETag", src.etag.strip('"'))
    summed = source_checksum(ctx, src) if src.encrypted and (
        "Checksum" in wanted or "ObjectParts" in wanted) else None
    plain = _plain_checksum(ctx, req, src, None) if not src.encrypted and (
        "Checksum" in wanted or "ObjectParts" in wanted) else None
    if "Checksum" in wanted and summed is not None:
        checksum, count = summed
        checksum_headers.add_elements(root.add("Checksum"), checksum,
                                      count if src.multipart else None)
    elif "Checksum" in wanted and plain is not None:
        checksum_headers.add_elements(root.add("Checksum"), plain[0], plain[1])
    if "ObjectParts" in wanted:
        parts = _parts(ctx, src)
        plain_parts: dict[int, StoredChecksum] = {}
        if parts is not None and parts[1] is None and plain is not None:
            # A plain multipart object whose store keeps checksums: its parts' sizes and
            # checksums, as partNumber HEADs answer them (the page, and one more part
            # to tell whether it is truncated).
            numbers = range(marker + 1, min(parts[0], marker + max_parts + 1) + 1)
            found = [(n, _plain_part(ctx, req, src, n)) for n in numbers]
            parts = parts[0], [(n, size) for n, (size, _) in found]
            plain_parts = {n: part for n, (_, part) in found if part is not None}
        if parts is not None:
            total, sizes = parts
            node = root.add("ObjectParts")
            node.add("PartsCount", total)
            if sizes is not None:
                after = [(n, s) for n, s in sizes if n > marker]
                page = after[:max_parts]
                truncated = len(after) > len(page)
                node.add("PartNumberMarker", marker)
                if page:
                    node.add("NextPartNumberMarker", page[-1][0])
                node.add("MaxParts", max_parts)
                node.add("IsTruncated", truncated)
                part_sums = _part_checksums(ctx, src, summed) or plain_parts
                for number, size in page:
                    part = node.add("Part", [xml.Node("PartNumber", number),
                                             xml.Node("Size", size)])
                    if number in part_sums:
                        checksum_headers.add_elements(part, part_sums[number], with_type=False)
    if "StorageClass" in wanted:
        root.add("StorageClass", src.headers.get("x-amz-storage-class", "STANDARD"))
    if "ObjectSize" in wanted:
        root.add("ObjectSize", src.plaintext_size)
    headers = {"Last-Modified": src.headers.get("last-modified", "")}
    if "x-amz-version-id" in src.headers:
        headers["x-amz-version-id"] = src.headers["x-amz-version-id"]
    if src.envelope is not None:
        headers.update(sse.response_headers(src.mode, src.key_id,
                                            customer.key_md5 if customer else None))
    return xml_response(root, environ=req.environ, headers=headers)


def _parts(ctx: EncryptionContext, src: Source
           ) -> tuple[int, list[tuple[int, int]] | None] | None:
    """(total part count, [(part number, size)] or None when unknown), or None for an
    object that was not uploaded in parts."""
    if src.multipart:
        assert src.keys is not None
        with integrity.reported(src.bucket, src.key):
            known = ctx.layouts.layout(src.keys, src.stored_size, src.backend_etag,
                                       src.fetcher)
        layout = known.layout
        return layout.parts, list(zip(layout.part_numbers, layout.part_sizes, strict=True))
    if src.encrypted:
        return None
    n = backend_parts(src.backend_etag)
    return None if n is None else (n, None)


def _plain_checksum(ctx: EncryptionContext, req: S3Request, src: Source,
                    part_number: int | None) -> tuple[StoredChecksum, int | None] | None:
    """A plain object's checksum as the store below answers it (HEAD in checksum mode;
    of part ``part_number``), with its part count; None when it keeps none."""
    return _shown_checksum(_plain_head(ctx, req, src, part_number))


def _plain_part(ctx: EncryptionContext, req: S3Request, src: Source,
                part_number: int) -> tuple[int, StoredChecksum | None]:
    """The size and checksum of part ``part_number`` of a plain multipart object."""
    headers = _plain_head(ctx, req, src, part_number)
    shown = _shown_checksum(headers)
    return int(headers.get("content-length", "0")), None if shown is None else shown[0]


def _plain_head(ctx: EncryptionContext, req: S3Request, src: Source,
                part_number: int | None) -> dict[str, str]:
    params = []
    if part_number is not None:
        params.append(f"partNumber={part_number}")
    if src.version_id:
        params.append("versionId=" + subrequest.quote_param(src.version_id))
    head = subrequest.request(ctx.app, req.environ, "HEAD", src.bucket, src.key,
                              "&".join(params),
                              headers={checksum_headers.MODE_HEADER: "ENABLED"})
    if not head.ok:
        raise subrequest.failure(head.status, head.body)
    if head.headers.get("etag", "") != src.backend_etag:
        raise errors.ServiceUnavailable()   # replaced meanwhile: the client may retry
    return head.headers


def _shown_checksum(headers: Mapping[str, str]) -> tuple[StoredChecksum, int | None] | None:
    """The ``x-amz-checksum-*`` answer of a plain object's HEAD: (checksum, part count of a
    ``…-N`` value); None for none, or for anything it cannot be."""
    names = checksums.checksum_header_names(headers)
    if len(names) != 1:
        return None
    value, _, count = headers[names[0]].partition("-")
    kind = headers.get(checksum_headers.TYPE_HEADER) or (COMPOSITE if count else FULL_OBJECT)
    try:
        checksum = StoredChecksum(checksums.checksum_algorithm(names[0]), kind,
                                  base64.b64decode(value, validate=True))
        checksum.encode()
    except (ValueError, binascii.Error, errors.S3Error):
        return None
    return checksum, int(count) if count.isdigit() else None


def _part_checksums(ctx: EncryptionContext, src: Source,
                    summed: tuple[StoredChecksum, int] | None) -> dict[int, StoredChecksum]:
    """Part number -> the part's checksum, from a multipart object's index."""
    if summed is None or not src.multipart or src.keys is None:
        return {}
    with integrity.reported(src.bucket, src.key):
        layout = ctx.layouts.layout(src.keys, src.stored_size, src.backend_etag,
                                    src.fetcher).layout
    description = layout.description
    if description is None or description.checksum is None:
        return {}
    return {number: description.checksum._replace(digest=digest)
            for number, digest in zip(layout.part_numbers, description.part_checksums,
                                      strict=True)}
