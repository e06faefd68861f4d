"""Start and stop a real ``encproxy serve`` (gunicorn) for tests."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    endpoint: str
    port: int
    root: Path
    config: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(directory: Path, port: int, extra: str = "") -> Path:
    config = directory / "encproxy.ini"
    config.write_text(f"""
[server]
listen = 127.0.0.1:{port}
workers = 2
threads = 8
timeout = 60
graceful_timeout = 5
hostnames = localhost, s3.localhost
log_level = info

[credentials]
{ACCESS_KEY} = {SECRET_KEY}

[keys]
keyring = {directory / "keys"}

[encryption]
allow_insecure_sse_c = true
; Read-after-write across gunicorn workers; the bound itself has its own test.
config_cache_seconds = 0

[backend]
type = file
root = {directory / "data"}
{extra}
""")
    config.chmod(0o600)   # it holds secrets: encproxy refuses a world-readable one
    return config


def create_keys(config: Path, *names: str, env: dict[str, str] | None = None) -> None:
    """The default key and ``names``, made with the real ``encproxy keys`` commands (with
    the server's environment: it may complete the configuration)."""
    encproxy = str(Path(sys.executable).with_name("encproxy"))
    environ = {**os.environ, **(env or {})}
    subprocess.run([encproxy, "keys", "ensure-default", "--config", str(config)],
                   check=True, capture_output=True, timeout=60, env=environ)
    for name in names:
        subprocess.run([encproxy, "keys", "create", name, "--if-missing", "--config",
                        str(config)], check=True, capture_output=True, timeout=60, env=environ)


_keyrings: dict[tuple[str, ...], Path] = {}


def copy_keyring(directory: Path, *names: str) -> None:
    """The local keyring ``create_keys`` makes for ``write_config``'s configuration, into
    ``directory``: made once per test session by those real commands, then copied (three
    CLI runs cost more than a second, and a hundred servers start in a run).  Servers
    whose keys must differ make their own."""
    made = _keyrings.get(names)
    if made is None:
        template = Path(tempfile.mkdtemp(prefix="encproxy-test-keyring-"))
        atexit.register(shutil.rmtree, template, True)
        create_keys(write_config(template, 0), *names)
        made = _keyrings[names] = template / "keys"
    shutil.copytree(made, directory / "keys")


def _local_keyring(env: dict[str, str] | None) -> bool:
    """Whether ``env`` leaves the keys where ``write_config`` puts them: the local keyring."""
    return not any(name.startswith("ENCPROXY_KEYS_") for name in env or {})


def start_server(directory: Path, extra: str = "", env: dict[str, str] | None = None,
                 timeout: float = 30, create: bool = True) -> RunningServer:
    """``create``: make the default key, test-key and other-key first (False: a provider
    whose keys are made elsewhere, such as AWS KMS)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(directory, port, extra)
    if create and _local_keyring(env) and not (directory / "keys").exists():
        copy_keyring(directory, "test-key", "other-key")
    elif create:
        create_keys(config, "test-key", "other-key", env=env)
    log = directory / "server.log"
    encproxy = Path(sys.executable).with_name("encproxy")
    process = subprocess.Popen(
        [str(encproxy), "serve", "--config", str(config)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=directory,
        env={**os.environ, **(env or {})})
    server = RunningServer(process, f"http://127.0.0.1:{port}", port, directory / "data",
                           config, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"encproxy exited with {process.returncode}:\n{server.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"encproxy did not listen within {timeout}s:\n{server.log_text()}")
