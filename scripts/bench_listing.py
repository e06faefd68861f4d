"""Listing cost at scale (run: scripts/bench-listing).

Issue 18 asks that the first ListObjectsV2 page after a restart cost at most 3x the
backend's own listing (warm: 1.5x), at 1,000 and at 10,000 objects, and that a page of
the file store's listing cost the same at 100,000 objects as at 1,000. Two parts:

**Page cost against store size** (file store). One encproxy server (gunicorn, as
``scripts/bench-small`` runs it: shipped workers and threads, the production
configuration cache) and one bucket per size of ``--sizes``, each with SSE-S3 default
encryption. A bucket's first 1,000 keys (``obj-0000000`` ...) are 4 KiB objects PUT
through the server, encrypted, by bench-small's lean client; the rest, up to its size,
are ``--bulk-bytes`` objects under the keys after them, written in-process through the
``FileStore`` API, unencrypted and without listing facts: objects encproxy did not
write, as a store holds that had data before encproxy, since writing 100,000 through
the server would take most of the run. The first page of every bucket is therefore the
encrypted objects encproxy wrote. Then ``--rounds`` rounds, each with the sizes in an
order that rotates (on this shared machine a slow minute must fall on every size, not
on the one measured last): the server is restarted (its caches empty) and each bucket's
first page is timed (``max-keys=1000``), then its middle page (``start-after`` the
middle key: bulk objects, which the first round's listing looks up, a HEAD each, eight
at a time, and records the facts of; later rounds read those records); then, after as
many untimed pages, so that both workers have served some, ``--warm`` warm first and
middle pages of each bucket, interleaved, and the store's own ``list_objects`` of both
pages, in-process.

**10,000 objects through encproxy against the backend direct.** For each S3 backend
of ``--backends`` (default SeaweedFS, started as bench-small starts it): ``--count``
4 KiB objects PUT directly, and as many through encproxy in front of it (an encrypted
bucket), from ``--threads`` client threads on kept-alive connections; the same through
encproxy on the file store (encrypted). Then bench-small's ``listing``: every page
(ListObjectsV2, continuation tokens) first after a restart of encproxy (the backend's
own listing is its first), then warm (median of 3, after 3 untimed). For the file
store the backend's own listing is the store's ``list_objects``, in-process.

Every page's key count is checked, and the first page's sizes are the plaintext's (a
listing that reported ciphertext sizes would fail the run).
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

from bench_encryption import SSE_S3, Endpoint, request  # noqa: E402
from bench_small import (  # noqa: E402
    BODY,
    Encproxy,
    Setup,
    _get,
    backend_setups,
    listing,
    med,
    phase,
)
from support.backends import Backend  # noqa: E402

from encproxy.filestore.store import FileStore  # noqa: E402

PREFIX = "obj-"
THROUGH = 1000          # the first keys, written through the server, encrypted


def key(i: int) -> str:
    return f"{PREFIX}{i:07d}"


def create_bucket(ep: Endpoint, encrypted: bool) -> None:
    assert request(ep, "PUT", f"/{ep.bucket}")[0] == 200, f"{ep.name}: create bucket"
    if encrypted:
        assert request(ep, "PUT", f"/{ep.bucket}?encryption", length=len(SSE_S3),
                       send=lambda c: c.send(SSE_S3))[0] == 200, f"{ep.name}: encryption"


# -- part 1: page cost against store size -----------------------------------------------------

@dataclass
class Size:
    objects: int
    endpoint: Endpoint
    first_ms: list[float] = field(default_factory=list)           # one a round
    warm_ms: list[float] = field(default_factory=list)
    middle_first_ms: list[float] = field(default_factory=list)    # one a round
    middle_warm_ms: list[float] = field(default_factory=list)
    store_ms: list[float] = field(default_factory=list)
    store_middle_ms: list[float] = field(default_factory=list)

    @property
    def middle(self) -> str:
        return key(self.objects // 2)

    @property
    def middle_entries(self) -> int:
        return min(1000, self.objects - self.objects // 2 - 1)


def page(ep: Endpoint, start_after: str | None = None) -> tuple[float, bytes]:
    """One ListObjectsV2 page of up to 1,000 keys, timed (ms); its body."""
    path = f"/{ep.bucket}?list-type=2&max-keys=1000"
    if start_after is not None:
        path += "&start-after=" + quote(start_after, safe="")
    started = time.perf_counter()
    body = _get(ep, path)
    return (time.perf_counter() - started) * 1000, body


def checked(body: bytes, entries: int, what: str, size: int | None = None) -> None:
    """The page lists ``entries`` keys and, with ``size``, every one of that size."""
    listed = body.count(b"<Key>")
    if listed != entries:
        raise SystemExit(f"{what}: listed {listed} keys, expected {entries}")
    if size is not None and body.count(f"<Size>{size}</Size>".encode()) != entries:
        raise SystemExit(f"{what}: not every entry has the size {size}")


def first_page(row: Size) -> float:
    elapsed, body = page(row.endpoint)
    checked(body, 1000, f"first page of {row.endpoint.bucket}", len(BODY))
    return elapsed


def middle_page(row: Size, bulk_bytes: int) -> float:
    elapsed, body = page(row.endpoint, row.middle)
    low, high = row.objects // 2 + 1, row.objects // 2 + row.middle_entries
    checked(body, row.middle_entries, f"middle page of {row.endpoint.bucket}",
            len(BODY) if high < THROUGH else bulk_bytes if low >= THROUGH else None)
    return elapsed


def store_page_ms(store: FileStore, bucket: str, entries: int,
                  start_after: str | None = None) -> float:
    started = time.perf_counter()
    result = store.list_objects(bucket, start_after=start_after, max_keys=1000)
    elapsed = (time.perf_counter() - started) * 1000
    if len(result.contents) != entries:
        raise SystemExit(f"store: listed {len(result.contents)} keys, expected {entries}")
    return elapsed


def fill(store: FileStore, bucket: str, start: int, stop: int, body: bytes,
         threads: int) -> None:
    """Keys ``start`` .. ``stop - 1``, written to the store directly (unencrypted)."""
    def put(i: int) -> None:
        store.put_object(bucket, key(i), io.BytesIO(body), len(body))

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:   # fsync waits overlap
        list(pool.map(put, range(start, stop)))
    print(f"  {bucket}: filled {start:,} .. {stop:,} in {time.perf_counter() - started:.0f} s",
          flush=True)


def scale(args: argparse.Namespace, workdir: Path) -> list[Size]:
    """One bucket per size, all measured in each round, in an order that rotates: a
    slow minute of the shared machine falls on every size, not on the largest."""
    proxy = Encproxy(workdir / "encproxy-scale", Backend("file"))
    try:
        rows = [Size(n, Endpoint(f"{n} objects", "127.0.0.1", proxy.server.port,
                                 f"bench-scale-{n}")) for n in args.sizes]
        for row in rows:
            ep = row.endpoint
            create_bucket(ep, encrypted=True)
            writer = Setup(ep.name, ep, lambda: [proxy.server.process.pid], None)
            phase(writer, "PUT", THROUGH, args.threads, PREFIX + "00")   # key(0) .. key(999)
        store = FileStore(proxy.server.root)
        bulk = bytes(args.bulk_bytes)
        for row in rows:
            fill(store, row.endpoint.bucket, THROUGH, row.objects, bulk, args.threads)
        for rnd in range(args.rounds):
            proxy.restart(*(row.endpoint for row in rows))
            order = rows[rnd % len(rows):] + rows[:rnd % len(rows)]
            for row in order:
                row.first_ms.append(first_page(row))
            for row in order:
                row.middle_first_ms.append(middle_page(row, args.bulk_bytes))
            for _ in range(args.warm):          # connections land on any worker: warm both
                for row in order:
                    first_page(row), middle_page(row, args.bulk_bytes)
            for _ in range(args.warm):
                for row in order:
                    row.warm_ms.append(first_page(row))
                    row.middle_warm_ms.append(middle_page(row, args.bulk_bytes))
            for _ in range(args.warm):
                for row in order:
                    bucket = row.endpoint.bucket
                    row.store_ms.append(store_page_ms(store, bucket, 1000))
                    row.store_middle_ms.append(
                        store_page_ms(store, bucket, row.middle_entries, row.middle))
            print(f"round {rnd + 1}: first page " + ", ".join(
                f"{row.objects:,}: {row.first_ms[-1]:.0f} ms" for row in order), flush=True)
        return rows
    finally:
        proxy.stop()


# -- part 2: --count objects through encproxy against the backend direct ------------------------

@dataclass
class Versus:
    setups: list[Setup]
    store_first_ms: float = float("nan")        # the file store's own listing, in-process
    store_warm_ms: list[float] = field(default_factory=list)


def store_listing_ms(store: FileStore, bucket: str, prefix: str, count: int) -> float:
    """Every page of ``prefix``, the way encproxy's listing pages through the store."""
    started, listed, after = time.perf_counter(), 0, None
    while True:
        result = store.list_objects(bucket, prefix, start_after=after, max_keys=1000)
        listed += len(result.contents)
        if not result.is_truncated:
            break
        after = result.next_marker
    if listed != count:
        raise SystemExit(f"store: listed {listed} objects, wrote {count}")
    return (time.perf_counter() - started) * 1000


