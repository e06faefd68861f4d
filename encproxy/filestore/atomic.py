"""Making files appear whole or not at all, with no locks.

Every write of the store goes through ``TempFile``: a uniquely named file in
``root/tmp/`` (``mkstemp``: ``O_EXCL`` with a random name, so any number of
threads and processes may write at once), written, ``fsync``-ed, and then
``os.replace``-d onto its final name, after which the directory is
``fsync``-ed too.  ``rename(2)`` is atomic: a reader sees the old file or the
new one, and two writers to one name leave the one that renamed last, whole.
A reader that opened the old file keeps reading it (POSIX keeps an unlinked
inode alive while it is open).  If anything fails before the rename (the
client's body raises or ends early, the disk fills) the temp file is removed
and nothing is visible.

The final rename goes by *path*, never through a directory descriptor, on
purpose: a bucket being deleted is first renamed away, and a writer that has
not renamed yet must then fail (``ENOENT``) instead of landing in the doomed
directory.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from encproxy.errors import InternalError
from encproxy.filestore.layout import tmp_prefix

_COMMIT_ATTEMPTS = 8


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir_durable(path: str) -> bool:
    """Create one directory level (mode 0700) and make its entry durable.

    Returns False if it already existed.  Never creates missing parents: a
    missing parent raises ``FileNotFoundError``, which callers read as "the
    bucket or upload is gone" rather than silently resurrecting it.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    fsync_dir(os.path.dirname(path))
    return True


def make_staging_dir(tmp_dir: str, kind: str) -> str:
    """A private directory in ``tmp/`` to assemble something renamed in whole."""
    return tempfile.mkdtemp(prefix=tmp_prefix(kind), dir=tmp_dir)


class TempFile:
    """A file being written in ``tmp/``; visible only after ``commit``.

    Use as a context manager: leaving the block without a successful
    ``commit`` (an exception, a short body) closes and removes the file.
    """

    def __init__(self, tmp_dir: str, kind: str) -> None:
        self.fd, self.path = tempfile.mkstemp(prefix=tmp_prefix(kind), dir=tmp_dir)
        self._done = False

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.discard()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append all of ``data`` (``os.write`` may write less than asked)."""
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def pwrite(self, data: bytes, offset: int) -> None:
        """Overwrite bytes in place (the fixed header, once the MD5 is known)."""
        if os.pwrite(self.fd, data, offset) != len(data):
            raise OSError(errno.EIO, "short pwrite", self.path)

    def discard(self) -> None:
        self._done = True
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def sync(self) -> None:
        """fsync and close the file (before a lock is taken: the rename is what needs it)."""
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def commit(self, dest_dir: str, dest_name: str, prepare: Callable[[], None]) -> None:
        """fsync (unless ``sync`` did), rename to ``dest_dir/dest_name``, fsync ``dest_dir``.

        ``prepare`` is called when ``dest_dir`` is missing: it creates what may
        be created (object fan-out levels) and raises the S3 error for what may
        not (NoSuchBucket, NoSuchUpload).  It is retried because a concurrent
        delete may remove an empty fan-out directory between ``prepare`` and
        the rename.
        """
        self.sync()
        dest = os.path.join(dest_dir, dest_name)
        for _ in range(_COMMIT_ATTEMPTS):
            try:
                dir_fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                prepare()
                continue
            try:
                try:
                    os.replace(self.path, dest)
                except FileNotFoundError:
                    if not os.path.exists(self.path):
                        raise InternalError("A temporary file vanished during the write.") \
                            from None
                    prepare()
                    continue
                self._done = True
                os.fsync(dir_fd)
                return
            finally:
                os.close(dir_fd)
        raise InternalError("The object could not be stored; please retry.")


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    Renames alone make writes atomic but not *conditional*: deciding on the current
    object and replacing it must be one step for every writer of that object, in any
    thread or process.  ``flock`` is per open file description, so each holder opens
    its own; closing releases it, also when the process dies.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_stale(entry: os.DirEntry[str], name_time: float | None, max_age: float,
             now: float | None = None) -> bool:
    """Whether a ``tmp/`` entry was last touched more than ``max_age`` seconds ago."""
    now = time.time() if now is None else now
    try:
        mtime = entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return False
    newest = mtime if name_time is None else max(mtime, name_time)
    return now - newest > max_age
