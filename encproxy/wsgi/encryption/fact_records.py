"""Facts records in the internal bucket: a listing's facts that survive restarts and are
shared by every worker and replica (FORMAT.md §17, ``encproxy.crypto.fact_names``).

encproxy records an object's facts when it writes the object (PutObject, POST,
CompleteMultipartUpload, CopyObject, UpdateObjectEncryption) and when a listing had to
learn them (an object written before, or behind encproxy's back).  A listing that meets
objects its cache does not know reads the records of that page's range of keys with one
LIST of the internal bucket (more only when stale records crowd the range, and none once
every entry has its record), keeps the ones that open (their sealed client ETag
authenticates every field), and looks up only what is left.

The records are an authenticated cache, not a source of truth: a record names the backend
ETag and stored size of the body it describes, and a listing uses it only for an entry
with that ETag and size.  A record that does not open (its seal authenticates every
field) is reported as an integrity failure and ignored (the object is looked up as if
there were none); a missing or deleted record costs a lookup.  Writing one is best
effort: the object is already written when its record is, and a failure is logged,
never answered.

A record of a body the bucket no longer has (overwritten, deleted) is read past (``MAX_PAGES``
bounds what one listing page reads) until a ListObjects page that read it finds another
body listed under its key in a bucket that never had versioning, which deletes it; and
DeleteBucket deletes them all.  (With versioning, an older body may still be a version.)

Through an S3 backend, a listing of a bucket this process has not listed yet (or whose
last listing left objects unknown) reads the first page of records ahead (``read_ahead``),
from the page's lower bound, while the backend lists the objects: a first listing after a
restart then waits on one backend LIST, not two in a row.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from encproxy import errors, metrics
from encproxy.crypto import fact_names
from encproxy.crypto.fact_names import Facts, Sealer
from encproxy.crypto.records import PURPOSE_FACTS
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.records import RecordKeys, ensure_internal_bucket
from encproxy.wsgi.encryption.background import BackgroundWrites
from encproxy.wsgi.encryption.upload_store import internal_pages, list_internal
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.facts")

_sealers: dict[bytes, Sealer] = {}   # by facts key: a deployment has one root, or a few
_sealers_lock = threading.Lock()


def sealer_of(facts_key: bytes) -> Sealer:
    """The sealer of a records key of purpose ``facts``, made once per process."""
    with _sealers_lock:
        found = _sealers.get(facts_key)
        if found is None:
            found = _sealers[facts_key] = Sealer(facts_key)
        return found


# How many pages of records one listing page reads at most (1,000 names each): stale
# records of overwritten objects share the range, and past this the rest is looked up.
MAX_PAGES = 4


@dataclass(frozen=True)
class NamesAhead:
    """The first record names of a bucket after ``after`` (exclusive), in order, read
    ahead of the listing that needs them."""
    after: str
    names: list[str]
    complete: bool           # the bucket has no record after the last of ``names``


class EmbeddedFacts:
    """``environ.LISTING_FACTS`` for one PutObject: the embedded store calls it with the
    stored ETag and size once the body is read, and keeps the sealed fields it returns
    in the version's index row, where its listings carry them; no record is then
    written.  ``facts_of`` gives the object's facts from that ETag and size (it runs in
    the store's write, so the records key is fetched before: no I/O in it)."""

    def __init__(self, sealer: Sealer, root: str, bucket: str,
                 facts_of: Callable[[str, int], Facts]) -> None:
        self._sealer, self._root, self._bucket = sealer, root, bucket
        self._facts_of = facts_of
        self._kept: Facts | None = None

    def __call__(self, etag: str, size: int) -> str | None:
        facts = self._facts_of(etag, size)
        if not fact_names.recordable(facts, self._bucket):
            return None
        try:
            fields = fact_names.fields_of(self._sealer, self._root, self._bucket, facts)
        except (ValueError, UnicodeError):   # a cache never fails the write it describes
            return None
        self._kept = facts
        return fields

    def kept(self, backend_etag: str, stored_size: int) -> bool:
        """Whether the store kept the facts of the body it answered for."""
        return self._kept is not None and (self._kept.backend_etag, self._kept.stored_size) \
            == (backend_etag.strip('"'), stored_size)


