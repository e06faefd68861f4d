"""Pass-through benchmark: encproxy on an S3 backend against that backend directly.

Run: scripts/bench-passthrough [--backends ceph,moto] [--size-mib 1024] [--rounds 3]

For each backend (Ceph RGW, the one that counts, and moto), in one run:

1. start it with the project's own script (scripts/services/ceph-rgw, .../moto);
2. start ``encproxy serve`` on it (``[backend] type = s3``, objects stored as sent:
   ``[encryption] default = none``), gthread workers as shipped (2 x 8);
3. one untimed warm-up PUT and GET on each side, then paired rounds. Each round PUTs
   one SIZE object directly on the backend and one through encproxy (the order
   alternates between rounds), waits 3 s for the backend to settle, then GETs them in
   the order A B B A, each side's rate being the mean of its two reads, so that drift
   within a round weighs on both sides alike. Between rounds the objects are deleted
   and, on Ceph, garbage-collected at once (``radosgw-admin gc process``), so that
   RGW's collector never runs mid-transfer.

The client is the same for both sides and deliberately lean: one HTTP/1.1
connection, SigV4 with ``UNSIGNED-PAYLOAD``, the body sent from memory in 1 MiB
``sendall`` calls, the response read with ``readinto`` into one buffer.  Reported per
backend: median MB/s (MB = 10^6 bytes) of each side, the median of the per-round
ratios (encproxy / direct), and encproxy's CPU seconds per GiB (all its processes,
from /proc).  Every PUT's ETag is checked against the MD5 of the data.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encproxy import sigv4  # noqa: E402

MiB = 1 << 20
PIECE = MiB
SETTLE_SECONDS = 3
CLIENT_KEY, CLIENT_SECRET = "bench-client", "bench-client-secret-0123"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    endpoint: str
    identity: sigv4.SigningIdentity

    def connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.endpoint)
        return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                          timeout=300)

    def headers(self, method: str, path: str, extra: dict[str, str]) -> dict[str, str]:
        headers = {"host": urlsplit(self.endpoint).netloc, **extra}
        headers.update(sigv4.sign(method, path, "", headers, self.identity,
                                  datetime.now(timezone.utc)))
        return headers


def request(conn: http.client.HTTPConnection, target: Target, method: str, path: str,
            extra: dict[str, str], body: memoryview | None = None) -> http.client.HTTPResponse:
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in target.headers(method, path, extra).items():
        conn.putheader(name, value)
    conn.endheaders()
    if body is not None:
        for offset in range(0, len(body), PIECE):
            conn.send(body[offset:offset + PIECE])
    return conn.getresponse()


def put(target: Target, path: str, data: memoryview) -> tuple[float, str]:
    conn = target.connection()
    started = time.perf_counter()
    resp = request(conn, target, "PUT", path, {"content-length": str(len(data))}, data)
    answer = resp.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"PUT {target.name}{path}: {resp.status} {answer[:300]!r}")
    return elapsed, (resp.getheader("ETag") or "").strip('"')


def get(target: Target, path: str, size: int) -> float:
    conn = target.connection()
    buffer = bytearray(PIECE)
    started = time.perf_counter()
    resp = request(conn, target, "GET", path, {})
    if resp.status != 200:
        raise RuntimeError(f"GET {target.name}{path}: {resp.status} {resp.read()[:300]!r}")
    received = 0
    while n := resp.readinto(buffer):
        received += n
    elapsed = time.perf_counter() - started
    conn.close()
    if received != size:
        raise RuntimeError(f"GET {target.name}{path}: {received} of {size} bytes")
    return elapsed


def create_bucket(target: Target, bucket: str) -> None:
    conn = target.connection()
    resp = request(conn, target, "PUT", "/" + bucket, {"content-length": "0"}, memoryview(b""))
    body = resp.read()
    conn.close()
    if resp.status not in (200, 409):
        raise RuntimeError(f"CreateBucket on {target.name}: {resp.status} {body[:300]!r}")


# -- processes ------------------------------------------------------------------------

def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def service(script: str, *args: str, timeout: float = 180) -> dict[str, str]:
    result = subprocess.run([str(ROOT / "scripts/services" / script), *args],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/services/{script} {' '.join(args)}: {result.stderr}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Encproxy:
    process: subprocess.Popen[bytes]
    endpoint: str

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_encproxy(directory: Path, backend: str, key: str, secret: str) -> Encproxy:
    port = free_port()
    config = directory / "encproxy.ini"
    config.write_text(f"""
