"""How the file store writes down the checksums of what it stores (FORMAT.md, "Checksums").

An object's checksum (``format.checksum.StoredChecksum``) is kept in its index row as
the text ``<algorithm> <TYPE> <base64 digest>`` (``crc32c FULL_OBJECT 4waSgw==``); a
row without one (written before checksums were kept) has none.  A part's checksum is
kept in its file's JSON record as ``<algorithm>:<hex digest, zero-padded to 64 digits>``,
a fixed width, so that the record can be written before the body is hashed and
rewritten in place after.  Pure module.
"""
from __future__ import annotations

import base64
import binascii

from encproxy.errors import InternalError
from encproxy.format.checksum import DIGEST_SIZES, TYPE_CODES, StoredChecksum

# What a write that names no checksum gets: S3's default since 2025.
DEFAULT_ALGORITHM = "crc64nvme"
_PART_HEX_WIDTH = 64


def encode_row(checksum: StoredChecksum | None) -> str | None:
    if checksum is None:
        return None
    checksum.encode()   # ValueError for a checksum S3 does not have
    return f"{checksum.algorithm} {checksum.checksum_type} " + \
        base64.b64encode(checksum.digest).decode("ascii")


def decode_row(text: str | None) -> StoredChecksum | None:
    """The checksum an index row holds; InternalError for anything malformed."""
    if text is None:
        return None
    try:
        algorithm, kind, value = text.split(" ")
        digest = base64.b64decode(value, validate=True)
        if algorithm not in DIGEST_SIZES or kind not in TYPE_CODES:
            raise ValueError(text)
        checksum = StoredChecksum(algorithm, kind, digest)
        checksum.encode()
    except (ValueError, binascii.Error):
        raise InternalError("The file store's index holds a malformed checksum.") from None
    return checksum


def part_placeholder(algorithm: str) -> str:
    """The part record's checksum field before the body is hashed (same width)."""
    return encode_part(algorithm, bytes(DIGEST_SIZES[algorithm]))


def encode_part(algorithm: str, digest: bytes) -> str:
    if len(digest) != DIGEST_SIZES[algorithm]:
        raise ValueError("digest size")
    return f"{algorithm}:" + digest.hex().ljust(_PART_HEX_WIDTH, "0")


def decode_part(text: object) -> tuple[str, bytes] | None:
    """(algorithm, digest) of a part record's checksum field; None when absent.
    ValueError for a malformed one (the caller reports the damaged file)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("checksum")
    algorithm, _, hexed = text.partition(":")
    size = DIGEST_SIZES.get(algorithm)
    if size is None or len(hexed) != _PART_HEX_WIDTH or any(hexed[2 * size:].strip("0")):
        raise ValueError("checksum")
    return algorithm, bytes.fromhex(hexed[:2 * size])
