"""ListObjects (v1, v2) and ListObjectVersions: plaintext sizes and ETags.

Listings carry no metadata, so the facts of an encrypted object (its plaintext
size and client-visible ETag) come from the facts cache, keyed by backend ETag
and stored size, which never change meaning.  Objects not in the cache are
looked up once (HEAD, then the sealed ETag or the multipart layout), several at
a time, and the listing reports them as the client sees them.

Through an S3 backend, the first listing of a bucket in this process (and any after one
that left objects unknown), and the pages that continue a listing whose page had to read
records, read the records of their range ahead while the backend lists the objects
(fact_records.py).
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.fact_names import Facts
from encproxy.crypto.single import ObjectDecryptor
from encproxy.format.constants import FORMAT_VERSION, Kind
from encproxy.format.envelope import Envelope
from encproxy.format.errors import FormatError
from encproxy.format.layout import multipart_plaintext_size, plaintext_size
from encproxy.lru import LRU
from encproxy.s3 import continuation, sse, xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.fact_records import FactRecords, NamesAhead
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import CONTEXT_HEADER, ENVELOPE_HEADER, mode_of
from encproxy.wsgi.encryption.layouts import backend_parts, client_multipart_etag
from encproxy.wsgi.encryption.reads import client_etag
from encproxy.wsgi.encryption.streaming import Fetcher
from encproxy.wsgi.environ import LISTING_PAGE
from encproxy.wsgi.listing_page import ListedEntry, ListingSlot, parsed_page
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import relayed

log = logging.getLogger("encproxy.encryption")

LOOKUP_THREADS = 8
# Buckets whose last listing here left every entry in the caches (no read-ahead).
KNOWN_BUCKETS = 10_000
# Continuation tokens of pages that had to read records: their next pages read ahead.
CONTINUED_LISTINGS = 10_000


class Listings:
    def __init__(self, ctx: EncryptionContext, threads: int = LOOKUP_THREADS,
                 read_ahead: bool = False) -> None:
        """``read_ahead``: read facts records ahead of a listing of a bucket not known
        from the caches (an app below that keeps no facts of its own)."""
        self.ctx = ctx
        self._lookups = ThreadPoolExecutor(threads, thread_name_prefix="encproxy-lookup")
        self._read_ahead = read_ahead
        self._known: LRU[str, bool] = LRU(KNOWN_BUCKETS)
        self._continued: LRU[bytes, bool] = LRU(CONTINUED_LISTINGS)

    def respond(self, req: S3Request, entry_tag: str) -> Response:
        """The backend's listing, with ``entry_tag`` entries as the client sees them."""
        assert req.bucket is not None
        ahead = self._records_ahead(req)
        slot = req.environ[LISTING_PAGE] = ListingSlot()
        try:
            resp = subrequest.open_stream(self.ctx.app, req.environ)
            body = resp.read_all()
        finally:
            req.environ.pop(LISTING_PAGE, None)
        if resp.status != 200:
            return relayed(resp.status, resp.headers, body)
        # A page of 1,000 entries with keys of up to 1,024 bytes passes the 1 MiB that
        # request bodies are held to.
        page = slot.page or parsed_page(xml.parse(body, max_size=subrequest.MAX_SUBRESPONSE),
                                        entry_tag, source=body)
        uncached = self._correct(req, [entry for entry in page.entries if entry.complete],
                                  versions=entry_tag == "Version", ahead=ahead)
        if uncached and page.next_token and self._read_ahead:
            # The next page is likely as new to the caches as this one was.
            self._continued.put(_continuation(req.bucket, page.next_token), True)
        return relayed(200, resp.headers, page.render())

    def _records_ahead(self, req: S3Request) -> Future[NamesAhead] | None:
        """The facts records of the page's range, read in parallel with the listing: for
        a bucket not listed here yet (or whose last listing left objects unknown), or a
        page continuing one that had to read records, from the page's lower bound."""
        assert req.bucket is not None
        if not self._read_ahead:
            return None
        token = req.query.get("continuation-token") \
            if req.operation == "ListObjectsV2" else None
        if token:
            continued = _continuation(req.bucket, token)
            if self._continued.get(continued) is None:
                return None
            self._continued.pop(continued)
        elif self._known.get(req.bucket):
            return None
        first = lower_bound(req)
        if first is None:
            return None
        return self._lookups.submit(self.ctx.fact_records.read_ahead, req.bucket, first,
                                    req.environ)

    def _correct(self, req: S3Request, entries: list[ListedEntry], versions: bool,
                 ahead: Future[NamesAhead] | None = None) -> bool:
        """Set each of a page's ``entries`` to what the client sees: an encrypted object's
        plaintext size and client ETag, from the facts cache; else from the facts the
        store carries, the facts records, or a lookup, each cached.  Whether any entry
        was not in the facts cache."""
        assert req.bucket is not None
        facts = self.ctx.facts

        def known_facts() -> list[ObjectFacts | None]:
            return facts.get_many(req.bucket or "", ((e.key, e.etag, e.size) for e in entries))
        known = known_facts()
        missing = [e for e, k in zip(entries, known, strict=True) if k is None]
        uncached = bool(missing)
        if missing:
            records = self.ctx.fact_records   # one per listing: it remembers the roots it met
            missing = self._embedded(req.bucket, missing, records, req.environ)
            if missing:
                missing = self._recorded(req, missing, records, None if versions else entries,
                                         _names_ahead(ahead))
            if missing:
                list(self._lookups.map(lambda e: self._learn(req, e), missing))
            known = known_facts()
        # The caches now know the page: the next listing of the bucket reads nothing ahead.
        self._known.put(req.bucket, all(k is not None for k in known))
        for e, k in zip(entries, known, strict=True):
            if k is not None and k.encrypted:
                e.etag, e.size = k.etag, k.plaintext_size
        return uncached

    def _embedded(self, bucket: str, entries: list[ListedEntry], records: FactRecords,
                  environ: dict[str, Any]) -> list[ListedEntry]:
        """Cache the facts the embedded store lists with ``entries`` that verify and
        describe the entry's body; the entries still unknown."""
        missing = []
        for entry in entries:
            found = None if entry.carried_facts is None else records.embedded_in_listing(
                bucket, entry.key, entry.carried_facts, environ)
            if found is not None and (found.backend_etag, found.stored_size) \
                    == (entry.etag.strip('"'), entry.size):
                self.ctx.facts.put(bucket, entry.key, entry.etag, entry.size, _cached(found))
            else:
                missing.append(entry)
        return missing

    def _recorded(self, req: S3Request, entries: list[ListedEntry], records: FactRecords,
                  current: list[ListedEntry] | None,
                  ahead: NamesAhead | None = None) -> list[ListedEntry]:
        """Cache what the facts records (fact_records.py) say of ``entries``; the entries
        they say nothing of.  ``current``: every entry of a ListObjects page (each key's
        only current body), whose keys' other records are stale where the bucket never
        had versioning.  ``ahead``: record names read ahead of the listing."""
        assert req.bucket is not None
        wanted = {(e.key, e.etag.strip('"'), e.size) for e in entries}
        unfound = set(wanted)
        listed = {e.key: (e.etag.strip('"'), e.size) for e in current or ()}
        stale = []
        # Every entry found: no further page of records (it could only be stale ones).
        for name, found in records.between(req.bucket, min(k for k, _, _ in wanted),
                                           max(k for k, _, _ in wanted), req.environ,
                                           ahead, enough=lambda: not unfound):
            if (found.key, found.backend_etag, found.stored_size) in wanted:
                unfound.discard((found.key, found.backend_etag, found.stored_size))
                self.ctx.facts.put(req.bucket, found.key, found.backend_etag,
                                   found.stored_size, _cached(found))
            elif listed.get(found.key, (found.backend_etag, found.stored_size)) \
                    != (found.backend_etag, found.stored_size):
                stale.append(name)
        if stale and _never_versioned(self.ctx, req):
            records.forget(stale, req.environ)
        return [e for e in entries
                if self.ctx.facts.get(req.bucket, e.key, e.etag, e.size) is None]

    def _learn(self, req: S3Request, entry: ListedEntry) -> None:
        """Look one listed object up (HEAD, then its sealed ETag), cache the facts and
        record them (fact_records.py)."""
        assert req.bucket is not None
        self._look_up(req, entry)
        learnt = self.ctx.facts.get(req.bucket, entry.key, entry.etag, entry.size)
        if learnt is not None:
            self.ctx.fact_records.record(req.bucket, Facts(
                entry.key, learnt.mode, entry.size, entry.etag.strip('"'),
                learnt.plaintext_size, learnt.etag.strip('"')), req.environ)

    def _look_up(self, req: S3Request, entry: ListedEntry) -> None:
        assert req.bucket is not None
        key, listed_etag, listed_size = entry.key, entry.etag, entry.size
        # A non-current ListObjectVersions entry is looked up by its version id: the
        # key's current version is another object (its ETag would not match, and the
        # entry would be reported as listed: the ciphertext size).
        version = None if entry.is_latest else entry.version_id
        query = ("versionId=" + subrequest.quote_param(version)) if version else ""
        resp = subrequest.request(self.ctx.app, req.environ, "HEAD", req.bucket, key, query)
        if not resp.ok or resp.headers.get("etag", "").strip('"') != listed_etag.strip('"'):
            return  # gone or replaced since the listing: report it as listed
        value = resp.headers.get(ENVELOPE_HEADER)
        if value is None:
            self.ctx.facts.put(req.bucket, key, listed_etag, listed_size,
                               ObjectFacts(False, listed_size, listed_etag))
            return
        try:
            envelope = Envelope.decode(value)
            if envelope.kind is not Kind.SINGLE:
                self._learn_multipart(req.environ, req.bucket, key, version, envelope,
                                      resp.headers, listed_size, listed_etag)
            else:
                self._learn_single(req.environ, req.bucket, key, version, envelope,
                                   resp.headers, listed_size, listed_etag)
        except (FormatError, errors.S3Error) as exc:
            log.warning("listing %s: cannot read the envelope of %s: %s", req.bucket, key,
                        type(exc).__name__)

    def _learn_single(self, parent: dict[str, Any], bucket: str, key: str,
                      version: str | None, envelope: Envelope, headers: dict[str, str],
                      stored_size: int, etag: str) -> None:
        mode = mode_of(envelope.protection)
        if mode == sse.MODE_SSE_C:
            self.ctx.facts.put(bucket, key, etag, stored_size, ObjectFacts(
                True, plaintext_size(stored_size, envelope.version != FORMAT_VERSION), etag,
                mode))
            return
        keys = self.ctx.open_keys(envelope, bucket, key, None, headers.get(CONTEXT_HEADER),
                                  version or headers.get("x-amz-version-id"))
        decryptor = ObjectDecryptor(keys, stored_size)
        fetcher = Fetcher(self.ctx.app, parent, bucket, key, version, etag)
        client_etag(self.ctx, decryptor, mode, fetcher, stored_size)

    def _learn_multipart(self, parent: dict[str, Any], bucket: str, key: str,
                         version: str | None, envelope: Envelope, headers: dict[str, str],
                         stored_size: int, etag: str) -> None:
        """The size (and, for SSE-S3 and SSE-KMS, the S3-style ETag of its described
        index, FORMAT.md §7.8) of the verified layout (FORMAT.md §7.7: every header, or
        the index, read once and cached by backend ETag), never ``(S, N)`` alone, which
        the backend controls.  An SSE-C object's layout cannot be verified without the
        customer's key: until a GET or HEAD with the key (or its Complete) on this
        replica has cached its verified layout, the listing reports the size that
        ``(S, N)`` gives for a regular layout, else what the backend listed.
        """
        mode = mode_of(envelope.protection)
        known = self.ctx.layouts.cached(bucket, key, stored_size, etag)
        key_id: str | None = None
        client = etag
        if known is not None:
            size = known.layout.plaintext_size
            client = client_multipart_etag(known.layout, mode, etag)
        elif mode == sse.MODE_SSE_C:
            n = backend_parts(etag)
            arithmetic = multipart_plaintext_size(stored_size, n) if n is not None else None
            if arithmetic is None:
                log.info("listing %s: the size of %s needs its index, which needs the SSE-C "
                         "key", bucket, key)
                return
            size = arithmetic
        else:
            keys = self.ctx.open_keys(envelope, bucket, key, None, headers.get(CONTEXT_HEADER),
                                      version or headers.get("x-amz-version-id"))
            fetcher = Fetcher(self.ctx.app, parent, bucket, key, version, etag)
            with integrity.reported(bucket, key):
                key_id = integrity.authenticated_key_id(envelope)
                layout = self.ctx.layouts.layout(keys, stored_size, etag, fetcher).layout
            size, client = layout.plaintext_size, client_multipart_etag(layout, mode, etag)
        self.ctx.facts.put(bucket, key, etag, stored_size,
                           ObjectFacts(True, size, client, mode, key_id))


