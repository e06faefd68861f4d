"""GetObjectAttributes, answered by encproxy from HEAD and the object's own framing.

It is never forwarded: Ceph RGW fails it, the file store does not implement it,
and for an encrypted object a backend would report ciphertext sizes.  Sizes are
plaintext sizes; the ETag is the one HEAD and GET report; for an encrypted
multipart object ``ObjectParts`` lists each part's number and plaintext size
(from the index, or the checked headers).  For a plain multipart object only
``TotalPartsCount`` is known (the ``-N`` of its ETag): its part boundaries are
not (no backend call tells them reliably).  ``Checksum`` is the sealed checksum of
an encrypted object (FORMAT.md §15; for a multipart one, also each part's in
``ObjectParts``); a plain object's is not known to encproxy and not returned.
"""
from __future__ import annotations

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.format.checksum import StoredChecksum
from encproxy.s3 import checksum_headers, sse, xml
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
    if "Checksum" in wanted and summed is not None:
        checksum, count = summed
        checksum_headers.add_elements(root.add("Checksum"), checksum,
                                      count if src.multipart else None)
    if "ObjectParts" in wanted:
        parts = _parts(ctx, src)
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
                part_sums = _part_checksums(ctx, src, summed)
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
