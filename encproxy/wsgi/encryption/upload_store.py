"""Multipart uploads in progress, as encproxy keeps them: in the backend.

S3 returns no metadata for an upload in progress, yet every UploadPart, on any
replica, needs the upload's envelope (FORMAT.md §7.2).  At
CreateMultipartUpload, once the backend has answered with the upload id, a
small JSON **record** is written to encproxy's internal bucket::

    uploads/<h>/record          h = SHA-256(bucket, key, upload id), hex
    uploads/<h>/held/<part>/<salt>   copies of terminal segments (FORMAT.md §7.4)
    uploads/<h>/held-ref/<part>/<e>  which held copy a part ETag is (e = SHA-256(ETag))
    uploads/<h>/part/<part>/<name>/<e>  which upload of a part made backend part ETag e
                                     with the plaintext MD5 that ``name`` is keyed from
                                     (by the upload's data key, FORMAT.md §7.8)

The record, the part records and the held references are authenticated records (FORMAT.md §14)
bound to (bucket, key, upload id): one that was edited, forged, moved or left in
the old unauthenticated form is an integrity failure, and the request fails
closed.  Held copies themselves are segments, verified as they stream back at
Complete (``encproxy.crypto.held``).

Every upload made through encproxy has a record, encrypted or not: an upload
without one was not made by encproxy (or encproxy stopped between the
backend's answer and the record), and encproxy writes no part into it, so no
such upload can receive plaintext parts under an envelope.  Complete and Abort
delete everything under ``uploads/<h>/`` (the record, every held copy and held
reference, of every attempt of every part); DeleteBucket does the same for each
upload the backend listed as open just before it deleted the bucket (S3 deletes
a bucket's open uploads with it).  What a crash or a race leaves behind is found
and removed by ``encproxy uploads orphans`` (``encproxy.orphans``).

A record never changes while it exists, so each process caches it (bounded
LRU); but it stops existing when any worker completes or aborts the upload, so
Complete, which must tell a live upload from a retry of a finished one, reads it
fresh.  Unwrapped data keys of uploads are cached for a short time only
(``key_ttl``), and never for SSE-C, whose key every part request brings.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.records import PURPOSE_HELD, PURPOSE_PART, PURPOSE_UPLOAD
from encproxy.format.errors import RecordAuthenticationFailed, RecordMalformed
from encproxy.lru import LRU
from encproxy.s3 import xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.records import RecordKeys, decoding, ensure_internal_bucket, report
from encproxy.wsgi.environ import LISTING_PAGE
from encproxy.wsgi.listing_page import ListingSlot, parsed_page
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.uploads")

PREFIX = "uploads/"
RECORD_VERSION = 2      # of the JSON body; the stored form is FORMAT.md §14
MAX_RECORDS = 10_000
MAX_KEYS = 1_000
KEY_TTL = 120.0
RECORD_THREADS = 4      # part records read at once (ListParts)


@dataclass(frozen=True)
class UploadRecord:
    bucket: str
    key: str
    mode: str                       # none | AES256 | aws:kms | sse-c
    envelope: str | None = None     # the x-amz-meta-encproxy value written at Create
    key_id: str | None = None
    context: str | None = None      # the client's x-amz-server-side-encryption-context
    # SSE-C: the upload's completion key wrapped under the records key (hex), so that
    # Complete needs no customer key (FORMAT.md §7.9); None for other modes and for
    # uploads created before.
    completion: str | None = None
    # The checksum the upload declared at Create (x-amz-checksum-algorithm, lower-case,
    # and x-amz-checksum-type), FORMAT.md §15; None: it declared none (records written
    # before checksums were kept have neither).
    checksum_algorithm: str | None = None
    checksum_type: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.envelope is not None

    def to_json(self) -> bytes:
        fields = asdict(self)
        for later in ("checksum_algorithm", "checksum_type"):
            if fields[later] is None:
                del fields[later]
        return json.dumps({"v": RECORD_VERSION, **fields}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> UploadRecord:
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.pop("v") != RECORD_VERSION:
                raise ValueError("record version")
            # Fields added later are left out while unset, so that records without
            # them read as before (and older replicas read what they can).
            return cls(**data)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            log.error("an upload record in the internal bucket is unreadable")
            raise RecordMalformed() from None


class PartRecord(NamedTuple):
    """What an authenticated part record says about one uploaded part: the backend
    ETag the upload of it with this plaintext MD5 got, its plaintext size, and the
    MD5 sealed under the upload's keys."""

    backend_etag: str
    size: int
    sealed_md5: str                 # the plaintext MD5, sealed (``crypto.multipart``)
    # algorithm -> sealed digest (hex) of the part's checksums (FORMAT.md §15): the one
    # the client sent, and CRC64NVME (S3's default), which encproxy computes if the
    # client sent another; empty for a record written before checksums were kept.
    sealed_checksums: tuple[tuple[str, str], ...] = ()