class FactRecords:
    def __init__(self, app: WSGIApp, internal_bucket: str, records: RecordKeys,
                 background: BackgroundWrites | None = None) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.records = records
        # Where records are written from: after the answer (background.py), or at once.
        self.background = background
        # Roots met by this instance (one per listing): None for one that did not load,
        # so that forged names cost one lookup each, not one per entry.
        self._roots: dict[str, Sealer | None] = {}

    def record(self, bucket: str, facts: Facts, parent: dict[str, Any] | None) -> None:
        """Keep ``facts`` (best effort: logged if it cannot be written), after the answer
        when this process writes in the background."""
        if not fact_names.recordable(facts, bucket):
            return
        if self.background is None:
            self._record(bucket, facts, parent)
            return
        # Only who the caller is and the request id outlive the request (subrequest.py).
        caller = {name: parent[name] for name in (env.REQUEST_ID, env.ACCESS_KEY,
                                                  env.ANONYMOUS) if parent and name in parent}
        self.background.submit(lambda: self._record(bucket, facts, caller))

    def _record(self, bucket: str, facts: Facts, parent: dict[str, Any] | None) -> None:
        try:
            root, facts_key = self.records.sealing_key(PURPOSE_FACTS, parent)
            name = fact_names.name_of(sealer_of(facts_key), root, bucket, facts)
            resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket, name,
                                      headers={"content-type": "application/octet-stream"},
                                      body=b"")
            if resp.status == 404 and resp.error_code() == "NoSuchBucket":
                ensure_internal_bucket(self.app, self.internal_bucket, parent)
                resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket, name,
                                          headers={"content-type": "application/octet-stream"},
                                          body=b"")
            if not resp.ok:
                raise subrequest.internal_failure(resp.status)
        except errors.S3Error as exc:
            log.warning("could not record the facts of %s/%s (%s); a listing looks it up",
                        bucket, facts.key, exc.code)

    def embedded(self, bucket: str, facts_of: Callable[[str, int], Facts],
                 parent: dict[str, Any] | None, load: bool = True) -> EmbeddedFacts | None:
        """What a PutObject hands the embedded store to keep its facts in its index
        (None if the records key cannot be had now: a record is attempted after).
        ``load=False``: only if this process has its records root already, for a write
        that must not wait on the key provider (an unencrypted one)."""
        if load:
            try:
                root, facts_key = self.records.sealing_key(PURPOSE_FACTS, parent)
            except errors.S3Error:
                return None
        else:
            loaded = self.records.loaded_sealing_key(PURPOSE_FACTS)
            if loaded is None:
                return None
            root, facts_key = loaded
        return EmbeddedFacts(sealer_of(facts_key), root, bucket, facts_of)

    def embedded_in_listing(self, bucket: str, key: str, fields: str,
                            parent: dict[str, Any] | None) -> Facts | None:
        """The verified facts a listing entry of the embedded store carries (``fields``,
        of ``key``); None, reported, if they do not verify."""
        try:
            parsed = fact_names.parse_fields(key, fields)
        except ValueError:
            self._refuse(bucket, key, "RecordMalformed")
            return None
        sealer = self._opener(parsed.root, parent)
        opened = None if sealer is None else sealer.open(bucket, parsed)
        if opened is None:
            self._refuse(bucket, key, "RecordAuthenticationFailed")
        return opened

    def read_ahead(self, bucket: str, first: str,
                   parent: dict[str, Any] | None) -> NamesAhead:
        """The first page of ``bucket``'s record names from key ``first`` on, for
        ``between``."""
        after = fact_names.key_start(bucket, first)
        for names, more in self._pages(fact_names.bucket_prefix(bucket), after, parent):
            return NamesAhead(after, names, not more)
        return NamesAhead(after, [], True)      # no internal bucket yet

    def between(self, bucket: str, first: str, last: str, parent: dict[str, Any] | None,
                ahead: NamesAhead | None = None,
                enough: Callable[[], bool] = lambda: False) -> Iterator[tuple[str, Facts]]:
        """The verified records of keys from ``first`` to ``last`` (inclusive), in order:
        (name, facts).  ``ahead``: names read ahead, used where they begin early enough.
        ``enough``: asked after each backend page; True ends the records there (the
        caller has what it needs: a page more would only show stale records)."""
        for name in self._names(bucket, first, last, parent, ahead, enough):
            try:
                parsed = fact_names.parse_name(bucket, name)
            except ValueError:
                self._refuse(bucket, name, "RecordMalformed")
                continue
            if parsed.key > last:
                return
            if parsed.key < first:
                continue
            sealer = self._opener(parsed.root, parent)
            opened = None if sealer is None else sealer.open(bucket, parsed)
            if opened is None:
                self._refuse(bucket, name, "RecordAuthenticationFailed")
                continue
            yield name, opened

    def forget(self, names: Iterable[str], parent: dict[str, Any] | None) -> None:
        """Delete the records ``names`` (best effort: a record left is only read past)."""
        for name in names:
            resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket, name)
            if not resp.ok and resp.status != 404:
                log.info("could not delete the stale facts record %s (%s)", name, resp.status)
                return

    def remove_bucket(self, bucket: str, parent: dict[str, Any] | None) -> int:
        """Delete every record of ``bucket`` (after DeleteBucket); how many."""
        removed = 0
        for name in self._listed(fact_names.bucket_prefix(bucket), None, parent):
            resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket, name)
            if not resp.ok and resp.status != 404:
                raise subrequest.internal_failure(resp.status)
            removed += 1
        return removed

    def _names(self, bucket: str, first: str, last: str, parent: dict[str, Any] | None,
               ahead: NamesAhead | None, enough: Callable[[], bool]) -> Iterator[str]:
        stop = fact_names.key_start(bucket, last) + fact_names.SEPARATOR + "~"
        start = fact_names.key_start(bucket, first)
        prefix = fact_names.bucket_prefix(bucket)
        pages = self._pages(prefix, start, parent) if ahead is None or ahead.after > start \
            else self._continued(prefix, start, ahead, parent)
        count = 0
        for names, _ in pages:
            for name in names:
                if name > stop or count >= MAX_PAGES * 1000:
                    return
                count += 1
                yield name
            if enough():
                return

    def _continued(self, prefix: str, start: str, ahead: NamesAhead,
                   parent: dict[str, Any] | None) -> Iterator[tuple[list[str], bool]]:
        """The pages of names after ``start``: those read ahead (from ``ahead.after <=
        start``), then, if there may be more, the listing from the last of them."""
        yield [name for name in ahead.names if name > start], not ahead.complete
        if not ahead.complete:
            yield from self._pages(prefix, max([start, *ahead.names[-1:]]), parent)

    def _pages(self, prefix: str, start_after: str,
               parent: dict[str, Any] | None) -> Iterator[tuple[list[str], bool]]:
        for entries, more in internal_pages(self.app, self.internal_bucket, prefix, parent,
                                            start_after):
            yield [name for name, _, _ in entries], more

    def _listed(self, prefix: str, start_after: str | None,
                parent: dict[str, Any] | None) -> Iterator[str]:
        for name, _, _ in list_internal(self.app, self.internal_bucket, prefix, parent,
                                        start_after):
            yield name

    def _opener(self, root: str, parent: dict[str, Any] | None) -> Sealer | None:
        if root not in self._roots:
            try:
                self._roots[root] = sealer_of(
                    self.records.opening_key(root, PURPOSE_FACTS, parent))
            except errors.IntegrityError:
                self._roots[root] = None
        return self._roots[root]

    def _refuse(self, bucket: str, what: str, reason: str) -> None:
        metrics.integrity_failure(reason)
        log.error("integrity failure on the listing facts %r of bucket %s: %s; ignored", what,
                  bucket, reason)
