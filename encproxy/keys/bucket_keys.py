"""Bucket keys for SSE-KMS (docs/FORMAT.md §16, docs/KEYS.md "Bucket keys").

As with S3 Bucket Keys, a worker draws a random 256-bit **bucket key**, has the key
provider wrap it once under the object's master key with a context that names the
bucket (``bucket_key_context``), and for ``lifetime`` seconds wraps the data keys of
new SSE-KMS objects in that bucket under it, locally, instead of calling the
provider once per object.  Every object still has its own random data key::

    wrap key = HKDF-Expand(HKDF-Extract("encproxy/1 bucket key", bucket key),
                           "encproxy/1 bucket key wrap", 32)
    AAD      = "encproxy/1 bucket key wrap" || 0x00 || bucket key id || encode_context(context)
    wrapped  = nonce (12 random bytes) || AES-256-GCM(wrap key, nonce, data key, AAD)

``context`` is the object's own (``crypto.keys.full_context``: bucket, key, object id,
the client's SSE-KMS context), so a wrapped data key is bound to its object exactly
as the provider's context binds it without a bucket key.

Readers unwrap a bucket key through a bounded in-process cache keyed by SHA-256 of
the blob and of its context (``DataKeyCache.digest``): a hit needs the same blob and
the same context the provider accepted, so the cache never unwraps what the provider
would refuse; and a worker that wrapped a bucket key caches it for reading as well.

Costs, stated in KEYS.md: a bucket key stays in memory for up to ``lifetime``, and a
master key disabled in the provider keeps wrapping and unwrapping for that long.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from encproxy import errors
from encproxy.format.constants import DATA_KEY_SIZE
from encproxy.format.envelope import BucketKeyRef, bucket_key_context, bucket_key_id
from encproxy.format.errors import EnvelopeAuthenticationFailed
from encproxy.keys.blob import WrappedKey, encode_context
from encproxy.keys.cache import DataKeyCache
from encproxy.lru import LRU

BUCKET_KEY_SIZE = 32
WRAP_NONCE_SIZE = 12
WRAPPED_DATA_KEY_SIZE = WRAP_NONCE_SIZE + DATA_KEY_SIZE + 16
_EXTRACT_SALT = b"encproxy/1 bucket key"
_WRAP_LABEL = b"encproxy/1 bucket key wrap"


class Wrapper(Protocol):
    """What a bucket key needs from a key provider (``crypto.keys.KeyWrapper``)."""

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes: ...


def wrap_key(bucket_key: bytes) -> bytes:
    """The AES-256-GCM key that wraps data keys under ``bucket_key``."""
    mac = HMAC(_EXTRACT_SALT, SHA256())
    mac.update(bucket_key)
    return HKDFExpand(SHA256(), 32, _WRAP_LABEL).derive(mac.finalize())


def wrap_aad(key_id: bytes, context: Mapping[str, str]) -> bytes:
    return b"".join((_WRAP_LABEL, b"\x00", key_id, encode_context(context)))


@dataclass(frozen=True)
class BucketKey:
    """An unwrapped bucket key and its envelope block. Holds a secret: never log it."""

    ref: BucketKeyRef
    key: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != BUCKET_KEY_SIZE:
            raise ValueError("a bucket key is 32 bytes")
        object.__setattr__(self, "_aead", AESGCM(wrap_key(self.key)))

    def wrap(self, data_key: bytes, context: Mapping[str, str],
             nonce: bytes | None = None) -> bytes:
        """The data key wrapped for one object (``nonce``: for known-answer vectors only)."""
        nonce = os.urandom(WRAP_NONCE_SIZE) if nonce is None else nonce
        if len(nonce) != WRAP_NONCE_SIZE or len(data_key) != DATA_KEY_SIZE:
            raise ValueError("a 12-byte nonce and a 32-byte data key")
        return nonce + self._aead.encrypt(nonce, bytes(data_key),
                                          wrap_aad(self.ref.id, context))

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key; EnvelopeAuthenticationFailed if it was not wrapped under this
        bucket key for this very context."""
        if len(wrapped) != WRAPPED_DATA_KEY_SIZE:
            raise EnvelopeAuthenticationFailed()
        try:
            return self._aead.decrypt(wrapped[:WRAP_NONCE_SIZE], wrapped[WRAP_NONCE_SIZE:],
                                      wrap_aad(self.ref.id, context))
        except InvalidTag:
            raise EnvelopeAuthenticationFailed() from None


def master_version(blob: bytes) -> str:
    """The master key version a provider blob names ('' where the provider hides it)."""
    return WrappedKey.from_bytes(blob).key_version


