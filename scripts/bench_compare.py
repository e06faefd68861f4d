"""Two versions of encproxy side by side, paired round by round (run: scripts/bench-compare).

``scripts/bench-compare OTHER`` starts two servers on the file store, both with every
object encrypted (bucket default SSE-S3): one from this checkout and one from the
checkout ``OTHER`` (a clone at another commit, set up with its own ``.venv``).  Each
round uploads a fresh multipart object to each server (boto3, 8 MiB parts, 10
threads, as the aws CLI uploads), then measures, on each, in an order that alternates
between rounds:

* the first whole GET of the fresh object, then three more (their mean rate);
* ``--ranges`` sequential ranged GETs of 1 MiB on one connection per side, then four
  times as many HEADs (what a request costs beyond its bytes);
* boto3's ``download_file`` (parallel ranged GETs, as the aws CLI downloads).

The two sides' requests are interleaved one by one (ranges in blocks of 8), so that
the slow seconds of a shared machine fall on both.

Machines are noisy, so single figures say little; what this reports for each
measurement is the median of each side and the median, minimum and maximum of the
per-round ratios (this checkout ÷ OTHER), as DESIGN.md §5 advises.
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

from bench_encryption import SSE_S3, Endpoint, request, request_range  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, RunningServer, start_server  # noqa: E402

MiB = 1 << 20
AWS_CLI_TRANSFER = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                                  max_concurrency=10)
MEASURES = ("first GET MB/s", "later GETs MB/s", "1 MiB ranges/s", "HEADs/s",
            "download_file MB/s", "upload_file MB/s")


def client(ep: Endpoint) -> object:
    return boto3.client("s3", endpoint_url=ep.base, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"},
                                      max_pool_connections=16))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def whole_get(ep: Endpoint, key: str, size: int) -> float:
    status, got = 0, 0

    def get() -> None:
        nonlocal status, got
        status, got = request(ep, "GET", f"/{ep.bucket}/{key}")
    elapsed = timed(get)
    assert status == 200 and got == size, f"{ep.name} GET: {status}, {got} bytes"
    return size / elapsed / 1e6


def ranges(ep: Endpoint, key: str, size: int, count: int, offset: int,
           conn: http.client.HTTPConnection) -> float:
    """Seconds for ``count`` sequential 1 MiB ranged GETs on ``conn``."""
    step = max(1, (size - MiB) // 64)

    def run() -> None:
        for i in range(offset, offset + count):
            first = (i * step + 4096 * i) % (size - MiB)
            status, got = request_range(ep, f"/{ep.bucket}/{key}", first, first + MiB - 1, conn)
            assert status == 206 and got == MiB, f"{ep.name} range: {status}, {got} bytes"
    return timed(run)


def heads(ep: Endpoint, key: str, count: int, conn: http.client.HTTPConnection) -> None:
    """``count`` sequential HEADs on ``conn``: what a request costs beyond its bytes."""
    for _ in range(count):
        status, _ = request(ep, "HEAD", f"/{ep.bucket}/{key}", conn=conn)
        assert status == 200, f"{ep.name} HEAD: {status}"


def one_round(eps: dict[str, Endpoint], clients: dict[str, object], source: Path, size: int,
              count: int, n: int, workdir: Path) -> dict[str, dict[str, float]]:
    """One fresh object on each side; the two sides' requests interleaved one by one
    (or in blocks of 8 ranges), so that the machine's slow seconds fall on both."""
    key = f"round-{n}.bin"
    order = list(eps) if n % 2 == 0 else list(reversed(eps))
    out: dict[str, dict[str, float]] = {name: {} for name in eps}
    for name in order:
        s3 = clients[name]
        out[name]["upload_file MB/s"] = size / timed(lambda: s3.upload_file(  # type: ignore[attr-defined]
            str(source), eps[name].bucket, key, Config=AWS_CLI_TRANSFER)) / 1e6
    subprocess.run(["sync"], check=False)
    for name in order:
        out[name]["first GET MB/s"] = whole_get(eps[name], key, size)
    seconds: dict[str, list[float]] = {name: [] for name in eps}
    for _ in range(3):
        for name in order:
            seconds[name].append(size / whole_get(eps[name], key, size) / 1e6)
    for name in eps:
        out[name]["later GETs MB/s"] = 3 * size / sum(seconds[name]) / 1e6
    conns = {name: http.client.HTTPConnection(ep.host, ep.port, timeout=600)
             for name, ep in eps.items()}
    spent = dict.fromkeys(eps, 0.0)
    for block in range(0, count, 8):
        for name in order:
            spent[name] += ranges(eps[name], key, size, 8, block, conns[name])
    for name in eps:
        out[name]["1 MiB ranges/s"] = count / spent[name]
    spent = dict.fromkeys(eps, 0.0)
    for _ in range(0, 4 * count, 32):
        for name in order:
            spent[name] += timed(lambda: heads(eps[name], key, 32, conns[name]))
    for name in eps:
        conns[name].close()
        out[name]["HEADs/s"] = 4 * count / spent[name]
    for name in order:
        target = workdir / f"{name}.download"
        out[name]["download_file MB/s"] = size / timed(lambda: clients[name].download_file(  # type: ignore[attr-defined]
            eps[name].bucket, key, str(target), Config=AWS_CLI_TRANSFER)) / 1e6
        assert target.stat().st_size == size
        target.unlink()
        assert request(eps[name], "DELETE", f"/{eps[name].bucket}/{key}")[0] == 204
    return out


