"""``encproxy rotate``: re-wrap data keys under a master key's current version.

See docs/OPERATIONS.md §6.

::

    encproxy rotate --bucket B [--prefix P] [--to-key K] [--dry-run]
                    [--start-after KEY] [--workers N] [--delete-superseded]
                    [--no-progress] [--config PATH]

For every object of the bucket (under the prefix) whose envelope
(``x-amz-meta-encproxy``, docs/FORMAT.md §2) wraps its data key under anything
but the target -- the current version of the object's own master key, or of
``--to-key`` -- it unwraps the data key, wraps it again under the target, checks
that the new envelope opens, and writes it **in place** where the backend can
(the file store: ``update_encryption.rewrite_in_place``, a sub-request flagged
with ``environ.IN_PLACE`` that rewrites that version's user metadata only, with
the same version id, ETag and Last-Modified), else (an S3 backend answers that
request 501) with a **self-copy that replaces the metadata**: the body, the
object id and the envelope tag stay byte for byte as they were, and every other
piece of metadata and content header is passed through unchanged.  Both are
conditional on the backend ETag seen (``x-amz-copy-source-if-match``), so an
object overwritten meanwhile is never clobbered: it is looked at again (a new
object is normally current already).  Whether the backend rewrites in place is
asked once per run with an ETag no object has (the file store answers 412,
writing nothing; an S3 backend 501), so a dry run can tell too.

Every object stays readable at every moment: until the copy lands, the old
envelope, under a version that still exists, is the object's; afterwards the new
one is.  Only once a run reports nothing left under an old version may that
version be retired (``encproxy keys retire``).

It is idempotent and resumable: an object already under the target is counted
and left alone, so running the command again finishes an interrupted run; after
an interruption it also prints the ``--start-after`` key from which to resume
without looking at the finished pages again.

It works in-process on the backend itself (plain S3 requests through the
backend app built from the config, as the encryption layer makes them), so it
needs no running server and no client credentials, and it may run beside
running servers.

A multipart-format object cannot take a backend CopyObject, which would drop
the ``-N`` of its ETag that listings need (FORMAT.md §3.4, §7.5): it is copied
part by part instead (UploadPartCopy of each backend part's byte range to its own
part number, into a new backend upload carrying the new envelope), so its bytes,
part numbers and ETag stay as they were.  Completing that upload replaces the
object, so the object's backend ETag is checked again just before, and the upload
is abandoned if it changed; the window left is the few milliseconds between that
check and the completion.

**Versioned buckets** (versioning Enabled or Suspended): every version is looked at
(ListObjectVersions), not only the current ones, because retiring a master-key version
makes every version still wrapped under it unreadable.  On the file store every version,
current or not, is re-wrapped in place: no version is made, and none is left under the
old wrapping.  S3 has no operation that rewrites a version in place: a copy always makes
a new current version.  So, through an S3 backend,

* a current version is re-wrapped by the conditional self-copy *of that version id*,
  which makes a new current version (same body, ETag and tags; a new version id) and
  pushes the version it copied down, under the old wrapping;
* an older version (and each one a self-copy pushed down) is never copied (that would
  make it current again): its data key, wrapped again under the current version of its
  own master key, goes into a **rewrap record** in the internal bucket
  (``encproxy.wsgi.encryption.rewraps``, FORMAT.md §14), and its envelope stays as it
  is; reads use the record once the old master-key version is retired.  A record keeps
  a version under its own master key, so with ``--to-key`` older versions are counted
  as ``older versions left``, with the master-key versions they keep in use;
* ``--delete-superseded`` deletes by id each non-current version that the key's current
  version is a re-wrapped copy of (same object id, hence data key and ciphertext; same
  backend ETag and size; another envelope), in this run or after an earlier one, with
  its record: only its version id is lost.  A dry run deletes nothing;
* after a run over the whole bucket, the records of versions deleted since (by
  DeleteObjects, lifecycle expiration, or behind encproxy's back) are removed.

Left alone, and counted with a reason:

* SSE-C objects: their data key is wrapped under the customer's key, which
  encproxy never has;
* objects whose user-metadata names hold ``_``, which the WSGI sub-request
  cannot carry unchanged;
* objects whose data key was wrapped by another key provider.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from encproxy import errors
from encproxy.crypto.keys import open_object, rewrap
from encproxy.format.constants import Kind, Protection
from encproxy.format.envelope import Envelope
from encproxy.format.errors import FormatError
from encproxy.keys.blob import WrappedKey
from encproxy.keys.provider import KeyInfo, KeyProvider
from encproxy.progress import Progress
from encproxy.s3 import sse, xml
from encproxy.s3.metadata import CONTENT_HEADERS
from encproxy.settings import Settings
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.encryption import integrity, kept_tags
from encproxy.wsgi.encryption.headers import CONTEXT_HEADER, ENVELOPE_HEADER
from encproxy.wsgi.encryption.kept_acl import kept_acl_headers
from encproxy.wsgi.encryption.layouts import LayoutReader, backend_parts
from encproxy.wsgi.encryption.part_copy import copy_parts
from encproxy.wsgi.encryption.rewraps import RewrapStore
from encproxy.wsgi.encryption.streaming import Fetcher
from encproxy.wsgi.encryption.update_encryption import rewrite_in_place
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.rotation")

# Headers of a HEAD answer that a REPLACE copy must send again to keep them.
KEPT_HEADERS = (*CONTENT_HEADERS, "x-amz-storage-class", "x-amz-website-redirect-location")
PAGE = 1000
MAX_LISTED_FAILURES = 20

# Outcomes
REWRAPPED = "rewrapped"
WOULD_REWRAP = "would rewrap"
CURRENT = "already current"
PLAIN = "not encrypted"
SKIPPED = "skipped"
FAILED = "failed"
VANISHED = "deleted meanwhile"
LEFT = "older versions left"       # non-current versions under an old master-key version
ASIDE = "rewrap records written"   # older versions re-wrapped in rewrap records
RECORDS_REMOVED = "rewrap records of deleted versions removed"
SUPERSEDED_DELETED = "superseded versions deleted"

# The in-place probe's condition (``Rotator._rewrites_in_place``): no stored object has
# this ETag, so the file store answers 412 without writing, and an S3 backend its 501.
PROBE_ETAG = '"in-place probe"'
NULL_VERSION = "null"

SKIP_SSE_C = "SSE-C (the customer's key is not held by encproxy)"
SKIP_UNDERSCORE = "user-metadata name with '_' (cannot be copied unchanged)"
SKIP_FOREIGN = "data key wrapped by another key provider"


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str = ""
    wrapped_under: tuple[str, str] | None = None   # (key id, version) after this run
    # The wrapping of the version a re-wrap of a current version left behind, non-current
    # (a versioned bucket), if it was not deleted.
    left_behind: tuple[str, str] | None = None
    superseded_deleted: bool = False
    # An older version's data key went into a rewrap record (alone, or beside the
    # re-wrap of the current version that made it older).
    rewrapped_aside: bool = False


# What ``_rewrite_in_place`` answers when the backend cannot rewrite in place (501).
IN_PLACE_REFUSED = Outcome("in place refused")


@dataclass(frozen=True)
class Listed:
    """One object, or one version of it, as the backend listed it."""
    key: str
    version_id: str | None = None      # None: an unversioned listing (the current object)
    latest: bool = True


@dataclass
class Summary:
    bucket: str
    prefix: str
    to_key: str | None
    dry_run: bool
    listed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    in_use: Counter[tuple[str, str]] = field(default_factory=Counter)
    resume_after: str | None = None     # the last key of the last finished page
    interrupted: bool = False
    versioned: bool = False             # every version listed (ListObjectVersions)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, key: str, outcome: Outcome) -> None:
        with self._lock:
            self.counts[outcome.status] += 1
            if outcome.status == SKIPPED:
                self.skipped[outcome.reason] += 1
            if outcome.status == FAILED:
                self.failures.append((key, outcome.reason))
            if outcome.wrapped_under is not None:
                self.in_use[outcome.wrapped_under] += 1
            if outcome.left_behind is not None:
                self.counts[LEFT] += 1
                self.in_use[outcome.left_behind] += 1
            if outcome.superseded_deleted:   # beside a REWRAPPED outcome
                self.counts[SUPERSEDED_DELETED] += 1
            if outcome.rewrapped_aside:
                self.counts[ASIDE] += 1

    @property
    def failed(self) -> int:
        return self.counts[FAILED]

    def render(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        target = f"key {self.to_key!r}" if self.to_key else "each object's own key"
        lines = [f"rotate {where} -> {target}, current version"
                 + ("  (dry run: nothing written)" if self.dry_run else "")]
        rows = [("objects listed", self.listed),
                (WOULD_REWRAP if self.dry_run else REWRAPPED,
                 self.counts[WOULD_REWRAP if self.dry_run else REWRAPPED]),
                (CURRENT, self.counts[CURRENT]), (PLAIN, self.counts[PLAIN]),
                (VANISHED, self.counts[VANISHED]), (SKIPPED, self.counts[SKIPPED]),
                (FAILED, self.counts[FAILED])]
        if self.versioned:
            rows[3:3] = [(LEFT, self.counts[LEFT]),
                         (SUPERSEDED_DELETED, self.counts[SUPERSEDED_DELETED])]
            if not self.dry_run:
                rows[2:2] = [(ASIDE, self.counts[ASIDE])]
                rows.append((RECORDS_REMOVED, self.counts[RECORDS_REMOVED]))
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            lines.append(f"  {name:<{width}}  {value:>8}")
            if name == SKIPPED:
                lines += [f"    {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        for key, reason in self.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"    failed: {key}: {reason}")
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"    ... and {len(self.failures) - MAX_LISTED_FAILURES} more "
                         "(see the log)")
        lines.append("master key versions these objects are wrapped under"
                     + (" (before the run)" if self.dry_run else "") + ":")
        if not self.in_use:
            lines.append("  (none)")
        for (key_id, version), n in sorted(self.in_use.items()):
            lines.append(f"  {key_id} version {version or '(KMS-managed)'}: {n}")
        if self.versioned and self.counts[LEFT]:
            lines.append(f"{self.counts[LEFT]} older version(s) keep an old wrapping: this "
                         "backend cannot rewrite a version in place, and rewrap records keep "
                         "an older version under its own master key only; delete them or "
                         "let them expire before retiring the master-key versions they use")
        if self.interrupted:
            lines.append("interrupted" + (f"; resume with --start-after {self.resume_after!r}"
                                          if self.resume_after else "; run it again"))
        return "\n".join(lines)


class Rotator:
    """Re-wraps the objects of one bucket; see the module docstring."""

    def __init__(self, backend: WSGIApp, keys: KeyProvider, *, to_key: str | None = None,
                 dry_run: bool = False, internal_bucket: str | None = None,
                 delete_superseded: bool = False, rewraps: RewrapStore | None = None) -> None:
        self.backend = backend
        # Where older versions' re-wrapped data keys go on a backend that cannot rewrite a
        # version in place (None: such versions are left, counted).
        self.rewraps = rewraps
        self.keys = keys
        self.to_key = keys.normalize(to_key) if to_key else None
        self.dry_run = dry_run
        self.delete_superseded = delete_superseded
        self.internal_bucket = internal_bucket
        self._targets: dict[str, KeyInfo] = {}
        self._targets_lock = threading.Lock()
        self._layouts = LayoutReader()
        self._in_place: bool | None = None      # the backend rewrites in place (learnt)
        if self.to_key is not None:
            self._target(self.to_key)  # KMS.NotFoundException now, not once per object

    # -- the walk ----------------------------------------------------------------------
    def run(self, bucket: str, prefix: str = "", start_after: str = "", workers: int = 4,
            progress: Progress | None = None) -> Summary:
        if bucket == self.internal_bucket:
            raise errors.InvalidArgument("the internal bucket holds no client objects")
        summary = Summary(bucket, prefix, self.to_key, self.dry_run)
        summary.versioned = self.versioned(bucket)
        progress = progress or Progress("rotate", enabled=False)
        pages = self.version_pages(bucket, prefix, start_after) if summary.versioned else (
            ([Listed(k) for k in keys], more, keys[-1] if keys else None)
            for keys, more in self.pages(bucket, prefix, start_after))
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="encproxy-rotate") as pool:
            try:
                for entries, more, finished in pages:
                    summary.listed += len(entries)
                    progress.set_total(None if more else summary.listed)

                    def one(entry: Listed) -> None:
                        summary.add(entry.key, self.rotate_object(
                            bucket, entry.key, entry.version_id, entry.latest))
                        progress.advance()
                    list(pool.map(one, entries))
                    if finished is not None:
                        summary.resume_after = finished
            except KeyboardInterrupt:
                summary.interrupted = True
                pool.shutdown(wait=True, cancel_futures=True)
        if summary.versioned and self.rewraps is not None and not self.dry_run \
                and not prefix and not start_after and not summary.interrupted:
            # After a walk over every version: the records of versions gone since.
            summary.counts[RECORDS_REMOVED] = self.rewraps.collect(
                bucket, lambda key, version: self._version_exists(bucket, key, version), None)
        return summary

    def _version_exists(self, bucket: str, key: str, version_id: str) -> bool:
        """False only if the backend says the version is gone (404)."""
        query = "versionId=" + subrequest.quote_param(version_id)
        return subrequest.request(self.backend, None, "HEAD", bucket, key, query).status != 404

    def versioned(self, bucket: str) -> bool:
        """Whether the bucket has (or had) versioning: Enabled or Suspended.  A backend
        without versioning at all (501) has none; any other failure stops the run, which
        could otherwise leave versions unlooked-at and say nothing."""
        resp = subrequest.request(self.backend, None, "GET", bucket, query="versioning")
        if resp.status == 404:
            raise errors.NoSuchBucket(BucketName=bucket)
        if resp.status == 501:
            return False
        if not resp.ok:
            raise errors.ServiceUnavailable(f"GetBucketVersioning of {bucket} failed: "
                                            f"{resp.error_code() or resp.status}")
        root = xml.parse(resp.body) if resp.body.strip() else None
        status = xml.child_text(root, "Status") if root is not None else None
        return status in ("Enabled", "Suspended")

    def version_pages(self, bucket: str, prefix: str = "", start_after: str = ""
                      ) -> Iterator[tuple[list[Listed], bool, str | None]]:
        """(versions of one page, whether more follow, the last key all of whose versions
        are on this page or before), through ListObjectVersions on the backend.  Delete
        markers hold no data key and are not listed."""
        key_marker, version_marker = start_after, ""
        while True:
            query = f"versions&encoding-type=url&max-keys={PAGE}"
            if prefix:
                query += "&prefix=" + quote(prefix, safe="")
            if key_marker:
                query += "&key-marker=" + quote(key_marker, safe="")
            if version_marker:
                query += "&version-id-marker=" + quote(version_marker, safe="")
            resp = subrequest.request(self.backend, None, "GET", bucket, query=query)
            if resp.status == 404:
                raise errors.NoSuchBucket(BucketName=bucket)
            if not resp.ok:
                raise errors.ServiceUnavailable(f"listing the versions of {bucket} failed: "
                                                f"{resp.error_code() or resp.status}")
            root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
            url = (xml.child_text(root, "EncodingType") or "") == "url"
            name = _url_decoded if url else _as_listed
            entries = [Listed(name(xml.child_text(v, "Key")),
                              xml.child_text(v, "VersionId") or "null",
                              (xml.child_text(v, "IsLatest") or "").lower() == "true")
                       for v in root.findall("Version")]
            more = (xml.child_text(root, "IsTruncated") or "").lower() == "true"
            key_marker = name(xml.child_text(root, "NextKeyMarker"))
            version_marker = xml.child_text(root, "NextVersionIdMarker") or ""
            # The key the next page starts in may have more versions: not finished yet.
            finished = [e.key for e in entries if not (more and e.key == key_marker)]
            yield entries, more, finished[-1] if finished else None
            if not more or not key_marker:
                return

    def pages(self, bucket: str, prefix: str = "", start_after: str = ""
              ) -> Iterator[tuple[list[str], bool]]:
        """(keys of one page, whether more follow), through ListObjectsV2 on the backend."""
        token = ""
        while True:
            query = f"list-type=2&encoding-type=url&max-keys={PAGE}"
            if prefix:
                query += "&prefix=" + quote(prefix, safe="")
            if token:
                query += "&continuation-token=" + quote(token, safe="")
            elif start_after:
                query += "&start-after=" + quote(start_after, safe="")
            resp = subrequest.request(self.backend, None, "GET", bucket, query=query)
            if resp.status == 404:
                raise errors.NoSuchBucket(BucketName=bucket)
            if not resp.ok:
                raise errors.ServiceUnavailable(f"listing {bucket} failed: "
                                                f"{resp.error_code() or resp.status}")
            root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
            url = (xml.child_text(root, "EncodingType") or "") == "url"
            keys = [xml.child_text(c, "Key") or "" for c in root.findall("Contents")]
            keys = [unquote_plus(k) if url else k for k in keys]
            more = (xml.child_text(root, "IsTruncated") or "").lower() == "true"
            token = xml.child_text(root, "NextContinuationToken") or ""
            yield keys, more
            if not more or not token:
                return

    # -- one object --------------------------------------------------------------------
    def rotate_object(self, bucket: str, key: str, version_id: str | None = None,
                      latest: bool = True) -> Outcome:
        """Re-wrap one object, or one version of it (``version_id``, from a versioned
        listing; ``latest``: whether it was the key's current version)."""
        try:
            outcome = self._attempt(bucket, key, version_id, latest)
            if outcome is None:  # overwritten between our HEAD and our copy: look again
                outcome = self._attempt(bucket, key, version_id, latest) or Outcome(
                    FAILED, "changed twice while being rotated; run again")
        except Exception as exc:  # noqa: BLE001 - one object's failure never stops the run
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, errors.S3Error) \
                else type(exc).__name__
            outcome = Outcome(FAILED, reason)
        if outcome.status == FAILED:
            log.error("rotate %s/%s: %s", bucket, key, outcome.reason)
        return outcome

    def _target(self, key_id: str) -> KeyInfo:
        with self._targets_lock:
            info = self._targets.get(key_id)
        if info is None:
            info = self.keys.describe(key_id)
            with self._targets_lock:
                self._targets[key_id] = info
        return info

    def _attempt(self, bucket: str, key: str, version_id: str | None = None,
                 latest: bool = True) -> Outcome | None:
        query = ("versionId=" + subrequest.quote_param(version_id)) if version_id else ""
        head = subrequest.request(self.backend, None, "HEAD", bucket, key, query)
        if head.status == 404:
            return Outcome(VANISHED)
        if not head.ok:
            return Outcome(FAILED, f"HEAD answered {head.status}")
        value = head.headers.get(ENVELOPE_HEADER)
        if value is None:
            return Outcome(PLAIN)
        try:
            envelope = Envelope.decode(value)
        except (FormatError, errors.S3Error) as exc:
            return Outcome(FAILED, f"envelope: {type(exc).__name__}")
        if envelope.protection is Protection.SSE_C:
            return Outcome(SKIPPED, SKIP_SSE_C)
        if version_id is not None and self.rewraps is not None:
            # An older version re-wrapped by an earlier run (it may be current again): its
            # record's wrapping is the one to look at (its own may be under a master-key
            # version retired since).
            try:
                found = self.rewraps.get(bucket, key, version_id, None)
                if found is not None:
                    envelope = found.applied_to(envelope)
            except (FormatError, errors.S3Error) as exc:
                return Outcome(FAILED, f"rewrap record: {type(exc).__name__}")
        try:
            blob = WrappedKey.from_bytes(envelope.master_blob)
        except errors.S3Error as exc:
            return Outcome(FAILED, f"wrapped key: {type(exc).__name__}")
        before = (blob.key_id, blob.key_version)
        if blob.provider is not self.keys.kind:
            return Outcome(SKIPPED, SKIP_FOREIGN, before)
        try:
            key_id = self._authenticated_key_id(bucket, key, head, envelope)
        except FormatError as exc:
            return Outcome(FAILED, f"envelope: {type(exc).__name__}", before)
        except errors.S3Error as exc:   # the provider refused to unwrap
            return Outcome(FAILED, f"{exc.code}: {exc.message}", before)
        target_id = self.to_key or self.keys.normalize(key_id)
        info = self._target(target_id)
        if key_id == target_id and blob.key_id == info.key_id and (
                not info.managed_versions or blob.key_version == info.current_version):
            if version_id is not None and not latest and self.delete_superseded \
                    and not self.dry_run and self._delete_duplicate(bucket, key, version_id,
                                                                    head):
                return Outcome(SUPERSEDED_DELETED)   # re-wrapped aside by an earlier run
            return Outcome(CURRENT, wrapped_under=before)
        underscore = any("_" in name for name in head.headers if name.startswith("x-amz-meta-"))
        etag = head.headers.get("etag")
        if envelope.kind is not Kind.SINGLE and etag and backend_parts(etag) is None:
            # Damage (or a backend's lie) whatever the way of writing: reported, not mended.
            return Outcome(FAILED, "multipart envelope without a multipart backend ETag",
                           before)
        pinned = version_id or head.headers.get("x-amz-version-id") or NULL_VERSION
        if not underscore and etag and self._rewrites_in_place(bucket, key, pinned):
            # In place: the file store rewrites any version's envelope without a new
            # version.  Elsewhere (an S3 backend) the copy below is made instead.
            if self.dry_run:
                return Outcome(WOULD_REWRAP, wrapped_under=before)
            try:
                outcome = self._rewrite_in_place(bucket, key, pinned, head, envelope,
                                                 target_id, etag, before)
            except Exception as exc:  # noqa: BLE001 - reported with the version still in use
                reason = f"{exc.code}: {exc.message}" if isinstance(exc, errors.S3Error) \
                    else type(exc).__name__
                return Outcome(FAILED, reason, before)
            if outcome is not IN_PLACE_REFUSED:
                return outcome
        if version_id is not None and not self._is_current(bucket, key, version_id, latest):
            # A copy would make it current again: an S3 backend rewrites no version in place.
            if self.delete_superseded and not self.dry_run and \
                    self._delete_duplicate(bucket, key, version_id, head):
                return Outcome(SUPERSEDED_DELETED)
            return self._rewrap_aside(bucket, key, version_id, head, envelope, key_id,
                                      target_id, before)
        multipart = envelope.kind is not Kind.SINGLE
        if underscore:
            return Outcome(SKIPPED, SKIP_UNDERSCORE, before)
        if not etag:
            return Outcome(FAILED, "the backend reported no ETag", before)
        if self.dry_run:
            return Outcome(WOULD_REWRAP, wrapped_under=before)

        try:
            if multipart:
                outcome = self._rewrite_multipart(bucket, key, version_id, head, envelope,
                                                  target_id, etag, before)
            else:
                outcome = self._rewrite(bucket, key, version_id, head, envelope, target_id,
                                        etag, before)
            if outcome is None or outcome.status != REWRAPPED or version_id is None:
                return outcome
            return self._superseded(bucket, key, version_id, value, outcome, envelope,
                                    key_id, target_id, before)
        except Exception as exc:  # noqa: BLE001 - reported with the version still in use
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, errors.S3Error) \
                else type(exc).__name__
            return Outcome(FAILED, reason, before)

    def _is_current(self, bucket: str, key: str, version_id: str, latest: bool) -> bool:
        """Whether ``version_id`` is the key's current version now (the listing said
        ``latest``; a write since may have pushed it down)."""
        if not latest:
            return False
        current = subrequest.request(self.backend, None, "HEAD", bucket, key)
        return current.ok and (current.headers.get("x-amz-version-id") or "null") == version_id

    def _superseded(self, bucket: str, key: str, version_id: str, old_envelope: str,
                    outcome: Outcome, envelope: Envelope, key_id: str, target_id: str,
                    before: tuple[str, str]) -> Outcome:
        """After the self-copy of current version ``version_id`` of a versioned bucket:
        that version, if it is still there under its old envelope (the copy made a new
        version rather than replacing a ``null`` one), is now an older version: with
        ``--delete-superseded`` deleted (``_delete_duplicate``), else re-wrapped aside
        like any older version (``_rewrap_aside``), else left behind (counted)."""
        query = "versionId=" + subrequest.quote_param(version_id)
        old = subrequest.request(self.backend, None, "HEAD", bucket, key, query)
        if not old.ok or old.headers.get(ENVELOPE_HEADER) != old_envelope:
            return outcome          # replaced in place (a null version)
        if self.delete_superseded and self._delete_duplicate(bucket, key, version_id, old):
            return dataclasses.replace(outcome, superseded_deleted=True)
        aside = self._rewrap_aside(bucket, key, version_id, old, envelope, key_id, target_id,
                                   before)
        if aside.status == REWRAPPED:
            return dataclasses.replace(outcome, rewrapped_aside=True)
        return dataclasses.replace(outcome, left_behind=before)

    def _rewrap_aside(self, bucket: str, key: str, version_id: str,
                      head: subrequest.SubResponse, envelope: Envelope, key_id: str,
                      target_id: str, before: tuple[str, str]) -> Outcome:
        """An older version through a backend that cannot rewrite it in place: its data
        key wrapped again under the current version of its own master key goes into a
        rewrap record (``encproxy.wsgi.encryption.rewraps``), which reads use once the
        old master-key version is retired; its envelope stays as it is.  Moving it to
        another master key (``--to-key``) would leave reads reporting the old one, so
        such a version is left (counted), as is every older version without a store."""
        if self.rewraps is None or target_id != key_id:
            return Outcome(LEFT, wrapped_under=before)
        if self.dry_run:
            return Outcome(WOULD_REWRAP, wrapped_under=before)
        context_value = head.headers.get(CONTEXT_HEADER)
        extra = sse.parse_context(context_value) if context_value else None
        try:
            # The key id field as the version's own (the tag does not cover it): reads
            # report the same key whichever envelope opened the version.
            new = dataclasses.replace(
                rewrap(self.keys, envelope, bucket, key, target_id, extra),
                key_id=envelope.key_id)
            open_object(self.keys, new, bucket, key, extra)  # it opens before it is kept
            self.rewraps.put(bucket, key, version_id, new, None)
        except (FormatError, errors.S3Error) as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, errors.S3Error) \
                else type(exc).__name__
            return Outcome(FAILED, f"rewrap record: {reason}", before)
        blob = WrappedKey.from_bytes(new.master_blob)
        log.info("rotate %s/%s: older version %s re-wrapped in a rewrap record", bucket, key,
                 version_id)
        return Outcome(REWRAPPED, wrapped_under=(blob.key_id, blob.key_version),
                       rewrapped_aside=True)

    def _delete_duplicate(self, bucket: str, key: str, version_id: str,
                          old: subrequest.SubResponse) -> bool:
        """Delete non-current version ``version_id`` (``old``: its HEAD) if the key's
        current version is a re-wrapped copy of it: another version, with the same
        object id (hence data key and ciphertext), backend ETag and size, under another
        envelope.  Nothing is lost but the version id.  False if it is not (or the
        delete failed): the version is then left."""
        old_envelope = old.headers.get(ENVELOPE_HEADER)
        current = subrequest.request(self.backend, None, "HEAD", bucket, key)
        new_envelope = current.headers.get(ENVELOPE_HEADER)
        if not current.ok or old_envelope is None or new_envelope is None \
                or (current.headers.get("x-amz-version-id") or "null") == version_id \
                or new_envelope == old_envelope \
                or _object_id(new_envelope) != _object_id(old_envelope) \
                or current.headers.get("etag", "").strip('"') != \
                old.headers.get("etag", "").strip('"') \
                or current.headers.get("content-length") != old.headers.get("content-length"):
            return False
        query = "versionId=" + subrequest.quote_param(version_id)
        gone = subrequest.request(self.backend, None, "DELETE", bucket, key, query)
        if not gone.ok:
            log.error("rotate %s/%s: deleting superseded version %s answered %s", bucket, key,
                      version_id, gone.status)
            return False
        log.info("rotate %s/%s: deleted version %s, superseded by its re-wrapped copy",
                 bucket, key, version_id)
        if self.rewraps is not None:
            self.rewraps.delete(bucket, key, version_id, None)
        return True

    def _authenticated_key_id(self, bucket: str, key: str, head: subrequest.SubResponse,
                              envelope: Envelope) -> str:
        """The object's key id from authenticated data only: the data key is unwrapped
        (which authenticates the wrapped key's naming of its master key) and the
        envelope's key-id field must agree with it (``integrity.authenticated_key_id``).
        A forged key-id field can thus neither choose the target nor hide an object."""
        context_value = head.headers.get(CONTEXT_HEADER)
        extra = sse.parse_context(context_value) if context_value else None
        with integrity.reported(bucket, key):
            open_object(self.keys, envelope, bucket, key, extra)
            return integrity.authenticated_key_id(envelope)

    def _rewrites_in_place(self, bucket: str, key: str, version_id: str) -> bool:
        """Whether the backend rewrites a version's metadata in place, learnt once per run
        (before any data key is wrapped again for it) by asking it to with an ETag no
        object has: the file store answers 412, writing nothing; an S3 backend app 501,
        without a backend request.  Any other answer (the version went away) tells
        nothing: False for this object, and asked again for the next."""
        with self._targets_lock:
            known = self._in_place
        if known is not None:
            return known
        probe = rewrite_in_place(self.backend, None, bucket, key, version_id, {},
                                 PROBE_ETAG)
        found = {412: True, 501: False}.get(probe.status)
        if found is not None:
            with self._targets_lock:
                self._in_place = found
        return bool(found)

    def _rewrite_in_place(self, bucket: str, key: str, version_id: str,
                          head: subrequest.SubResponse, envelope: Envelope, target_id: str,
                          etag: str, before: tuple[str, str]) -> Outcome | None:
        """Re-wrap, check, and have the backend rewrite version ``version_id``'s envelope
        in place (``update_encryption.rewrite_in_place``): same version, body, ETag and
        Last-Modified.  None if the version changed meanwhile (412); IN_PLACE_REFUSED if
        the backend cannot (an S3 backend: 501)."""
        context_value = head.headers.get(CONTEXT_HEADER)
        extra = sse.parse_context(context_value) if context_value else None
        new = rewrap(self.keys, envelope, bucket, key, target_id, extra)
        open_object(self.keys, new, bucket, key, extra)  # it opens before it is written
        after_blob = WrappedKey.from_bytes(new.master_blob)
        after = (after_blob.key_id, after_blob.key_version)
        headers = {name: v for name, v in _kept_headers(head, new).items()
                   if name.startswith("x-amz-meta-")}
        resp = rewrite_in_place(self.backend, None, bucket, key, version_id, headers, etag)
        if resp.status == 501:
            return IN_PLACE_REFUSED
        if resp.status == 412:
            return None
        if resp.status == 404:
            return Outcome(VANISHED)
        if not resp.ok:
            return Outcome(FAILED, f"in-place rewrite answered {resp.status} "
                           f"{resp.error_code() or ''}".rstrip(), before)
        return Outcome(REWRAPPED, wrapped_under=after)

    def _rewrite(self, bucket: str, key: str, version_id: str | None,
                 head: subrequest.SubResponse, envelope: Envelope, target_id: str, etag: str,
                 before: tuple[str, str]) -> Outcome | None:
        """Re-wrap, check, and write the new envelope with the conditional self-copy."""
        context_value = head.headers.get(CONTEXT_HEADER)
        extra = sse.parse_context(context_value) if context_value else None
        new = rewrap(self.keys, envelope, bucket, key, target_id, extra)
        open_object(self.keys, new, bucket, key, extra)  # it opens before it is written
        after_blob = WrappedKey.from_bytes(new.master_blob)
        after = (after_blob.key_id, after_blob.key_version)

        headers = _kept_headers(head, new)
        headers.update(kept_acl_headers(self.backend, None, bucket, key, version_id))
        tags = kept_tags.read_tags(self.backend, None, bucket, key, version_id)
        headers.update(kept_tags.tag_headers(tags))
        headers.update({"x-amz-copy-source": _copy_source(bucket, key, version_id),
                        "x-amz-metadata-directive": "REPLACE",
                        "x-amz-tagging-directive": "REPLACE",
                        "x-amz-copy-source-if-match": etag})
        copy = subrequest.request(self.backend, None, "PUT", bucket, key, headers=headers)
        if copy.status == 412:
            return None
        if copy.status == 404:
            return Outcome(VANISHED)
        if not copy.ok:
            return Outcome(FAILED, f"copy answered {copy.status} {copy.error_code() or ''}"
                           .rstrip(), before)
        result = xml.parse(copy.body) if copy.body.strip() else None
        if result is None or result.tag.rpartition("}")[2] != "CopyObjectResult":
            # S3 may answer a failed copy with 200 and an Error body.
            code = xml.child_text(result, "Code") if result is not None else None
            return Outcome(FAILED, f"copy failed: {code or 'no result'}", before)
        kept_tags.restore_tags(self.backend, None, bucket, key, tags,
                               copy.headers.get("x-amz-version-id"))
        copied_etag = xml.child_text(result, "ETag")
        if copied_etag and copied_etag.strip('"') != etag.strip('"'):
            log.warning("rotate %s/%s: the backend ETag changed from %s to %s on the self-copy",
                        bucket, key, etag, copied_etag)
        return Outcome(REWRAPPED, wrapped_under=after)


    def _rewrite_multipart(self, bucket: str, key: str, version_id: str | None,
                           head: subrequest.SubResponse, envelope: Envelope, target_id: str,
                           etag: str, before: tuple[str, str]) -> Outcome | None:
        """A multipart-format object keeps its backend parts: each is copied with
        UploadPartCopy over its byte range to its own part number (FORMAT.md §3.4), into a
        new backend upload that carries the new envelope. Bodies, part numbers and the
        ``-N`` of the ETag stay as they were."""
        parts = backend_parts(etag)
        if parts is None:
            return Outcome(FAILED, "multipart envelope without a multipart backend ETag",
                           before)
        context_value = head.headers.get(CONTEXT_HEADER)
        extra = sse.parse_context(context_value) if context_value else None
        objkeys = open_object(self.keys, envelope, bucket, key, extra)
        new = rewrap(self.keys, envelope, bucket, key, target_id, extra)
        open_object(self.keys, new, bucket, key, extra)
        after_blob = WrappedKey.from_bytes(new.master_blob)
        after = (after_blob.key_id, after_blob.key_version)
        stored_size = int(head.headers.get("content-length") or "0")
        fetcher = Fetcher(self.backend, None, bucket, key, version_id, etag)
        known = self._layouts.layout(objkeys, stored_size, etag, fetcher)

        def still_current() -> None:
            # Completing replaces the object: make sure it is still the one we copied.
            again = subrequest.request(self.backend, None, "HEAD", bucket, key)
            if again.headers.get("etag") != etag:
                raise errors.PreconditionFailed()

        tags = kept_tags.read_tags(self.backend, None, bucket, key, version_id)
        try:
            copy_parts(self.backend, None, bucket, key,
                       source=_copy_source(bucket, key, version_id),
                       source_etag=etag, ranges=known.layout.backend_part_ranges(parts),
                       numbers=known.layout.backend_part_numbers(parts),
                       headers={**_kept_headers(head, new),
                                **kept_acl_headers(self.backend, None, bucket, key,
                                                   version_id),
                                **kept_tags.tag_headers(tags)},
                       before_complete=still_current)
            kept_tags.restore_tags(self.backend, None, bucket, key, tags, None)
        except errors.S3Error as exc:
            if exc.status == 412:
                return None     # overwritten meanwhile: look again
            return Outcome(FAILED, f"multipart copy failed: {exc.code}", before)
        return Outcome(REWRAPPED, wrapped_under=after)


