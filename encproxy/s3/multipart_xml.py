"""Request bodies of multipart operations (pure)."""
from __future__ import annotations

from encproxy import errors
from encproxy.s3 import xml


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """CompleteMultipartUpload's part list: (part number, ETag) pairs as the client sent them."""
    root = xml.parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    parts = []
    for p in root.findall("Part"):
        number, etag = xml.child_text(p, "PartNumber"), xml.child_text(p, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise errors.MalformedXML()
        parts.append((int(number), etag.strip()))
    if not parts:
        raise errors.MalformedXML()
    return parts
