"""Buckets and objects: the core of the file store (see ``store.py`` for the whole).

Every write goes through ``TempFile`` (``atomic.py``) and every read opens one
file and checks its header (``storefile.py``); this module maps S3 operations
on buckets and objects onto those two, and owns the one O(n) scan that
listings use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from operator import attrgetter

from encproxy import digests
from encproxy.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InternalError,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
)
from encproxy.filestore import etag as etags
from encproxy.filestore import storefile as sf
from encproxy.filestore.atomic import (
    TempFile,
    fsync_dir,
    locked,
    make_staging_dir,
    mkdir_durable,
)
from encproxy.filestore.layout import (
    BUCKET_RECORD,
    Layout,
    ObjectPath,
    check_bucket_name,
    check_text,
    tmp_prefix,
)
from encproxy.filestore.listing import paginate
from encproxy.filestore.records import (
    BucketRecord,
    ListResult,
    ObjectMeta,
    ObjectRecord,
    check_acl,
)
from encproxy.filestore.streams import BodyReader, ObjectBody, copy_range, receive
from encproxy.s3.acl import Acl
from encproxy.s3.cors import CorsConfiguration, check_configuration

log = logging.getLogger("encproxy.filestore")


def md5_hash() -> hashlib._Hash:
    return hashlib.md5(usedforsecurity=False)


def _fingerprint(digest_of: Callable[[], bytes] | None) -> bytes:
    assert digest_of is not None
    digest = digest_of()
    if len(digest) != 16:
        raise InternalError("A stored digest must be 16 bytes.")
    return digest


def check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InvalidArgument("The content length must be a non-negative integer.",
                              ArgumentName="Content-Length", ArgumentValue=str(length))
    return length


def check_max(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative integer.",
                              ArgumentName=name, ArgumentValue=str(value))
    return value


def open_read(path: str) -> int:
    return os.open(path, os.O_RDONLY)


# Called with the current object's ETag (unquoted; None: no object) while its commit
# holds the object's lock; raises the S3 error to refuse the write.
Precondition = Callable[[str | None], None]


class ObjectStore:
    """Buckets, objects and listings below one root (created, mode 0700, if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.layout = Layout(os.fspath(root))
        self.layout.create()

    # -- buckets --------------------------------------------------------------------
    def list_buckets(self) -> list[BucketRecord]:
        """All buckets, sorted by name."""
        out = []
        with os.scandir(self.layout.buckets) as it:
            names = [e.name for e in it]
        for name in names:
            try:
                out.append(self._read_bucket(name))
            except (NoSuchBucket, InternalError):
                continue  # deleted meanwhile, or damaged (logged)
            except Exception:  # a stray entry that is not a bucket name
                log.warning("file store: ignoring stray entry %r in buckets/", name)
        return sorted(out, key=attrgetter("name"))

    def bucket_exists(self, name: str) -> bool:
        return os.path.isdir(self.layout.bucket(name))

    def require_bucket(self, name: str) -> None:
        if not self.bucket_exists(name):
            raise NoSuchBucket(BucketName=name)

    def create_bucket(self, name: str, acl: Acl | None = None) -> BucketRecord:
        """Create an empty bucket with ``acl`` (None: private); BucketAlreadyOwnedByYou
        if it exists.

        (S3 in us-east-1 answers 200 to re-creating one's own bucket; that
        choice is the S3 layer's.)  The bucket is assembled in ``tmp/`` and
        renamed into ``buckets/`` whole; of two concurrent creators exactly one
        succeeds.
        """
        path = self.layout.bucket(name)
        if os.path.isdir(path):
            raise BucketAlreadyOwnedByYou(BucketName=name)
        staging = make_staging_dir(self.layout.tmp, "bucket")
        now = time.time()
        try:
            os.mkdir(os.path.join(staging, "objects"), 0o700)
            os.mkdir(os.path.join(staging, "uploads"), 0o700)
            self._write_record(os.path.join(staging, BUCKET_RECORD),
                               sf.bucket_fields(name, check_acl(acl)), now)
            fsync_dir(staging)
            try:
                os.rename(staging, path)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise BucketAlreadyOwnedByYou(BucketName=name) from None
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.layout.buckets)
        return BucketRecord(name, now, acl)

    def bucket(self, name: str) -> BucketRecord:
        """The bucket's record (creation time, ACL, CORS configuration); NoSuchBucket."""
        return self._read_bucket(name)

    def put_bucket_acl(self, name: str, acl: Acl | None) -> None:
        """Replace the bucket's ACL (None: private); ``_replace_bucket_record``."""
        check_acl(acl)
        self._replace_bucket_record(name, "bucketacl",
                                    lambda current: dataclasses.replace(current, acl=acl))

    def put_bucket_cors(self, name: str, cors: CorsConfiguration | None) -> None:
        """Replace the bucket's CORS configuration (None: delete it);
        ``_replace_bucket_record``."""
        if cors is not None:
            check_configuration(cors)
        self._replace_bucket_record(name, "bucketcors",
                                    lambda current: dataclasses.replace(current, cors=cors))

    def _replace_bucket_record(self, name: str, kind: str,
                               change: Callable[[BucketRecord], BucketRecord]) -> None:
        """Rename a new bucket record, ``change(current)``, over the old one, creation
        time kept.  A bucket deleted meanwhile: NoSuchBucket (the rename goes by path
        into the bucket's directory, which a delete renames away).

        The read and the rename hold the bucket's lock (one of the 256 stripes of
        ``locks/``, by a hash of the name), so that of two changes to different parts
        of the record (PutBucketAcl and PutBucketCors) neither undoes the other."""
        def gone() -> None:
            raise NoSuchBucket(BucketName=name)

        with locked(self._bucket_lock(name)):
            new = change(self._read_bucket(name))
            record = sf.encode_fields(sf.bucket_fields(name, new.acl, new.cors))
            with TempFile(self.layout.tmp, kind) as tf:
                tf.write(sf.encode_fixed(len(record), 0, sf.MD5_OF_EMPTY, new.created) + record)
                tf.commit(self.layout.bucket(name), BUCKET_RECORD, gone)

    def _bucket_lock(self, name: str) -> str:
        # A stripe of its own hash space ("bucket\0" prefix), shared with object keys'
        # stripes; no holder of one stripe ever waits for another, so none deadlocks.
        digest = hashlib.sha256(b"bucket\0" + check_bucket_name(name).encode()).hexdigest()
        return os.path.join(self.layout.locks, digest[0:2])

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket that holds no objects; BucketNotEmpty otherwise.

        Multipart uploads in progress do not keep a bucket alive: they are
        discarded with it.  That is what AWS S3 does (its DeleteBucket
        documentation asks only for objects, versions and delete markers to be
        gone, and a bucket with only incomplete uploads deletes), and it means a
        client never needs ListMultipartUploads to delete a bucket.

        The bucket is renamed away first, then checked again: an object that a
        concurrent PUT renamed in between makes the delete fail and the bucket
        is put back, so a successful PUT is never lost to a delete.
        """
        path = self.layout.bucket(name)
        if not os.path.isdir(path):
            raise NoSuchBucket(BucketName=name)
        if _has_files(os.path.join(path, "objects")):
            raise BucketNotEmpty(BucketName=name)
        doomed = os.path.join(self.layout.tmp, tmp_prefix("delbucket") + secrets.token_hex(8))
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            raise NoSuchBucket(BucketName=name) from None
        if _has_files(os.path.join(doomed, "objects")):
            self._put_bucket_back(doomed, path, name)
            raise BucketNotEmpty(BucketName=name)
        fsync_dir(self.layout.buckets)
        shutil.rmtree(doomed, ignore_errors=True)

    def _put_bucket_back(self, doomed: str, path: str, name: str) -> None:
        try:
            os.rename(doomed, path)
            return
        except OSError:
            pass
        # Someone created a new bucket of that name within the last instant: keep the
        # old one's objects where an operator will find them rather than lose them.
        os.makedirs(self.layout.lost_found, mode=0o700, exist_ok=True)
        dest = os.path.join(self.layout.lost_found, f"{name}-{time.time_ns():x}")
        os.rename(doomed, dest)
        log.error("file store: bucket %s could not be restored after a failed delete; "
                  "its objects are in %s", name, dest)

    def _read_bucket(self, name: str) -> BucketRecord:
        path = self.layout.bucket_record(name)
        try:
            fd = open_read(path)
        except FileNotFoundError:
            raise NoSuchBucket(BucketName=name) from None
        try:
            return sf.bucket_record(sf.read_header(fd, "bucket", path), path, name)
        finally:
            os.close(fd)

    # -- objects --------------------------------------------------------------------
    def put_object(self, bucket: str, key: str, body: BodyReader, length: int,
                   meta: ObjectMeta | None = None,
                   digest_of: Callable[[], bytes] | None = None,
                   precondition: Precondition | None = None) -> ObjectRecord:
        """Store exactly ``length`` bytes of ``body`` under ``key``, atomically.

        Streams in 1 MiB pieces and computes the MD5 (the ETag) on the way, unless
        ``digest_of`` is given: then it is called once the body is read and its 16
        bytes are kept instead (the fingerprint of a sealed object, whose ciphertext
        needs no MD5: environ.STORED_DIGEST).  If
        the body raises, that exception propagates; if it ends early,
        IncompleteBody; either way nothing becomes visible and the temp file is
        removed.  Concurrent writers to one key: the last rename wins, whole.
        ``last_modified`` is the time the body was complete.  ``precondition``
        (conditional writes) is checked against the object the write would replace,
        atomically with the replacing rename (``_commit_object``).
        """
        loc = self.layout.object(bucket, key)
        check_length(length)
        meta = ObjectMeta() if meta is None else meta
        self.require_bucket(bucket)
        record = sf.encode_fields(sf.object_fields(key, meta, None))
        # hashed beside the write, on the other core
        md5 = digests.md5_for(length) if digest_of is None else None
        try:
            with TempFile(self.layout.tmp, "put") as tf:
                tf.write(sf.encode_fixed(len(record), length, sf.EMPTY_MD5, 0.0))
                tf.write(record)
                receive(body, length, tf, md5)
                digest = md5.digest() if md5 is not None else _fingerprint(digest_of)
                now = time.time()
                tf.pwrite(sf.encode_fixed(len(record), length, digest, now), 0)
                self._commit_object(tf, bucket, loc, precondition)
        finally:
            if md5 is not None:
                digests.close(md5)
        return ObjectRecord(key=key, size=length, etag=etags.md5_etag(digest), last_modified=now,
                            meta=meta, part_sizes=None)

    def head_object(self, bucket: str, key: str) -> ObjectRecord:
        """The object's record, from its header only; NoSuchKey / NoSuchBucket."""
        loc = self.layout.object(bucket, key)
        fd = self._open_object(bucket, key, loc)
        try:
            return self._read_object(fd, loc, key)[0]
        finally:
            os.close(fd)

    def open_object(self, bucket: str, key: str) -> tuple[ObjectRecord, ObjectBody]:
        """The record and a seekable reader over the body of the same version.

        The reader must be closed (it is a context manager).  It keeps reading
        the version it opened even if the object is replaced or deleted.
        """
        loc = self.layout.object(bucket, key)
        fd = self._open_object(bucket, key, loc)
        try:
            record, h = self._read_object(fd, loc, key)
        except BaseException:
            os.close(fd)
            raise
        return record, ObjectBody(fd, h.body_offset, record.size, loc.path)

    def delete_object(self, bucket: str, key: str) -> None:
        """Remove the object if it exists (no error if not); NoSuchBucket if no bucket."""
        loc = self.layout.object(bucket, key)
        try:
            with locked(self.layout.object_lock(loc)):   # never between a check and its commit
                os.unlink(loc.path)
        except FileNotFoundError:
            self.require_bucket(bucket)
            return
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(loc.level2)
        # Keep the fan-out sparse so that emptiness checks and scans stay cheap.  A
        # writer racing with this retries (TempFile.commit); ENOTEMPTY means in use.
        for d in (loc.level2, loc.level1):
            try:
                os.rmdir(d)
            except OSError:
                break

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str,
                    meta: ObjectMeta | None = None,
                    precondition: Precondition | None = None) -> ObjectRecord:
        """Copy an object's body, with ``meta`` or (None) the source's metadata.

        Streams, is atomic, and is safe when source and destination are the
        same object (the source is read from the version opened first).  The
        copy is a single-part object, as in S3: its ETag is the MD5 of the
        bytes (reused from a single-part source; computed for a multipart one),
        and it has no part sizes.  Refusing a copy onto itself without changes
        is the S3 layer's rule, not the store's.
        """
        src_loc = self.layout.object(src_bucket, src_key)
        dst_loc = self.layout.object(dst_bucket, dst_key)
        fd = self._open_object(src_bucket, src_key, src_loc)
        try:
            src, h = self._read_object(fd, src_loc, src_key)
            self.require_bucket(dst_bucket)
            new_meta = src.meta if meta is None else meta
            record = sf.encode_fields(sf.object_fields(dst_key, new_meta, None))
            with TempFile(self.layout.tmp, "copy") as tf:
                tf.write(sf.encode_fixed(len(record), src.size, sf.EMPTY_MD5, 0.0))
                tf.write(record)
                if src.part_sizes is None:
                    copy_range(fd, h.body_offset, src.size, tf, path=src_loc.path)
                    digest = h.md5
                else:
                    md5 = md5_hash()
                    copy_range(fd, h.body_offset, src.size, tf, md5, path=src_loc.path)
                    digest = md5.digest()
                now = time.time()
                tf.pwrite(sf.encode_fixed(len(record), src.size, digest, now), 0)
                self._commit_object(tf, dst_bucket, dst_loc, precondition)
        finally:
            os.close(fd)
        return ObjectRecord(key=dst_key, size=src.size, etag=etags.md5_etag(digest),
                            last_modified=now, meta=new_meta, part_sizes=None)

    def put_object_acl(self, bucket: str, key: str, acl: Acl | None) -> ObjectRecord:
        """Replace the object's ACL (None: private); NoSuchKey / NoSuchBucket.

        The ACL is in the object's header, so the file is written again: the same
        body (copied by the kernel where it can), MD5, time and metadata, a new ACL,
        renamed over the object under its lock.  Its ETag and Last-Modified do not
        change, as in S3.  O(size of the object) in disk I/O: the embedded store
        keeps ACL and object in one file so that a PutObject replaces both at once.

        If the object was replaced or deleted while its body was copied, the new
        ACL is not applied, and the call still succeeds: it is ordered before the
        write that replaced the object, which would have reset its ACL anyway.
        """
        check_acl(acl)
        loc = self.layout.object(bucket, key)
        fd = self._open_object(bucket, key, loc)
        try:
            src, h = self._read_object(fd, loc, key)
            meta = ObjectMeta(content_headers=src.meta.content_headers,
                              user_metadata=src.meta.user_metadata,
                              storage_class=src.meta.storage_class, acl=acl)
            fields = dict(h.fields)
            fields["meta"] = sf.meta_fields(meta)
            record = sf.encode_fields(fields)
            with TempFile(self.layout.tmp, "objacl") as tf:
                tf.write(sf.encode_fixed(len(record), h.body_length, h.md5, h.time))
                tf.write(record)
                copy_range(fd, h.body_offset, h.body_length, tf, path=loc.path)
                tf.sync()
                with locked(self.layout.object_lock(loc)):
                    if self._current_identity(loc) == (h.md5, h.time, h.body_length):
                        tf.commit(loc.level2, loc.name, lambda: None)
        finally:
            os.close(fd)
        return ObjectRecord(key=key, size=src.size, etag=src.etag,
                            last_modified=src.last_modified, meta=meta,
                            part_sizes=src.part_sizes)

    def _current_identity(self, loc: ObjectPath) -> tuple[bytes, float, int] | None:
        """What tells one version of an object from another: MD5, time and size."""
        try:
            fd = open_read(loc.path)
        except FileNotFoundError:
            return None
        try:
            h = sf.read_header(fd, "object", loc.path)
            return h.md5, h.time, h.body_length
        finally:
            os.close(fd)

    def _open_object(self, bucket: str, key: str, loc: ObjectPath) -> int:
        try:
            return open_read(loc.path)
        except FileNotFoundError:
            self.require_bucket(bucket)
            raise NoSuchKey(Key=key) from None

    def _read_object(self, fd: int, loc: ObjectPath, key: str) -> tuple[ObjectRecord, sf.Header]:
        h = sf.read_header(fd, "object", loc.path)
        record = sf.object_record(h, loc.path)
        if record.key != key:  # a SHA-256 collision: report it, never serve the other key
            log.error("file store: %s holds key %r, not %r", loc.path, record.key, key)
            raise NoSuchKey(Key=key)
        return record, h

    def _commit_object(self, tf: TempFile, bucket: str, loc: ObjectPath,
                       precondition: Precondition | None = None) -> None:
        """Rename ``tf`` onto the object, holding the object's lock.

        Every commit and delete of an object holds its lock, so a ``precondition``
        decided on the current object under the lock still holds at the rename: two
        ``If-None-Match: *`` writes of one key cannot both succeed, and an ``If-Match``
        write replaces exactly the object it matched.  The body was streamed and
        fsync-ed before: the lock covers a header read, a rename and a directory fsync.
        """
        def prepare() -> None:
            try:
                mkdir_durable(loc.level1)
                mkdir_durable(loc.level2)
            except FileNotFoundError:
                if not os.path.isdir(loc.objects_dir):
                    raise NoSuchBucket(BucketName=bucket) from None
                # else a concurrent delete removed level1 between the two mkdirs: retry
        tf.sync()
        with locked(self.layout.object_lock(loc)):
            if precondition is not None:
                precondition(self._current_etag(bucket, loc))
            tf.commit(loc.level2, loc.name, prepare)

    def _current_etag(self, bucket: str, loc: ObjectPath) -> str | None:
        """The ETag of the object at ``loc`` (unquoted), None if there is none."""
        try:
            fd = open_read(loc.path)
        except FileNotFoundError:
            self.require_bucket(bucket)
            return None
        try:
            return sf.object_record(sf.read_header(fd, "object", loc.path), loc.path).etag
        finally:
            os.close(fd)

    # -- listing --------------------------------------------------------------------
    def list_objects(self, bucket: str, prefix: str = "", delimiter: str | None = None,
                     start_after: str | None = None, max_keys: int = 1000) -> ListResult:
        """One page of the bucket's objects in S3 order (``encproxy.filestore.listing``).

        ``start_after`` is exclusive and serves v1's ``marker``, v2's
        ``start-after`` and v2's decoded continuation token alike; pass back
        ``next_marker`` for the next page.  ``max_keys`` is used as given (the
        S3 layer caps it at 1000); 0 lists nothing, not truncated.  An empty
        delimiter means none.
        """
        self.require_bucket(bucket)
        check_text(prefix, "prefix")
        if delimiter is not None:
            check_text(delimiter, "delimiter")
        if start_after is not None:
            check_text(start_after, "marker")
        check_max(max_keys, "max-keys")
        if max_keys == 0:
            return ListResult([], [], False, None)
        records = sorted((r for r in self.scan_objects(bucket) if r.key.startswith(prefix)),
                         key=attrgetter("key"))
        page = paginate(records, attrgetter("key"), prefix=prefix, delimiter=delimiter or None,
                        marker=start_after, max_entries=max_keys)
        return ListResult(page.items, page.common_prefixes, page.is_truncated, page.next_marker)

    def scan_objects(self, bucket: str) -> Iterator[ObjectRecord]:
        """Every object in the bucket, in no particular order, from headers only.

        Cost: O(n) in the number of objects in the bucket for *every* listing
        page, whatever the prefix or page size: one open, one 4 KiB read and
        one close per object, then a sort.  Keys are hashed on disk, so there
        is no order to walk.  This is the one function to replace when buckets
        grow large (e.g. with a sorted per-bucket key index).  Objects deleted
        during the scan are skipped; damaged files are logged and skipped.
        """
        objects = self.layout.objects(bucket)
        for path in _walk_fanout(objects):
            try:
                fd = open_read(path)
            except FileNotFoundError:
                continue
            try:
                yield sf.object_record(sf.read_header(fd, "object", path), path)
            except InternalError:
                continue  # logged by storefile.corrupt
            finally:
                os.close(fd)


    def _write_record(self, path: str, fields: dict[str, object], when: float) -> None:
        """A header-only file in a private staging directory (renamed in later)."""
        record = sf.encode_fields(fields)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            data = sf.encode_fixed(len(record), 0, sf.MD5_OF_EMPTY, when) + record
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write", path)
            os.fsync(fd)
        finally:
            os.close(fd)



def _walk_fanout(objects: str) -> Iterator[str]:
    """Paths of the files two fan-out levels below ``objects`` (missing dirs are empty)."""
    for level1 in _subdirs(objects):
        for level2 in _subdirs(level1):
            try:
                with os.scandir(level2) as it:
                    files = [e.path for e in it if e.is_file(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield from files


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _has_files(objects: str) -> bool:
    return next(_walk_fanout(objects), None) is not None


def fsync_dir_if_exists(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path)
