"""What encproxy has learnt about stored objects, keyed by what can never change meaning.

A backend ETag names one stored body for good (it is the MD5 of the ciphertext,
or of the part MD5s; on the embedded store, a sealed object's fingerprint, unique per
write), so the facts derived from it (is it encrypted, its
plaintext size, its client-visible ETag) are immutable and can be cached for as
long as memory allows.  Listings use this to avoid a lookup per object on every
page (DESIGN.md §3).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectFacts:
    encrypted: bool
    plaintext_size: int
    etag: str              # the client-visible ETag, quoted
    mode: str = "none"     # none, AES256, aws:kms, sse-c
    key_id: str | None = None


class FactsCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], ObjectFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, backend_etag: str, stored_size: int) -> ObjectFacts | None:
        key = (backend_etag.strip('"'), stored_size)
        with self._lock:
            facts = self._entries.get(key)
            if facts is not None:
                self._entries.move_to_end(key)
            return facts

    def put(self, backend_etag: str, stored_size: int, facts: ObjectFacts) -> None:
        key = (backend_etag.strip('"'), stored_size)
        with self._lock:
            self._entries[key] = facts
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