class HeldCopy(NamedTuple):
    """A held copy named by an authenticated reference: where, its size, its salt, and
    the ETag the backend gave the copy itself (None in a reference written before it was
    kept: the copy then has the part's ETag, as on S3, where both are the bytes' MD5)."""

    name: str
    size: int
    salt: bytes
    copy_etag: str | None = None


def upload_location(bucket: str, key: str, upload_id: str) -> str:
    """``uploads/<h>/``: where everything encproxy keeps for one upload lives."""
    digest = hashlib.sha256()
    for part in (bucket, key, upload_id):
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return PREFIX + digest.hexdigest() + "/"


def _etag_digest(etag: str) -> str:
    """The first 32 hex digits of SHA-256 of a backend ETag (unquoted): how record names
    name one."""
    return hashlib.sha256(etag.strip('"').encode("utf-8", "surrogatepass")).hexdigest()[:32]


class UploadStore:
    def __init__(self, app: WSGIApp, internal_bucket: str, records: RecordKeys,
                 key_ttl: float = KEY_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.records = records
        self.key_ttl = key_ttl
        self.clock = clock
        self._records: LRU[str, UploadRecord] = LRU(MAX_RECORDS)
        self._keys: LRU[str, ObjectKeys] = LRU(MAX_KEYS, ttl=key_ttl, clock=clock)
        self._bucket_ready = False
        self._pool = ThreadPoolExecutor(RECORD_THREADS, thread_name_prefix="encproxy-records")

    # -- records ------------------------------------------------------------------------
    def put(self, upload_id: str, record: UploadRecord, parent: dict[str, Any] | None) -> None:
        self._ensure_internal_bucket(parent)
        where = upload_location(record.bucket, record.key, upload_id)
        body = self.records.seal(PURPOSE_UPLOAD, record.bucket, record.key, upload_id,
                                 record.to_json(), parent)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket,
                                  where + "record",
                                  headers={"content-type": "application/octet-stream"},
                                  body=body)
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        self._records.put(where, record)

    def get(self, bucket: str, key: str, upload_id: str,
            parent: dict[str, Any] | None, *, fresh: bool = False) -> UploadRecord | None:
        """The upload's record, None if it has none.  ``fresh``: read it from the
        backend even if this process has it cached, for a caller that must know the
        record still exists (Complete: another worker may have completed the upload
        and deleted the record since this one cached it)."""
        where = upload_location(bucket, key, upload_id)
        record = None if fresh else self._records.get(where)
        if record is not None:
            return record
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, where + "record")
        if resp.status == 404:
            self._records.pop(where)
            self._keys.pop(where)
            return None
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        name = f"{self.internal_bucket}/{where}record"
        body = self.records.open(name, PURPOSE_UPLOAD, bucket, key, upload_id, resp.body,
                                 parent)
        try:
            record = UploadRecord.from_json(body)
            if (record.bucket, record.key) != (bucket, key):
                raise RecordMalformed()
        except RecordMalformed as exc:
            report(f"upload record {name} ({bucket}/{key} upload {upload_id})", exc)
            raise
        self._records.put(where, record)
        return record

    def forget(self, bucket: str, key: str, upload_id: str,
               parent: dict[str, Any] | None) -> None:
        """Delete the record and every held copy (after Complete or Abort).

        Best effort: what is left holds only ciphertext and the envelope, which
        the completed object carries anyway; it is logged, and ``encproxy uploads
        orphans`` finds it.
        """
        where = upload_location(bucket, key, upload_id)
        self._records.pop(where)
        self._keys.pop(where)
        try:
            remove_location(self.app, self.internal_bucket, where, parent)
        except errors.S3Error as exc:
            log.warning("could not delete what encproxy kept for upload %s of %s/%s: %s "
                        "(`encproxy uploads orphans` finds it)", upload_id, bucket, key,
                        exc.code)

    # -- held copies of terminal segments (FORMAT.md §7.4) ------------------------------
    def held_key(self, bucket: str, key: str, upload_id: str, part_number: int,
                 salt: bytes) -> str:
        return (upload_location(bucket, key, upload_id)
                + f"held/{part_number:05d}/{salt.hex()}")

    def held_ref_key(self, bucket: str, key: str, upload_id: str, part_number: int,
                     etag: str) -> str:
        return (upload_location(bucket, key, upload_id)
                + f"held-ref/{part_number:05d}/{_etag_digest(etag)}")

    def remember_held(self, bucket: str, key: str, upload_id: str, part_number: int,
                      salt: bytes, etag: str, size: int, parent: dict[str, Any] | None,
                      copy_etag: str | None = None) -> None:
        """Record, authenticated, that part ``part_number`` with this ETag is the held copy
        with ``salt`` (``size`` stored bytes), which the backend stored with ``copy_etag``.
        The two ETags need not be equal: SeaweedFS answers UploadPartCopy of a copy it
        stored in chunks with an ETag of its own (``…-2``), not the copy's MD5."""
        fields: dict[str, Any] = {"part": part_number, "salt": salt.hex(),
                                  "etag": etag.strip('"'), "size": size}
        if copy_etag:
            fields["copy_etag"] = copy_etag.strip('"')
        body = json.dumps(fields, sort_keys=True).encode()
        sealed = self.records.seal(PURPOSE_HELD, bucket, key, upload_id, body, parent)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket,
                                  self.held_ref_key(bucket, key, upload_id, part_number, etag),
                                  headers={"content-type": "application/octet-stream"},
                                  body=sealed)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)

    def find_held(self, bucket: str, key: str, upload_id: str, part_number: int,
                  etag: str, parent: dict[str, Any] | None) -> HeldCopy | None:
        """The held copy of ``part_number`` that was uploaded with this ETag, from its
        authenticated reference; None if there is none."""
        name = self.held_ref_key(bucket, key, upload_id, part_number, etag)
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, name)
        if resp.status == 404:
            return None
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        body = self.records.open(f"{self.internal_bucket}/{name}", PURPOSE_HELD, bucket, key,
                                 upload_id, resp.body, parent)
        with decoding(f"held reference {self.internal_bucket}/{name}"):
            data = json.loads(body)
            if data["part"] != part_number or data["etag"] != etag.strip('"'):
                raise RecordAuthenticationFailed()   # an authentic reference moved here
            salt = bytes.fromhex(data["salt"])
            copy_etag = data.get("copy_etag")
            return HeldCopy(self.held_key(bucket, key, upload_id, part_number, salt),
                            int(data["size"]), salt,
                            None if copy_etag is None else str(copy_etag))

    # -- part records (FORMAT.md §7.8) ---------------------------------------------------
    def part_key(self, bucket: str, key: str, upload_id: str, part_number: int, name: str,
                 backend_etag: str) -> str:
        """One record per upload of a part: its number, the name keyed from its plaintext
        MD5, and (like a held reference) the digest of the backend ETag it got."""
        return (self._part_prefix(bucket, key, upload_id, part_number, name)
                + _etag_digest(backend_etag))

    @staticmethod
    def _part_prefix(bucket: str, key: str, upload_id: str, part_number: int,
                     name: str) -> str:
        return upload_location(bucket, key, upload_id) + f"part/{part_number:05d}/{name}/"

    def remember_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                      name: str, sealed_md5: str, backend_etag: str, size: int,
                      parent: dict[str, Any] | None,
                      sealed_checksums: tuple[tuple[str, str], ...] = ()) -> None:
        """Record, authenticated, that an upload of part ``part_number`` with the plaintext
        MD5 that ``name`` is keyed from (and ``sealed_md5`` seals) made the backend part
        with ``backend_etag``.  Every upload has its own record, so uploads of the same
        bytes racing each other leave one for whichever the backend kept."""
        fields: dict[str, Any] = {"part": part_number, "name": name, "md5": sealed_md5,
                                  "etag": backend_etag.strip('"'), "size": size}
        if sealed_checksums:
            fields["checksums"] = [list(pair) for pair in sealed_checksums]
        body = json.dumps(fields, sort_keys=True).encode()
        sealed = self.records.seal(PURPOSE_PART, bucket, key, upload_id, body, parent)
        where = self.part_key(bucket, key, upload_id, part_number, name, backend_etag)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket, where,
                                  headers={"content-type": "application/octet-stream"},
                                  body=sealed)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)

    def find_part(self, bucket: str, key: str, upload_id: str, part_number: int, name: str,
                  backend_etag: str, parent: dict[str, Any] | None) -> PartRecord | None:
        """The authenticated record of the upload of ``part_number`` with the MD5 of
        ``name`` that made the backend part ``backend_etag``; None if there is none."""
        where = self.part_key(bucket, key, upload_id, part_number, name, backend_etag)
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, where)
        if resp.status == 404:
            return None
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        return self._open_part(bucket, key, upload_id, part_number, name, backend_etag, where,
                               resp.body, parent)

    def part_attempts(self, bucket: str, key: str, upload_id: str, part_number: int,
                      name: str, parent: dict[str, Any] | None) -> list[PartRecord]:
        """The records of every upload of ``part_number`` with the MD5 of ``name``."""
        prefix = self._part_prefix(bucket, key, upload_id, part_number, name)
        return [found for _, _, found in self._records_under(bucket, key, upload_id, prefix,
                                                             parent)
                if found is not None]

    def part_records(self, bucket: str, key: str, upload_id: str,
                     parts: dict[int, str], parent: dict[str, Any] | None
                     ) -> list[tuple[int, str, PartRecord]]:
        """(part number, name, record) of the records of ``parts`` (part number -> the
        backend ETag it has now: a page of ListParts), read a few at a time."""
        prefix = upload_location(bucket, key, upload_id) + "part/"
        wanted = {(n, _etag_digest(etag)) for n, etag in parts.items()}
        return [(number, name, found) for number, name, found in self._records_under(
            bucket, key, upload_id, prefix, parent, wanted) if found is not None]

    def _records_under(self, bucket: str, key: str, upload_id: str, prefix: str,
                       parent: dict[str, Any] | None,
                       wanted: set[tuple[int, str]] | None = None
                       ) -> list[tuple[int, str, PartRecord | None]]:
        """The records listed under ``prefix`` (only those of ``wanted`` (part number,
        backend ETag digest) if given), read four at a time."""
        base = upload_location(bucket, key, upload_id) + "part/"
        todo = []
        for where, _, _ in list_internal(self.app, self.internal_bucket, prefix, parent):
            number_text, name, digest = (where[len(base):].split("/") + ["", ""])[:3]
            if not number_text.isdigit() or not name or not digest:
                continue   # not a name encproxy writes: ignored, as a part never named
            if wanted is None or (int(number_text), digest) in wanted:
                todo.append((where, int(number_text), name))

        def read(item: tuple[str, int, str]) -> tuple[int, str, PartRecord | None]:
            where, number, name = item
            resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, where)
            if resp.status == 404:
                return number, name, None   # removed since the listing (Complete, Abort)
            if not resp.ok:
                raise subrequest.internal_failure(resp.status)
            return number, name, self._open_part(bucket, key, upload_id, number, name, None,
                                                 where, resp.body, parent)
        if len(todo) <= 1:
            return [read(item) for item in todo]
        return list(self._pool.map(read, todo))

    def _open_part(self, bucket: str, key: str, upload_id: str, part_number: int, name: str,
                   backend_etag: str | None, where: str, stored: bytes,
                   parent: dict[str, Any] | None) -> PartRecord:
        """The verified record stored at ``where``: its body must name the part, name and
        backend ETag (its digest) it is stored under."""
        what = f"{self.internal_bucket}/{where}"
        body = self.records.open(what, PURPOSE_PART, bucket, key, upload_id, stored, parent)
        with decoding(f"part record {what}"):
            data = json.loads(body)
            etag, size, md5 = data["etag"], data["size"], data["md5"]
            if not isinstance(etag, str) or not etag or not isinstance(size, int) \
                    or size < 0 or not isinstance(md5, str):
                raise ValueError("part record fields")
            if data["part"] != part_number or data["name"] != name \
                    or where != self.part_key(bucket, key, upload_id, part_number, name, etag) \
                    or (backend_etag is not None and etag != backend_etag.strip('"')):
                raise RecordAuthenticationFailed()   # an authentic record moved here
            pairs = data.get("checksums", [])
            if not isinstance(pairs, list) or not all(
                    isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(x, str) for x in pair) for pair in pairs):
                raise ValueError("part record checksums")
            return PartRecord(f'"{etag}"', size, md5, tuple((a, v) for a, v in pairs))

    # -- unwrapped keys ---------------------------------------------------------------
    def cached_keys(self, bucket: str, key: str, upload_id: str) -> ObjectKeys | None:
        return self._keys.get(upload_location(bucket, key, upload_id))

    def cache_keys(self, bucket: str, key: str, upload_id: str, keys: ObjectKeys) -> None:
        self._keys.put(upload_location(bucket, key, upload_id), keys)

    # -- the internal bucket -----------------------------------------------------------
    def _ensure_internal_bucket(self, parent: dict[str, Any] | None) -> None:
        if self._bucket_ready:
            return
        ensure_internal_bucket(self.app, self.internal_bucket, parent)
        self._bucket_ready = True