def versus(args: argparse.Namespace, workdir: Path) -> Versus:
    stops = []
    setups: list[Setup] = []
    try:
        file_proxy = Encproxy(workdir / "encproxy-file", Backend("file"))
        stops.append(file_proxy.stop)
        enc = Endpoint("encproxy encrypted (file store)", "127.0.0.1", file_proxy.server.port,
                       "bench-enc")
        setups.append(Setup(enc.name, enc, lambda: [file_proxy.server.process.pid],
                            lambda: file_proxy.restart(enc)))
        for kind in filter(None, args.backends.split(",")):
            setups += backend_setups(kind, workdir, stops)
        for setup in setups:
            create_bucket(setup.endpoint, encrypted="encrypted" in setup.name)
            phase(setup, "PUT", args.count, args.threads, "b-")
            print(f"{setup.name}: {args.count:,} PUTs at {setup.put_ops[-1]:.0f}/s", flush=True)
        for setup in setups:
            listing(setup, "b-", args.count, warm=3)
            print(f"{setup.name}: listed first {setup.list_first_ms:.0f} ms, warm "
                  f"{med(setup.list_warm_ms):.0f} ms", flush=True)
        store = FileStore(file_proxy.server.root)
        result = Versus(setups)
        result.store_first_ms = store_listing_ms(store, enc.bucket, "b-", args.count)
        result.store_warm_ms = [store_listing_ms(store, enc.bucket, "b-", args.count)
                                for _ in range(3)]
        return result
    finally:
        for stop in reversed(stops):
            stop()


