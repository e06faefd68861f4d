"""The wrapped-key blob and the canonical encoding of an encryption context (docs/KEYS.md §2).

A blob is what ``KeyProvider.wrap`` returns and the object envelope stores as its
opaque wrapped key. It names everything ``unwrap`` needs, so that unwrapping needs
no outside state and a blob made under an old key version stays unwrappable after
rotation::

    u8   blob version            (1)
    u8   provider                (1 local, 2 pkcs11, 3 kmip, 4 awskms)
    u8   algorithm               (1 AES-256-GCM, 2 AWS KMS ciphertext)
    u8   key id length k         (1..128), then the key id (printable ASCII)
    u8   key version length v    (0..64),  then the key version (printable ASCII)
    u8   nonce length n          (0..32),  then the nonce
    u16  ciphertext length c     (1..480), then the ciphertext (with its tag)

Integers are big-endian; no trailing bytes; at most 512 bytes in all (the
envelope's limit). For AES-256-GCM the nonce is 12 bytes and the ciphertext is
the data key plus a 16-byte tag, and the AAD is :func:`aad` -- the blob's header
(everything before the nonce) followed by the canonical context -- so that neither
the context nor the key id and version can change without the tag failing.

Decoding caps the length before it reads anything and checks every field.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from encproxy.errors import KeyUnwrapFailed

BLOB_VERSION = 1
MAX_BLOB_SIZE = 512
MAX_KEY_ID = 128
MAX_KEY_VERSION = 64
MAX_NONCE = 32
MAX_CIPHERTEXT = 480
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16

MAX_CONTEXT_ENTRIES = 16
MAX_CONTEXT_NAME = 128
MAX_CONTEXT_VALUE = 4096

_AAD_LABEL = b"encproxy/keys/1 wrap\x00"
_CONTEXT_LABEL = b"encproxy/keys/1 context\x00"


class ProviderKind(IntEnum):
    LOCAL = 1
    PKCS11 = 2
    KMIP = 3
    AWSKMS = 4

    @property
    def config_name(self) -> str:
        return self.name.lower()


class Algorithm(IntEnum):
    AES256_GCM = 1
    KMS_CIPHERTEXT = 2


def _printable(raw: bytes) -> bool:
    return all(0x21 <= b <= 0x7E for b in raw)


@dataclass(frozen=True)
class WrappedKey:
    """A decoded blob. Holds no secret: the data key inside is encrypted."""

    provider: ProviderKind
    algorithm: Algorithm
    key_id: str
    key_version: str
    nonce: bytes
    ciphertext: bytes
    version: int = BLOB_VERSION

    def __post_init__(self) -> None:
        key_id = self.key_id.encode("ascii", "replace")
        key_version = self.key_version.encode("ascii", "replace")
        if not (1 <= len(key_id) <= MAX_KEY_ID and _printable(key_id)):
            raise ValueError("key id must be 1..128 printable ASCII characters")
        if not (len(key_version) <= MAX_KEY_VERSION and _printable(key_version)):
            raise ValueError("key version must be 0..64 printable ASCII characters")
        if len(self.nonce) > MAX_NONCE or not 1 <= len(self.ciphertext) <= MAX_CIPHERTEXT:
            raise ValueError("nonce or ciphertext has a bad length")
        if self.algorithm is Algorithm.AES256_GCM and (
                len(self.nonce) != GCM_NONCE_SIZE or len(self.ciphertext) <= GCM_TAG_SIZE):
            raise ValueError("AES-GCM needs a 12-byte nonce and a tagged ciphertext")
        if len(self.header()) + 1 + len(self.nonce) + 2 + len(self.ciphertext) > MAX_BLOB_SIZE:
            raise ValueError("blob longer than 512 bytes")

    def header(self) -> bytes:
        """The bytes before the nonce: version, provider, algorithm, key id, key version."""
        return encode_header(self.provider, self.algorithm, self.key_id, self.key_version,
                             self.version)

    def to_bytes(self) -> bytes:
        return b"".join((self.header(), bytes([len(self.nonce)]), self.nonce,
                         struct.pack(">H", len(self.ciphertext)), self.ciphertext))

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrappedKey:
        """Decode a blob; any defect is :class:`KeyUnwrapFailed` (reason ``malformed``).

        Blobs decoded well are remembered by their bytes (a ``WrappedKey`` is immutable):
        a read decodes its object's blob twice, to authenticate the key id and to unwrap.
        """
        if type(raw) is bytes:
            return _remembered(raw)
        return cls._decode(raw)

    @classmethod
    def _decode(cls, raw: bytes) -> WrappedKey:
        if not isinstance(raw, (bytes, bytearray, memoryview)) or \
                not 9 <= len(raw) <= MAX_BLOB_SIZE:
            raise _malformed()
        raw = bytes(raw)
        version, provider, algorithm = raw[0], raw[1], raw[2]
        if version != BLOB_VERSION:
            raise KeyUnwrapFailed("unsupported-blob-version")
        if provider not in ProviderKind._value2member_map_ \
                or algorithm not in Algorithm._value2member_map_:
            raise _malformed()
        pos = 3
        fields: list[bytes] = []
        for limit in (MAX_KEY_ID, MAX_KEY_VERSION, MAX_NONCE):
            if pos >= len(raw):
                raise _malformed()
            n = raw[pos]
            pos += 1
            if n > limit or pos + n > len(raw):
                raise _malformed()
            fields.append(raw[pos:pos + n])
            pos += n
        if pos + 2 > len(raw):
            raise _malformed()
        (c,) = struct.unpack_from(">H", raw, pos)
        pos += 2
        if pos + c != len(raw):
            raise _malformed()
        key_id, key_version, nonce = fields
        if not key_id or not _printable(key_id) or not _printable(key_version):
            raise _malformed()
        try:
            return cls(ProviderKind(provider), Algorithm(algorithm), key_id.decode("ascii"),
                       key_version.decode("ascii"), nonce, raw[pos:])
        except ValueError:
            raise _malformed() from None


#: Blobs decoded by ``WrappedKey.from_bytes`` kept, per process (a blob is 512 bytes at most).
DECODED_BLOBS = 1024
_remembered = lru_cache(maxsize=DECODED_BLOBS)(WrappedKey._decode)


def encode_header(provider: ProviderKind, algorithm: Algorithm, key_id: str, key_version: str,
                  version: int = BLOB_VERSION) -> bytes:
    """A blob's header, which is also the start of its AAD (see :func:`aad`)."""
    kid = key_id.encode("ascii")
    kver = key_version.encode("ascii")
    return b"".join((bytes([version, provider, algorithm, len(kid)]), kid,
                     bytes([len(kver)]), kver))