class OtherServer:
    """A server started by the other checkout's own test support (its config writer,
    its keys, its encproxy), stopped by PID."""

    def __init__(self, checkout: Path, directory: Path) -> None:
        code = ("import sys, pathlib; sys.path.insert(0, sys.argv[1]);"
                "from support.server import start_server;"
                "s = start_server(pathlib.Path(sys.argv[2]),"
                " env={'ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS': '5'});"
                "print(s.port, s.process.pid, flush=True)")
        out = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", code,
                              str(checkout / "tests"), str(directory)], cwd=checkout,
                             capture_output=True, text=True, check=True, timeout=120)
        port, pid = out.stdout.split()
        self.port, self.pid = int(port), int(pid)

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def start(checkout: Path, directory: Path) -> RunningServer | OtherServer:
    if checkout == REPO:
        return start_server(directory, env={"ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": "5"})
    return OtherServer(checkout, directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other checkout (with its own .venv)")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--ranges", type=int, default=64)
    args = parser.parse_args()
    other = args.other.resolve()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        workdir = Path(tmp)
        source = workdir / "source.bin"
        with source.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(bytes(range(256)) * 4096)
        servers = {"this": start(REPO, workdir / "this"), "other": start(other, workdir / "other")}
        try:
            eps = {name: Endpoint(name, "127.0.0.1", s.port, "bench") for name, s in
                   servers.items()}
            for ep in eps.values():
                assert request(ep, "PUT", f"/{ep.bucket}")[0] == 200
                assert request(ep, "PUT", f"/{ep.bucket}?encryption", length=len(SSE_S3),
                               send=lambda c: c.send(SSE_S3))[0] == 200
            clients = {name: client(ep) for name, ep in eps.items()}
            results: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
            for n in range(args.rounds):
                got = one_round(eps, clients, source, size, args.ranges, n, workdir)
                for name in results:
                    results[name].append(got[name])
                print(f"round {n + 1}: " + "; ".join(
                    f"{m} {got['this'][m]:.0f} vs {got['other'][m]:.0f}" for m in MEASURES[:3]),
                    flush=True)
        finally:
            for s in servers.values():
                s.stop()
    print(f"\n{args.size_mib} MiB SSE-S3 multipart objects (8 MiB parts), file store, "
          f"{args.rounds} paired rounds; this = {REPO}, other = {other}")
    print(f"{'':22}{'this':>8}{'other':>8}{'ratio':>8}   per-round ratios (min-max)")
    for m in MEASURES:
        mine = [r[m] for r in results["this"]]
        theirs = [r[m] for r in results["other"]]
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        print(f"{m:22}{statistics.median(mine):8.0f}{statistics.median(theirs):8.0f}"
              f"{statistics.median(ratios):8.3f}   {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
