"""How S3 names and shows an object's checksum: headers, XML elements, and the checksum
settings of a multipart upload (pure).

An object's checksum (``format.checksum.StoredChecksum``) is shown as
``x-amz-checksum-<algorithm>`` (base64; a COMPOSITE one with ``-N``) and
``x-amz-checksum-type``, in GET and HEAD answers when the client sent
``x-amz-checksum-mode: ENABLED`` and read the whole object, and as
``Checksum<ALGORITHM>`` / ``ChecksumType`` elements in XML answers
(CompleteMultipartUpload, ListParts, GetObjectAttributes, CopyObject).
"""
from __future__ import annotations

from collections.abc import Mapping

from encproxy import checksums, errors
from encproxy.format.checksum import (
    COMPOSITE,
    CRC_ALGORITHMS,
    FULL_OBJECT,
    TYPE_CODES,
    StoredChecksum,
    default_type,
)
from encproxy.s3 import xml

MODE_HEADER = "x-amz-checksum-mode"
TYPE_HEADER = "x-amz-checksum-type"
ALGORITHM_HEADER = "x-amz-checksum-algorithm"
# What an S3 upload gets when its client names no checksum (S3's default since 2025).
DEFAULT_ALGORITHM = "crc64nvme"
# S3's spelling in XML element names and ChecksumAlgorithm values.
XML_NAMES = {"crc32": "CRC32", "crc32c": "CRC32C", "crc64nvme": "CRC64NVME",
             "sha1": "SHA1", "sha256": "SHA256"}


def mode_enabled(headers: Mapping[str, str]) -> bool:
    """Whether the client asked for the checksum (``x-amz-checksum-mode: ENABLED``)."""
    return headers.get(MODE_HEADER, "").strip().upper() == "ENABLED"


def sent_algorithm(headers: Mapping[str, str]) -> str | None:
    """The algorithm of the checksum a request's body carries, known before the body:
    its ``x-amz-checksum-<algorithm>`` header, else its ``x-amz-trailer``; None if it
    carries none.  (The auth layer has validated both.)"""
    names = checksums.checksum_header_names(headers)
    if names:
        return checksums.checksum_algorithm(names[0])
    trailer = headers.get("x-amz-trailer")
    if trailer:
        return checksums.parse_trailer_declaration(trailer)
    return None


def response_headers(checksum: StoredChecksum, parts: int | None = None) -> dict[str, str]:
    """``x-amz-checksum-<algorithm>`` and ``x-amz-checksum-type`` of an object
    (``parts``: its part count, shown after a COMPOSITE value)."""
    return {checksums.CHECKSUM_HEADER_PREFIX + checksum.algorithm: checksum.value(parts),
            TYPE_HEADER: checksum.checksum_type}


def add_elements(node: xml.Node, checksum: StoredChecksum, parts: int | None = None,
                 with_type: bool = True) -> None:
    """``Checksum<ALGORITHM>`` (and ``ChecksumType``) under ``node``."""
    node.add("Checksum" + XML_NAMES[checksum.algorithm], checksum.value(parts))
    if with_type:
        node.add("ChecksumType", checksum.checksum_type)


def upload_settings(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """CreateMultipartUpload's ``x-amz-checksum-algorithm`` and ``x-amz-checksum-type``:
    (algorithm, type), or None when it names neither.  As S3: a type without an
    algorithm, an unknown value, or FULL_OBJECT for SHA (COMPOSITE for CRC64NVME) is
    InvalidRequest; the xxHash family, which encproxy cannot compute, NotImplemented."""
    algorithm_text = headers.get(ALGORITHM_HEADER, "").strip()
    type_text = headers.get(TYPE_HEADER, "").strip().upper()
    if not algorithm_text:
        if type_text:
            raise errors.InvalidRequest(
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header.")
        return None
    algorithm = checksums.checksum_algorithm(
        checksums.CHECKSUM_HEADER_PREFIX + algorithm_text.lower())
    if algorithm not in XML_NAMES:
        raise errors.InvalidRequest("Checksum algorithm provided is unsupported.")
    if not type_text:
        return algorithm, default_type(algorithm)
    if type_text not in TYPE_CODES:
        raise errors.InvalidRequest("Value for x-amz-checksum-type header is invalid.")
    if type_text == FULL_OBJECT and algorithm not in CRC_ALGORITHMS \
            or type_text == COMPOSITE and algorithm == "crc64nvme":
        raise errors.InvalidRequest(
            f"The {XML_NAMES[algorithm]} algorithm does not support the {type_text} "
            "checksum type.")
    return algorithm, type_text


def upload_headers(algorithm: str, checksum_type: str) -> dict[str, str]:
    """What CreateMultipartUpload answers about the upload's checksum."""
    return {ALGORITHM_HEADER: XML_NAMES[algorithm], TYPE_HEADER: checksum_type}


__all__ = ["ALGORITHM_HEADER", "DEFAULT_ALGORITHM", "MODE_HEADER", "TYPE_HEADER", "XML_NAMES",
           "add_elements", "mode_enabled", "response_headers", "sent_algorithm",
           "upload_headers", "upload_settings"]
