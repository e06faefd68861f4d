"""The embedded S3 store: buckets, objects and multipart uploads in a local directory.

This is the storage engine under ``encproxy.wsgi.apps.filestore``; it speaks
Python, not HTTP, and raises the S3 errors of ``encproxy.errors``.

Correctness never rests on in-process locks: gunicorn runs several processes
with several threads over one root, and encproxy replicas may share it.  It
rests on SQLite's write lock and atomic commits for the metadata index
(``index.py``: which versions exist, in which order, in which files), and on
three things the filesystem guarantees:

- ``rename(2)`` is atomic, so every file and every directory appears whole or
  not at all (``encproxy.filestore.atomic``);
- temp names are unique (``O_EXCL`` with random names) and upload ids are
  random, so writers never share a file;
- an open file stays readable after it is replaced or unlinked, so a reader
  keeps the version it opened.

Some operations claim a directory by renaming it away first (deleting a
bucket, completing or aborting an upload): whoever renames it owns it, and
every concurrent writer that targets the old path fails cleanly with ENOENT,
which maps to NoSuchBucket or NoSuchUpload.

Decisions the S3 layer must know are in the method docstrings and in
``encproxy/filestore/FORMAT.md``.
"""
from __future__ import annotations

import logging
import os
import shutil
import time

from encproxy.filestore import storefile as sf
from encproxy.filestore.atomic import is_stale
from encproxy.filestore.layout import UPLOAD_RECORD, check_upload_id, tmp_name_time
from encproxy.filestore.multipart import MIN_PART_SIZE, MultipartStore
from encproxy.filestore.objects import open_read

__all__ = ["MIN_PART_SIZE", "STALE_AFTER", "FileStore"]

log = logging.getLogger("encproxy.filestore")

STALE_AFTER = 3600.0  # seconds without a write before a tmp/ entry counts as abandoned


class FileStore(MultipartStore):
    """An S3 store in the directory ``root`` (created, mode 0700, if missing).

    Buckets and objects: ``objects.ObjectStore``; multipart uploads:
    ``multipart.MultipartStore``; the metadata index: ``index.Index``.
    Constructing one indexes a store written before the index (once), sweeps
    ``tmp/`` of entries abandoned for more than ``stale_after`` seconds
    (``cleanup_stale``) and removes object files no index row names that are as
    old (``sweep_unindexed``); every worker process does so at start-up, which is
    harmless because the sweeps only touch entries nobody has written to for
    that long.  The object sweep walks every object file, so of the workers that
    start within ``sweep_every`` seconds of one another only the first does it.
    """

    def __init__(self, root: str | os.PathLike[str], *, stale_after: float = STALE_AFTER,
                 sweep_every: float = STALE_AFTER) -> None:
        super().__init__(root)
        self.cleanup_stale(stale_after)
        self.sweep_unindexed(stale_after, sweep_every)

    # -- housekeeping ---------------------------------------------------------------
    def cleanup_stale(self, max_age: float = STALE_AFTER) -> int:
        """Remove ``tmp/`` entries nobody has written to for ``max_age`` seconds.

        Those are left by crashes: temp files of writes that never committed,
        staging directories, doomed buckets and uploads whose removal was cut
        short.  A claimed upload (a CompleteMultipartUpload that crashed) is put
        back in its bucket instead, so the client can complete it again.
        Returns the number of entries handled.
        """
        now = time.time()
        with os.scandir(self.layout.tmp) as it:
            entries = list(it)
        handled = 0
        for entry in entries:
            if not is_stale(entry, tmp_name_time(entry.name), max_age, now):
                continue
            handled += 1
            try:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
                elif entry.name.startswith("claim-"):
                    self._restore_claim(entry.path)
                else:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except FileNotFoundError:
                pass  # another process's sweep got there first
        return handled

    def _restore_claim(self, claim: str) -> None:
        path = os.path.join(claim, UPLOAD_RECORD)
        try:
            fd = open_read(path)
            try:
                upload = sf.upload_record(sf.read_header(fd, "upload", path), path)
            finally:
                os.close(fd)
            os.rename(claim, self.layout.upload(upload.bucket, check_upload_id(upload.upload_id)))
            log.warning("file store: restored upload %s of %s/%s after an interrupted "
                        "complete", upload.upload_id, upload.bucket, upload.key)
        except Exception:
            shutil.rmtree(claim, ignore_errors=True)