# -- housekeeping: whole upload locations, a bucket's open uploads ---------------------------

def list_internal(app: WSGIApp, internal_bucket: str, prefix: str,
                  parent: dict[str, Any] | None,
                  start_after: str | None = None) -> Iterable[tuple[str, str, int]]:
    """(name, ETag, size) of everything under ``prefix`` in the internal bucket (after
    ``start_after``, if given), in the backend's order; nothing if the internal bucket does
    not exist."""
    for entries, _ in internal_pages(app, internal_bucket, prefix, parent, start_after):
        yield from entries


def internal_pages(app: WSGIApp, internal_bucket: str, prefix: str,
                   parent: dict[str, Any] | None, start_after: str | None = None
                   ) -> Iterator[tuple[list[tuple[str, str, int]], bool]]:
    """``list_internal`` a backend page at a time: (its entries, whether more follow).
    The next page is asked for only when the one before has been taken."""
    token = None
    while True:
        query = "list-type=2&prefix=" + subrequest.quote_param(prefix)
        if start_after is not None:
            query += "&start-after=" + subrequest.quote_param(start_after)
        if token:
            query += "&continuation-token=" + subrequest.quote_param(token)
        # The app below leaves its page unrendered where it can (listing_page.py).
        environ = subrequest.request_environ(parent, "GET", internal_bucket, None, query)
        slot = environ[LISTING_PAGE] = ListingSlot()
        resp = subrequest.run(app, environ)
        if resp.status == 404:
            return
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        page = slot.page or parsed_page(
            xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE), "Contents")
        token = page.next_token
        yield [(entry.key, entry.etag, entry.size) for entry in page.entries], bool(token)
        if not token:
            return