def _malformed() -> KeyUnwrapFailed:
    return KeyUnwrapFailed("malformed-blob")


def check_context(context: Mapping[str, str]) -> None:
    """Raise ValueError unless ``context`` is a small mapping of non-empty str to str.

    This is a programming error (the object layer builds contexts), not a client one.
    """
    if not isinstance(context, Mapping) or len(context) > MAX_CONTEXT_ENTRIES:
        raise ValueError("encryption context must be a mapping of at most 16 entries")
    for name, value in context.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise ValueError("encryption context entries must be non-empty str -> str")
        if len(name.encode("utf-8")) > MAX_CONTEXT_NAME \
                or len(value.encode("utf-8")) > MAX_CONTEXT_VALUE:
            raise ValueError("encryption context entry too long")


def encode_context(context: Mapping[str, str]) -> bytes:
    """The canonical, unambiguous bytes of a context.

    ``label || u16 count || (u16 len(name) || name || u32 len(value) || value)*`` in
    order of the UTF-8 bytes of the names. Two contexts encode equally iff they are equal.
    """
    check_context(context)
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    out = [_CONTEXT_LABEL, struct.pack(">H", len(items))]
    for name, value in items:
        out += [struct.pack(">H", len(name)), name, struct.pack(">I", len(value)), value]
    return b"".join(out)


def aad(header: bytes, context: Mapping[str, str]) -> bytes:
    """The AES-GCM AAD of a wrap: label, u16 len(header), header, canonical context."""
    return b"".join((_AAD_LABEL, struct.pack(">H", len(header)), header,
                     encode_context(context)))


__all__ = ["Algorithm", "BLOB_VERSION", "GCM_NONCE_SIZE", "GCM_TAG_SIZE", "MAX_BLOB_SIZE",
           "ProviderKind", "WrappedKey", "aad", "check_context", "encode_context",
           "encode_header"]