def _copy_source(bucket: str, key: str, version_id: str | None = None) -> str:
    source = "/" + bucket + "/" + quote(key, safe="/~")
    if version_id is not None:
        source += "?versionId=" + subrequest.quote_param(version_id)
    return source


def _url_decoded(text: str | None) -> str:
    return unquote_plus(text or "")


def _as_listed(text: str | None) -> str:
    return text or ""


def _object_id(envelope: str) -> bytes | None:
    try:
        return Envelope.decode(envelope).object_id
    except (FormatError, errors.S3Error):
        return None


def _kept_headers(head: subrequest.SubResponse, envelope: Envelope) -> dict[str, str]:
    """What a REPLACE copy must send to keep the object's metadata, with ``envelope``."""
    headers = {name: v for name, v in head.headers.items()
               if (name.startswith("x-amz-meta-") or name in KEPT_HEADERS)
               and name != ENVELOPE_HEADER}
    headers[ENVELOPE_HEADER] = envelope.encode()
    return headers


def cmd_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from encproxy.keys.factory import build_provider
    from encproxy.wsgi.stack import build_backend
    backend = build_backend(settings)
    keys = build_provider(settings, cache=False)
    internal = settings.get("backend", "internal_bucket")
    # Records are authenticated under the records key, as the server's are (stack.py).
    records = RecordKeys(backend, internal, keys, keys.normalize(
        settings.get("keys", "records_key") or settings.get("keys", "default_key")))
    try:
        try:
            rotator = Rotator(backend, keys, to_key=args.to_key, dry_run=args.dry_run,
                              internal_bucket=internal,
                              delete_superseded=args.delete_superseded,
                              rewraps=RewrapStore(backend, internal, records))
            progress = Progress("rotate", enabled=None if args.progress else False)
            with progress:
                summary = rotator.run(args.bucket, args.prefix, args.start_after,
                                      workers=args.workers, progress=progress)
        except errors.S3Error as exc:
            print(f"encproxy: rotate: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        print(summary.render())
        return 1 if summary.failed or summary.interrupted else 0
    finally:
        keys.close()


def add_rotate_parser(sub: Any) -> None:
    """Register ``encproxy rotate`` on the top-level subparsers of ``encproxy.cli``."""
    sp = sub.add_parser("rotate", help="re-wrap the data keys of a bucket's objects under the "
                        "current master-key version (bodies are not re-encrypted)")
    sp.add_argument("--bucket", required=True, metavar="B")
    sp.add_argument("--prefix", default="", metavar="P", help="only keys that start with P")
    sp.add_argument("--to-key", metavar="K",
                    help="wrap under key K (its current version) instead of each object's own key")
    sp.add_argument("--dry-run", action="store_true",
                    help="report what would be re-wrapped; write nothing")
    sp.add_argument("--start-after", default="", metavar="KEY",
                    help="skip keys up to and including KEY (resume an interrupted run)")
    sp.add_argument("--workers", type=_workers, default=4, metavar="N",
                    help="objects handled at once (default 4)")
    sp.add_argument("--delete-superseded", action="store_true",
                    help="versioned buckets: once a current version is re-wrapped (a new "
                         "version), delete the version it copied (same body, old wrapping)")
    sp.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bar (it is shown only on a terminal anyway)")
    sp.add_argument("--config", metavar="PATH",
                    help="ini file (default: $ENCPROXY_CONFIG, else conf/encproxy.ini)")
    sp.set_defaults(func=cmd_rotate)


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return value


__all__ = ["Outcome", "Rotator", "Summary", "add_rotate_parser", "cmd_rotate"]

