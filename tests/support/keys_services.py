"""Real key providers for the key-provider contract tests: SoftHSM2, PyKMIP, moto KMS.

Each ``start_*`` is bounded in time, binds 127.0.0.1, and fails loudly (RuntimeError
with the service's own output) when the service cannot start: the contract suite
never skips a provider silently. Servers are stopped by PID (process group).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
                   "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/local/lib/softhsm/libsofthsm2.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- SoftHSM2 -------------------------------------------------------------------------------
@dataclass
class SoftHsmToken:
    conf: Path
    module: str
    label: str
    pin: str

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}


def start_softhsm(directory: Path, label: str = "encproxy-test", pin: str = "4711-test-pin",
                  so_pin: str = "so-pin-0815") -> SoftHsmToken:
    """A fresh SoftHSM2 token in ``directory`` (SOFTHSM2_CONF must point at it)."""
    module = next((m for m in SOFTHSM_MODULES if os.path.isfile(m)), None)
    if module is None:
        raise RuntimeError("SoftHSM2 is not installed (Debian package softhsm2; "
                           "scripts/test.d/30-keys.sh installs it)")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    f"log.level = ERROR\nslots.removable = false\n")
    result = subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
         "--so-pin", so_pin], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"softhsm2-util --init-token failed: {result.stderr or result.stdout}")
    return SoftHsmToken(conf, module, label, pin)


# -- PyKMIP ---------------------------------------------------------------------------------
@dataclass
class KmipServer:
    directory: Path
    host: str
    port: int
    ca: str
    cert: str
    key: str
    pid: int

    def stop(self) -> None:
        subprocess.run([str(REPO / "scripts/services/pykmip"), "stop", str(self.directory)],
                       capture_output=True, timeout=30,
                       env={**os.environ, "PYTHON_VENV": sys.executable})


def start_pykmip(directory: Path, port: int | None = None) -> KmipServer:
    result = subprocess.run(
        [str(REPO / "scripts/services/pykmip"), "start", str(directory),
         *([str(port)] if port else [])],
        capture_output=True, text=True, timeout=90,
        env={**os.environ, "PYTHON_VENV": sys.executable})
    if result.returncode != 0:
        raise RuntimeError(f"scripts/services/pykmip start failed:\n{result.stderr}")
    env = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
    return KmipServer(directory, env["KMIP_HOST"], int(env["KMIP_PORT"]), env["KMIP_CA"],
                      env["KMIP_CERT"], env["KMIP_KEY"], int(env["KMIP_PID"]))


# -- moto (KMS) -----------------------------------------------------------------------------
@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path = field(repr=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_moto(directory: Path, timeout: float = 30) -> MotoServer:
    """``moto_server`` on a free loopback port, answering once it serves HTTP."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "moto.log"
    process = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return MotoServer(endpoint, process, log)
        except OSError:
            if time.monotonic() > deadline:
                MotoServer(endpoint, process, log).stop()
                raise RuntimeError(f"moto_server not serving after {timeout} s: "
                                   f"{log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.1)


# -- a server that accepts connections and never answers ------------------------------------
class Blackhole:
    """A listening socket that never accepts: connects succeed, answers never come."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
