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


_CHECKSUM_ELEMENTS = {"ChecksumCRC32": "crc32", "ChecksumCRC32C": "crc32c",
                      "ChecksumCRC64NVME": "crc64nvme", "ChecksumSHA1": "sha1",
                      "ChecksumSHA256": "sha256"}


def parse_part_checksums(body: bytes) -> dict[int, dict[str, str]]:
    """The part checksums a CompleteMultipartUpload body names: part number ->
    {algorithm: base64 value as sent} (parts that name none are absent)."""
    root = xml.parse(body)
    found: dict[int, dict[str, str]] = {}
    for p in root.findall("Part"):
        number = (xml.child_text(p, "PartNumber") or "").strip()
        sums = {algorithm: (xml.child_text(p, element) or "").strip()
                for element, algorithm in _CHECKSUM_ELEMENTS.items()
                if p.find(element) is not None}
        if sums and number.isdigit():
            found[int(number)] = sums
    return found
