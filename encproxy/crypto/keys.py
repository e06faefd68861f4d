"""Data keys, the key schedule and the envelope (docs/FORMAT.md §3).

Each object (or multipart upload) gets a fresh 32-byte data key from the OS
CSPRNG and a fresh 16-byte object id.  Everything else is derived with HKDF-SHA256
(RFC 5869)::

    PRK          = HKDF-Extract(salt = object id, IKM = data key)
    envelope key = HKDF-Expand(PRK, "encproxy/1 envelope", 32)
    body key     = HKDF-Expand(PRK, "encproxy/1 body" || suite, suite.key_size)
    segment key  = HKDF-Expand(PRK, "encproxy/1 segment" || suite || u32 part || salt,
                               suite.key_size)

The envelope tag is ``HMAC-SHA256(envelope key, envelope_tag_input(...))``.  It binds
version, kind, suite and object id to the bucket and key, and, being a 256-bit
HMAC under a key derived from the data key, commits the object to that data key.

A key provider wraps the data key: ``wrap(key_id, data_key, context)`` and
``unwrap(blob, context)``, with ``context = wrap_context(bucket, key, object_id)``.
Or, for SSE-KMS with a bucket key (FORMAT.md §16), a bucket key the provider wrapped
once wraps it, with the same context (``encproxy.keys.bucket_keys``).
Provider exceptions pass through unchanged (they are not integrity errors).
"""
from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from encproxy.crypto.suites import RecordCipher, record_cipher
from encproxy.format.constants import (
    CHECKSUMMED_ENVELOPE_VERSION,
    DATA_KEY_SIZE,
    FORMAT_VERSION,
    OBJECT_ID_SIZE,
    SEGMENT_SALT_SIZE,
    Kind,
    Protection,
    Suite,
)
from encproxy.format.envelope import BucketKeyRef, Envelope, envelope_tag_input, wrap_context
from encproxy.format.errors import EnvelopeAuthenticationFailed
from encproxy.format.records import body_label, envelope_label, segment_label
from encproxy.keys.bucket_keys import BucketKey, open_bucket_key


class KeyWrapper(Protocol):
    """What the format needs from a key provider."""

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes: ...


