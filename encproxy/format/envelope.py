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
    [bucket-key block (SSE-KMS only, FORMAT.md §16): u8 1, 16-byte bucket key id,
     u8 + master key version (0..64 printable ASCII), u16 + bucket key blob (1..512);
     the wrapped data key is then wrapped under that bucket key, not by the provider]

The tag does not cover the key id or the wrapped key, so key rotation rewrites
them (a self-copy with REPLACE metadata) without touching the tag or the body.  It
does cover the bucket-key block's presence, id and master key version, and the id
names the blob (``bucket_key_id``), so none of them can be added, dropped or changed.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from encproxy.format.constants import (
    BUCKET_KEY_BLOCK_TYPE,
    BUCKET_KEY_ID_SIZE,
    ENVELOPE_FIXED_SIZE,
    ENVELOPE_TAG_SIZE,
    ENVELOPE_VERSIONS,
    FORMAT_VERSION,
    MAX_BUCKET_KEY_BLOB_SIZE,
    MAX_BUCKET_KEY_VERSION_SIZE,
    MAX_ENVELOPE_SIZE,
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
_BUCKET_KEY_ID_LABEL = b"encproxy/1 bucket key id\x00"
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def bucket_key_id(blob: bytes) -> bytes:
    """The id of a bucket key: SHA-256 of its provider blob, truncated (FORMAT.md §16)."""
    return hashlib.sha256(_BUCKET_KEY_ID_LABEL + bytes(blob)).digest()[:BUCKET_KEY_ID_SIZE]


@dataclass(frozen=True)
class BucketKeyRef:
    """The bucket-key block of an envelope: which bucket key wraps the data key.

    ``id`` is ``bucket_key_id(blob)`` when written; a reader checks that before it
    trusts anything else here.  ``master_version`` is the master key version the blob
    names ('' for AWS KMS, which hides versions).  Holds no secret.
    """

    id: bytes
    master_version: str
    blob: bytes

    def __post_init__(self) -> None:
        if len(self.id) != BUCKET_KEY_ID_SIZE:
            raise ValueError("a bucket key id is 16 bytes")
        version = self.master_version.encode("ascii", "replace")
        if len(version) > MAX_BUCKET_KEY_VERSION_SIZE or any(
                c < 0x21 or c > 0x7E for c in version):
            raise ValueError("master key version must be 0..64 printable ASCII characters")
        if not 1 <= len(self.blob) <= MAX_BUCKET_KEY_BLOB_SIZE:
            raise ValueError("bucket key blob must be 1..512 bytes")

    @classmethod
    def of(cls, blob: bytes, master_version: str) -> BucketKeyRef:
        return cls(bucket_key_id(blob), master_version, bytes(blob))

    def to_bytes(self) -> bytes:
        version = self.master_version.encode("ascii")
        return b"".join((bytes([BUCKET_KEY_BLOCK_TYPE]), self.id, bytes([len(version)]),
                         version, len(self.blob).to_bytes(2, "big"), self.blob))

    def tag_input(self) -> bytes:
        """What the envelope tag covers of the block: its type, id and master version."""
        version = self.master_version.encode("ascii")
        return b"".join((bytes([BUCKET_KEY_BLOCK_TYPE]), self.id, bytes([len(version)]),
                         version))

    @classmethod
    def from_bytes(cls, raw: bytes) -> BucketKeyRef:
        """Decode a whole block (nothing may follow it); EnvelopeMalformed otherwise."""
        if len(raw) < 1 + BUCKET_KEY_ID_SIZE + 1 + 2 or raw[0] != BUCKET_KEY_BLOCK_TYPE:
            raise EnvelopeMalformed()
        pos = 1 + BUCKET_KEY_ID_SIZE
        id_ = raw[1:pos]
        version_len = raw[pos]
        pos += 1
        version = raw[pos:pos + version_len]
        pos += version_len
        if len(version) != version_len or version_len > MAX_BUCKET_KEY_VERSION_SIZE \
                or any(c < 0x21 or c > 0x7E for c in version) or pos + 2 > len(raw):
            raise EnvelopeMalformed()
        blob_len = int.from_bytes(raw[pos:pos + 2], "big")
        pos += 2
        blob = raw[pos:pos + blob_len]
        if not 1 <= blob_len <= MAX_BUCKET_KEY_BLOB_SIZE or len(blob) != blob_len \
                or pos + blob_len != len(raw):
            raise EnvelopeMalformed()
        return cls(bytes(id_), version.decode("ascii"), bytes(blob))


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
    # The bucket key that wraps the data key (FORMAT.md §16); None: the provider wraps it.
    bucket_key: BucketKeyRef | None = None

    def __post_init__(self) -> None:
        if len(self.object_id) != OBJECT_ID_SIZE or len(self.tag) != ENVELOPE_TAG_SIZE:
            raise ValueError("object id or tag has the wrong length")
        try:
            _check_key_id(self.key_id.encode("ascii"))
        except (UnicodeEncodeError, EnvelopeMalformed):
            raise ValueError("key id must be 1..128 printable ASCII characters") from None
        if not 1 <= len(self.wrapped_key) <= MAX_WRAPPED_KEY_SIZE:
            raise ValueError("wrapped key must be 1..512 bytes")
        if self.bucket_key is not None and self.protection is not Protection.SSE_KMS:
            raise ValueError("only SSE-KMS objects use bucket keys")

    @property
    def master_blob(self) -> bytes:
        """The provider blob that names this object's master key: the bucket key's when a
        bucket key wraps the data key, else the wrapped data key itself."""
        return self.bucket_key.blob if self.bucket_key is not None else self.wrapped_key

    def to_bytes(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return b"".join((
            _HEAD.pack(self.version, self.kind, self.suite, self.protection, self.object_id,
                       self.tag),
            bytes([len(key_id)]), key_id,
            len(self.wrapped_key).to_bytes(2, "big"), self.wrapped_key,
            self.bucket_key.to_bytes() if self.bucket_key is not None else b""))

    def encode(self) -> str:
        """The metadata value (ASCII, unpadded base64url)."""
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    def metadata(self) -> dict[str, str]:
        """``{METADATA_KEY: value}``, to merge into the object's user metadata."""
        return {METADATA_KEY: self.encode()}

    def replace_wrapping(self, key_id: str, wrapped_key: bytes) -> Envelope:
        """The same envelope with a new wrapped key (rotation); the tag is unchanged.
        Only for an envelope without a bucket key (whose block the tag covers)."""
        if self.bucket_key is not None:
            raise ValueError("an envelope with a bucket key needs a new tag to be rewrapped")
        return Envelope(self.kind, self.suite, self.object_id, self.tag, key_id,
                        wrapped_key, self.version, self.protection)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        if not ENVELOPE_FIXED_SIZE + 2 <= len(raw) <= MAX_ENVELOPE_SIZE:
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
        if not 1 <= wrapped_len <= MAX_WRAPPED_KEY_SIZE or len(wrapped) != wrapped_len:
            raise EnvelopeMalformed()
        pos += wrapped_len
        bucket_key = None
        if pos != len(raw):   # a bucket-key block, and nothing after it
            bucket_key = BucketKeyRef.from_bytes(raw[pos:])
            if protection != Protection.SSE_KMS:
                raise EnvelopeMalformed()
        return cls(Kind(kind), Suite(suite), object_id, tag, key_id.decode("ascii"),
                   wrapped, version, Protection(protection), bucket_key)

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


def bucket_key_context(bucket: str) -> dict[str, str]:
    """The context a key provider binds a bucket key to (FORMAT.md §16): the bucket, never
    an object, as S3 Bucket Keys use the bucket's ARN."""
    return {"encproxy-format": str(FORMAT_VERSION), "purpose": "bucket-key", "bucket": bucket}


def envelope_tag_input(version: int, kind: Kind, suite: Suite, object_id: bytes,
                       bucket: str, key: str,
                       protection: Protection = Protection.SSE_S3,
                       bucket_key: BucketKeyRef | None = None) -> bytes:
    """The bytes the envelope tag authenticates (FORMAT.md §3.3; with a bucket key, its
    block's type, id and master key version follow, §16)."""
    b, k = bucket.encode("utf-8"), key.encode("utf-8")
    if len(b) > 0xFFFF or len(k) > 0xFFFF:
        raise ValueError("bucket or key too long")
    return b"".join((
        _TAG_INPUT_PREFIX, bytes([version, kind, suite, protection]), object_id,
        len(b).to_bytes(2, "big"), b, len(k).to_bytes(2, "big"), k,
        bucket_key.tag_input() if bucket_key is not None else b""))


def metadata_size(envelope: Envelope) -> int:
    """Bytes the envelope uses of S3's 2 KB user-metadata budget (name + value)."""
    return len(METADATA_KEY) + len(envelope.encode())


def _check_key_id(key_id: bytes) -> None:
    if not 1 <= len(key_id) <= MAX_KEY_ID_SIZE or any(c < 0x20 or c > 0x7E for c in key_id):
        raise EnvelopeMalformed()
