"""Spreading connections over the workers by how many each holds (pure: no gunicorn).

Every gunicorn worker polls the one listening socket.  When a connection arrives,
the kernel wakes them all and the first to call ``accept()`` takes it; with
keep-alive, the connection then stays with that worker for its whole life.  Two
clients can so both land on one worker while another idles: both share one
interpreter lock, and half of a two-core machine stays unused.  bench-small's 4 KiB
GETs over two connections ran at 404–484 ops/s when both landed on one worker and
663–879 ops/s when they did not (docs/PERFORMANCE.md).

So each worker publishes how many connections it holds, in a table that the
master makes before the first fork and every worker shares (an anonymous shared
``mmap``).  A worker that holds more connections than another live worker leaves
a new connection to it for up to ``PAUSE`` seconds, and then takes it anyway if
it is still waiting: a stuck or busy sibling delays a connection by ``PAUSE`` at
most, and never refuses one.  The counts are hints read without a lock (each an
aligned 8-byte word): a stale one costs one less even spread, never a connection.

A pausing worker says so in the table, and no worker leaves a connection to a paused
one; a paused worker ends its pause as soon as it no longer holds more than a sibling
that accepts.  A count goes stale whenever a client closes: the worker that served it
counts the connection until its loop notices.  With one client opening a connection
per request, each worker in turn held a stale one more than its sibling, paused, and
found its sibling still paused from the last connection: a third of such requests
waited out a pause (10–20 ms) for nobody.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterable

#: Slots in the table: workers beyond this many take every connection they are woken for.
SLOTS = 256
#: The longest a connection waits for a worker holding fewer connections, in seconds.
PAUSE = 0.02


class ConnectionTable:
    """Connections held per worker slot, shared by the processes forked after it is made.

    A slot holds 0 (no worker in it), or one more than its worker's count: negated
    while the worker pauses (leaves new connections to its siblings).
    """

    def __init__(self, slots: int = SLOTS) -> None:
        self._map = mmap.mmap(-1, slots * 8)  # anonymous and shared: seen across fork()
        self._counts = memoryview(self._map).cast("q")

    def claim(self, taken: Iterable[int | None]) -> int | None:
        """The lowest slot not in ``taken`` (the live workers'), emptied; None if all are."""
        busy = set(taken)
        for slot in range(len(self._counts)):
            if slot not in busy:
                self._counts[slot] = 0
                return slot
        return None

    def publish(self, slot: int, connections: int, accepting: bool = True) -> None:
        self._counts[slot] = connections + 1 if accepting else -(connections + 1)

    def vacate(self, slot: int) -> None:
        self._counts[slot] = 0

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections any other worker accepting now holds; None if there is
        none (no other worker, or every other one paused)."""
        others = [count for index, count in enumerate(self._counts.tolist())
                  if count > 0 and index != slot]
        return min(others) - 1 if others else None


class AcceptBalance:
    """One worker's side of the table: what it publishes, and whether it leaves a
    connection waiting for a sibling (``yields``) or takes it."""

    def __init__(self, table: ConnectionTable, slot: int, pause: float = PAUSE) -> None:
        self.table = table
        self.slot = slot
        self.pause = pause
        self.paused_until = 0.0

    def publish(self, connections: int, now: float) -> None:
        self.table.publish(self.slot, connections, accepting=not self.paused(now))

    def vacate(self) -> None:
        self.table.vacate(self.slot)

    def paused(self, now: float) -> bool:
        """Whether this worker is leaving its listener to its siblings at ``now``."""
        return now < self.paused_until

    def keeps_pausing(self, connections: int, now: float) -> bool:
        """Whether a pause goes on at ``now`` for a worker now holding ``connections``:
        until it ends, or until no sibling that accepts holds fewer (the worker's own
        connections closed, or the siblings' filled, or the siblings paused too)."""
        if not self.paused(now):
            return False
        fewest = self.table.fewest_elsewhere(self.slot)
        if fewest is None or connections <= fewest:
            self.paused_until = 0.0
            self.table.publish(self.slot, connections)
            return False
        return True

    def yields(self, connections: int, now: float) -> bool:
        """Whether a worker holding ``connections`` leaves a waiting connection to a sibling
        (and so pauses until ``paused_until``).  Never on the first look after a pause: a
        connection still waiting then is taken, whoever holds fewer."""
        if self.paused_until:
            just_paused = now < self.paused_until + self.pause
            self.paused_until = 0.0
            if just_paused:
                return False  # what still waits has waited long enough
        fewest = self.table.fewest_elsewhere(self.slot)
        if fewest is None or connections <= fewest:
            return False
        self.paused_until = now + self.pause
        self.table.publish(self.slot, connections, accepting=False)
        return True
