"""What encproxy has learnt about stored objects, keyed by what can never change meaning.

A backend ETag names one stored body for good (it is the MD5 of the ciphertext,
or of the part MD5s; on the embedded store, a sealed object's fingerprint, unique per
write), so the facts derived from it (is it encrypted, its
plaintext size, its client-visible ETag) are immutable and can be cached for as
long as memory allows.  The ETag and size are the backend's word, so the facts are
also bound to the object's bucket and key: a backend that gives one object another's
ETag and size gets nothing learnt about the other reported for it.  Listings use
this to avoid a lookup per object on every page (DESIGN.md §3).

An S3 backend's ETag names the stored body, not its metadata: a version's body stored
again under another version's envelope (same key) has the body's ETag.  So facts learnt
with the keys in hand record the object id of the envelope they were verified under,
and a read, which has the envelope, takes only facts of its object id
(:meth:`FactsCache.verified`).  A listing, which has no envelope, takes what is cached.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from encproxy.format.checksum import StoredChecksum
from encproxy.lru import LRU


@dataclass(frozen=True)
class ObjectFacts:
    encrypted: bool
    plaintext_size: int
    etag: str              # the client-visible ETag, quoted
    mode: str = "none"     # none, AES256, aws:kms, sse-c
    key_id: str | None = None
    # The sealed checksum (FORMAT.md §15), when it was opened with the ETag; None when
    # not known (not opened yet, or the object has none).
    checksum: StoredChecksum | None = None
    # The object id of the envelope the facts were verified under (None: learnt without
    # it); reads use only facts of their envelope's object id.
    object_id: bytes | None = None


class FactsCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: LRU[tuple[str, str, str, int], ObjectFacts] = LRU(max_entries)

    def get(self, bucket: str, key: str, backend_etag: str,
            stored_size: int) -> ObjectFacts | None:
        return self._entries.get((bucket, key, backend_etag.strip('"'), stored_size))

    def get_many(self, bucket: str,
                 objects: Iterable[tuple[str, str, int]]) -> list[ObjectFacts | None]:
        """``get`` of each ``(key, backend ETag, stored size)`` of ``bucket``."""
        return self._entries.get_many((bucket, key, etag.strip('"'), size)
                                      for key, etag, size in objects)

    def verified(self, bucket: str, key: str, backend_etag: str, stored_size: int,
                 object_id: bytes) -> ObjectFacts | None:
        """The facts of this stored body as opened under the envelope of ``object_id``."""
        facts = self.get(bucket, key, backend_etag, stored_size)
        return facts if facts is not None and facts.object_id == object_id else None

    def put(self, bucket: str, key: str, backend_etag: str, stored_size: int,
            facts: ObjectFacts) -> None:
        self._entries.put((bucket, key, backend_etag.strip('"'), stored_size), facts)
