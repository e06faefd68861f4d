"""``encproxy.lru.LRU.get_many``: what ``get`` of each key would answer, in one lock."""
from __future__ import annotations

from encproxy.lru import LRU


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_get_many_answers_as_get_would() -> None:
    cache: LRU[str, int] = LRU(10)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_many(["b", "x", "a", "b"]) == [2, None, 1, 2]
    assert cache.get_many([]) == []


def test_get_many_drops_what_expired() -> None:
    clock = Clock()
    cache: LRU[str, int] = LRU(10, ttl=5, clock=clock)
    cache.put("old", 1)
    clock.now = 3
    cache.put("new", 2)
    clock.now = 6
    assert cache.get_many(["old", "new"]) == [None, 2]
    assert len(cache) == 1 and cache.get("old") is None


def test_get_many_marks_what_it_found_as_recently_used() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("first", 1)
    cache.put("second", 2)
    assert cache.get_many(["first"]) == [1]
    cache.put("third", 3)            # evicts the least recently used: second
    assert cache.get_many(["first", "second", "third"]) == [1, None, 3]
