"""bench-small's floor under encproxy's own server (scripts/bench_floor_app.py): the app
that does nothing, served by encproxy's worker and hooks with a shipped configuration."""
from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path

from support.server import copy_keyring, free_port, write_config

REPO = Path(__file__).resolve().parents[2]


def test_the_floor_app_is_served_by_encproxys_worker(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    copy_keyring(tmp_path, "test-key", "other-key")
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "bench_floor_app.py"), "--config", str(config)],
        cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.connect()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        conn.request("PUT", "/floor/object", body=b"x" * 4096)
        put = conn.getresponse()
        assert (put.status, put.read()) == (200, b"")
        conn.request("GET", "/floor/object")
        get = conn.getresponse()
        assert (get.status, get.read()) == (200, bytes(4096))
        assert "Using worker: EncproxyWorker" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=20)
