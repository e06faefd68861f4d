"""The envelope: what each encrypted object stores in its user metadata (FORMAT.md §2).

One metadata entry, ``x-amz-meta-encproxy``, holds the unpadded base64url of::

    u8  version            (1; 2: a single-part object whose seal carries its checksum)
    u8  kind               (1 single-part, 2 multipart)
    u8  suite              (1 AES-256-GCM, 2 AES-256-CTR-HMAC-SHA256)
    u8  protection         (0 SSE-S3, 1 SSE-KMS, 2 SSE-C: what S3 reports)
    16  object id          (random per object / per multipart upload)
    32  envelope tag       (HMAC-SHA256; binds the fields above to bucket and key,
                            and commits to the data key)
    u8  key id length      (1..128), then the key id (printable ASCII)
    u16 wrapped key length (1..512), then the provider's wrapped data key

The tag does not cover the key id or the wrapped key, so key rotation rewrites
them (a self-copy with REPLACE metadata) without touching the tag or the body.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from encproxy.format.constants import (
    ENVELOPE_FIXED_SIZE,
    ENVELOPE_TAG_SIZE,
    ENVELOPE_VERSIONS,
    FORMAT_VERSION,
    MAX_KEY_ID_SIZE,
    MAX_METADATA_VALUE_SIZE,
    MAX_WRAPPED_KEY_SIZE,
    METADATA_HEADER,
    METADATA_KEY,
    OBJECT_ID_SIZE,
    Kind,
    Protection,
    Suite,
)
from encproxy.format.errors import (
    EnvelopeMalformed,
    EnvelopeMissing,
    UnsupportedSuite,
    UnsupportedVersion,
)

_HEAD = struct.Struct(">BBBB16s32s")
_TAG_INPUT_PREFIX = b"encproxy/1 envelope tag\x00"
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Envelope:
    """The decoded envelope of one object."""

    kind: Kind
    suite: Suite
    object_id: bytes
    tag: bytes
    key_id: str
    wrapped_key: bytes
    version: int = FORMAT_VERSION
    protection: Protection = Protection.SSE_S3

    def __post_init__(self) -> None:
        if len(self.object_id) != OBJECT_ID_SIZE or len(self.tag) != ENVELOPE_TAG_SIZE:
            raise ValueError("object id or tag has the wrong length")
        try:
            _check_key_id(self.key_id.encode("ascii"))
        except (UnicodeEncodeError, EnvelopeMalformed):
            raise ValueError("key id must be 1..128 printable ASCII characters") from None
        if not 1 <= len(self.wrapped_key) <= MAX_WRAPPED_KEY_SIZE:
            raise ValueError("wrapped key must be 1..512 bytes")

    def to_bytes(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return b"".join((
            _HEAD.pack(self.version, self.kind, self.suite, self.protection, self.object_id,
                       self.tag),
            bytes([len(key_id)]), key_id,
            len(self.wrapped_key).to_bytes(2, "big"), self.wrapped_key))

    def encode(self) -> str:
        """The metadata value (ASCII, unpadded base64url)."""
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    def metadata(self) -> dict[str, str]:
        """``{METADATA_KEY: value}``, to merge into the object's user metadata."""
        return {METADATA_KEY: self.encode()}

    def replace_wrapping(self, key_id: str, wrapped_key: bytes) -> Envelope:
        """The same envelope with a new wrapped key (rotation); the tag is unchanged."""
        return Envelope(self.kind, self.suite, self.object_id, self.tag, key_id,
                        wrapped_key, self.version, self.protection)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        if not ENVELOPE_FIXED_SIZE + 2 <= len(raw) <= ENVELOPE_FIXED_SIZE + MAX_KEY_ID_SIZE \
                + MAX_WRAPPED_KEY_SIZE:
            raise EnvelopeMalformed()
        version, kind, suite, protection, object_id, tag = _HEAD.unpack_from(raw)
        if version not in ENVELOPE_VERSIONS:
            raise UnsupportedVersion()
        if suite not in Suite._value2member_map_:
            raise UnsupportedSuite()
        if kind not in Kind._value2member_map_ \
                or protection not in Protection._value2member_map_:
            raise EnvelopeMalformed()
        if version != FORMAT_VERSION and kind != Kind.SINGLE:
            raise EnvelopeMalformed()   # version 2 is a checksummed single-part object
        pos = _HEAD.size
        key_id_len = raw[pos]
        pos += 1
        key_id = raw[pos:pos + key_id_len]
        pos += key_id_len
        if len(key_id) != key_id_len or pos + 2 > len(raw):
            raise EnvelopeMalformed()
        _check_key_id(key_id)
        wrapped_len = int.from_bytes(raw[pos:pos + 2], "big")
        pos += 2
        wrapped = raw[pos:pos + wrapped_len]
        if not 1 <= wrapped_len <= MAX_WRAPPED_KEY_SIZE or len(wrapped) != wrapped_len \
                or pos + wrapped_len != len(raw):
            raise EnvelopeMalformed()
        return cls(Kind(kind), Suite(suite), object_id, tag, key_id.decode("ascii"),
                   wrapped, version, Protection(protection))

    @classmethod
    def decode(cls, value: str | bytes | None) -> Envelope:
        """Decode a metadata value; the length is capped before anything is parsed."""
        if value is None or value == "" or value == b"":
            raise EnvelopeMissing()
        raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        raw = raw.strip()
        if len(raw) > MAX_METADATA_VALUE_SIZE or not _B64_ALPHABET.issuperset(raw) \
                or len(raw) % 4 == 1:
            raise EnvelopeMalformed()
        try:
            decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise EnvelopeMalformed() from None
        return cls.from_bytes(decoded)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Envelope:
        """Find and decode the envelope in user metadata (keys with or without the
        ``x-amz-meta-`` prefix, any case)."""
        for name, value in metadata.items():
            lname = name.lower()
            if lname in (METADATA_KEY, METADATA_HEADER):
                return cls.decode(value)
        raise EnvelopeMissing()


def wrap_context(bucket: str, key: str, object_id: bytes) -> dict[str, str]:
    """The context a key provider binds a wrapped data key to (FORMAT.md §3.2)."""
    return {
        "encproxy-format": str(FORMAT_VERSION),
        "bucket": bucket,
        "key": key,
        "object-id": object_id.hex(),
    }


def envelope_tag_input(version: int, kind: Kind, suite: Suite, object_id: bytes,
                       bucket: str, key: str,
                       protection: Protection = Protection.SSE_S3) -> bytes:
    """The bytes the envelope tag authenticates (FORMAT.md §3.3)."""
    b, k = bucket.encode("utf-8"), key.encode("utf-8")
    if len(b) > 0xFFFF or len(k) > 0xFFFF:
        raise ValueError("bucket or key too long")
    return b"".join((
        _TAG_INPUT_PREFIX, bytes([version, kind, suite, protection]), object_id,
        len(b).to_bytes(2, "big"), b, len(k).to_bytes(2, "big"), k))


def metadata_size(envelope: Envelope) -> int:
    """Bytes the envelope uses of S3's 2 KB user-metadata budget (name + value)."""
    return len(METADATA_KEY) + len(envelope.encode())


def _check_key_id(key_id: bytes) -> None:
    if not 1 <= len(key_id) <= MAX_KEY_ID_SIZE or any(c < 0x20 or c > 0x7E for c in key_id):
        raise EnvelopeMalformed()
