"""The opt-in data-key cache: bounded, expiring, keyed by blob and context (docs/KEYS.md §4)."""
from __future__ import annotations

import pytest

from encproxy import errors
from encproxy.keys.cache import CachingProvider, DataKeyCache
from encproxy.keys.factory import build_provider
from encproxy.keys.local import LocalKeyring
from encproxy.settings import load


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(LocalKeyring):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unwraps = 0

    def unwrap(self, blob, context):
        self.unwraps += 1
        return super().unwrap(blob, context)


@pytest.fixture
def keyring(tmp_path) -> Counting:
    k = Counting(tmp_path / "keys")
    k.create_key("default")
    return k


def test_lru_and_ttl_bounds():
    clock = Clock()
    cache = DataKeyCache(entries=2, ttl=10, clock=clock)
    cache.put(b"a", b"A")
    cache.put(b"b", b"B")
    assert cache.get(b"a") == b"A"         # a is now the most recent
    cache.put(b"c", b"C")                  # evicts b, the least recently used
    assert cache.get(b"b") is None and cache.get(b"a") == b"A" and len(cache) == 2
    clock.now += 10
    assert cache.get(b"a") is None and cache.get(b"c") is None
    assert "A" not in repr(cache)


@pytest.mark.parametrize("entries, ttl", [(0, 10), (1, 0), (-1, 5)])
def test_cache_needs_entries_and_ttl(entries, ttl):
    with pytest.raises(ValueError):
        DataKeyCache(entries, ttl)


def test_hits_need_same_blob_and_context(keyring):
    clock = Clock()
    cached = CachingProvider(keyring, entries=8, ttl=60, clock=clock)
    ctx = {"bucket": "b", "key": "k"}
    dk = cached.generate_data_key("default", ctx)
    for _ in range(5):
        assert cached.unwrap(dk.blob, ctx) == dk.plaintext
    assert keyring.unwraps == 1
    with pytest.raises(errors.KeyUnwrapFailed):   # another context is not a hit
        cached.unwrap(dk.blob, {"bucket": "b", "key": "other"})
    assert keyring.unwraps == 2
    clock.now += 60                                # expired: asks the provider again
    assert cached.unwrap(dk.blob, ctx) == dk.plaintext
    assert keyring.unwraps == 3


def test_wrap_is_never_cached(keyring):
    cached = CachingProvider(keyring, entries=8, ttl=60)
    ctx = {"bucket": "b"}
    assert cached.generate_data_key("default", ctx).plaintext \
        != cached.generate_data_key("default", ctx).plaintext
    assert cached.wrap("default", b"\x01" * 32, ctx) != cached.wrap("default", b"\x01" * 32, ctx)


def test_off_by_default_and_opt_in(tmp_path):
    base = "[credentials]\nabc = 12345678\n[keys]\nkeyring = keys\n"
    assert not isinstance(build_provider(load(base, tmp_path, environ={})), CachingProvider)
    on = build_provider(load(base + "cache_entries = 100\ncache_ttl = 30\n", tmp_path,
                             environ={}))
    assert isinstance(on, CachingProvider)
    assert (on.cache.entries, on.cache.ttl) == (100, 30)
