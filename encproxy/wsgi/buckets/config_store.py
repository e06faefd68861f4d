"""Bucket default-encryption configurations, stored in the backend and shared by replicas.

Each configuration is a small JSON object in encproxy's internal bucket
(``[backend] internal_bucket``), at ``bucket-encryption/<bucket>``, sealed as an
authenticated record (FORMAT.md §14) bound to its bucket: a configuration edited
in the backend (another algorithm, another ``kms_key_id``), moved from another
bucket, or left in the old unauthenticated form is an integrity failure, and every
write to that bucket fails closed until PutBucketEncryption is run again.

Every replica reads it through the app below it, so a configuration written through
one replica is seen by all of them; each keeps an in-process cache whose entries
live at most ``ttl`` seconds, which bounds how stale a replica can be.  Within one
server, a change also bumps the server's generation counter (``generation``), and a
cached entry fetched before the last change is never used.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from encproxy import errors
from encproxy.crypto.records import PURPOSE_BUCKET_CONFIG
from encproxy.format.errors import RecordMalformed
from encproxy.lru import LRU
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.generation import Generation
from encproxy.wsgi.buckets.records import RecordKeys, ensure_internal_bucket, report
from encproxy.wsgi.responses import WSGIApp

PREFIX = "bucket-encryption/"


MAX_CACHED = 10_000


class BucketConfigStore:
    def __init__(self, app: WSGIApp, internal_bucket: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic, *, records: RecordKeys,
                 generation: Generation | None = None) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.ttl = ttl
        self.clock = clock
        self.records = records
        self.generation = generation
        # None cached too: "this bucket has no configuration" is also worth not asking again.
        # Each entry remembers the generation it was fetched at.
        self._cache: LRU[str, tuple[int, BucketEncryption | None]] = LRU(
            MAX_CACHED, ttl=ttl, clock=clock)
        self._bucket_ready = False

    # -- cache ------------------------------------------------------------------------
    def _now(self) -> int:
        return self.generation.current() if self.generation is not None else 0

    def _cached(self, bucket: str, generation: int) -> tuple[bool, BucketEncryption | None]:
        found = self._cache.get(bucket)
        if found is None or found[0] != generation:
            return False, None
        return True, found[1]

    def _remember(self, bucket: str, config: BucketEncryption | None, generation: int) -> None:
        self._cache.put(bucket, (generation, config))

    def _changed(self, bucket: str, config: BucketEncryption | None) -> None:
        if self.generation is not None:
            self.generation.bump()
        self._remember(bucket, config, self._now())

    # -- storage ----------------------------------------------------------------------
    def get(self, bucket: str, parent: dict[str, Any] | None = None) -> BucketEncryption | None:
        generation = self._now()   # before the read: a change during it invalidates the entry
        hit, config = self._cached(bucket, generation)
        if hit:
            return config
        where = PREFIX + bucket
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, where)
        if resp.status == 404:
            config = None
        elif resp.ok:
            body = self.records.open(f"{self.internal_bucket}/{where}", PURPOSE_BUCKET_CONFIG,
                                     bucket, "", None, resp.body, parent)
            config = self._decode(where, bucket, body)
        else:
            raise subrequest.internal_failure(resp.status)
        self._remember(bucket, config, generation)
        return config

    def _decode(self, where: str, bucket: str, body: bytes) -> BucketEncryption:
        try:
            return BucketEncryption.from_json(body)
        except errors.S3Error:
            exc = RecordMalformed()
            report(f"bucket-encryption record {self.internal_bucket}/{where} ({bucket})", exc)
            raise exc from None

    def put(self, bucket: str, config: BucketEncryption,
            parent: dict[str, Any] | None = None) -> None:
        self._ensure_internal_bucket(parent)
        body = self.records.seal(PURPOSE_BUCKET_CONFIG, bucket, "", None, config.to_json(),
                                 parent)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket, PREFIX + bucket,
                                  headers={"content-type": "application/octet-stream"},
                                  body=body)
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        self._changed(bucket, config)

    def delete(self, bucket: str, parent: dict[str, Any] | None = None) -> None:
        resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket,
                                  PREFIX + bucket)
        if not resp.ok and resp.status != 404:
            raise subrequest.internal_failure(resp.status)
        self._changed(bucket, None)

    def _ensure_internal_bucket(self, parent: dict[str, Any] | None) -> None:
        if self._bucket_ready:
            return
        ensure_internal_bucket(self.app, self.internal_bucket, parent)
        self._bucket_ready = True

