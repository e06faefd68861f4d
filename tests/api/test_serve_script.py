"""The README's serve command, run as a user runs it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid

import boto3
from botocore.config import Config

from support.server import REPO, free_port

DEV_KEY, DEV_SECRET = "encproxy-dev", "encproxy-dev-secret-change-me"


def test_scripts_serve_with_shipped_config(tmp_path):
    """scripts/serve starts on conf/encproxy.ini; its dev credentials (from the README) work."""
    assert DEV_KEY in (REPO / "README.md").read_text()
    assert f"{DEV_KEY} = {DEV_SECRET}" in (REPO / "conf/encproxy.ini").read_text()
    port = free_port()
    env = {**os.environ, "ENCPROXY_SERVER_LISTEN": f"127.0.0.1:{port}",
           "ENCPROXY_BACKEND_ROOT": str(tmp_path / "data"),
           "ENCPROXY_KEYS_KEYRING": str(tmp_path / "keys")}
    env.pop("ENCPROXY_CONFIG", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(REPO / "scripts/serve")], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "scripts/serve did not listen"
                time.sleep(0.2)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id=DEV_KEY, aws_secret_access_key=DEV_SECRET,
                          config=Config(s3={"addressing_style": "path"}))
        name = "serve-" + uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=name)
        body = b"via scripts/serve, stored as ciphertext"
        put = s3.put_object(Bucket=name, Key="k", Body=body)
        assert put["ServerSideEncryption"] == "AES256"   # shipped [encryption] default
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == body
        stored = [p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()]
        assert stored  # the override reached the store
        assert not any(body in data for data in stored)
        # First start made the default key, private to its owner.
        key_files = [p for p in (tmp_path / "keys").iterdir() if p.is_file()]
        assert key_files and all(p.stat().st_mode & 0o077 == 0 for p in key_files)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # gunicorn may take the shipped graceful_timeout (30 s) to let workers finish.
        proc.wait(timeout=45)