# -- the report ------------------------------------------------------------------------------

def report_scale(args: argparse.Namespace, rows: list[Size]) -> None:
    print(f"\nPage cost against store size: file store, one encrypted bucket per size, its "
          f"first {THROUGH:,} keys 4 KiB objects PUT through encproxy, the rest "
          f"{args.bulk_bytes} B objects written to the store directly; {args.rounds} rounds "
          f"(a restart each, sizes in rotated order); ms, medians (first: of the rounds; "
          f"warm: of {args.warm} a round)")
    print(f"{'objects':>9}{'first page':>12}{'warm page':>11}{'middle 1st':>12}"
          f"{'middle 1st':>12}{'middle warm':>13}{'entries':>9}{'store page':>12}"
          f"{'store middle':>14}")
    print(f"{'':>9}{'':>12}{'':>11}{'(round 1)':>12}{'(later)':>12}")
    for r in rows:
        print(f"{r.objects:>9,}{med(r.first_ms):12.1f}{med(r.warm_ms):11.1f}"
              f"{r.middle_first_ms[0]:12.1f}{med(r.middle_first_ms[1:]):12.1f}"
              f"{med(r.middle_warm_ms):13.1f}{r.middle_entries:>9}"
              f"{med(r.store_ms):12.2f}{med(r.store_middle_ms):14.2f}")
    print("first pages, every round: " + "; ".join(
        f"{r.objects:,}: " + ", ".join(f"{v:.0f}" for v in r.first_ms) for r in rows))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"{b.objects:,} / {a.objects:,} objects: first page "
              f"{med(b.first_ms) / med(a.first_ms):.2f}x, warm page "
              f"{med(b.warm_ms) / med(a.warm_ms):.2f}x, store page "
              f"{med(b.store_ms) / med(a.store_ms):.2f}x, store middle page against the "
              f"first page at {a.objects:,} {med(b.store_middle_ms) / med(a.store_ms):.2f}x")
    for r in rows:
        print(f"  at {r.objects:,}: first page / store page "
              f"{med(r.first_ms) / med(r.store_ms):.1f}x [<= 3; <= 60 ms], "
              f"warm / store {med(r.warm_ms) / med(r.store_ms):.1f}x [<= 1.5]")