def check_ref(ref: BucketKeyRef) -> None:
    """A block whose id or master version is not its blob's has been rewritten:
    EnvelopeAuthenticationFailed, before anything is asked of the provider."""
    try:
        version = master_version(ref.blob)
    except errors.S3Error:
        raise EnvelopeAuthenticationFailed() from None
    if ref.id != bucket_key_id(ref.blob) or ref.master_version != version:
        raise EnvelopeAuthenticationFailed()


def open_bucket_key(wrapper: Wrapper, ref: BucketKeyRef, bucket: str) -> BucketKey:
    """Unwrap the bucket key of an envelope read at ``bucket`` (no cache)."""
    check_ref(ref)
    key = wrapper.unwrap(ref.blob, bucket_key_context(bucket))
    if len(key) != BUCKET_KEY_SIZE:
        raise EnvelopeAuthenticationFailed()
    return BucketKey(ref, bytes(key))


def new_bucket_key(wrapper: Wrapper, key_id: str, bucket: str) -> BucketKey:
    """A fresh bucket key for ``bucket``, wrapped once by the provider under ``key_id``."""
    key = os.urandom(BUCKET_KEY_SIZE)
    blob = wrapper.wrap(key_id, key, bucket_key_context(bucket))
    return BucketKey(BucketKeyRef.of(blob, master_version(blob)), key)


class _SingleFlight:
    """One load at a time per key: the threads that miss together wait for the first,
    so a burst of requests costs one provider call, not one per thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loading: dict[object, threading.Lock] = {}

    def run(self, key: object, cached: Callable[[], BucketKey | None],
            load: Callable[[], BucketKey]) -> BucketKey:
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        try:
            with gate:
                hit = cached()
                return hit if hit is not None else load()
        finally:
            with self._lock:
                if self._loading.get(key) is gate and not gate.locked():
                    del self._loading[key]


class BucketKeys:
    """One process's bucket keys: those it writes with (one per bucket and master key,
    for ``lifetime`` seconds, at most ``entries`` of them) and those it has unwrapped
    (at most ``entries``, each for ``lifetime`` seconds; least recently used out first)."""

    def __init__(self, wrapper: Wrapper, lifetime: float = 300.0, entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if lifetime <= 0 or entries < 1:
            raise ValueError("bucket keys need a positive lifetime and at least one entry")
        self.wrapper = wrapper
        self.lifetime = lifetime
        self.entries = entries
        self._writing: LRU[tuple[str, str], BucketKey] = LRU(entries, ttl=lifetime,
                                                              clock=clock)
        self._opened: LRU[bytes, BucketKey] = LRU(entries, ttl=lifetime, clock=clock)
        self._flight = _SingleFlight()

    def __repr__(self) -> str:
        return (f"BucketKeys(lifetime={self.lifetime}, entries={self.entries}, "
                f"writing={len(self._writing)}, opened={len(self._opened)})")

    def for_write(self, key_id: str, bucket: str) -> BucketKey:
        """The bucket key new objects in ``bucket`` under master key ``key_id`` (its
        normal form) are wrapped with: a fresh one once the last is ``lifetime`` old."""
        hit = self._writing.get((bucket, key_id))
        if hit is not None:
            return hit

        def load() -> BucketKey:
            fresh = new_bucket_key(self.wrapper, key_id, bucket)
            self._writing.put((bucket, key_id), fresh)
            self._opened.put(DataKeyCache.digest(fresh.ref.blob, bucket_key_context(bucket)),
                             fresh)
            return fresh
        return self._flight.run(("write", bucket, key_id),
                                lambda: self._writing.get((bucket, key_id)), load)

    def open(self, ref: BucketKeyRef, bucket: str) -> BucketKey:
        """The bucket key of an envelope read at ``bucket``: cached, or unwrapped once."""
        check_ref(ref)
        digest = DataKeyCache.digest(ref.blob, bucket_key_context(bucket))
        hit = self._opened.get(digest)
        if hit is not None:
            return hit

        def load() -> BucketKey:
            opened = open_bucket_key(self.wrapper, ref, bucket)
            self._opened.put(digest, opened)
            return opened
        return self._flight.run(("open", digest), lambda: self._opened.get(digest), load)

    def clear(self) -> None:
        self._writing.clear()
        self._opened.clear()


__all__ = ["BUCKET_KEY_SIZE", "BucketKey", "BucketKeys", "WRAPPED_DATA_KEY_SIZE", "check_ref",
           "master_version", "new_bucket_key", "open_bucket_key", "wrap_aad", "wrap_key"]
