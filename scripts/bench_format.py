"""Benchmark of the object format engine against bare AESGCM (run: scripts/bench-format).

In one process, over SIZE bytes of random plaintext, it measures:

* ``bare AESGCM.encrypt``: one ``AESGCM.encrypt(nonce, chunk, aad)`` per 64 KiB chunk;
* ``bare CTR+HMAC``: AES-256-CTR then HMAC-SHA256 per 64 KiB chunk (reference);
* the engine (``ObjectEncryptor.encrypt`` / ``ObjectDecryptor.decrypt``) for both
  suites, fed ~1 MiB pieces of the in-memory buffer, its output consumed in place.

Repetitions are paired: each round runs every case once, in turn, and the ratio
of each round is taken against the bare run of the same round; the report gives
the median MB/s (wall clock), the median CPU seconds per GiB and the median
ratios, on CPU time (robust to other load on the machine) and on wall time.  The
MD5 for the ETag is the caller's job (it runs beside the engine in the server), so
it is not part of the figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hashlib  # noqa: E402
import hmac  # noqa: E402

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from encproxy.crypto.keys import ObjectKeys  # noqa: E402
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor  # noqa: E402
from encproxy.crypto.stream import BATCH_CHUNKS  # noqa: E402
from encproxy.format.constants import (  # noqa: E402
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    Kind,
    MiB,
    Suite,
)

NO_MD5 = bytes(16)


def pieces(buf: memoryview, size: int) -> Iterator[memoryview]:
    for i in range(0, len(buf), size):
        yield buf[i:i + size]


def drain(views: Iterator[memoryview]) -> int:
    total = 0
    for view in views:
        total += len(view)
    return total


def bare_gcm(plaintext: memoryview, chunk: int) -> Callable[[], None]:
    aead = AESGCM(os.urandom(32))
    aad = bytes(16)
    pack = struct.Struct(">4xQ").pack

    def run() -> None:
        encrypt = aead.encrypt
        for n, i in enumerate(range(0, len(plaintext), chunk)):
            encrypt(pack(n), plaintext[i:i + chunk], aad)
    return run


def bare_ctr_hmac(plaintext: memoryview, chunk: int) -> Callable[[], None]:
    aes = algorithms.AES(os.urandom(32))
    mac = hmac.new(os.urandom(32), digestmod=hashlib.sha256)

    def run() -> None:
        for n, i in enumerate(range(0, len(plaintext), chunk)):
            ct = Cipher(aes, modes.CTR((n << 12).to_bytes(16, "big"))).encryptor().update(
                plaintext[i:i + chunk])
            m = mac.copy()
            m.update(ct)
            m.digest()
    return run


def engine_encrypt(keys: ObjectKeys, plaintext: memoryview) -> Callable[[], None]:
    def run() -> None:
        enc = ObjectEncryptor(keys, len(plaintext))
        n = drain(enc.encrypt(pieces(plaintext, BATCH_CHUNKS * CHUNK_SIZE), md5=lambda: NO_MD5))
        assert n == enc.ciphertext_size
    return run


def engine_decrypt(keys: ObjectKeys, ciphertext: memoryview, size: int) -> Callable[[], None]:
    def run() -> None:
        dec = ObjectDecryptor(keys, len(ciphertext))
        n = drain(dec.decrypt(pieces(ciphertext, BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE)))
        assert n == size
    return run


def into_loop(plaintext: memoryview, chunk: int) -> Callable[[], None]:
    """What the engine does per chunk, without the format: encrypt_into a reused buffer,
    with a nonce and a 16-byte AAD packed per chunk."""
    aead = AESGCM(os.urandom(32))
    pack_nonce = struct.Struct(">4xQ").pack
    pack_aad = struct.Struct(">BBBBIQ").pack
    batch = max(chunk, 1 << 20) // chunk
    out = memoryview(bytearray(batch * (chunk + 16)))

    def run() -> None:
        encrypt_into, pos = aead.encrypt_into, 0
        for n, i in enumerate(range(0, len(plaintext), chunk)):
            if pos == len(out):
                pos = 0
            encrypt_into(pack_nonce(n), plaintext[i:i + chunk], pack_aad(1, 1, 1, 0, 0, n),
                         out[pos:pos + chunk + 16])
            pos += chunk + 16
    return run


def chunk_scan(plaintext: memoryview, rounds: int) -> None:
    print(f"\nchunk size scan (median CPU MB/s over {rounds} rounds)")
    print(f"{'chunk':>8s} {'bare encrypt':>13s} {'encrypt_into loop':>18s} "
          f"{'tag overhead':>13s}")
    for chunk in (16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024):
        bare, loop = bare_gcm(plaintext, chunk), into_loop(plaintext, chunk)
        b = [timed(bare)[1] for _ in range(rounds)]
        lp = [timed(loop)[1] for _ in range(rounds)]
        mb = len(plaintext) / 1e6
        print(f"{chunk // 1024:>6d}Ki {mb / statistics.median(b):13.0f} "
              f"{mb / statistics.median(lp):18.0f} {16 / chunk:12.4%}")


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-format", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of plaintext (default 256)")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument("--chunk-scan", action="store_true",
                        help="also time bare AESGCM and an encrypt_into loop at other chunk sizes")
    args = parser.parse_args(argv)
    size = args.size * MiB
    plaintext = memoryview(os.urandom(size))
    mb = size / 1e6

    print(f"bench-format: {args.size} MiB in-process, chunk {CHUNK_SIZE // 1024} KiB, "
          f"batch {BATCH_CHUNKS} chunks, {args.rounds} paired rounds")
    suites: dict[Suite, tuple[ObjectKeys, memoryview]] = {}
    for suite in Suite:
        keys = ObjectKeys.generate(Kind.SINGLE, suite)
        enc = ObjectEncryptor(keys, size)
        ct = bytearray(enc.ciphertext_size)
        pos = 0
        for view in enc.encrypt(pieces(plaintext, BATCH_CHUNKS * CHUNK_SIZE),
                                md5=lambda: NO_MD5):
            ct[pos:pos + len(view)] = view
            pos += len(view)
        suites[suite] = (keys, memoryview(ct))

    cases: dict[str, Callable[[], None]] = {
        "bare AESGCM.encrypt": bare_gcm(plaintext, CHUNK_SIZE),
        "bare AES-CTR + HMAC-SHA256": bare_ctr_hmac(plaintext, CHUNK_SIZE),
    }
    for suite, (keys, stored) in suites.items():
        cases[f"{suite.label} encrypt"] = engine_encrypt(keys, plaintext)
        cases[f"{suite.label} decrypt"] = engine_decrypt(keys, stored, size)

    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            wall, cpu = timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)

    def ratio(base: list[float], ts: list[float]) -> float:
        return statistics.median(b / t for b, t in zip(base, ts, strict=True))

    gib = size / 2**30
    print(f"{'case':34s} {'MB/s':>7s} {'CPU-s/GiB':>9s} {'vs bare AESGCM':>15s} {'(wall)':>7s}")
    for name in cases:
        rate = mb / statistics.median(walls[name])
        cpu_per_gib = statistics.median(cpus[name]) / gib
        print(f"{name:34s} {rate:7.0f} {cpu_per_gib:9.3f} "
              f"{ratio(cpus['bare AESGCM.encrypt'], cpus[name]):14.1%} "
              f"{ratio(walls['bare AESGCM.encrypt'], walls[name]):7.1%}")
    for op in ("encrypt", "decrypt"):
        name = f"{Suite.AES256_CTR_HMAC_SHA256.label} {op}"
        print(f"{name:34s} {'':7s} {'':9s} "
              f"{ratio(cpus['bare AES-CTR + HMAC-SHA256'], cpus[name]):14.1%} "
              f"{ratio(walls['bare AES-CTR + HMAC-SHA256'], walls[name]):7.1%}"
              "  of bare CTR+HMAC")
    print("ratios: median over rounds of bare time / case time, CPU time first, wall second")
    if args.chunk_scan:
        chunk_scan(plaintext, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