def report_versus(args: argparse.Namespace, result: Versus) -> None:
    print(f"\n{args.count:,} 4 KiB objects, every page of ListObjectsV2 (1,000 a page): "
          f"the first after encproxy restarts, warm (median of 3); ms")
    width = max(len(s.name) for s in result.setups) + 2
    print(f"{'':{width}}{'first':>9}{'warm':>9}")
    for s in result.setups:
        print(f"{s.name:{width}}{s.list_first_ms:9.0f}{med(s.list_warm_ms):9.0f}")
    print(f"{'file store in-process':{width}}{result.store_first_ms:9.0f}"
          f"{med(result.store_warm_ms):9.0f}")
    print("\nratios (target in brackets):")
    enc = result.setups[0]
    print(f"  encproxy file store / store in-process: first "
          f"{enc.list_first_ms / result.store_first_ms:.1f}x [<= 3], warm "
          f"{med(enc.list_warm_ms) / med(result.store_warm_ms):.1f}x [<= 1.5]; first page "
          f"on average {enc.list_first_ms / -(-args.count // 1000):.0f} ms [<= 60]")
    by = {s.name: s for s in result.setups}
    for kind in filter(None, args.backends.split(",")):
        direct, through = by[f"{kind} direct"], by[f"encproxy->{kind} encrypted"]
        print(f"  encproxy->{kind} / {kind} direct: first "
              f"{through.list_first_ms / direct.list_first_ms:.1f}x [<= 3], warm "
              f"{med(through.list_warm_ms) / med(direct.list_warm_ms):.1f}x [<= 1.5]")


def sizes(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v]
    if not values or values != sorted(values) or values[0] < THROUGH:
        raise argparse.ArgumentTypeError(f"increasing sizes of at least {THROUGH}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-listing", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10000, 100000],
                        help="bucket sizes of the page-cost part (default 1000,10000,100000)")
    parser.add_argument("--bulk-bytes", type=int, default=1024,
                        help="body size of the objects written to the store directly")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the page-cost part (a restart each; at least 2)")
    parser.add_argument("--warm", type=int, default=5,
                        help="warm pages timed per size and round")
    parser.add_argument("--count", type=int, default=10000,
                        help="4 KiB objects of the encproxy-against-direct part")
    parser.add_argument("--backends", default="seaweedfs",
                        help="comma-separated S3 backends of that part: seaweedfs, ceph, moto, "
                             "or '' for the file store alone (default: seaweedfs)")
    parser.add_argument("--threads", type=int, default=4, help="client and filler threads")
    parser.add_argument("--skip-scale", action="store_true", help="only the second part")
    parser.add_argument("--skip-versus", action="store_true", help="only the first part")
    args = parser.parse_args()
    if args.warm < 1 or args.rounds < 2:
        parser.error("--warm must be at least 1 and --rounds at least 2")
    workdir = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    started = time.perf_counter()
    try:
        rows = [] if args.skip_scale else scale(args, workdir)
        result = None if args.skip_versus else versus(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rows:
        report_scale(args, rows)
    if result is not None:
        report_versus(args, result)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
