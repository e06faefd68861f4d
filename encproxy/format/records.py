"""Byte layouts that feed the ciphers: AADs, nonces, counter blocks, KDF labels.

Every sealed record (a chunk, a segment header's tag, the sealed MD5, an index)
is authenticated with a 16-byte AAD prefix::

    u8 version | u8 suite | u8 domain | u8 flags | u32 part number | u64 index

(big-endian), optionally followed by domain-specific bytes of fixed length.  The
nonce (GCM) or initial counter block (CTR) is a function of ``index`` alone:
every key is used for one body or one segment upload only, so the index never
repeats under a key (docs/FORMAT.md §4).

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import Final

from encproxy.format.constants import CTR_CHUNK_SHIFT, FORMAT_VERSION, Domain, Suite

AAD_SIZE: Final = 16
FLAG_FINAL: Final = 0x01

_AAD = struct.Struct(">BBBBIQ")
NONCE_STRUCT: Final = struct.Struct(">4xQ")
_U64 = struct.Struct(">Q")


def aad(suite: Suite, domain: Domain, part_number: int, index: int, *, final: bool,
        extra: bytes = b"") -> bytes:
    """The AAD of one record."""
    return _AAD.pack(FORMAT_VERSION, suite, domain, FLAG_FINAL if final else 0,
                     part_number, index) + extra


class AadPacker:
    """Builds the AADs of one stream's chunks quickly (the hot loop calls it per chunk).

    ``packer(index, final)`` equals ``aad(suite, domain, part_number, index, final=final)``.
    """

    __slots__ = ("_pack", "part_number")

    def __init__(self, suite: Suite, domain: Domain, part_number: int) -> None:
        self._pack = partial(_AAD.pack, FORMAT_VERSION, int(suite), int(domain))
        self.part_number = part_number

    part_number: int

    def __call__(self, index: int, final: bool) -> bytes:
        return self._pack(FLAG_FINAL if final else 0, self.part_number, index)

    def plain(self) -> Callable[[int, int, int], bytes]:
        """The raw packer: ``plain()(flags, part_number, index)`` (no method call)."""
        return self._pack


def gcm_nonce(index: int) -> bytes:
    """96-bit GCM nonce of record ``index``."""
    return NONCE_STRUCT.pack(index)


def ctr_initial_block(index: int) -> bytes:
    """128-bit initial counter block of record ``index`` (AES-CTR, big-endian counter).

    Chunk ``i`` uses counter blocks ``i << 12 .. (i << 12) + 4095``: consecutive full
    chunks are consecutive in counter space, so one CTR context serves a whole run.
    """
    return (index << CTR_CHUNK_SHIFT).to_bytes(16, "big")


def u64(value: int) -> bytes:
    return _U64.pack(value)


# -- HKDF labels (info strings) ----------------------------------------------------------------

LABEL_PREFIX: Final = b"encproxy/1 "


def envelope_label() -> bytes:
    return LABEL_PREFIX + b"envelope"


def body_label(suite: Suite) -> bytes:
    return LABEL_PREFIX + b"body" + bytes([suite])


def segment_label(suite: Suite, part_number: int, salt: bytes) -> bytes:
    return LABEL_PREFIX + b"segment" + bytes([suite]) + part_number.to_bytes(4, "big") + salt