class BucketKeyOpener(Protocol):
    """Where readers get the bucket key an envelope names (``BucketKeys``: cached)."""

    def open(self, ref: BucketKeyRef, bucket: str) -> BucketKey: ...


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = HMAC(key, SHA256())
    mac.update(data)
    return mac.finalize()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return _hmac_sha256(salt, ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    if not 0 < length <= 255 * 32:
        raise ValueError("bad HKDF output length")
    return HKDFExpand(SHA256(), length, info).derive(prk)


@dataclass(frozen=True)
class ObjectKeys:
    """The key material of one object or multipart upload, derived from its data key.

    Holds secrets: never log it (its repr shows only public fields).
    """

    kind: Kind
    suite: Suite
    object_id: bytes
    data_key: bytes = field(repr=False)
    # The envelope version: 2 for a single-part object whose seal carries its checksum
    # (FORMAT.md §15).  Copies that keep the body (rebind) keep it.
    version: int = FORMAT_VERSION
    _prk: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != DATA_KEY_SIZE or len(self.object_id) != OBJECT_ID_SIZE:
            raise ValueError("data key is 32 bytes and object id 16 bytes")
        object.__setattr__(self, "_prk", hkdf_extract(self.object_id, self.data_key))

    @classmethod
    def generate(cls, kind: Kind, suite: Suite, version: int = FORMAT_VERSION) -> ObjectKeys:
        """Fresh keys for a new object: random data key, random object id."""
        return cls(Kind(kind), Suite(suite), os.urandom(OBJECT_ID_SIZE),
                   os.urandom(DATA_KEY_SIZE), version)

    @property
    def checksummed(self) -> bool:
        """A single-part object whose sealed tail carries its checksum (envelope v2)."""
        return self.version == CHECKSUMMED_ENVELOPE_VERSION

    def envelope_tag(self, bucket: str, key: str, version: int = FORMAT_VERSION,
                     protection: Protection = Protection.SSE_S3,
                     bucket_key: BucketKeyRef | None = None) -> bytes:
        mac_key = hkdf_expand(self._prk, envelope_label(), 32)
        data = envelope_tag_input(version, self.kind, self.suite, self.object_id, bucket, key,
                                  protection, bucket_key)
        return _hmac_sha256(mac_key, data)

    def envelope(self, key_id: str, wrapped_key: bytes, bucket: str, key: str,
                 protection: Protection = Protection.SSE_S3,
                 bucket_key: BucketKeyRef | None = None) -> Envelope:
        """The envelope of this object at ``bucket/key`` (``bucket_key``: the block of
        the bucket key that wrapped ``wrapped_key``)."""
        return Envelope(self.kind, self.suite, self.object_id,
                        self.envelope_tag(bucket, key, self.version, protection, bucket_key),
                        key_id, wrapped_key, self.version, protection, bucket_key)

    def verify(self, envelope: Envelope, bucket: str, key: str) -> None:
        """Check the envelope tag (constant time); raise EnvelopeAuthenticationFailed."""
        expected = self.envelope_tag(bucket, key, envelope.version, envelope.protection,
                                     envelope.bucket_key)
        if not hmac.compare_digest(expected, envelope.tag) \
                or (envelope.kind, envelope.suite, envelope.object_id, envelope.version) \
                != (self.kind, self.suite, self.object_id, self.version):
            raise EnvelopeAuthenticationFailed()

    def body_cipher(self) -> RecordCipher:
        """The record cipher of a single-part body (chunks and the sealed MD5)."""
        if self.kind is not Kind.SINGLE:
            raise ValueError("not a single-part object")
        return record_cipher(self.suite, hkdf_expand(
            self._prk, body_label(self.suite), self.suite.key_size))

    def segment_cipher(self, part_number: int, salt: bytes) -> RecordCipher:
        """The record cipher of one upload of one part (or of a trailer)."""
        if self.kind is not Kind.MULTIPART:
            raise ValueError("not a multipart object")
        if len(salt) != SEGMENT_SALT_SIZE:
            raise ValueError("segment salt is 16 bytes")
        return record_cipher(self.suite, hkdf_expand(
            self._prk, segment_label(self.suite, part_number, salt), self.suite.key_size))

    def context(self, bucket: str, key: str,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return full_context(bucket, key, self.object_id, extra)


def full_context(bucket: str, key: str, object_id: bytes,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The provider context: the format's fields plus the client's own encryption context
    (``x-amz-server-side-encryption-context``), which may not redefine the format's."""
    base = wrap_context(bucket, key, object_id)
    if extra:
        if base.keys() & extra.keys():
            raise ValueError("the encryption context redefines a reserved field")
        return {**extra, **base}
    return base


def _wrapped(wrapper: KeyWrapper, key_id: str, data_key: bytes, context: Mapping[str, str],
             bucket_key: BucketKey | None) -> tuple[bytes, BucketKeyRef | None]:
    """The data key wrapped by the provider, or under ``bucket_key`` (FORMAT.md §16)."""
    if bucket_key is None:
        return wrapper.wrap(key_id, data_key, context), None
    return bucket_key.wrap(data_key, context), bucket_key.ref


def new_object(wrapper: KeyWrapper, key_id: str, bucket: str, key: str, *,
               kind: Kind, suite: Suite = Suite.AES256_GCM,
               protection: Protection = Protection.SSE_S3,
               extra_context: Mapping[str, str] | None = None,
               version: int = FORMAT_VERSION,
               bucket_key: BucketKey | None = None) -> tuple[ObjectKeys, Envelope]:
    """Keys and envelope for a new object (PutObject) or upload (CreateMultipartUpload);
    ``version`` 2 for a single-part object that seals its checksum (FORMAT.md §15);
    ``bucket_key``: wrap the data key under it, not by the provider (SSE-KMS, §16).

    Store ``envelope.metadata()`` in the object's user metadata.
    """
    if version != FORMAT_VERSION and kind is not Kind.SINGLE:
        raise ValueError("only single-part objects have envelope version 2")
    keys = ObjectKeys.generate(kind, suite, version)
    wrapped, ref = _wrapped(wrapper, key_id, keys.data_key,
                            keys.context(bucket, key, extra_context), bucket_key)
    return keys, keys.envelope(key_id, wrapped, bucket, key, protection, ref)


def open_object(wrapper: KeyWrapper, envelope: Envelope, bucket: str, key: str,
                extra_context: Mapping[str, str] | None = None,
                bucket_keys: BucketKeyOpener | None = None) -> ObjectKeys:
    """Unwrap and verify: the keys of the object stored at ``bucket/key``.

    An envelope with a bucket key has it opened by ``bucket_keys`` (a cache), or, without
    one, unwrapped by ``wrapper`` for this call alone.
    Raises EnvelopeAuthenticationFailed when the envelope does not belong to this
    object or its data key; provider errors pass through.
    """
    context = full_context(bucket, key, envelope.object_id, extra_context)
    if envelope.bucket_key is not None:
        bucket_key = (bucket_keys.open(envelope.bucket_key, bucket) if bucket_keys is not None
                      else open_bucket_key(wrapper, envelope.bucket_key, bucket))
        data_key = bucket_key.unwrap(envelope.wrapped_key, context)
    else:
        data_key = wrapper.unwrap(envelope.wrapped_key, context)
    if len(data_key) != DATA_KEY_SIZE:
        raise EnvelopeAuthenticationFailed()
    keys = ObjectKeys(envelope.kind, envelope.suite, envelope.object_id, bytes(data_key),
                      envelope.version)
    keys.verify(envelope, bucket, key)
    return keys


def rebind(wrapper: KeyWrapper, keys: ObjectKeys, key_id: str, bucket: str,
           key: str, protection: Protection = Protection.SSE_S3,
           extra_context: Mapping[str, str] | None = None,
           bucket_key: BucketKey | None = None) -> Envelope:
    """Envelope for a byte-for-byte copy of this object's body to ``bucket/key``.

    CopyObject (and UploadPartCopy of whole segments) may keep the body and store
    this envelope instead of re-encrypting: the copy shares the data key and
    object id; its envelope tag and wrapping are bound to the new location (and to
    the destination bucket's ``bucket_key``, if given).
    """
    wrapped, ref = _wrapped(wrapper, key_id, keys.data_key,
                            keys.context(bucket, key, extra_context), bucket_key)
    return keys.envelope(key_id, wrapped, bucket, key, protection, ref)


def rewrap(wrapper: KeyWrapper, envelope: Envelope, bucket: str, key: str,
           key_id: str, extra_context: Mapping[str, str] | None = None,
           bucket_keys: BucketKeyOpener | None = None) -> Envelope:
    """Key rotation: the same envelope with the data key wrapped under ``key_id``.

    Verifies the old envelope first; the body is unchanged, and so is the tag, unless
    the old envelope had a bucket key: the new one is wrapped by the provider, without
    a bucket key, and its tag no longer covers a bucket-key block (FORMAT.md §16).
    """
    keys = open_object(wrapper, envelope, bucket, key, extra_context, bucket_keys)
    wrapped = wrapper.wrap(key_id, keys.data_key, keys.context(bucket, key, extra_context))
    if envelope.bucket_key is not None:
        return keys.envelope(key_id, wrapped, bucket, key, envelope.protection)
    return envelope.replace_wrapping(key_id, wrapped)


def new_segment_salt() -> bytes:
    return os.urandom(SEGMENT_SALT_SIZE)


__all__ = [
    "BucketKeyOpener", "KeyWrapper", "ObjectKeys", "full_context", "hkdf_expand",
    "hkdf_extract", "new_object", "new_segment_salt", "open_object", "rebind", "rewrap",
]
