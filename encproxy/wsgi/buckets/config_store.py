"""Bucket default-encryption configurations, stored in the backend and shared by replicas.

Each configuration is a small JSON object in encproxy's internal bucket
(``[backend] internal_bucket``), at ``bucket-encryption/<bucket>``. Every
replica reads it through the app below it, so a configuration written through
one replica is seen by all of them; each keeps an in-process cache whose
entries live at most ``ttl`` seconds, which bounds how stale a replica can be.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from encproxy import errors
from encproxy.lru import LRU
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp

PREFIX = "bucket-encryption/"


class _Missing:
    """Not in the cache (None is a cached answer: no configuration)."""


_MISSING = _Missing()
MAX_CACHED = 10_000


class BucketConfigStore:
    def __init__(self, app: WSGIApp, internal_bucket: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.ttl = ttl
        self.clock = clock
        # None cached too: "this bucket has no configuration" is also worth not asking again.
        self._cache: LRU[str, BucketEncryption | None] = LRU(MAX_CACHED, ttl=ttl, clock=clock)
        self._bucket_ready = False

    # -- cache ------------------------------------------------------------------------
    def _cached(self, bucket: str) -> tuple[bool, BucketEncryption | None]:
        found = self._cache.get(bucket, _MISSING)
        if found is _MISSING:
            return False, None
        assert not isinstance(found, _Missing)
        return True, found

    def _remember(self, bucket: str, config: BucketEncryption | None) -> None:
        self._cache.put(bucket, config)

    # -- storage ----------------------------------------------------------------------
    def get(self, bucket: str, parent: dict[str, Any] | None = None) -> BucketEncryption | None:
        hit, config = self._cached(bucket)
        if hit:
            return config
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket,
                                  PREFIX + bucket)
        if resp.status == 404:
            config = None
        elif resp.ok:
            config = BucketEncryption.from_json(resp.body)
        else:
            raise _backend_failure(resp)
        self._remember(bucket, config)
        return config

    def put(self, bucket: str, config: BucketEncryption,
            parent: dict[str, Any] | None = None) -> None:
        self._ensure_internal_bucket(parent)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket, PREFIX + bucket,
                                  headers={"content-type": "application/json"},
                                  body=config.to_json())
        if not resp.ok:
            raise _backend_failure(resp)
        self._remember(bucket, config)

    def delete(self, bucket: str, parent: dict[str, Any] | None = None) -> None:
        resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket,
                                  PREFIX + bucket)
        if not resp.ok and resp.status != 404:
            raise _backend_failure(resp)
        self._remember(bucket, None)

    def _ensure_internal_bucket(self, parent: dict[str, Any] | None) -> None:
        if self._bucket_ready:
            return
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket)
        if not resp.ok and resp.error_code() not in ("BucketAlreadyOwnedByYou",
                                                     "BucketAlreadyExists"):
            raise _backend_failure(resp)
        self._bucket_ready = True


def _backend_failure(resp: subrequest.SubResponse) -> errors.S3Error:
    if resp.status == 503:
        return errors.ServiceUnavailable()
    return errors.InternalError()
