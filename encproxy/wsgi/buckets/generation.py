"""A per-server counter of bucket-configuration changes, shared by its workers.

Each worker caches bucket encryption configurations (``config_store``).  Within one
server, a change made through one worker must be seen by every worker for the next
request: PutBucketEncryption and DeleteBucketEncryption (and bucket creation and
deletion) bump a counter kept in a small file in the per-start runtime directory
(``ENCPROXY_RUNTIME_DIR``, made by ``encproxy serve`` before the workers fork), and a
worker trusts a cached entry only if the counter has not moved since the entry was
fetched.  Reading it is one ``pread`` of 8 bytes on a file kept open.

Across replicas this does not apply: ``config_cache_seconds`` stays the bound.
"""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from encproxy.settings import RUNTIME_DIR_ENV

FILE_NAME = "bucket-config-generation"


class Generation:
    """The counter in ``path`` (created at 0 if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None   # opened on first use (in the worker, not the master)
        self._lock = threading.Lock()

    def _file(self) -> int:
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def current(self) -> int:
        raw = os.pread(self._file(), 8, 0)
        return int.from_bytes(raw, "big") if len(raw) == 8 else 0

    def bump(self) -> None:
        fd = self._file()
        with self._lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                value = (self.current() + 1) % (1 << 64)
                os.pwrite(fd, value.to_bytes(8, "big"), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


def from_environment() -> Generation | None:
    """The server's counter, if this process runs under ``encproxy serve``."""
    directory = os.environ.get(RUNTIME_DIR_ENV)
    if not directory or not os.path.isdir(directory):
        return None
    return Generation(Path(directory) / FILE_NAME)
