"""Benchmark of transparent encryption through the real server (run: scripts/bench-encryption).

For each backend named by ``--backends`` (default: the embedded file store, then
Ceph RGW started by scripts/services/ceph-rgw), one encproxy server (gunicorn, as
users run it, workers and threads as shipped) and, in one run, these setups:

* encrypted:   a bucket with default encryption (SSE-S3), through encproxy;
* unencrypted: a bucket without, through the same server;
* direct:      the backend itself, without encproxy (S3 backends only: the file
               store has no endpoint of its own).

It measures PUT and GET of one large object (MB/s), the aws CLI's ``s3 cp`` of the
same size up and down, a whole GET and 1 MiB ranged GETs of the multipart object the
CLI uploaded, PUT and GET of 4 KiB objects (ops/s, p50 and p99 latency,
several client threads), listing 1,000 objects (first listing and repeated
listings), and the peak RSS of the gunicorn workers during the large transfers.

Repetitions rotate the order of the setups; the 4 KiB rounds run after the large
transfers have been flushed to disk (``sync``), in alternating order, so that
neither setup pays for the other's writeback.  The ratios compare medians taken in
the same run, as DESIGN.md §5 advises.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
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

from support.backends import Backend, start_backend  # noqa: E402
from support.raw_s3 import Signed  # noqa: E402  (the tests' independent SigV4 signer)
from support.server import ACCESS_KEY, SECRET_KEY, RunningServer, start_server  # noqa: E402

MiB = 1 << 20
SSE_S3 = (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
          b"<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
          b"</ServerSideEncryptionConfiguration>")


@dataclass
class Endpoint:
    name: str
    host: str
    port: int
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


def aws_cli_copy(ep: Endpoint, source: Path, workdir: Path) -> tuple[float, float]:
    """``aws s3 cp`` up and down with the CLI's default settings (8 MiB multipart parts,
    10 concurrent requests, parallel ranged GETs down); seconds for each."""
    import subprocess
    aws = str(Path(sys.executable).with_name("aws"))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ep.access_key,
           "AWS_SECRET_ACCESS_KEY": ep.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    times = []
    for src, dst in ((str(source), f"s3://{ep.bucket}/cli.bin"),
                     (f"s3://{ep.bucket}/cli.bin", str(workdir / f"cli-{ep.name}.bin"))):
        started = time.perf_counter()
        subprocess.run([aws, "--endpoint-url", ep.base, "s3", "cp", "--only-show-errors", src,
                        dst], env=env, check=True, timeout=1800)
        times.append(time.perf_counter() - started)
    (workdir / f"cli-{ep.name}.bin").unlink()
    return times[0], times[1]


@dataclass
class Results:
    put_mbs: list[float] = field(default_factory=list)
    get_mbs: list[float] = field(default_factory=list)
    small_put_ops: list[float] = field(default_factory=list)
    small_get_ops: list[float] = field(default_factory=list)
    small_put_lat: list[float] = field(default_factory=list)
    small_get_lat: list[float] = field(default_factory=list)
    cli_up_mbs: list[float] = field(default_factory=list)
    cli_down_mbs: list[float] = field(default_factory=list)
    mp_get_mbs: list[float] = field(default_factory=list)
    mp_range_ops: list[float] = field(default_factory=list)
    list_first_ms: float = 0.0
    list_next_ms: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0


def request(ep: Endpoint, method: str, path: str, *, length: int = 0,
            send: Callable[[http.client.HTTPConnection], None] | None = None,
            conn: http.client.HTTPConnection | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, int]:
    """One signed request, with ``headers`` besides its own; returns (status, bytes read).
    The body is drained and dropped."""
    headers = {**(headers or {}),
               **({"content-length": str(length)} if length or method == "PUT" else {})}
    signed = Signed(method, ep.base + path, headers, "UNSIGNED-PAYLOAD", ep.access_key,
                    ep.secret_key)
    own = conn is None
    conn = conn or http.client.HTTPConnection(ep.host, ep.port, timeout=600)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in signed.headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    if send is not None:
        send(conn)
    resp = conn.getresponse()
    got = 0
    buf = bytearray(MiB)
    while True:
        n = resp.readinto(buf)
        if not n:
            break
        got += n
    if own:
        conn.close()
    return resp.status, got


def worker_pids(server: RunningServer) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(p) for p in children.read_text().split()]


def reset_peak_rss(pids: list[int]) -> None:
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (peak RSS)


def peak_rss_mib(pids: list[int]) -> float:
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def large(ep: Endpoint, size: int, res: Results, pids: list[int] | None) -> None:
    piece = os.urandom(MiB)

    def send(conn: http.client.HTTPConnection) -> None:
        left = size
        while left:
            n = min(MiB, left)
            conn.send(piece[:n])
            left -= n

    if pids:
        reset_peak_rss(pids)
    started = time.perf_counter()
    status, _ = request(ep, "PUT", f"/{ep.bucket}/large", length=size, send=send)
    put = time.perf_counter() - started
    assert status == 200, f"{ep.name} PUT: {status}"
    started = time.perf_counter()
    status, got = request(ep, "GET", f"/{ep.bucket}/large")
    get = time.perf_counter() - started
    assert status == 200 and got == size, f"{ep.name} GET: {status}, {got} bytes"
    res.put_mbs.append(size / put / 1e6)
    res.get_mbs.append(size / get / 1e6)
    if pids:
        res.peak_rss_mib = max(res.peak_rss_mib, peak_rss_mib(pids))
    assert request(ep, "DELETE", f"/{ep.bucket}/large")[0] == 204  # frees an in-memory backend


def multipart_reads(ep: Endpoint, size: int, res: Results, ranges: int = 64) -> None:
    """The object the aws CLI just uploaded in 8 MiB parts: one whole GET, then ``ranges``
    ranged GETs of 1 MiB at offsets spread over the object (across part boundaries too),
    one after the other on one connection."""
    started = time.perf_counter()
    status, got = request(ep, "GET", f"/{ep.bucket}/cli.bin")
    elapsed = time.perf_counter() - started
    assert status == 200 and got == size, f"{ep.name} multipart GET: {status}, {got} bytes"
    res.mp_get_mbs.append(size / elapsed / 1e6)
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=600)
    step = max(1, (size - MiB) // ranges)
    started = time.perf_counter()
    for i in range(ranges):
        first = (i * step + 4096 * i) % (size - MiB)
        status, got = request_range(ep, f"/{ep.bucket}/cli.bin", first, first + MiB - 1, conn)
        assert status == 206 and got == MiB, f"{ep.name} ranged GET: {status}, {got} bytes"
    res.mp_range_ops.append(ranges / (time.perf_counter() - started))
    conn.close()


def request_range(ep: Endpoint, path: str, first: int, last: int,
                  conn: http.client.HTTPConnection) -> tuple[int, int]:
    """A signed ranged GET on ``conn``; (status, bytes read)."""
    signed = Signed("GET", ep.base + path, {"range": f"bytes={first}-{last}"},
                    "UNSIGNED-PAYLOAD", ep.access_key, ep.secret_key)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for name, value in signed.headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    return resp.status, len(resp.read())


def small(ep: Endpoint, count: int, threads: int, res: Results, prefix: str) -> None:
    body = os.urandom(4096)
    lat: dict[str, list[float]] = {"PUT": [], "GET": []}
    lock = threading.Lock()

    def run(method: str, index: int) -> None:
        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=60)
        mine = []
        for i in range(index, count, threads):
            started = time.perf_counter()
            status, _ = request(ep, method, f"/{ep.bucket}/{prefix}{i:05d}",
                                length=4096 if method == "PUT" else 0,
                                send=(lambda c: c.send(body)) if method == "PUT" else None,
                                conn=conn)
            mine.append(time.perf_counter() - started)
            assert status == 200, f"{ep.name} {method}: {status}"
        conn.close()
        with lock:
            lat[method].extend(mine)

    for method in ("PUT", "GET"):
        workers = [threading.Thread(target=run, args=(method, t)) for t in range(threads)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        ops = count / elapsed
        if method == "PUT":
            res.small_put_ops.append(ops)
            res.small_put_lat.extend(lat[method])
        else:
            res.small_get_ops.append(ops)
            res.small_get_lat.extend(lat[method])


def listing(ep: Endpoint, res: Results, prefix: str, warm: int = 6, repeats: int = 6) -> None:
    """The first listing, then listings once every worker has served some: each gunicorn
    worker caches what it learnt (FactsCache), and connections land on any worker."""
    path = f"/{ep.bucket}?list-type=2&max-keys=1000&prefix={prefix}"
    started = time.perf_counter()
    status, _ = request(ep, "GET", path)
    res.list_first_ms = (time.perf_counter() - started) * 1000
    assert status == 200
    for _ in range(warm):
        request(ep, "GET", path)
    for _ in range(repeats):
        started = time.perf_counter()
        request(ep, "GET", path)
        res.list_next_ms.append((time.perf_counter() - started) * 1000)


def p50_p99_ms(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return f"{ordered[len(ordered) // 2] * 1000:.1f}/{ordered[int(len(ordered) * 0.99)] * 1000:.1f}"


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_backend(kind: str, args: argparse.Namespace, workdir: Path,
                source: Path) -> dict[str, Results]:
    """Every setup on one backend; the results by setup name."""
    directory = workdir / kind
    directory.mkdir()
    if kind == "ceph":
        # Room for the large objects and for what RGW's garbage collector has not freed yet.
        os.environ.setdefault("CEPH_RGW_MEMSTORE_BYTES", str(max(6 << 30, 6 * args.size_mib * MiB)))
    backend: Backend = start_backend(kind, directory / "backend")
    server = None
    try:
        # The production default for the configuration cache (the tests turn it off).
        server = start_server(directory / "server", env={
            "ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": "5", **backend.server_env()})
        enc = Endpoint("encrypted", "127.0.0.1", server.port, "bench-enc")
        plain = Endpoint("unencrypted", "127.0.0.1", server.port, "bench-plain")
        setups = [enc, plain]
        if backend.is_s3:
            assert backend.endpoint is not None
            parts = urlsplit(backend.endpoint)
            setups.append(Endpoint("direct", parts.hostname or "127.0.0.1", parts.port or 80,
                                   "bench-direct", backend.access_key, backend.secret_key))
        for ep in setups:
            assert request(ep, "PUT", f"/{ep.bucket}")[0] == 200, f"{ep.name}: create bucket"
        assert request(enc, "PUT", f"/{enc.bucket}?encryption", length=len(SSE_S3),
                       send=lambda c: c.send(SSE_S3))[0] == 200
        results = {ep.name: Results() for ep in setups}
        pids = worker_pids(server)
        size = args.size_mib * MiB
        for rep in range(args.reps):
            order = setups[rep % len(setups):] + setups[:rep % len(setups)]
            for ep in order:
                large(ep, size, results[ep.name], pids if ep.name != "direct" else None)
                up, down = aws_cli_copy(ep, source, workdir)
                results[ep.name].cli_up_mbs.append(size / up / 1e6)
                results[ep.name].cli_down_mbs.append(size / down / 1e6)
                multipart_reads(ep, size, results[ep.name])
                print(f"  {kind} rep {rep + 1} {ep.name}: large PUT "
                      f"{results[ep.name].put_mbs[-1]:.0f}, GET {results[ep.name].get_mbs[-1]:.0f}"
                      f" MB/s; aws s3 cp up {results[ep.name].cli_up_mbs[-1]:.0f}, down "
                      f"{results[ep.name].cli_down_mbs[-1]:.0f} MB/s; multipart GET "
                      f"{results[ep.name].mp_get_mbs[-1]:.0f} MB/s, 1 MiB ranges "
                      f"{results[ep.name].mp_range_ops[-1]:.0f}/s", flush=True)
            os.sync()  # the large transfers' writeback must not land in the 4 KiB rounds
            for turn, ep in enumerate(order + order[::-1]):
                small(ep, args.small, args.threads, results[ep.name],
                      prefix=f"s{rep}-{turn // len(order)}-")
            print(f"  {kind} rep {rep + 1} 4 KiB PUT/GET ops/s: " + ", ".join(
                f"{ep.name} {med(results[ep.name].small_put_ops[-2:]):.0f}/"
                f"{med(results[ep.name].small_get_ops[-2:]):.0f}" for ep in setups), flush=True)
        for ep in setups:
            listing(ep, results[ep.name], prefix="s0-0-")
        return results
    finally:
        if server is not None:
            server.stop()
        backend.stop()


def report(kind: str, args: argparse.Namespace, results: dict[str, Results]) -> None:
    e, p = results["encrypted"], results["unencrypted"]
    d = results.get("direct")
    print(f"\n{kind}: {args.size_mib} MiB object, {args.small} x 4 KiB objects with "
          f"{args.threads} client threads, {args.reps} repetitions, {os.cpu_count()} CPUs; "
          f"medians; ratio = encrypted / unencrypted through encproxy")
    rows = [
        ("large PUT (MB/s)", "put_mbs", 60),
        ("large GET (MB/s)", "get_mbs", 70),
        ("4 KiB PUT (ops/s)", "small_put_ops", 70),
        ("4 KiB GET (ops/s)", "small_get_ops", 70),
        ("aws s3 cp up (MB/s)", "cli_up_mbs", 60),
        ("aws s3 cp down (MB/s)", "cli_down_mbs", 60),
        ("multipart GET (MB/s)", "mp_get_mbs", None),
        ("multipart 1 MiB ranges/s", "mp_range_ops", None),
    ]
    print(f"{'':22}{'encrypted':>12}{'unencrypted':>13}{'direct':>9}{'ratio':>8}{'target':>8}")
    for name, attr, target in rows:
        ev, pv = med(getattr(e, attr)), med(getattr(p, attr))
        dv = f"{med(getattr(d, attr)):9.0f}" if d else f"{'-':>9}"
        ratio = 100 * ev / pv
        goal = "-" if target is None else ">=" + str(target) + "%"
        below = target is not None and ratio < target
        print(f"{name:22}{ev:12.0f}{pv:13.0f}{dv}{ratio:7.1f}%{goal:>8}"
              f"{'  BELOW TARGET' if below else ''}")
    for op, attr in (("PUT", "small_put_lat"), ("GET", "small_get_lat")):
        cells = [p50_p99_ms(getattr(r, attr)) for r in (e, p)]
        cells.append(p50_p99_ms(getattr(d, attr)) if d else "-")
        print(f"{'4 KiB ' + op + ' p50/p99 ms':22}{cells[0]:>12}{cells[1]:>13}{cells[2]:>9}")
    print(f"{f'list {args.small}: first (ms)':22}{e.list_first_ms:12.0f}{p.list_first_ms:13.0f}"
          + (f"{d.list_first_ms:9.0f}" if d else f"{'-':>9}"))
    nxt = 100 * med(e.list_next_ms) / med(p.list_next_ms)
    print(f"{f'list {args.small}: next (ms)':22}{med(e.list_next_ms):12.0f}"
          f"{med(p.list_next_ms):13.0f}" + (f"{med(d.list_next_ms):9.0f}" if d else f"{'-':>9}")
          + f"{nxt / 100:7.2f}x{'<=2x':>8}{'' if nxt <= 200 else '  ABOVE TARGET'}")
    rss = max(e.peak_rss_mib, p.peak_rss_mib)
    print(f"worker peak RSS during the large transfers: {rss:.0f} MiB (target <= 100 MiB)"
          f"{'' if rss <= 100 else '  ABOVE TARGET'}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-encryption", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="file,ceph",
                        help="comma-separated: file, ceph, moto (default: file,ceph)")
    parser.add_argument("--size-mib", type=int, default=1024, help="large object size")
    parser.add_argument("--small", type=int, default=1000,
                        help="4 KiB objects per round (also the listing size)")
    parser.add_argument("--threads", type=int, default=4, help="client threads for 4 KiB ops")
    parser.add_argument("--reps", type=int, default=3, help="repetitions")
    parser.add_argument("--checksum", choices=("crc64nvme", "crc32", "crc32c", "sha1", "sha256"),
                        help="instead: what sending this checksum costs an encrypted 1 GiB "
                             "PUT on the file store, against the same PUT without one, in "
                             "--reps paired rounds (scripts/bench_checksums.py)")
    args = parser.parse_args()
    if args.checksum:
        from bench_checksums import compare  # it imports this module's helpers
        return compare(args.checksum, args.size_mib, args.reps)

    workdir = Path(tempfile.mkdtemp(prefix="bench-encryption-"))
    source = workdir / "cli-source.bin"
    with source.open("wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MiB))
    all_results = {}
    try:
        for kind in args.backends.split(","):
            all_results[kind] = run_backend(kind, args, workdir, source)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for kind, results in all_results.items():
        report(kind, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
