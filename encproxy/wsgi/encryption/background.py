"""Work done after a request's answer: writes of facts records (fact_records.py).

A facts record is a cache: a listing that finds none looks the object up, once.  So a
write need not wait for its record, and through an S3 backend, whose every request is a
round trip, that record was one more backend PUT before each encrypted write's answer.
``BackgroundWrites`` runs such jobs on a few threads of the worker behind a bounded
queue.  When the queue is full a job is dropped (counted, logged): a backend too slow
for the records must not hold requests or memory.  At exit the queue is drained for a
bounded time (gunicorn stops a worker by letting it exit), so that a restart loses
nothing it had time for; a killed process loses what was queued, a later listing's
lookups.  The threads start with the first job: never in gunicorn's master, whose
children would not inherit them.
"""
from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("encproxy.background")

Job = Callable[[], None]

DEPTH = 10_000          # jobs queued at most (a few hundred bytes each)
THREADS = 2
DRAIN_SECONDS = 10.0    # at exit


class BackgroundWrites:
    def __init__(self, depth: int = DEPTH, threads: int = THREADS,
                 drain_seconds: float = DRAIN_SECONDS) -> None:
        self._queue: queue.Queue[Job] = queue.Queue(depth)
        self._threads = threads
        self._drain_seconds = drain_seconds
        self._started = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0       # queued or running
        self.dropped = 0

    def submit(self, job: Job) -> None:
        """Run ``job`` soon on a background thread (dropped if the queue is full)."""
        with self._lock:
            if not self._started:
                self._start()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("background writes: queue full, %d dropped so far (facts "
                                "records: listings look those objects up instead)",
                                self.dropped)
                return
            self._pending += 1

    def drain(self, timeout: float) -> bool:
        """Wait until every queued job has run, at most ``timeout`` seconds; whether
        they all have."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _start(self) -> None:
        for n in range(self._threads):
            threading.Thread(target=self._run, name=f"encproxy-background-{n}",
                             daemon=True).start()
        atexit.register(self._drain_at_exit)
        self._started = True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # noqa: BLE001 - a background job must not end its thread
                log.exception("background write failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    def _drain_at_exit(self) -> None:
        if not self.drain(self._drain_seconds):
            log.warning("background writes: %d left undone at exit (facts records: "
                        "listings look those objects up instead)", self._pending)
