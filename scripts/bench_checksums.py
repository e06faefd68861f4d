"""What keeping a checksum costs an encrypted upload
(run: ``scripts/bench-encryption --checksum crc64nvme``).

One encproxy server (gunicorn, as users run it) on the embedded file store, one bucket
with default encryption (SSE-S3), and paired rounds of a large PUT: the same bytes sent
without a checksum header and with ``x-amz-checksum-<algorithm>`` (CRC64NVME is what AWS
CLI v2 sends), in alternating order.  Without a header encproxy still computes and seals
a CRC64NVME, S3's default (docs/ENCRYPTION.md, "Checksums"); with one it also verifies
the client's before the last byte is released.  Reported: MB/s and the workers' CPU
seconds per GiB (from /proc), medians over the rounds, and their ratios within the run.
"""
from __future__ import annotations

import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from awscrt import checksums as crt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from bench_encryption import SSE_S3, Endpoint, request, worker_pids  # noqa: E402
from support.server import start_server  # noqa: E402

MiB = 1 << 20


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these processes so far (clock ticks of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])      # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def checksum_of(algorithm: str, piece: bytes, count: int) -> str:
    """The base64 checksum of ``piece`` repeated ``count`` times."""
    if algorithm.startswith("crc"):
        crc = getattr(crt, algorithm)
        value = 0
        for _ in range(count):
            value = crc(piece, value)
        return base64.b64encode(value.to_bytes(8 if algorithm == "crc64nvme" else 4,
                                               "big")).decode("ascii")
    digest = hashlib.new(algorithm)
    for _ in range(count):
        digest.update(piece)
    return base64.b64encode(digest.digest()).decode("ascii")


def put(ep: Endpoint, size: int, piece: bytes, header: dict[str, str]) -> None:
    def send(conn) -> None:  # type: ignore[no-untyped-def]
        left = size
        while left:
            n = min(len(piece), left)
            conn.send(piece[:n])
            left -= n

    status, _ = request(ep, "PUT", f"/{ep.bucket}/large", length=size, send=send,
                        headers=header)
    assert status == 200, f"PUT: {status}"


def compare(algorithm: str, size_mib: int, rounds: int) -> int:
    size = size_mib * MiB
    piece = os.urandom(MiB)
    header = {f"x-amz-checksum-{algorithm}": checksum_of(algorithm, piece, size_mib)}
    name = algorithm.upper()

    with tempfile.TemporaryDirectory(prefix="bench-checksums-") as workdir:
        # The production default for the configuration cache (the tests turn it off).
        server = start_server(Path(workdir) / "server",
                              env={"ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": "5"})
        try:
            ep = Endpoint("encrypted", "127.0.0.1", server.port, "bench-enc")
            assert request(ep, "PUT", f"/{ep.bucket}")[0] == 200
            assert request(ep, "PUT", f"/{ep.bucket}?encryption", length=len(SSE_S3),
                           send=lambda c: c.send(SSE_S3))[0] == 200
            pids = worker_pids(server)
            speed: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            for n in range(rounds):
                for with_checksum in ((False, True) if n % 2 == 0 else (True, False)):
                    before, started = cpu_seconds(pids), time.perf_counter()
                    put(ep, size, piece, header if with_checksum else {})
                    elapsed = time.perf_counter() - started
                    cpu[with_checksum].append((cpu_seconds(pids) - before) / (size / (1 << 30)))
                    speed[with_checksum].append(size / elapsed / 1e6)
                    os.sync()
                print(f"  round {n + 1}: without {speed[False][-1]:.0f} MB/s "
                      f"{cpu[False][-1]:.2f} CPU-s/GiB; with {name} {speed[True][-1]:.0f} "
                      f"MB/s {cpu[True][-1]:.2f} CPU-s/GiB", flush=True)
        finally:
            server.stop()
    med = statistics.median
    print(f"\n{size_mib} MiB encrypted PUT (SSE-S3, file store), {rounds} paired "
          f"rounds, {os.cpu_count()} CPUs, medians:")
    print(f"  without a checksum header: {med(speed[False]):.0f} MB/s, "
          f"{med(cpu[False]):.2f} CPU-s/GiB")
    print(f"  with x-amz-checksum-{algorithm}: {med(speed[True]):.0f} MB/s, "
          f"{med(cpu[True]):.2f} CPU-s/GiB")
    ratios = [w / wo for w, wo in zip(speed[True], speed[False], strict=True)]
    print(f"  throughput with / without: {med(ratios):.3f} (median of the paired ratios; "
          "target >= 0.90)")
    print(f"  CPU with / without: {med(cpu[True]) / med(cpu[False]):.3f}")
    return 0


