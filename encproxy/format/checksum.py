"""The stored checksum of an encrypted object (FORMAT.md §15).

S3 keeps one checksum per object (``x-amz-checksum-<algorithm>``, of type
FULL_OBJECT or COMPOSITE).  encproxy keeps it sealed, never in the clear: in the
sealed tail of a single-part object whose envelope is version 2 (§5), and in the
described index of a multipart object whose trailer header has the CHECKSUMMED
flag (§7.8).  Both places hold the same 36-byte **checksum block**::

    u8  algorithm   1 CRC32, 2 CRC32C, 3 CRC64NVME, 4 SHA1, 5 SHA256
    u8  type        1 FULL_OBJECT, 2 COMPOSITE
    u16 reserved    0
    32  digest      the big-endian digest, zero-padded to 32 bytes

A COMPOSITE checksum's digest is the hash of the concatenated part digests; the
``-N`` S3 shows after it is the object's part count, which the index knows.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import base64
import struct
from typing import Final, NamedTuple

from encproxy.format.constants import CHECKSUM_BLOCK_SIZE
from encproxy.format.errors import IndexMalformed

_BLOCK = struct.Struct(">BBH32s")
assert _BLOCK.size == CHECKSUM_BLOCK_SIZE

# algorithm name (as in x-amz-checksum-<name>) -> (code, digest size)
ALGORITHM_CODES: Final = {"crc32": 1, "crc32c": 2, "crc64nvme": 3, "sha1": 4, "sha256": 5}
DIGEST_SIZES: Final = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
CRC_ALGORITHMS: Final = frozenset({"crc32", "crc32c", "crc64nvme"})
FULL_OBJECT: Final = "FULL_OBJECT"
COMPOSITE: Final = "COMPOSITE"
TYPE_CODES: Final = {FULL_OBJECT: 1, COMPOSITE: 2}
_ALGORITHMS = {code: name for name, code in ALGORITHM_CODES.items()}
_TYPES = {code: name for name, code in TYPE_CODES.items()}


class StoredChecksum(NamedTuple):
    """An object's checksum: ``algorithm`` (lower-case), ``checksum_type`` (FULL_OBJECT
    or COMPOSITE) and the binary digest."""

    algorithm: str
    checksum_type: str
    digest: bytes

    def encode(self) -> bytes:
        if self.algorithm not in ALGORITHM_CODES or self.checksum_type not in TYPE_CODES \
                or len(self.digest) != DIGEST_SIZES[self.algorithm]:
            raise ValueError("not a checksum S3 has")
        # Every single-part checksum is FULL_OBJECT; a multipart upload's may be FULL_OBJECT
        # only for a CRC (checked at Create), and no CRC64NVME is COMPOSITE.
        if self.checksum_type == COMPOSITE and self.algorithm == "crc64nvme":
            raise ValueError("S3 has no COMPOSITE CRC64NVME")
        return _BLOCK.pack(ALGORITHM_CODES[self.algorithm], TYPE_CODES[self.checksum_type], 0,
                           self.digest.ljust(32, b"\0"))

    @classmethod
    def decode(cls, raw: bytes | memoryview, error: type[Exception] = IndexMalformed
               ) -> StoredChecksum:
        """The checksum of an (authenticated) block; ``error`` for a bad shape."""
        if len(raw) != CHECKSUM_BLOCK_SIZE:
            raise error()
        code, type_code, reserved, padded = _BLOCK.unpack(bytes(raw))
        algorithm, kind = _ALGORITHMS.get(code), _TYPES.get(type_code)
        if algorithm is None or kind is None or reserved:
            raise error()
        size = DIGEST_SIZES[algorithm]
        if any(padded[size:]):
            raise error()
        checksum = cls(algorithm, kind, padded[:size])
        try:
            checksum.encode()   # the type must be one S3 has for the algorithm
        except ValueError:
            raise error() from None
        return checksum

    def value(self, parts: int | None = None) -> str:
        """The base64 value S3 shows: with ``-N`` (``parts``) for a COMPOSITE one."""
        text = base64.b64encode(self.digest).decode("ascii")
        if self.checksum_type == COMPOSITE and parts is not None:
            text += f"-{parts}"
        return text


def default_type(algorithm: str) -> str:
    """S3's checksum type of a multipart upload that names only its algorithm:
    CRC64NVME has only FULL_OBJECT, the others default to COMPOSITE."""
    return FULL_OBJECT if algorithm == "crc64nvme" else COMPOSITE


__all__ = ["CHECKSUM_BLOCK_SIZE", "COMPOSITE", "FULL_OBJECT", "StoredChecksum", "default_type"]
