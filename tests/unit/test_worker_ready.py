"""A worker is made ready for its first request when it loads the app
(``encproxy.server.ready_worker``): metrics families made, everything loaded frozen out of
the garbage collector's generations, and then it says so in the log.  Run in a child
process: freezing is for good."""
from __future__ import annotations

import subprocess
import sys

CHECK = """
import gc, io, logging, os, sys
from encproxy import server
assert "prometheus_client" not in sys.modules
said = io.StringIO()
logging.basicConfig(level=logging.INFO, stream=said, format="%(message)s")
app = object()
assert server.ready_worker(app) is app
assert said.getvalue() == f"worker {os.getpid()} ready\\n", said.getvalue()
assert "prometheus_client" in sys.modules, "metrics families not made"
assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
assert gc.get_count()[2] == 0
"""


def test_a_loaded_worker_has_its_metrics_and_a_frozen_heap() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
