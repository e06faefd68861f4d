"""``encproxy.wsgi.encryption.background.BackgroundWrites``: jobs run after the answer,
drained at exit for a bounded time, dropped (and counted) past a bounded queue; a failing
job does not stop the others."""
from __future__ import annotations

import subprocess
import sys
import threading

from encproxy.wsgi.encryption.background import BackgroundWrites


def test_jobs_run_and_drain_waits_for_them() -> None:
    writes = BackgroundWrites()
    done: list[int] = []
    for i in range(50):
        writes.submit(lambda i=i: done.append(i))
    assert writes.drain(10)
    assert sorted(done) == list(range(50)) and writes.dropped == 0


def test_a_failing_job_leaves_the_threads_working() -> None:
    writes = BackgroundWrites(threads=1)
    done: list[str] = []

    def fails() -> None:
        raise RuntimeError("the backend said no")
    writes.submit(fails)
    writes.submit(lambda: done.append("after"))
    assert writes.drain(10)
    assert done == ["after"]


def test_past_the_queue_jobs_are_dropped_and_counted() -> None:
    writes = BackgroundWrites(depth=2, threads=1)
    release = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def blocker() -> None:
        started.set()
        release.wait(10)
    writes.submit(blocker)
    assert started.wait(10)           # the thread holds it: the queue is empty again
    for i in range(5):
        writes.submit(lambda i=i: done.append(i))
    assert writes.dropped == 3
    assert not writes.drain(0.2)      # bounded: the blocker still runs
    release.set()
    assert writes.drain(10)
    assert done == [0, 1]


EXIT = """
import time
from encproxy.wsgi.encryption.background import BackgroundWrites
writes = BackgroundWrites()
def slow():
    time.sleep(0.5)
    print("written", flush=True)
writes.submit(slow)
"""


def test_a_process_exiting_drains_its_queue_first() -> None:
    done = subprocess.run([sys.executable, "-c", EXIT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "written\n"
