"""Buckets and objects: the core of the file store (see ``store.py`` for the whole).

Every write goes through ``TempFile`` (``atomic.py``) and is made visible by
a row of the metadata index (``index.py``); every read finds its version's row
and opens that one file, checking its header (``storefile.py``).  Listings are
pages of the index.  This module maps S3 operations on buckets and objects
(versions, delete markers and tags included) onto those.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from operator import attrgetter

from encproxy import digests
from encproxy.checksums import DigestSet, new_hasher
from encproxy.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InternalError,
    InvalidArgument,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
    S3Error,
)
from encproxy.filestore import checksums as fs_checksums
from encproxy.filestore import etag as etags
from encproxy.filestore import index as ix
from encproxy.filestore import storefile as sf
from encproxy.filestore.atomic import (
    TempFile,
    fsync_dir,
    locked,
    make_staging_dir,
    mkdir_durable,
)
from encproxy.filestore.index import NULL_VERSION
from encproxy.filestore.layout import (
    BUCKET_RECORD,
    Layout,
    ObjectPath,
    check_bucket_name,
    check_key,
    check_text,
    tmp_prefix,
)
from encproxy.filestore.listing import paginate
from encproxy.filestore.records import (
    DEFAULT_STORAGE_CLASS,
    BucketRecord,
    DeleteResult,
    ListResult,
    ObjectMeta,
    ObjectRecord,
    VersionListResult,
    VersionRecord,
    check_acl,
)
from encproxy.filestore.streams import BodyReader, ObjectBody, copy_range, receive
from encproxy.format.checksum import FULL_OBJECT, StoredChecksum
from encproxy.s3.acl import Acl
from encproxy.s3.cors import CorsConfiguration, check_configuration
from encproxy.s3.tagging import Tags

log = logging.getLogger("encproxy.filestore")

ENABLED = "Enabled"
SUSPENDED = "Suspended"
_OPEN_ATTEMPTS = 8   # a version's file replaced or deleted between index read and open
# What a rewrite of one version's file header did (ObjectStore._rewrite_header).
APPLIED, REWRITTEN, GONE = "applied", "rewritten", "gone"


@functools.lru_cache(maxsize=64)
def _listed_meta(storage_class: str) -> ObjectMeta:
    """A listed version's metadata (a listing reads only its storage class): one per
    class, shared, since ObjectMeta is immutable and a page would otherwise make 1,000."""
    return ObjectMeta(storage_class=storage_class)


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


def _copy_checksum(source: StoredChecksum | None, named: str | None
                   ) -> tuple[StoredChecksum | None, str | None]:
    """A copy's checksum kept as it is, or the algorithm to hash the copied bytes with
    (``ObjectStore.copy_object``)."""
    if named is not None:
        return None, named
    if source is None:
        return None, None
    if source.checksum_type == FULL_OBJECT:
        return source, None
    return None, fs_checksums.DEFAULT_ALGORITHM


class ObjectStore:
    """Buckets, objects and listings below one root (created, mode 0700, if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.layout = Layout(os.fspath(root))
        self.layout.create()
        self.index = ix.Index(self.layout.root)
        self._index_existing()

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
        succeeds.  The rename happens inside an index transaction that first
        clears whatever the index may still hold under that name (a delete cut
        short by a crash), so a new bucket starts unversioned and untagged.
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
            with self.index.write() as conn:
                if os.path.isdir(path):
                    raise BucketAlreadyOwnedByYou(BucketName=name)
                conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
                conn.execute("DELETE FROM versions WHERE bucket = ?", (name,))
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

        Emptiness is the index's: no version and no delete marker.  The check and
        the rename of the bucket's directory away are one index transaction, so
        no version commits in between (a write whose file was renamed in before
        finds it gone with the directory when it commits, and fails with
        NoSuchBucket), and the bucket's versioning and tags go with it.
        """
        path = self.layout.bucket(name)
        if not os.path.isdir(path):
            raise NoSuchBucket(BucketName=name)
        doomed = os.path.join(self.layout.tmp, tmp_prefix("delbucket") + secrets.token_hex(8))
        with self.index.write() as conn:
            if ix.has_versions(conn, name):
                raise BucketNotEmpty(BucketName=name)
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                raise NoSuchBucket(BucketName=name) from None
            conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
        fsync_dir(self.layout.buckets)
        shutil.rmtree(doomed, ignore_errors=True)

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
                   precondition: Precondition | None = None,
                   tags: Tags | None = None,
                   checksum_algorithm: str | None = None,
                   listing_facts: Callable[[str, int], str | None] | None = None
                   ) -> ObjectRecord:
        """Store exactly ``length`` bytes of ``body`` under ``key``, atomically.

        The object keeps a FULL_OBJECT checksum of its body, of ``checksum_algorithm``
        (the one the client sent) or else CRC64NVME, S3's default, hashed as the body
        is written; none for a sealed object (``digest_of``: the encryption layer
        keeps the plaintext's, sealed, and the ciphertext's would serve no one).

        Streams in 1 MiB pieces and computes the MD5 (the ETag) on the way, unless
        ``digest_of`` is given: then it is called once the body is read and its 16
        bytes are kept instead (the fingerprint of a sealed object, whose ciphertext
        needs no MD5: environ.STORED_DIGEST).  If
        the body raises, that exception propagates; if it ends early,
        IncompleteBody; either way nothing becomes visible and the temp file is
        removed.  Concurrent writers to one key: the last commit wins, whole.
        ``last_modified`` is the time the body was complete.  ``precondition``
        (conditional writes) is checked against the latest version, atomically with
        the commit that makes the new one latest (``_commit_version``).  The new
        version is ``null`` unless the bucket's versioning is Enabled.
        ``listing_facts``, called with the ETag and size once the body is read (before
        the commit), gives what the index keeps beside the version for the layer
        above's listings (environ.LISTING_FACTS); it must do no I/O.
        """
        loc = self.layout.object(bucket, key)
        check_length(length)
        meta = ObjectMeta() if meta is None else meta
        self.require_bucket(bucket)
        record = sf.encode_fields(sf.object_fields(key, meta, None))
        # hashed beside the write, on the other core
        md5 = digests.md5_for(length) if digest_of is None else None
        algorithm = checksum_algorithm or fs_checksums.DEFAULT_ALGORITHM
        hasher = new_hasher(algorithm) if digest_of is None else None
        try:
            with TempFile(self.layout.tmp, "put") as tf:
                tf.write(sf.encode_fixed(len(record), length, sf.EMPTY_MD5, 0.0))
                tf.write(record)
                receive(body, length, tf, md5, hasher)
                digest = md5.digest() if md5 is not None else _fingerprint(digest_of)
                now = time.time()
                tf.pwrite(sf.encode_fixed(len(record), length, digest, now), 0)
                etag = etags.md5_etag(digest)
                out = ObjectRecord(key=key, size=length, etag=etag,
                                   last_modified=now, meta=meta, part_sizes=None,
                                   tag_count=len(tags or ()),
                                   checksum=None if hasher is None else StoredChecksum(
                                       algorithm, FULL_OBJECT, hasher.digest()),
                                   listing_facts=None if listing_facts is None
                                   else listing_facts(etag, length))
                version = self._commit_version(tf, bucket, loc, out, precondition, tags)
        finally:
            if md5 is not None:
                digests.close(md5)
        return dataclasses.replace(out, version_id=version)

    def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectRecord:
        """The record of the latest version (or of ``version_id``), from its header
        only; NoSuchKey / NoSuchVersion / NoSuchBucket, and for a delete marker
        NoSuchKey (latest) or MethodNotAllowed (by id), as ``_find`` says."""
        record, reader = self.open_object(bucket, key, version_id)
        reader.close()
        return record

    def open_object(self, bucket: str, key: str,
                    version_id: str | None = None) -> tuple[ObjectRecord, ObjectBody]:
        """The record and a seekable reader over the body of the same version.

        The reader must be closed (it is a context manager).  It keeps reading
        the version it opened even if the object is replaced or deleted.
        """
        row, fd, path, versioned = self._open_version(bucket, key, version_id)
        try:
            record, h = self._read_object(fd, path, key, row, versioned)
        except BaseException:
            os.close(fd)
            raise
        return record, ObjectBody(fd, h.body_offset, record.size, path)

    def delete_object(self, bucket: str, key: str,
                      version_id: str | None = None) -> DeleteResult:
        """Delete as S3 does; NoSuchBucket if no bucket.

        Without ``version_id``: in a bucket that never had versioning, remove the
        object if there is one; with versioning Enabled, add a delete marker (a new
        version id); Suspended, replace the ``null`` version by a ``null`` delete
        marker.  With ``version_id``: remove that version or delete marker (none:
        nothing to do); if it was the latest, the next newest becomes the latest.
        The index row goes first (the commit is the delete), then the file.
        """
        loc = self.layout.object(bucket, key)
        gone: str | None = None
        with self.index.write() as conn:
            if not self.bucket_exists(bucket):
                raise NoSuchBucket(BucketName=bucket)
            if version_id is None:
                status = ix.versioning(conn, bucket)
                # Never versioned: the one (null) version goes; Suspended: the null
                # version is replaced by a null delete marker; Enabled: nothing goes.
                current = None if status == ENABLED else \
                    ix.by_id(conn, bucket, key, NULL_VERSION)
                if current is not None:
                    ix.remove(conn, current)
                    gone = current.file
                if status is None:
                    result = DeleteResult(None, False)
                else:
                    vid = new_version_id() if status == ENABLED else NULL_VERSION
                    ix.insert_latest(conn, ix.Row(bucket, key, ix.next_seq(conn, bucket, key),
                                                  vid, True, True, 0, "", time.time(),
                                                  DEFAULT_STORAGE_CLASS, None, None))
                    result = DeleteResult(vid, True)
            else:
                found = ix.by_id(conn, bucket, key, version_id)
                if found is not None:
                    ix.remove(conn, found)
                    gone = found.file
                result = DeleteResult(version_id, found is not None and found.delete_marker)
        if gone is not None:
            self._unlink_file(loc, gone)
        return result

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str,
                    meta: ObjectMeta | None = None,
                    precondition: Precondition | None = None,
                    src_version: str | None = None,
                    tags: Tags | None = None,
                    checksum_algorithm: str | None = None) -> ObjectRecord:
        """Copy an object's body, with ``meta`` or (None) the source's metadata.

        The source is the latest version, or ``src_version``.  Streams, is atomic,
        and is safe when source and destination are the same object (the source is
        read from the version opened first).  The copy is a single-part object, as
        in S3: its ETag is the MD5 of the bytes (reused from a single-part source;
        computed for a multipart one), and it has no part sizes.  Refusing a copy
        onto itself without changes is the S3 layer's rule, not the store's.

        Its checksum (FULL_OBJECT, as a single-part object's), as S3 gives it: of
        ``checksum_algorithm`` (``x-amz-checksum-algorithm``), hashed as the bytes are
        copied; else the source's FULL_OBJECT checksum, which describes the same bytes;
        else, for a source with a COMPOSITE one (which cannot describe a single-part
        object), CRC64NVME hashed as they are copied.  A source with none (written
        before checksums were kept, or sealed: the encryption layer keeps an encrypted
        object's) gives a copy with none: what the store would hash then is not the
        object the client sees.
        """
        dst_loc = self.layout.object(dst_bucket, dst_key)
        row, fd, src_path, _ = self._open_version(src_bucket, src_key, src_version)
        try:
            src, h = self._read_object(fd, src_path, src_key, row)
            self.require_bucket(dst_bucket)
            new_meta = src.meta if meta is None else meta
            record = sf.encode_fields(sf.object_fields(dst_key, new_meta, None))
            with TempFile(self.layout.tmp, "copy") as tf:
                tf.write(sf.encode_fixed(len(record), src.size, sf.EMPTY_MD5, 0.0))
                tf.write(record)
                checksum, algorithm = _copy_checksum(src.checksum, checksum_algorithm)
                hashes = DigestSet(
                    ([] if src.part_sizes is None else ["md5"])
                    + ([] if algorithm is None else [algorithm]))
                if src.part_sizes is None and algorithm is None:
                    copy_range(fd, h.body_offset, src.size, tf, path=src_path)
                else:
                    copy_range(fd, h.body_offset, src.size, tf, hashes, path=src_path)
                found = hashes.digests()
                digest = h.md5 if src.part_sizes is None else found["md5"]
                if algorithm is not None:
                    checksum = StoredChecksum(algorithm, FULL_OBJECT, found[algorithm])
                now = time.time()
                tf.pwrite(sf.encode_fixed(len(record), src.size, digest, now), 0)
                out = ObjectRecord(key=dst_key, size=src.size, etag=etags.md5_etag(digest),
                                   last_modified=now, meta=new_meta, part_sizes=None,
                                   tag_count=len(tags or ()), checksum=checksum)
                version = self._commit_version(tf, dst_bucket, dst_loc, out, precondition,
                                               tags)
        finally:
            os.close(fd)
        return dataclasses.replace(out, version_id=version)

    def put_object_acl(self, bucket: str, key: str, acl: Acl | None,
                       version_id: str | None = None) -> ObjectRecord:
        """Replace the ACL of the latest version, or of ``version_id`` (None: private);
        NoSuchKey / NoSuchVersion / NoSuchBucket.

        The ACL is in the version's file header, so the file is written again under
        a new name (``_rewrite_header``): the same body (copied by the kernel where it
        can), MD5, time and metadata, a new ACL; the index row is then pointed at it,
        and the old file removed.  Its ETag and Last-Modified do not change, as in S3.
        O(size of the object) in disk I/O: the embedded store keeps ACL and object in
        one file so that a PutObject replaces both at once.

        If the version was replaced or deleted while its body was copied, the new
        ACL is not applied, and the call still succeeds: it is ordered before the
        write that replaced the object, which would have reset its ACL anyway.  If the
        same version's file was rewritten meanwhile (another ACL change, or an in-place
        metadata rewrite: ``replace_user_metadata``), the change is made again on the
        new file, so that neither is lost.
        """
        check_acl(acl)
        for _ in range(_OPEN_ATTEMPTS):
            src, meta, result = self._rewrite_header(
                bucket, key, version_id, "objacl",
                lambda old: dataclasses.replace(old, acl=acl))
            if result != REWRITTEN:
                break
            version_id = src.version_id     # the same version, in its new file
        return dataclasses.replace(src, meta=meta)

    def replace_user_metadata(self, bucket: str, key: str, version_id: str | None,
                              user_metadata: dict[str, str],
                              expected_etag: str) -> ObjectRecord:
        """Replace the user metadata (``x-amz-meta-*``) of one version in place: the
        latest, or ``version_id``.  Everything else stays: body, ETag, Last-Modified,
        content headers, storage class, ACL, tags, checksum and version id; no new
        version is made.  This is how the encryption layer re-wraps a version's data
        key (its envelope is user metadata) where S3 could only copy the object.

        Applied only if the version's ETag is ``expected_etag`` (quoted or not) and the
        version is, when the index row is updated, still the one whose file was read
        (the same row and file: not replaced, deleted, or rewritten by another ACL or
        metadata change meanwhile); otherwise PreconditionFailed and nothing changes.
        NoSuchKey / NoSuchVersion / NoSuchBucket / MethodNotAllowed as ``_find``.
        Crash-safe as PutObjectAcl (FORMAT.md, "How index and files stay consistent").
        """
        wanted = expected_etag.strip('"')

        def replaced(old: ObjectMeta) -> ObjectMeta:
            return dataclasses.replace(old, user_metadata=dict(user_metadata))

        def check(src: ObjectRecord) -> None:
            if src.etag.strip('"') != wanted:
                raise PreconditionFailed()

        src, meta, result = self._rewrite_header(bucket, key, version_id, "objmeta",
                                                 replaced, check)
        if result != APPLIED:
            raise PreconditionFailed()
        return dataclasses.replace(src, meta=meta)

    def _rewrite_header(self, bucket: str, key: str, version_id: str | None, purpose: str,
                        change: Callable[[ObjectMeta], ObjectMeta],
                        check: Callable[[ObjectRecord], None] | None = None
                        ) -> tuple[ObjectRecord, ObjectMeta, str]:
        """Write one version's file again with ``change(meta)`` in its record: the same
        body (kernel-copied), MD5, time and other fields, under a new name; then one
        transaction points the version's row at it if the row (same seq, ETag, time and
        size) still names the file that was copied.  ``check`` may refuse the version
        as opened, before anything is written.  Returns the version as it was, its new metadata, and
        APPLIED; or, the copy removed, REWRITTEN (the same version, in another file
        now) or GONE (replaced or deleted)."""
        loc = self.layout.object(bucket, key)
        row, fd, path, _ = self._open_version(bucket, key, version_id)
        try:
            src, h = self._read_object(fd, path, key, row)
            if check is not None:
                check(src)
            meta = change(src.meta)
            fields = dict(h.fields)
            fields["meta"] = sf.meta_fields(meta)
            record = sf.encode_fields(fields)
            with TempFile(self.layout.tmp, purpose) as tf:
                tf.write(sf.encode_fixed(len(record), h.body_length, h.md5, h.time))
                tf.write(record)
                copy_range(fd, h.body_offset, h.body_length, tf, path=path)
                name = self._rename_in(tf, bucket, loc)
        finally:
            os.close(fd)
        result = GONE
        try:
            with self.index.write() as conn:
                current = ix.by_id(conn, bucket, key, row.version_id)
                # The same version (a replaced null version may reuse the seq: it has
                # its own time and, but for a rewrite of the same bytes, ETag).
                same = current is not None and (current.seq, current.etag, current.mtime,
                                                current.size) == (row.seq, row.etag,
                                                                  row.mtime, row.size)
                if same and current is not None and current.file == row.file:
                    conn.execute("UPDATE versions SET file = ? WHERE bucket = ? AND key = ? "
                                 "AND seq = ?", (name, bucket, key, row.seq))
                    outcome = APPLIED
                else:
                    outcome = REWRITTEN if same else GONE
            result = outcome    # committed: only now is the old file no row's
        finally:
            self._unlink_file(loc, row.file if result == APPLIED and row.file else name)
        return src, meta, result

    def object_file(self, bucket: str, key: str, version_id: str | None = None) -> str:
        """The path of the file that holds the body of the latest version of ``key`` or
        of ``version_id`` (for operators and tests; it changes with every write)."""
        row = self._find(bucket, key, version_id)
        assert row.file is not None
        return self._file_path(self.layout.object(bucket, key), row.file)

    # -- versions: finding, reading, committing ------------------------------------------
    def _find(self, bucket: str, key: str, version_id: str | None) -> ix.Row:
        """The index row of the latest version of ``key`` or of ``version_id``.

        NoSuchBucket; NoSuchKey (no version, or the latest is a delete marker: then
        with ``x-amz-delete-marker: true`` and the marker's version id);
        NoSuchVersion; MethodNotAllowed for a delete marker asked for by id (as S3).
        """
        return self._find_versioned(bucket, key, version_id)[0]

    def _find_versioned(self, bucket: str, key: str,
                        version_id: str | None) -> tuple[ix.Row, bool]:
        """``_find``'s row, and whether the bucket's versioning had ever been set, read
        in the same snapshot (a ``null`` version's answers say its version id only then;
        any other version id exists only in a bucket whose versioning was set)."""
        check_key(key)
        with self.index.read() as conn:
            row = ix.latest(conn, bucket, key) if version_id is None else \
                ix.by_id(conn, bucket, key, version_id)
            versioned = row is None or row.version_id != ix.NULL_VERSION or \
                ix.versioning(conn, bucket) is not None
        if row is None:
            self.require_bucket(bucket)
            if version_id is None:
                raise NoSuchKey(Key=key)
            raise NoSuchVersion(Key=key, VersionId=version_id)
        if row.delete_marker:
            exc: S3Error = NoSuchKey(Key=key) if version_id is None else \
                MethodNotAllowed(Method="GET", ResourceType="DeleteMarker")
            exc.headers.update({"x-amz-delete-marker": "true",
                                "x-amz-version-id": row.version_id})
            if version_id is not None:
                exc.headers["Allow"] = "DELETE"
            raise exc
        return row, versioned

    def _open_version(self, bucket: str, key: str,
                      version_id: str | None) -> tuple[ix.Row, int, str, bool]:
        """The row, an open descriptor of its file, the file's path, and whether the
        bucket's versioning had ever been set (``_find_versioned``).

        A file vanishes when its version is deleted or replaced after the row was
        read: the row is looked up again.  A row whose file stays missing is damage.
        """
        loc = self.layout.object(bucket, key)
        for _ in range(_OPEN_ATTEMPTS):
            row, versioned = self._find_versioned(bucket, key, version_id)
            assert row.file is not None
            path = self._file_path(loc, row.file)
            try:
                return row, open_read(path), path, versioned
            except FileNotFoundError:
                continue
        raise sf.corrupt(self._file_path(loc, row.file or "?"),
                         "the index names a file that does not exist")

    def _file_path(self, loc: ObjectPath, name: str) -> str:
        if not ix.FILE_NAME.fullmatch(name) or not name.startswith(loc.name):
            raise sf.corrupt(loc.path, f"the index names file {name!r} for this key")
        return os.path.join(loc.level2, name)

    def _read_object(self, fd: int, path: str, key: str, row: ix.Row,
                     versioned: bool | None = None) -> tuple[ObjectRecord, sf.Header]:
        h = sf.read_header(fd, "object", path)
        record = sf.object_record(h, path)
        if record.key != key:  # a SHA-256 collision: report it, never serve the other key
            log.error("file store: %s holds key %r, not %r", path, record.key, key)
            raise NoSuchKey(Key=key)
        if (record.size, record.etag) != (row.size, row.etag):
            raise sf.corrupt(path, "the file does not hold the version its index row names")
        checksum = fs_checksums.decode_row(row.checksum)
        if checksum is not None and record.part_checksums is not None and record.part_sizes \
                and len(record.part_checksums) != len(checksum.digest) * len(record.part_sizes):
            raise sf.corrupt(path, "the part checksums are not the object's")
        return dataclasses.replace(record, version_id=row.version_id,
                                   tag_count=len(decode_tags(row.tags)),
                                   checksum=checksum, bucket_versioned=versioned), h

    def _rename_in(self, tf: TempFile, bucket: str, loc: ObjectPath) -> str:
        """fsync ``tf`` and rename it beside the key's other files under a name of its
        own; nothing refers to it yet (the index row that will is committed next)."""
        def prepare() -> None:
            try:
                mkdir_durable(loc.level1)
                mkdir_durable(loc.level2)
            except FileNotFoundError:
                if not os.path.isdir(loc.objects_dir):
                    raise NoSuchBucket(BucketName=bucket) from None
                # else a concurrent delete removed level1 between the two mkdirs: retry
        name = f"{loc.name}.{secrets.token_hex(16)}"
        tf.commit(loc.level2, name, prepare)
        return name

    def _commit_version(self, tf: TempFile, bucket: str, loc: ObjectPath,
                        record: ObjectRecord, precondition: Precondition | None,
                        tags: Tags | None) -> str:
        """Make ``tf`` the latest version of ``record.key``; returns its version id.

        The file is renamed in under a name of its own, then one ``BEGIN IMMEDIATE``
        transaction checks that it is still there (a bucket deleted meanwhile took it
        along: NoSuchBucket), checks ``precondition`` against the latest version's
        ETag (None: no version, or a delete marker), and inserts the row, replacing the
        ``null`` version unless versioning is Enabled.  SQLite's write lock makes the
        decision and the commit one step for every writer in every process.  On any
        failure the new file is removed; after the commit, the replaced one.
        """
        name = self._rename_in(tf, bucket, loc)
        path = os.path.join(loc.level2, name)
        replaced: str | None = None
        try:
            with self.index.write() as conn:
                if not os.path.exists(path):
                    raise NoSuchBucket(BucketName=bucket)
                if precondition is not None:
                    current = ix.latest(conn, bucket, record.key)
                    precondition(None if current is None or current.delete_marker
                                 else current.etag)
                status = ix.versioning(conn, bucket)
                vid = new_version_id() if status == ENABLED else NULL_VERSION
                if vid == NULL_VERSION:
                    old = ix.by_id(conn, bucket, record.key, NULL_VERSION)
                    if old is not None:
                        ix.remove(conn, old)
                        replaced = old.file
                ix.insert_latest(conn, ix.Row(
                    bucket, record.key, ix.next_seq(conn, bucket, record.key), vid, True,
                    False, record.size, record.etag, record.last_modified,
                    record.meta.storage_class, name, encode_tags(tags),
                    fs_checksums.encode_row(record.checksum), record.listing_facts))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        if replaced is not None:
            self._unlink_file(loc, replaced)
        return vid

    def _unlink_file(self, loc: ObjectPath, name: str) -> None:
        """Remove a file no index row names any more (a crash before this leaves it to
        the sweep), and the key's fan-out directories if they are left empty."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(loc.level2, name))
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(loc.level2)
        # Keep the fan-out sparse so that scans stay cheap.  A writer racing with this
        # retries (TempFile.commit); ENOTEMPTY means in use.
        for d in (loc.level2, loc.level1):
            try:
                os.rmdir(d)
            except OSError:
                break

    # -- versioning and tags ----------------------------------------------------------
    def bucket_versioning(self, bucket: str) -> str | None:
        """None (never enabled), ``Enabled`` or ``Suspended``; NoSuchBucket."""
        with self.index.read() as conn:
            status = ix.versioning(conn, bucket)
        self.require_bucket(bucket)
        return status

    def put_bucket_versioning(self, bucket: str, status: str) -> None:
        """Set versioning to ``Enabled`` or ``Suspended``; NoSuchBucket."""
        if status not in (ENABLED, SUSPENDED):
            raise InvalidArgument("Versioning status must be Enabled or Suspended.",
                                  ArgumentName="Status", ArgumentValue=str(status))
        with self.index.write() as conn:
            self.require_bucket(bucket)
            conn.execute("INSERT INTO buckets (name, versioning) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET versioning = excluded.versioning",
                         (bucket, status))

    def bucket_tags(self, bucket: str) -> Tags | None:
        """The bucket's tag set, None if it has none; NoSuchBucket."""
        with self.index.read() as conn:
            found = conn.execute("SELECT tags FROM buckets WHERE name = ?",
                                 (bucket,)).fetchone()
        self.require_bucket(bucket)
        return None if found is None or found[0] is None else decode_tags(found[0])

    def put_bucket_tags(self, bucket: str, tags: Tags | None) -> None:
        """Replace the bucket's tag set (None: delete it); NoSuchBucket."""
        with self.index.write() as conn:
            self.require_bucket(bucket)
            conn.execute("INSERT INTO buckets (name, tags) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET tags = excluded.tags",
                         (bucket, None if tags is None else encode_tags(tags)))

    def object_tags(self, bucket: str, key: str,
                    version_id: str | None = None) -> tuple[str, Tags]:
        """The version id and tag set of the latest version or of ``version_id``."""
        row = self._find(bucket, key, version_id)
        return row.version_id, decode_tags(row.tags)

    def put_object_tags(self, bucket: str, key: str, tags: Tags | None,
                        version_id: str | None = None) -> str:
        """Replace the tags of the latest version or of ``version_id`` (None: remove
        them); returns the version id.  The read and the update are one transaction."""
        check_key(key)
        with self.index.write() as conn:
            row = ix.latest(conn, bucket, key) if version_id is None else \
                ix.by_id(conn, bucket, key, version_id)
            if row is not None and not row.delete_marker:
                conn.execute("UPDATE versions SET tags = ? WHERE bucket = ? AND key = ? "
                             "AND seq = ?",
                             (encode_tags(tags) if tags else None, bucket, key, row.seq))
        if row is None or row.delete_marker:
            self._find(bucket, key, version_id)   # raises S3's error for it
            raise NoSuchKey(Key=key)
        return row.version_id

    # -- listing --------------------------------------------------------------------
    def list_objects(self, bucket: str, prefix: str = "", delimiter: str | None = None,
                     start_after: str | None = None, max_keys: int = 1000) -> ListResult:
        """One page of the bucket's objects in S3 order (``encproxy.filestore.listing``).

        ``start_after`` is exclusive and serves v1's ``marker``, v2's
        ``start-after`` and v2's decoded continuation token alike; pass back
        ``next_marker`` for the next page.  ``max_keys`` is used as given (the
        S3 layer caps it at 1000); 0 lists nothing, not truncated.  An empty
        delimiter means none.  Each key's latest version, unless it is a delete
        marker; from the index, in key order, reading only as far as the page needs
        (and the keys rolled up into its common prefixes).
        """
        self._check_listing(bucket, prefix, delimiter, start_after, "marker", max_keys)
        if max_keys == 0:
            return ListResult([], [], False, None)
        with self.index.read() as conn:
            rows = ix.rows_from(conn, bucket, start_after or "", prefix, latest_only=True)
            page = paginate(rows, attrgetter("key"), prefix=prefix,
                            delimiter=delimiter or None, marker=start_after,
                            max_entries=max_keys)
        records = [ObjectRecord(key=r.key, size=r.size, etag=r.etag, last_modified=r.mtime,
                                meta=_listed_meta(r.storage_class),
                                version_id=r.version_id, listing_facts=r.listing_facts)
                   for r in page.items]
        return ListResult(records, page.common_prefixes, page.is_truncated, page.next_marker)

    def list_versions(self, bucket: str, prefix: str = "", delimiter: str | None = None,
                      key_marker: str | None = None, version_id_marker: str | None = None,
                      max_keys: int = 1000) -> VersionListResult:
        """One page of ListObjectVersions: by key, then newest first; delete markers
        included.  With ``key_marker`` alone, the versions of keys after it; with
        ``version_id_marker`` too, also the versions of that key older than the one
        named (an id the key does not have: from the next key).  Common prefixes roll
        up and count as in ``list_objects``; each version counts as one entry."""
        self._check_listing(bucket, prefix, delimiter, key_marker, "key-marker", max_keys)
        if max_keys == 0:
            return VersionListResult([], [], False, None, None)
        with self.index.read() as conn:
            tie: Callable[[ix.Row], bool] | None = None
            if key_marker is not None and version_id_marker is not None:
                marked = ix.by_id(conn, bucket, key_marker, version_id_marker)
                if marked is not None:
                    seq = marked.seq
                    tie = lambda r: r.seq < seq  # noqa: E731
            rows = ix.rows_from(conn, bucket, key_marker or "", prefix, latest_only=False)
            page = paginate(rows, attrgetter("key"), prefix=prefix,
                            delimiter=delimiter or None, marker=key_marker,
                            max_entries=max_keys, tie_after=tie)
        versions = [VersionRecord(r.key, r.version_id, r.latest, r.delete_marker, r.size,
                                  r.etag, r.mtime, r.storage_class, r.listing_facts)
                    for r in page.items]
        last = page.last_item.version_id if page.last_item is not None else None
        return VersionListResult(versions, page.common_prefixes, page.is_truncated,
                                 page.next_marker, last)

    def _check_listing(self, bucket: str, prefix: str, delimiter: str | None,
                       marker: str | None, marker_name: str, max_keys: int) -> None:
        self.require_bucket(bucket)
        check_text(prefix, "prefix")
        if delimiter is not None:
            check_text(delimiter, "delimiter")
        if marker is not None:
            check_text(marker, marker_name)
        check_max(max_keys, "max-keys")

    def scan_objects(self, bucket: str) -> Iterator[ObjectRecord]:
        """Every object in the bucket (the latest version of each key that is not a
        delete marker), in key order, from the index."""
        marker: str | None = None
        while True:
            page = self.list_objects(bucket, start_after=marker)
            yield from page.contents
            if not page.is_truncated:
                return
            marker = page.next_marker

    # -- the index: existing stores, files nothing names ---------------------------------
    def _index_existing(self) -> None:
        """Index the objects of a store written before the index (once per store).

        Each object file (named by its key's hash alone) becomes its key's ``null``
        version, as the only version an unversioned bucket has.  One transaction:
        other processes opening the store meanwhile wait, then find it done.
        """
        with self.index.read() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE name = 'indexed'").fetchone():
                return
        with self.index.write() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE name = 'indexed'").fetchone():
                return
            count = 0
            for bucket in _bucket_names(self.layout.buckets):
                for path in _walk_fanout(self.layout.objects(bucket)):
                    name = os.path.basename(path)
                    if not ix.FILE_NAME.fullmatch(name) or "." in name:
                        continue
                    try:
                        fd = open_read(path)
                    except FileNotFoundError:
                        continue
                    try:
                        r = sf.object_record(sf.read_header(fd, "object", path), path)
                    except InternalError:
                        continue   # damaged: logged, left for an operator
                    finally:
                        os.close(fd)
                    if self.layout.object(bucket, r.key).name != name:
                        log.error("file store: %s holds key %r, which hashes elsewhere",
                                  path, r.key)
                        continue
                    conn.execute(
                        f"INSERT OR IGNORE INTO versions ({ix.COLUMNS}) "
                        "VALUES (?, ?, 1, ?, 1, 0, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                        (bucket, r.key, NULL_VERSION, r.size, r.etag, r.last_modified,
                         r.meta.storage_class, name))
                    count += 1
            conn.execute("INSERT INTO meta (name, value) VALUES ('indexed', ?)",
                         (ix.SCHEMA_VERSION,))
        if count:
            log.warning("file store: indexed %d objects of a store written before the index",
                        count)

    def sweep_unindexed(self, max_age: float, every: float = 0.0) -> int:
        """Remove object files that no index row names and nobody has written to for
        ``max_age`` seconds: left by a crash between a file's rename and its row's
        commit, or between a row's removal and its file's unlink.  Nothing if a sweep
        started less than ``every`` seconds ago (in any process).  Memory stays
        constant: each old file is looked up in the index on its own."""
        removed = 0
        with self.index.write() as conn:
            if not ix.claim_sweep(conn, time.time(), every):
                return 0
        for bucket in _bucket_names(self.layout.buckets):
            for path in _walk_fanout(self.layout.objects(bucket)):
                name = os.path.basename(path)
                try:
                    if time.time() - os.stat(path).st_mtime <= max_age:
                        continue    # may be a write about to commit
                except FileNotFoundError:
                    continue
                with self.index.read() as conn:
                    if ix.names_file(conn, bucket, name):
                        continue
                if "." not in name:
                    # A name without the random suffix is no file this version writes: an
                    # older encproxy wrote it after the store was indexed.  It holds a
                    # write a client was told succeeded; it is left for the operator.
                    log.warning("file store: %s is not in the index (written by an encproxy "
                                "older than the index?); left in place", path)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
        return removed

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


def _bucket_names(buckets: str) -> list[str]:
    try:
        with os.scandir(buckets) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def new_version_id() -> str:
    """32 hex digits: ``time_ns`` then random bits; opaque to clients, URL-safe."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def encode_tags(tags: Tags | None) -> str | None:
    return None if not tags else json.dumps([[k, v] for k, v in tags], ensure_ascii=True)


def decode_tags(value: str | None) -> Tags:
    if value is None:
        return ()
    try:
        items = json.loads(value)
        return tuple((str(k), str(v)) for k, v in items)
    except (ValueError, TypeError):
        raise InternalError("The file store's index holds damaged tags.") from None


def fsync_dir_if_exists(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path)
