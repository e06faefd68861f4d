"""Multipart uploads: parts, validation and assembly (part of ``FileStore``).

An upload is a directory ``buckets/<bucket>/uploads/<id>/`` holding its
record and one file per part.  Completing or aborting *claims* it by renaming
the directory into ``tmp/`` first, so exactly one of concurrent
complete/abort calls wins and late part uploads fail with NoSuchUpload.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter

from encproxy import digests
from encproxy.checksums import DigestSet, combine_crc, composite, new_hasher
from encproxy.errors import (
    EntityTooSmall,
    InternalError,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    MalformedXML,
    NoSuchBucket,
    NoSuchUpload,
)
from encproxy.filestore import checksums as fs_checksums
from encproxy.filestore import etag as etags
from encproxy.filestore import storefile as sf
from encproxy.filestore.atomic import TempFile, fsync_dir, make_staging_dir
from encproxy.filestore.layout import (
    MAX_PART_NUMBER,
    UPLOAD_RECORD,
    check_key,
    check_part_number,
    check_text,
    new_upload_id,
    part_file_name,
    part_number_of,
    tmp_prefix,
)
from encproxy.filestore.listing import paginate
from encproxy.filestore.objects import (
    ObjectStore,
    Precondition,
    check_length,
    check_max,
    fsync_dir_if_exists,
    open_read,
)
from encproxy.filestore.records import (
    ObjectMeta,
    ObjectRecord,
    PartListResult,
    PartRecord,
    UploadListResult,
    UploadRecord,
)
from encproxy.filestore.streams import BodyReader, copy_range, receive
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum
from encproxy.s3.tagging import Tags

log = logging.getLogger("encproxy.filestore")

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last


def part_algorithm(upload: UploadRecord, sent: str | None) -> str:
    """The algorithm of a part's checksum: the upload's, which the part must carry (as
    S3: InvalidRequest otherwise), else CRC64NVME."""
    if upload.checksum is None:
        return fs_checksums.DEFAULT_ALGORITHM
    declared = upload.checksum[0]
    if sent is None:
        raise InvalidRequest(
            f"The upload was created using the {declared.upper()} checksum algorithm: "
            f"each part must carry x-amz-checksum-{declared}.")
    if sent != declared:
        raise InvalidRequest(f"Checksum Type mismatch occurred, expected checksum Type: "
                             f"{declared}, actual checksum Type: {sent}")
    return declared


def object_checksum(upload: UploadRecord, sums: Sequence[tuple[str, bytes] | None],
                    sizes: Sequence[int]) -> StoredChecksum | None:
    """A completed object's checksum, from its parts': the upload's (algorithm, type),
    COMPOSITE (the hash of the part digests) or FULL_OBJECT (the part CRCs combined),
    else FULL_OBJECT CRC64NVME, S3's default.  None when a part has none of that
    algorithm (written before checksums were kept)."""
    algorithm, kind = upload.checksum or (fs_checksums.DEFAULT_ALGORITHM, FULL_OBJECT)
    digests_ = [s[1] for s in sums if s is not None and s[0] == algorithm]
    if len(digests_) != len(sums):
        return None
    if kind == COMPOSITE:
        return StoredChecksum(algorithm, COMPOSITE, composite(algorithm, digests_))
    return StoredChecksum(algorithm, FULL_OBJECT,
                          combine_crc(algorithm, zip(digests_, sizes, strict=True)))


def _with_checksum(record: bytes, placeholder: str, algorithm: str, digest: bytes) -> bytes:
    """The part record with its checksum in place of the placeholder (same length)."""
    final = record.replace(placeholder.encode("ascii"),
                           fs_checksums.encode_part(algorithm, digest).encode("ascii"), 1)
    assert len(final) == len(record)
    return final


class MultipartStore(ObjectStore):
    """CreateMultipartUpload through ListMultipartUploads over an ``ObjectStore``.

    Every call checks that the upload belongs to the given bucket *and* key,
    and answers NoSuchUpload otherwise (also for ids that are not ours).
    """

    def create_upload(self, bucket: str, key: str, meta: ObjectMeta | None = None,
                      tags: Tags = (), checksum: tuple[str, str] | None = None) -> str:
        """Start a multipart upload; returns its id (48 hex digits, unguessable).

        ``meta`` and ``tags`` become the metadata and tags of the completed object;
        ``checksum`` is the (algorithm, type) CreateMultipartUpload declared.
        """
        check_key(key)
        meta = ObjectMeta() if meta is None else meta
        uploads = self.layout.uploads(bucket)
        self.require_bucket(bucket)
        upload_id = new_upload_id()
        staging = make_staging_dir(self.layout.tmp, "upload")
        try:
            self._write_record(os.path.join(staging, UPLOAD_RECORD),
                               sf.upload_fields(upload_id, bucket, key, meta, tags, checksum),
                               time.time())
            fsync_dir(staging)
            try:
                os.rename(staging, os.path.join(uploads, upload_id))
            except FileNotFoundError:
                raise NoSuchBucket(BucketName=bucket) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir_if_exists(uploads)
        return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                    body: BodyReader, length: int,
                    sent_algorithm: str | None = None) -> PartRecord:
        """Store part ``part_number`` (1..10000); the last upload of a number wins.

        Same streaming and failure rules as ``put_object``.  NoSuchUpload if the
        upload is unknown, belongs to another bucket or key, or is aborted or
        completed while the part streams in.  The part keeps its checksum of the
        upload's declared algorithm (which ``sent_algorithm``, the checksum the
        request carries, must be: InvalidRequest before the body is read
        otherwise), else CRC64NVME, for the object's default checksum.
        """
        check_part_number(part_number)
        check_length(length)
        upload = self._load_upload(bucket, key, upload_id)
        algorithm = part_algorithm(upload, sent_algorithm)
        placeholder = fs_checksums.part_placeholder(algorithm)
        record = sf.encode_fields(sf.part_fields(upload_id, part_number, placeholder))
        md5 = digests.md5_for(length)  # hashed beside the write, on the other core
        hasher = new_hasher(algorithm)
        try:
            with TempFile(self.layout.tmp, "part") as tf:
                fixed = sf.encode_fixed(len(record), length, sf.EMPTY_MD5, 0.0)
                tf.write(fixed)
                tf.write(record)
                receive(body, length, tf, md5, hasher)
                digest, now = md5.digest(), time.time()
                checksum = hasher.digest()
                tf.pwrite(_with_checksum(record, placeholder, algorithm, checksum),
                          len(fixed))
                tf.pwrite(sf.encode_fixed(len(record), length, digest, now), 0)
                self._commit_part(tf, bucket, upload_id, part_number)
        finally:
            digests.close(md5)
        return PartRecord(part_number, etags.md5_etag(digest), length, now,
                          (algorithm, checksum))

    def upload_part_copy(self, bucket: str, key: str, upload_id: str, part_number: int,
                         src_bucket: str, src_key: str,
                         byte_range: tuple[int, int] | None = None,
                         src_version: str | None = None) -> PartRecord:
        """Make part ``part_number`` from bytes ``first..last`` (inclusive) of an object.

        None copies the whole object.  The source is its latest version, or
        ``src_version``.  The part's ETag is the MD5 of the bytes.
        A range outside the source raises InvalidRange (the S3 layer normally
        refuses it first, when parsing ``x-amz-copy-source-range``).
        """
        check_part_number(part_number)
        self._load_upload(bucket, key, upload_id)
        row, fd, src_path, _ = self._open_version(src_bucket, src_key, src_version)
        try:
            src, h = self._read_object(fd, src_path, src_key, row)
            if byte_range is None:
                first, length = 0, src.size
            else:
                first, last = byte_range
                if not 0 <= first <= last < src.size:
                    raise InvalidRange(RangeRequested=f"bytes={first}-{last}",
                                       ActualObjectSize=str(src.size))
                length = last - first + 1
            upload = self._load_upload(bucket, key, upload_id)
            algorithm = upload.checksum[0] if upload.checksum else fs_checksums.DEFAULT_ALGORITHM
            placeholder = fs_checksums.part_placeholder(algorithm)
            record = sf.encode_fields(sf.part_fields(upload_id, part_number, placeholder))
            hashes = DigestSet(("md5", algorithm))
            with TempFile(self.layout.tmp, "partcopy") as tf:
                fixed = sf.encode_fixed(len(record), length, sf.EMPTY_MD5, 0.0)
                tf.write(fixed)
                tf.write(record)
                copy_range(fd, h.body_offset + first, length, tf, hashes, path=src_path)
                found = hashes.digests()
                digest, checksum, now = found["md5"], found[algorithm], time.time()
                tf.pwrite(_with_checksum(record, placeholder, algorithm, checksum),
                          len(fixed))
                tf.pwrite(sf.encode_fixed(len(record), length, digest, now), 0)
                self._commit_part(tf, bucket, upload_id, part_number)
        finally:
            os.close(fd)
        return PartRecord(part_number, etags.md5_etag(digest), length, now,
                          (algorithm, checksum))

    def list_parts(self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0,
                   max_parts: int = 1000) -> PartListResult:
        """The parts numbered above ``part_number_marker``, ascending, at most ``max_parts``."""
        upload = self._load_upload(bucket, key, upload_id)
        check_max(part_number_marker, "part-number-marker")
        check_max(max_parts, "max-parts")
        after = [p for p in self._scan_parts(self.layout.upload(bucket, upload_id), upload_id)
                 if p.number > part_number_marker]
        page = after[:max_parts]
        truncated = 0 < max_parts < len(after)
        return PartListResult(upload, page, truncated, page[-1].number if truncated else None)

    def complete_upload(self, bucket: str, key: str, upload_id: str,
                        parts: Sequence[tuple[int, str]],
                        precondition: Precondition | None = None,
                        expected: Callable[[StoredChecksum | None, int], None] | None = None,
                        ) -> ObjectRecord:
        """Assemble the named parts into the object, as S3 validates and computes it.

        Checks, in this order: the upload exists for this bucket and key
        (NoSuchUpload); ``parts`` is non-empty (MalformedXML) and strictly
        ascending (InvalidPartOrder); every named part exists with that ETag,
        compared without quotes (InvalidPart); every part but the last has at
        least 5 MiB (EntityTooSmall).  Then the parts are concatenated by
        streaming (kernel copy) into a temp file that is renamed into place.
        ETag: MD5 of the concatenated binary part MD5s, hex, ``-N``.  Parts not
        named are discarded with the upload.

        The upload is claimed by renaming its directory away first, so exactly
        one of concurrent complete/abort calls wins, and a part upload that
        arrives meanwhile gets NoSuchUpload.  If the complete fails (validation
        or I/O), the upload is put back and can be completed again.  A second
        complete of a completed upload gets NoSuchUpload.  ``precondition``
        (conditional writes) is checked atomically with the rename; when it fails
        the upload is put back, like any failed complete.

        The object's checksum comes from its parts' (``object_checksum``), never by
        reading them again; ``expected`` is called with it and the part count before
        anything is written (the S3 layer's check of a whole-object checksum the
        client sent: it raises BadDigest, and the upload is put back).
        """
        loc = self.layout.object(bucket, key)
        upload = self._load_upload(bucket, key, upload_id)
        if not parts:
            raise MalformedXML()
        previous = 0
        for number, given in parts:
            if isinstance(number, bool) or not isinstance(number, int) or \
                    not 1 <= number <= MAX_PART_NUMBER:  # no such part can exist
                raise InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=str(given))
            if number <= previous:
                raise InvalidPartOrder(UploadId=upload_id)
            previous = number
        upload_dir = self.layout.upload(bucket, upload_id)
        claim = self._claim(upload_dir, bucket, upload_id, "claim")
        try:
            chosen, sums = self._validate_parts(claim, upload_id, parts)
            sizes = tuple(size for _, size, _ in chosen)
            total = sum(sizes)
            digest = etags.multipart_digest(d for _, _, d in chosen)
            checksum = object_checksum(upload, sums, sizes)
            if expected is not None:
                expected(checksum, len(sizes))
            # The parts' digests stay with the object, for partNumber reads.
            part_sums = None if checksum is None else [d for _, d in
                                                       (s for s in sums if s is not None)]
            record = sf.encode_fields(sf.object_fields(key, upload.meta, sizes, part_sums))
            with TempFile(self.layout.tmp, "complete") as tf:
                tf.write(sf.encode_fixed(len(record), total, digest, 0.0))
                tf.write(record)
                for number, size, _ in chosen:
                    os.utime(claim)  # alive, for the stale sweep of other processes
                    path = os.path.join(claim, part_file_name(number))
                    fd = open_read(path)
                    try:
                        h = sf.read_header(fd, "part", path)
                        copy_range(fd, h.body_offset, size, tf, path=path)
                    finally:
                        os.close(fd)
                now = time.time()
                tf.pwrite(sf.encode_fixed(len(record), total, digest, now), 0)
                out = ObjectRecord(key=key, size=total,
                                   etag=etags.multipart_etag(digest, len(sizes)),
                                   last_modified=now, meta=upload.meta, part_sizes=sizes,
                                   tag_count=len(upload.tags), checksum=checksum,
                                   part_checksums=None if part_sums is None
                                   else b"".join(part_sums))
                version = self._commit_version(tf, bucket, loc, out, precondition,
                                               upload.tags)
        except BaseException:
            self._unclaim(claim, upload_dir)
            raise
        shutil.rmtree(claim, ignore_errors=True)
        return dataclasses.replace(out, version_id=version)

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Discard the upload and its parts; NoSuchUpload if unknown (or already gone)."""
        self._load_upload(bucket, key, upload_id)
        upload_dir = self.layout.upload(bucket, upload_id)
        doomed = self._claim(upload_dir, bucket, upload_id, "abort")
        fsync_dir_if_exists(os.path.dirname(upload_dir))
        shutil.rmtree(doomed, ignore_errors=True)

    def list_uploads(self, bucket: str, prefix: str = "", delimiter: str | None = None,
                     key_marker: str | None = None, upload_id_marker: str | None = None,
                     max_uploads: int = 1000) -> UploadListResult:
        """One page of uploads in progress: by key (S3 order), then by initiation.

        Marker semantics are S3's: with ``key_marker`` alone, uploads of keys
        after it; with ``upload_id_marker`` too, also the uploads of that very
        key whose ids sort after it (ids sort by initiation).
        ``upload_id_marker`` without ``key_marker`` is ignored, as in S3.
        Common prefixes roll up and count as in ``list_objects``.
        """
        self.require_bucket(bucket)
        check_text(prefix, "prefix")
        for value, name in ((delimiter, "delimiter"), (key_marker, "key-marker"),
                            (upload_id_marker, "upload-id-marker")):
            if value is not None:
                check_text(value, name)
        check_max(max_uploads, "max-uploads")
        if max_uploads == 0:
            return UploadListResult([], [], False, None, None)
        uploads = sorted((u for u in self.scan_uploads(bucket) if u.key.startswith(prefix)),
                         key=attrgetter("key", "upload_id"))
        tie: Callable[[UploadRecord], bool] | None = None
        if key_marker is not None and upload_id_marker is not None:
            marker_id = upload_id_marker
            tie = lambda u: u.upload_id > marker_id  # noqa: E731
        page = paginate(uploads, attrgetter("key"), prefix=prefix, delimiter=delimiter or None,
                        marker=key_marker, max_entries=max_uploads, tie_after=tie)
        last_id = page.last_item.upload_id if page.last_item is not None else None
        return UploadListResult(page.items, page.common_prefixes, page.is_truncated,
                                page.next_marker, last_id)

    def scan_uploads(self, bucket: str) -> Iterator[UploadRecord]:
        """Every upload in progress in the bucket, unordered (O(n), like ``scan_objects``)."""
        uploads = self.layout.uploads(bucket)
        try:
            with os.scandir(uploads) as it:
                names = [e.name for e in it]
        except FileNotFoundError:
            return
        for name in names:
            try:
                path = self.layout.upload_record(bucket, name)
                fd = open_read(path)
            except (NoSuchUpload, FileNotFoundError):
                continue
            try:
                yield sf.upload_record(sf.read_header(fd, "upload", path), path)
            except InternalError:
                continue
            finally:
                os.close(fd)

    def _load_upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        check_key(key)
        path = self.layout.upload_record(bucket, upload_id)
        try:
            fd = open_read(path)
        except FileNotFoundError:
            self.require_bucket(bucket)
            raise NoSuchUpload(UploadId=upload_id) from None
        try:
            upload = sf.upload_record(sf.read_header(fd, "upload", path), path)
        finally:
            os.close(fd)
        if (upload.bucket, upload.key, upload.upload_id) != (bucket, key, upload_id):
            raise NoSuchUpload(UploadId=upload_id)
        return upload

    def _commit_part(self, tf: TempFile, bucket: str, upload_id: str, part_number: int) -> None:
        def prepare() -> None:
            self.require_bucket(bucket)
            raise NoSuchUpload(UploadId=upload_id)
        tf.commit(self.layout.upload(bucket, upload_id), part_file_name(part_number), prepare)

    def _scan_parts(self, upload_dir: str, upload_id: str) -> list[PartRecord]:
        try:
            with os.scandir(upload_dir) as it:
                numbered = [(n, e.path) for e in it if (n := part_number_of(e.name)) is not None]
        except FileNotFoundError:
            raise NoSuchUpload(UploadId=upload_id) from None
        parts = []
        for number, path in sorted(numbered):
            try:
                fd = open_read(path)
            except FileNotFoundError:
                continue
            try:
                parts.append(sf.part_record(sf.read_header(fd, "part", path), path,
                                            upload_id, number))
            finally:
                os.close(fd)
        return parts

    def _validate_parts(self, claim: str, upload_id: str, parts: Sequence[tuple[int, str]]
                        ) -> tuple[list[tuple[int, int, bytes]],
                                   list[tuple[str, bytes] | None]]:
        chosen: list[tuple[int, int, bytes]] = []
        sums: list[tuple[str, bytes] | None] = []
        for number, given in parts:
            missing = InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=str(given))
            if not isinstance(given, str):
                raise missing
            path = os.path.join(claim, part_file_name(number))
            try:
                fd = open_read(path)
            except FileNotFoundError:
                raise missing from None
            try:
                h = sf.read_header(fd, "part", path)
                part = sf.part_record(h, path, upload_id, number)
            finally:
                os.close(fd)
            if not etags.same_etag(part.etag, given):
                raise missing
            chosen.append((number, part.size, h.md5))
            sums.append(part.checksum)
        for number, size, digest in chosen[:-1]:
            if size < MIN_PART_SIZE:
                raise EntityTooSmall(ProposedSize=str(size), MinSizeAllowed=str(MIN_PART_SIZE),
                                     PartNumber=str(number), ETag=etags.md5_etag(digest))
        return chosen, sums

    def _claim(self, upload_dir: str, bucket: str, upload_id: str, kind: str) -> str:
        """Rename the upload's directory into tmp/ so that this call alone owns it."""
        claim = os.path.join(self.layout.tmp, tmp_prefix(kind) + secrets.token_hex(8))
        try:
            os.rename(upload_dir, claim)
        except FileNotFoundError:
            self.require_bucket(bucket)
            raise NoSuchUpload(UploadId=upload_id) from None
        return claim

    def _unclaim(self, claim: str, upload_dir: str) -> None:
        try:
            os.rename(claim, upload_dir)
        except OSError:
            log.warning("file store: upload %s could not be put back (bucket gone?)", upload_dir)
            shutil.rmtree(claim, ignore_errors=True)
