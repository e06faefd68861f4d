"""Hashing beside the I/O: MD5 (ETags, Content-MD5) in a helper thread.

MD5 runs at about 550-730 MB/s on these machines, more than everything else a
PUT does per byte (DESIGN.md §5).  hashlib releases the GIL on large buffers,
so a helper thread can hash piece N while the request thread reads, encrypts or
writes piece N+1 on the other core.  Small bodies are hashed inline: starting a
thread costs more than hashing a few KiB.

Pure module: no I/O.
"""
from __future__ import annotations

import hashlib
import queue
import threading
from typing import Protocol

INLINE_BELOW = 1 << 20     # bodies smaller than this are hashed in the caller's thread
QUEUE_DEPTH = 4            # pieces in flight (about 4 MiB): bounds memory


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


class BackgroundDigest:
    """A hashlib digest fed through a bounded queue to a helper thread.

    ``update`` takes ``bytes`` (immutable, so the caller may reuse nothing it
    handed over); other buffers are copied.  ``digest()`` waits for the thread;
    ``close()`` stops it without a result (on failure paths).
    """

    def __init__(self, name: str = "md5") -> None:
        self._hash = hashlib.new(name, usedforsecurity=False)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="encproxy-digest", daemon=True)
        self._thread.start()
        self._result: bytes | None = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._hash.update(item)

    def update(self, data: bytes) -> None:
        if self._result is not None:
            raise ValueError("digest already finalised")
        self._queue.put(data if isinstance(data, bytes) else bytes(data))

    def digest(self) -> bytes:
        if self._result is None:
            self._queue.put(None)
            self._thread.join()
            self._result = self._hash.digest()
        return self._result

    def hexdigest(self) -> str:
        return self.digest().hex()

    def close(self) -> None:
        if self._result is None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def md5_for(length: int) -> Digest:
    """An MD5 for a body of ``length`` bytes: in a helper thread when that pays."""
    if length >= INLINE_BELOW:
        return BackgroundDigest("md5")
    return hashlib.md5(usedforsecurity=False)


def close(digest: Digest) -> None:
    """Stop a digest's helper thread, if it has one (failure paths)."""
    if isinstance(digest, BackgroundDigest):
        digest.close()
