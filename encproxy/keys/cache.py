"""The opt-in cache of unwrapped data keys (docs/KEYS.md §4).

Off unless ``[keys] cache_entries`` is above 0. When on, a successful ``unwrap`` is
remembered for ``cache_ttl`` seconds, at most ``cache_entries`` of them (least
recently used first out), keyed by SHA-256 of the blob and of the canonical
context: a hit needs the same blob *and* the same context, so the cache can never
unwrap what the provider would refuse. What it costs: a data key stays in process
memory for up to ``cache_ttl`` after its request ended, and a key disabled or
deleted in the provider keeps working for cached objects until their entries expire.
``wrap`` and ``generate_data_key`` are never cached: every object gets a fresh data key.

No file or network I/O; no third-party imports; the LRU is ``encproxy.lru``'s.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from encproxy.keys.blob import encode_context
from encproxy.keys.provider import Context, DataKey, KeyInfo, KeyProvider
from encproxy.lru import LRU


class DataKeyCache:
    """A bounded LRU of ``digest -> data key`` whose entries expire after ``ttl`` seconds."""

    def __init__(self, entries: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if entries < 1 or ttl <= 0:
            raise ValueError("a cache needs at least one entry and a positive TTL")
        self.entries = entries
        self.ttl = ttl
        self._items: LRU[bytes, bytes] = LRU(entries, ttl=ttl, clock=clock)

    def __repr__(self) -> str:
        return f"DataKeyCache(entries={self.entries}, ttl={self.ttl}, size={len(self._items)})"

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def digest(blob: bytes, context: Context) -> bytes:
        h = hashlib.sha256()
        h.update(len(blob).to_bytes(4, "big"))
        h.update(blob)
        h.update(encode_context(context))
        return h.digest()

    def get(self, digest: bytes) -> bytes | None:
        return self._items.get(digest)

    def put(self, digest: bytes, data_key: bytes) -> None:
        self._items.put(digest, data_key)

    def clear(self) -> None:
        self._items.clear()


class CachingProvider(KeyProvider):
    """A provider whose ``unwrap`` results are cached; everything else passes through."""

    def __init__(self, inner: KeyProvider, entries: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.cache = DataKeyCache(entries, ttl, clock)

    def __repr__(self) -> str:
        return f"CachingProvider({self.inner!r}, {self.cache!r})"

    def normalize(self, key_id: str) -> str:
        return self.inner.normalize(key_id)

    def generate_data_key(self, key_id: str, context: Context) -> DataKey:
        return self.inner.generate_data_key(key_id, context)

    def wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        return self.inner.wrap(key_id, data_key, context)

    def unwrap(self, blob: bytes, context: Context) -> bytes:
        digest = DataKeyCache.digest(bytes(blob), context)
        hit = self.cache.get(digest)
        if hit is not None:
            return hit
        data_key = self.inner.unwrap(blob, context)
        self.cache.put(digest, data_key)
        return data_key

    def describe(self, key_id: str) -> KeyInfo:
        return self.inner.describe(key_id)

    def key_exists(self, key_id: str) -> bool:
        return self.inner.key_exists(key_id)

    def close(self) -> None:
        self.cache.clear()
        self.inner.close()


__all__ = ["CachingProvider", "DataKeyCache"]
