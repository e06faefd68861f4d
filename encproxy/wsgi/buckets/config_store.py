"""Bucket default-encryption configurations, stored in the backend and shared by replicas.

Each configuration is a small JSON object in encproxy's internal bucket
(``[backend] internal_bucket``), at ``bucket-encryption/<bucket>``. Every
replica reads it through the app below it, so a configuration written through
one replica is seen by all of them; each keeps an in-process cache whose
entries live at most ``ttl`` seconds, which bounds how stale a replica can be.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from encproxy import errors
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp

PREFIX = "bucket-encryption/"
MAX_CACHED = 10_000


class BucketConfigStore:
    def __init__(self, app: WSGIApp, internal_bucket: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.ttl = ttl
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, BucketEncryption | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._bucket_ready = False

    # -- cache ------------------------------------------------------------------------
    def _cached(self, bucket: str) -> tuple[bool, BucketEncryption | None]:
        with self._lock:
            entry = self._cache.get(bucket)
            if entry is None or self.clock() - entry[0] >= self.ttl:
                return False, None
            return True, entry[1]

    def _remember(self, bucket: str, config: BucketEncryption | None) -> None:
        with self._lock:
            self._cache[bucket] = (self.clock(), config)
            self._cache.move_to_end(bucket)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)

    # -- storage ----------------------------------------------------------------------
    def get(self, bucket: str, parent: dict[str, Any] | None = None) -> BucketEncryption | None:
        hit, config = self._cached(bucket)
        if hit:
            return config
        resp = subrequest.call(self.app, "GET", self.internal_bucket, PREFIX + bucket,
                               parent=parent)
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
        resp = subrequest.call(self.app, "PUT", self.internal_bucket, PREFIX + bucket,
                               headers={"content-type": "application/json"},
                               body=config.to_json(), parent=parent)
        if not resp.ok:
            raise _backend_failure(resp)
        self._remember(bucket, config)

    def delete(self, bucket: str, parent: dict[str, Any] | None = None) -> None:
        resp = subrequest.call(self.app, "DELETE", self.internal_bucket, PREFIX + bucket,
                               parent=parent)
        if not resp.ok and resp.status != 404:
            raise _backend_failure(resp)
        self._remember(bucket, None)

    def _ensure_internal_bucket(self, parent: dict[str, Any] | None) -> None:
        if self._bucket_ready:
            return
        resp = subrequest.call(self.app, "PUT", self.internal_bucket, parent=parent)
        if not resp.ok and resp.error_code() not in ("BucketAlreadyOwnedByYou",
                                                     "BucketAlreadyExists"):
            raise _backend_failure(resp)
        self._bucket_ready = True


def _backend_failure(resp: subrequest.SubResponse) -> errors.S3Error:
    if resp.status == 503:
        return errors.ServiceUnavailable()
    return errors.InternalError()
