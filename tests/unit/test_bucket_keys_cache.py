"""The per-process bucket keys (encproxy.keys.bucket_keys.BucketKeys): reuse for a bounded
time and number of buckets, the read cache (never a hit for another blob or context),
one provider call for a burst of concurrent misses, and which writes get a bucket key
(encproxy.s3.sse.decide_write).  The provider is a real local keyring, counted."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.format.envelope import BucketKeyRef, bucket_key_context
from encproxy.format.errors import EnvelopeAuthenticationFailed
from encproxy.keys.bucket_keys import BucketKeys, new_bucket_key
from encproxy.keys.local import LocalKeyring
from encproxy.s3 import sse


class Counted:
    """A real keyring whose wraps and unwraps are counted (what a KMS would bill)."""

    def __init__(self, ring: LocalKeyring) -> None:
        self.ring = ring
        self.wraps = 0
        self.unwraps = 0
        self._lock = threading.Lock()

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        with self._lock:
            self.wraps += 1
        return self.ring.wrap(key_id, data_key, context)

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        with self._lock:
            self.unwraps += 1
        return self.ring.unwrap(blob, context)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider(tmp_path: Path) -> Counted:
    ring = LocalKeyring(tmp_path / "keys")
    ring.create_key("master")
    return Counted(ring)


def test_a_writer_reuses_its_bucket_key_for_the_lifetime(provider: Counted) -> None:
    clock = Clock()
    keys = BucketKeys(provider, lifetime=300, entries=8, clock=clock)
    first = keys.for_write("master", "b")
    assert all(keys.for_write("master", "b") is first for _ in range(100))
    assert provider.wraps == 1
    # Another bucket, or another master key, is another bucket key.
    assert keys.for_write("master", "c").ref != first.ref
    assert provider.wraps == 2
    clock.now += 299.9
    assert keys.for_write("master", "b") is first
    clock.now += 0.2
    renewed = keys.for_write("master", "b")
    assert renewed.ref != first.ref and renewed.key != first.key and provider.wraps == 3
    # What a writer wrapped it can read without the provider, for the lifetime.
    assert keys.open(renewed.ref, "b") is renewed and provider.unwraps == 0
    again = keys.open(first.ref, "b")        # expired with the lifetime: unwrapped again
    assert again.key == first.key and provider.unwraps == 1


def test_a_reader_unwraps_once_per_lifetime(provider: Counted) -> None:
    clock = Clock()
    ref = new_bucket_key(provider, "master", "b").ref
    keys = BucketKeys(provider, lifetime=60, entries=8, clock=clock)
    opened = [keys.open(ref, "b") for _ in range(1000)]
    assert provider.unwraps == 1 and len({id(k) for k in opened}) == 1
    clock.now += 60
    keys.open(ref, "b")
    assert provider.unwraps == 2


def test_the_read_cache_is_bounded(provider: Counted) -> None:
    refs = [new_bucket_key(provider, "master", f"b{i}").ref for i in range(3)]
    keys = BucketKeys(provider, lifetime=300, entries=2)
    for i, ref in enumerate(refs):
        keys.open(ref, f"b{i}")
    assert provider.unwraps == 3
    keys.open(refs[2], "b2")                 # still cached
    assert provider.unwraps == 3
    keys.open(refs[0], "b0")                 # least recently used: gone
    assert provider.unwraps == 4
    writers = BucketKeys(provider, lifetime=300, entries=2)
    for bucket in ("x", "y", "z", "x"):
        writers.for_write("master", bucket)
    assert provider.wraps == 3 + 4           # x was evicted by z, then drawn again


def test_the_cache_never_unwraps_what_the_provider_would_refuse(provider: Counted) -> None:
    keys = BucketKeys(provider, lifetime=300, entries=8)
    written = keys.for_write("master", "b")
    # The same blob read at another bucket: another context, asked of the provider,
    # which refuses it.
    with pytest.raises(errors.KeyUnwrapFailed):
        keys.open(written.ref, "other")
    assert provider.unwraps == 1
    assert bucket_key_context("other") != bucket_key_context("b")


def test_a_rewritten_block_is_refused_before_the_provider(provider: Counted) -> None:
    keys = BucketKeys(provider, lifetime=300, entries=8)
    ref = new_bucket_key(provider, "master", "b").ref
    for bad in (BucketKeyRef(bytes(16), ref.master_version, ref.blob),
                BucketKeyRef(ref.id, "7", ref.blob),
                BucketKeyRef(ref.id, ref.master_version, b"not a blob")):
        with pytest.raises(EnvelopeAuthenticationFailed):
            keys.open(bad, "b")
    assert provider.unwraps == 0


def test_a_burst_of_misses_costs_one_call(provider: Counted) -> None:
    ref = new_bucket_key(provider, "master", "b").ref
    keys = BucketKeys(provider, lifetime=300, entries=8)
    start = threading.Barrier(16)
    results: list[object] = []

    def read() -> None:
        start.wait()
        results.append(keys.open(ref, "b"))
        results.append(keys.for_write("master", "c"))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.unwraps == 1 and provider.wraps == 2   # one for ref, one for "c"
    assert len({id(r) for r in results}) == 2


def test_bad_settings_are_refused(provider: Counted) -> None:
    with pytest.raises(ValueError):
        BucketKeys(provider, lifetime=0)
    with pytest.raises(ValueError):
        BucketKeys(provider, entries=0)


@pytest.mark.parametrize(("header", "bucket_enabled", "algorithm", "expected"), [
    (None, True, "aws:kms", True),       # the bucket's BucketKeyEnabled
    (None, False, "aws:kms", False),
    ("false", True, "aws:kms", False),   # the request turns it off for this object
    ("true", False, "aws:kms", True),    # or on
    ("true", True, "AES256", False),     # SSE-S3 has no bucket keys
    ("true", True, None, True),          # the bucket's default algorithm, aws:kms below
])
def test_which_writes_use_a_bucket_key(header: str | None, bucket_enabled: bool,
                                       algorithm: str | None, expected: bool) -> None:
    headers = {} if header is None else {sse.SSE_BUCKET_KEY: header}
    if algorithm is not None:
        headers[sse.SSE] = algorithm
    plan = sse.decide_write(sse.parse_request(headers), "aws:kms", None, "none", "default",
                            bucket_enabled)
    assert plan is not None and plan.bucket_key is expected
    shown = sse.response_headers(plan.mode, "k", None, None, plan.bucket_key)
    assert (shown.get(sse.SSE_BUCKET_KEY) == "true") is expected