[server]
listen = 127.0.0.1:{port}
log_level = warning
access_log = false

[credentials]
{CLIENT_KEY} = {CLIENT_SECRET}

[keys]
keyring = {directory / "keys"}

[encryption]
default = none

[backend]
type = s3
endpoint = {backend}
access_key = {key}
secret_key = {secret}
""")
    config.chmod(0o600)   # it holds secrets: encproxy refuses a world-readable one
    encproxy = str(Path(sys.executable).with_name("encproxy"))
    subprocess.run([encproxy, "keys", "ensure-default", "--config", str(config)],
                   check=True, capture_output=True, timeout=60)
    log = (directory / "encproxy.log").open("wb")
    process = subprocess.Popen([encproxy, "serve", "--config", str(config)], stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"encproxy exited: {(directory / 'encproxy.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("encproxy did not start") from None
            time.sleep(0.1)
    time.sleep(1.0)  # let the workers boot
    return Encproxy(process, f"http://127.0.0.1:{port}")


# -- the benchmark --------------------------------------------------------------------

@dataclass
class Figures:
    direct_put: list[float] = field(default_factory=list)
    proxy_put: list[float] = field(default_factory=list)
    direct_get: list[float] = field(default_factory=list)
    proxy_get: list[float] = field(default_factory=list)
    cpu_put: list[float] = field(default_factory=list)
    cpu_get: list[float] = field(default_factory=list)


def run_backend(kind: str, size: int, rounds: int, data: memoryview, md5: str,
                workdir: Path) -> Figures:
    directory = workdir / kind
    directory.mkdir()
    if kind == "ceph":
        # Room for the objects and for what RGW's garbage collector has not freed yet.
        os.environ.setdefault("CEPH_RGW_MEMSTORE_BYTES", str(max(6 << 30, 6 * size)))
        env = service("ceph-rgw", "start", str(directory / "rgw"))
        backend = Target("ceph", env["RGW_ENDPOINT"], sigv4.SigningIdentity(
            env["RGW_ACCESS_KEY"], env["RGW_SECRET_KEY"]))
        stop = ("ceph-rgw", str(directory / "rgw"))
    else:
        env = service("moto", "start", str(directory / "moto"))
        backend = Target("moto", env["MOTO_ENDPOINT"],
                         sigv4.SigningIdentity("bench-key", "bench-secret"))
        stop = ("moto", str(directory / "moto"))
    proxy = None
    try:
        proxy = start_encproxy(directory, backend.endpoint, backend.identity.access_key,
                               backend.identity.secret)
        through = Target("encproxy", proxy.endpoint,
                         sigv4.SigningIdentity(CLIENT_KEY, CLIENT_SECRET))
        create_bucket(backend, "bench")
        figures = Figures()
        gib = size / (1 << 30)
        for target in (backend, through):  # warm-up, untimed: pools, caches, connections
            put(target, f"/bench/warm-{target.name}", data)
            get(target, f"/bench/warm-{target.name}", size)
        for round_number in range(rounds):
            order = [(backend, False), (through, True)]
            if round_number % 2:
                order.reverse()
            for target, is_proxy in order:
                before = cpu_seconds(proxy.pids())
                seconds, etag = put(target, f"/bench/{target.name}-{round_number}", data)
                if etag != md5:
                    raise RuntimeError(f"{target.name} PUT ETag {etag} != {md5}")
                mbps = size / seconds / 1e6
                if is_proxy:
                    figures.proxy_put.append(mbps)
                    figures.cpu_put.append((cpu_seconds(proxy.pids()) - before) / gib)
                else:
                    figures.direct_put.append(mbps)
            # The backend is still busy for a moment after a large PUT (RGW's first GET
            # then runs at half speed): settle, then read A B B A, so that drift within
            # the round weighs on both sides alike.
            time.sleep(SETTLE_SECONDS)
            rates: dict[bool, list[float]] = {False: [], True: []}
            cpus: list[float] = []
            for target, is_proxy in order + order[::-1]:
                before = cpu_seconds(proxy.pids())
                seconds = get(target, f"/bench/{target.name}-{round_number}", size)
                rates[is_proxy].append(size / seconds / 1e6)
                if is_proxy:
                    cpus.append((cpu_seconds(proxy.pids()) - before) / gib)
            figures.direct_get.append(statistics.mean(rates[False]))
            figures.proxy_get.append(statistics.mean(rates[True]))
            figures.cpu_get.append(statistics.mean(cpus))
            print(f"  {kind} round {round_number + 1}: PUT direct "
                  f"{figures.direct_put[-1]:.0f} / encproxy {figures.proxy_put[-1]:.0f} MB/s, "
                  f"GET direct {figures.direct_get[-1]:.0f} / encproxy "
                  f"{figures.proxy_get[-1]:.0f} MB/s", flush=True)
            for target in (backend, through):  # free the backend's memory
                conn = target.connection()
                conn.timeout = 60
                request(conn, target, "DELETE", f"/bench/{target.name}-{round_number}",
                        {}).read()
                conn.close()
            if kind == "ceph":
                # Collect the garbage now, not in the middle of the next round's transfers.
                subprocess.run(["radosgw-admin", "-c", str(directory / "rgw" / "ceph.conf"),
                                "gc", "process", "--include-all"], capture_output=True,
                               timeout=300, check=True)
        return figures
    finally:
        if proxy is not None:
            proxy.stop()
        service(*stop[:1], "stop", stop[1])


def report(kind: str, f: Figures) -> str:
    med = statistics.median
    put_ratio = med(p / d for p, d in zip(f.proxy_put, f.direct_put, strict=True))
    get_ratio = med(p / d for p, d in zip(f.proxy_get, f.direct_get, strict=True))
    spread = {op: ", ".join(f"{p / d:.0%}" for p, d in zip(proxied, direct, strict=True))
              for op, proxied, direct in (("PUT", f.proxy_put, f.direct_put),
                                          ("GET", f.proxy_get, f.direct_get))}
    return (f"| {kind} | PUT | {med(f.direct_put):.0f} | {med(f.proxy_put):.0f} | "
            f"{put_ratio:.0%} ({spread['PUT']}) | {med(f.cpu_put):.2f} |\n"
            f"| {kind} | GET | {med(f.direct_get):.0f} | {med(f.proxy_get):.0f} | "
            f"{get_ratio:.0%} ({spread['GET']}) | {med(f.cpu_get):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="ceph,moto")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    print(f"generating {args.size_mib} MiB of random data...", flush=True)
    data = memoryview(os.urandom(size))
    md5 = hashlib.md5(data).hexdigest()
    workdir = Path(tempfile.mkdtemp(prefix="encproxy-bench-"))
    results = {}
    try:
        for kind in args.backends.split(","):
            print(f"{kind}: {args.rounds} paired rounds of {args.size_mib} MiB", flush=True)
            results[kind] = run_backend(kind, size, args.rounds, data, md5, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d}, {os.cpu_count()} CPUs, "
          f"{args.size_mib} MiB objects, {args.rounds} paired rounds, medians\n")
    print("| backend | op | direct MB/s | encproxy MB/s | encproxy / direct (each round) | "
          "encproxy CPU-s/GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, figures in results.items():
        print(report(kind, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
