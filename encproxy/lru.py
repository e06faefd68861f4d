"""One bounded, thread-safe LRU map for every in-process cache encproxy keeps.

Caches here hold what encproxy has learnt or unwrapped (object facts, layouts,
upload records and keys, bucket configurations, data keys).  Each is bounded by
a total *weight* (one per entry unless a ``weigh`` function says otherwise, so
that a cache of layouts can be bounded by the parts it holds), and entries may
expire ``ttl`` seconds after they were stored (0: at once, a cache that never hits).  Pure: no I/O.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


def _one(_value: object) -> int:
    return 1


class LRU(Generic[K, V]):
    """At most ``max_weight`` of weight, least recently used out first.

    The newest entry is always kept, even when it alone weighs more than the bound.
    """

    def __init__(self, max_weight: int, *, ttl: float | None = None,
                 weigh: Callable[[V], int] = _one,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_weight < 1:
            raise ValueError("an LRU needs room for at least one entry")
        if ttl is not None and ttl < 0:
            raise ValueError("a TTL cannot be negative")
        self.max_weight = max_weight
        self.ttl = ttl
        self._weigh = weigh
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def weight(self) -> int:
        return self._weight

    def get(self, key: K, default: D | None = None) -> V | D | None:
        """The value stored under ``key``, or ``default`` if absent or expired."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return default
            if self.ttl is not None and self._clock() - entry[0] >= self.ttl:
                self._drop(key)
                return default
            self._items.move_to_end(key)
            return entry[1]

    def get_many(self, keys: Iterable[K]) -> list[V | None]:
        """``get`` of each key (None: absent or expired), under one lock: a listing asks
        for a thousand."""
        out: list[V | None] = []
        now = self._clock() if self.ttl is not None else 0.0
        with self._lock:
            for key in keys:
                entry = self._items.get(key)
                if entry is None:
                    out.append(None)
                elif self.ttl is not None and now - entry[0] >= self.ttl:
                    self._drop(key)
                    out.append(None)
                else:
                    self._items.move_to_end(key)
                    out.append(entry[1])
        return out

    def put(self, key: K, value: V) -> None:
        stamp = self._clock()
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (stamp, value)
            self._weight += self._weigh(value)
            while self._weight > self.max_weight and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def pop(self, key: K) -> None:
        with self._lock:
            if key in self._items:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0

    def _drop(self, key: K) -> None:
        _, value = self._items.pop(key)
        self._weight -= self._weigh(value)