def remove_location(app: WSGIApp, internal_bucket: str, where: str,
                    parent: dict[str, Any] | None) -> int:
    """Delete everything under ``where`` (``uploads/<h>/``): held copies and references of
    every attempt of every part, then the record, last, so that an interrupted removal
    still leaves the upload's record to say what the rest was.  How many were deleted;
    S3Error if one could not be."""
    assert where.startswith(PREFIX) and where.endswith("/") and len(where) > len(PREFIX) + 1
    names = [name for name, _, _ in list_internal(app, internal_bucket, where, parent)]
    record = where + "record"
    ordered = [n for n in names if n != record] + [record]
    for name in ordered:
        resp = subrequest.request(app, parent, "DELETE", internal_bucket, name)
        if not resp.ok and resp.status != 404:
            raise subrequest.internal_failure(resp.status)
    return len(names)


def open_uploads(app: WSGIApp, bucket: str,
                 parent: dict[str, Any] | None) -> Iterable[tuple[str, str]]:
    """(key, upload id) of every multipart upload in progress in ``bucket``, as the backend
    lists them (ListMultipartUploads, every page).  S3Error (NoSuchBucket, ...) if the
    backend refuses."""
    key_marker, id_marker = "", ""
    while True:
        query = "uploads"
        if key_marker or id_marker:
            query += ("&key-marker=" + subrequest.quote_param(key_marker)
                      + "&upload-id-marker=" + subrequest.quote_param(id_marker))
        resp = subrequest.request(app, parent, "GET", bucket, query=query)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        for upload in root.findall("Upload"):
            yield (xml.child_text(upload, "Key") or "", xml.child_text(upload, "UploadId") or "")
        next_key = xml.child_text(root, "NextKeyMarker") or ""
        next_id = xml.child_text(root, "NextUploadIdMarker") or ""
        if (xml.child_text(root, "IsTruncated") or "") != "true" \
                or (next_key, next_id) in (("", ""), (key_marker, id_marker)):
            return
        key_marker, id_marker = next_key, next_id