def _continuation(bucket: str, token: str) -> bytes:
    """A continued listing as ``Listings`` remembers it: a digest, as a token carries a key
    of up to 1,024 bytes and the backend's token (10,000 of them could take 30 MB)."""
    return hashlib.blake2b(f"{bucket}\0{token}".encode(), digest_size=16).digest()


def lower_bound(req: S3Request) -> str | None:
    """A key that sorts before (or is) every key the listing ``req`` can list; None
    after a continuation token that does not say where its page starts (one not issued
    by encproxy's S3 backend app: the listing refuses it)."""
    query = req.query
    if req.operation == "ListObjectsV2":
        token = query.get("continuation-token")
        after = continuation.start_after(token) if token else query.get("start-after", "")
        if after is None:
            return None
    else:
        after = query.get("marker" if req.operation == "ListObjects" else "key-marker", "")
    return max(query.get("prefix", ""), after)


def _names_ahead(ahead: Future[NamesAhead] | None) -> NamesAhead | None:
    """What was read ahead; None if nothing was, or it failed (the listing then reads
    the records itself, and meets the failure if it lasts)."""
    if ahead is None:
        return None
    try:
        return ahead.result()
    except errors.S3Error as exc:
        log.info("reading the facts records ahead failed (%s); read after", exc.code)
        return None


def _never_versioned(ctx: EncryptionContext, req: S3Request) -> bool:
    """Whether the bucket never had versioning (GetBucketVersioning has no Status): then
    a key's only body is its current one."""
    assert req.bucket is not None
    resp = subrequest.request(ctx.app, req.environ, "GET", req.bucket, query="versioning")
    if not resp.ok:
        return False
    try:
        return xml.child_text(xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE),
                              "Status") is None
    except errors.S3Error:
        return False


def _cached(found: Facts) -> ObjectFacts:
    """What the facts cache keeps of a record's facts (no object id: reads, which have
    the envelope, do not take them; listings do)."""
    return ObjectFacts(found.encrypted, found.plaintext_size, '"' + found.client_etag + '"',
                       found.mode)

