"""The file store's metadata index (SQLite, WAL): schema, indexing an existing store,
the sweep of files no row names, crash windows, and writers in several processes."""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import multiprocessing
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from encproxy import errors
from encproxy.filestore import index as ix
from encproxy.filestore import storefile as sf
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl, conditional_writes
from encproxy.wsgi.apps.filestore.common import OWNER_ID


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> FileStore:
    s = FileStore(root)
    s.create_bucket("bucket")
    return s


def put(store: FileStore, key: str, data: bytes, **kw: Any) -> Any:
    return store.put_object("bucket", key, io.BytesIO(data), len(data), **kw)


def get(store: FileStore, key: str, version: str | None = None) -> bytes:
    _, body = store.open_object("bucket", key, version)
    with body:
        return body.read()


def object_files(root: Path, bucket: str = "bucket") -> list[Path]:
    return sorted(Path(d) / f for d, _, fs in os.walk(root / "buckets" / bucket / "objects")
                  for f in fs)


def write_old_object(root: Path, bucket: str, key: str, data: bytes, when: float) -> Path:
    """An object file as the store wrote it before the index: named by the key's hash."""
    h = hashlib.sha256(key.encode()).hexdigest()
    d = root / "buckets" / bucket / "objects" / h[0:2] / h[2:4]
    d.mkdir(parents=True, exist_ok=True)
    record = sf.encode_fields(sf.object_fields(key, ObjectMeta(), None))
    digest = hashlib.md5(data).digest()
    path = d / h
    path.write_bytes(sf.encode_fixed(len(record), len(data), digest, when) + record + data)
    return path


# -- the database ---------------------------------------------------------------------------

def test_index_is_one_private_sqlite_database_in_wal_mode(store: FileStore, root: Path) -> None:
    path = root / ix.INDEX_FILE
    assert path.is_file()
    assert path.stat().st_mode & 0o077 == 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"meta", "buckets", "versions"} <= tables
    finally:
        conn.close()


def test_a_version_is_one_row_naming_its_own_file(store: FileStore, root: Path) -> None:
    put(store, "k", b"one")
    put(store, "k", b"two")          # unversioned: replaces the null version
    files = object_files(root)
    assert len(files) == 1            # the replaced file is gone
    conn = store.index.connection()
    rows = conn.execute("SELECT key, version_id, latest, file FROM versions").fetchall()
    assert rows == [("k", "null", 1, files[0].name)]
    assert "." in files[0].name and files[0].name.startswith(
        hashlib.sha256(b"k").hexdigest())


def test_listings_read_the_index_not_the_files(store: FileStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        put(store, f"k{i:02d}", b"x" * i)

    def no_file_reads(*args: Any) -> None:
        raise AssertionError("a listing opened an object file")

    monkeypatch.setattr(sf, "read_header", no_file_reads)
    page = store.list_objects("bucket", prefix="k1", max_keys=4)
    assert [r.key for r in page.contents] == ["k10", "k11", "k12", "k13"]
    assert [r.size for r in page.contents] == [10, 11, 12, 13]
    assert page.is_truncated and page.next_marker == "k13"
    versions = store.list_versions("bucket", prefix="k2", max_keys=100)
    assert [v.key for v in versions.versions] == [f"k2{i}" for i in range(10)]


def test_listing_stops_reading_rows_after_the_page(store: FileStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        put(store, f"a{i:02d}", b"x")
    read: list[str] = []
    real = ix.row_of

    def counting(values: tuple[object, ...]) -> ix.Row:
        row = real(values)
        read.append(row.key)
        return row

    monkeypatch.setattr(ix, "row_of", counting)
    store.list_objects("bucket", start_after="a10", max_keys=5)
    # From the marker on: the page, and one more row to know it is truncated.
    assert read == ["a10", "a11", "a12", "a13", "a14", "a15", "a16"]


# -- a store written before the index -------------------------------------------------------

def test_an_existing_store_is_indexed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "old"
    FileStore(root).create_bucket("bucket")
    (root / ix.INDEX_FILE).unlink()     # as if written by the code before the index
    for suffix in ("-wal", "-shm"):
        Path(str(root / ix.INDEX_FILE) + suffix).unlink(missing_ok=True)
    old = write_old_object(root, "bucket", "dir/a", b"alpha", 1_600_000_000.0)
    write_old_object(root, "bucket", "b", b"beta!", 1_600_000_001.0)

    store = FileStore(root)
    listed = store.list_objects("bucket").contents
    assert [(r.key, r.size, r.etag, r.last_modified, r.version_id) for r in listed] == [
        ("b", 5, hashlib.md5(b"beta!").hexdigest(), 1_600_000_001.0, "null"),
        ("dir/a", 5, hashlib.md5(b"alpha").hexdigest(), 1_600_000_000.0, "null")]
    assert get(store, "dir/a") == b"alpha"
    assert old.exists()      # indexed in place, and old enough not to be swept
    # A second open does not index again (nothing doubles); writes go on as ever.
    store = FileStore(root)
    assert len(store.list_versions("bucket").versions) == 2
    put(store, "dir/a", b"new")
    assert get(store, "dir/a") == b"new"
    assert not old.exists()  # the migrated file was the null version, now replaced
    store.delete_object("bucket", "b")
    store.delete_object("bucket", "dir/a")
    assert object_files(root) == []
    store.delete_bucket("bucket")


def test_indexing_skips_damaged_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "old"
    FileStore(root).create_bucket("bucket")
    (root / ix.INDEX_FILE).unlink()
    bad = write_old_object(root, "bucket", "bad", b"data", 1.0)
    bad.write_bytes(bad.read_bytes()[:-1])
    write_old_object(root, "bucket", "good", b"data", 1.0)
    store = FileStore(root)
    assert [r.key for r in store.list_objects("bucket").contents] == ["good"]
    assert "damaged file" in caplog.text


# -- crash windows and the sweep ---------------------------------------------------------------

def test_a_file_renamed_in_but_never_committed_is_invisible_then_swept(
        store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(store, "k", b"committed")
    real = FileStore._rename_in
    left: list[str] = []

    def crash_after_rename(self: FileStore, *args: Any) -> str:
        name = real(self, *args)
        left.append(name)
        raise KeyboardInterrupt   # the process dies between rename and commit

    monkeypatch.setattr(FileStore, "_rename_in", crash_after_rename)
    monkeypatch.setattr(os, "unlink", lambda *a, **k: None)   # ... so nothing cleans up
    with pytest.raises(KeyboardInterrupt):
        put(store, "k", b"never committed")
    monkeypatch.undo()
    [name] = left
    orphan = [p for p in object_files(root) if p.name == name]
    assert orphan, "the crash left the file"
    assert get(store, "k") == b"committed"
    FileStore(root, sweep_every=0)   # young: kept (a write may be about to commit it)
    assert orphan[0].exists()
    hour_ago = time.time() - 3700
    os.utime(orphan[0], (hour_ago, hour_ago))
    kept = store.object_file("bucket", "k")
    os.utime(kept, (hour_ago, hour_ago))
    FileStore(root, sweep_every=0)
    assert not orphan[0].exists()
    assert Path(kept).exists()   # named by a row: never swept, however old
    assert get(store, "k") == b"committed"


def test_a_file_an_older_encproxy_wrote_after_indexing_is_never_swept(
        store: FileStore, root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only an encproxy older than the index writes ``<h>`` names; such a file holds a
    write a client was told had succeeded, so the sweep leaves it, and says so."""
    put(store, "k", b"data")
    [current] = object_files(root)
    legacy = current.with_name(current.name.split(".")[0])   # what an older version writes
    shutil.copy(current, legacy)
    old = time.time() - 3700
    os.utime(legacy, (old, old))
    with caplog.at_level(logging.WARNING):
        FileStore(root, sweep_every=0)
    assert legacy.exists()
    assert any("not in the index" in r.getMessage() for r in caplog.records)


def test_a_row_removed_before_its_file_leaves_only_an_orphan(
        store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(store, "k", b"data")
    path = Path(store.object_file("bucket", "k"))
    monkeypatch.setattr(FileStore, "_unlink_file", lambda *a: None)   # crash after commit
    store.delete_object("bucket", "k")
    monkeypatch.undo()
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "k")
    assert path.exists()
    old = time.time() - 3700
    os.utime(path, (old, old))
    FileStore(root, sweep_every=0)
    assert not path.exists()


def test_a_failed_commit_removes_its_file(store: FileStore, root: Path) -> None:
    put(store, "k", b"first")
    refuse = conditional_writes.precondition({"if-none-match": "*"}, "k")
    with pytest.raises(errors.PreconditionFailed):
        put(store, "k", b"second", precondition=refuse)
    assert len(object_files(root)) == 1
    assert get(store, "k") == b"first"


def test_a_reader_keeps_the_version_it_opened(store: FileStore) -> None:
    put(store, "k", b"old body")
    record, body = store.open_object("bucket", "k")
    put(store, "k", b"new body")
    store.delete_object("bucket", "k")
    with body:
        assert body.read() == b"old body"
    assert record.size == 8


def test_a_row_whose_file_is_missing_is_damage(store: FileStore,
                                               caplog: pytest.LogCaptureFixture) -> None:
    put(store, "k", b"data")
    os.unlink(store.object_file("bucket", "k"))
    with pytest.raises(errors.InternalError):
        store.head_object("bucket", "k")
    assert "damaged file" in caplog.text


def test_a_file_that_is_not_the_rows_version_is_damage(store: FileStore) -> None:
    put(store, "k", b"data")
    put(store, "k2", b"more data")
    path = Path(store.object_file("bucket", "k"))
    # The same key's file, but not the version the row describes (another size and MD5).
    raw = Path(store.object_file("bucket", "k2")).read_bytes()
    fixed = sf.FIXED.unpack_from(raw)
    record = sf.encode_fields(sf.object_fields("k", ObjectMeta(), None))
    body = raw[sf.HEADER_SIZE + fixed[3]:]
    path.write_bytes(sf.encode_fixed(len(record), len(body), fixed[5], fixed[6]) + record + body)
    with pytest.raises(errors.InternalError):
        store.head_object("bucket", "k")


def test_deleting_and_recreating_a_bucket_starts_it_afresh(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    store.put_bucket_tags("bucket", (("a", "b"),))
    store.delete_bucket("bucket")
    store.create_bucket("bucket")
    assert store.bucket_versioning("bucket") is None
    assert store.bucket_tags("bucket") is None
    assert store.list_versions("bucket").versions == []


# -- several processes ---------------------------------------------------------------------

def _create_if_absent(root: str, n: int, out: Any) -> None:
    store = FileStore(root)
    refuse = conditional_writes.precondition({"if-none-match": "*"}, "k")
    try:
        store.put_object("bucket", "k", io.BytesIO(b"%d" % n), len(b"%d" % n),
                         precondition=refuse)
        out.put(("won", n))
    except errors.PreconditionFailed:
        out.put(("lost", n))


def _put_versions(root: str, n: int, out: Any) -> None:
    store = FileStore(root)
    ids = []
    for i in range(10):
        data = b"%d-%d" % (n, i)
        ids.append(store.put_object("bucket", "k", io.BytesIO(data), len(data)).version_id)
    out.put(ids)


def _run(target: Any, root: Path, count: int) -> list[Any]:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(str(root), n, out)) for n in range(count)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_if_none_match_has_one_winner_across_processes(store: FileStore, root: Path) -> None:
    results = _run(_create_if_absent, root, 6)
    winners = [n for outcome, n in results if outcome == "won"]
    assert len(winners) == 1
    assert get(store, "k") == b"%d" % winners[0]
    assert len(store.list_versions("bucket").versions) == 1


def test_versioned_writers_in_several_processes_lose_nothing(store: FileStore,
                                                            root: Path) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    results = _run(_put_versions, root, 4)
    ids = [i for batch in results for i in batch]
    assert len(set(ids)) == 40
    listed = store.list_versions("bucket").versions
    assert sorted(v.version_id for v in listed) == sorted(ids)
    assert [v.is_latest for v in listed].count(True) == 1
    assert listed[0].is_latest
    for batch in results:        # each writer's versions are in its order, newest first
        positions = [next(i for i, v in enumerate(listed) if v.version_id == vid)
                     for vid in batch]
        assert positions == sorted(positions, reverse=True)
    for v in listed:
        assert get(store, "k", v.version_id)


def test_threads_writing_deleting_and_listing_one_key(store: FileStore) -> None:
    """Each thread has its own connection; every read sees a consistent index."""
    import threading
    store.put_bucket_versioning("bucket", "Enabled")
    failures: list[BaseException] = []
    made: list[str] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                made.append(put(store, "k", b"%d-%d" % (n, i)).version_id)
                if i % 5 == 4:
                    store.delete_object("bucket", "k")
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    def reader() -> None:
        try:
            for _ in range(40):
                listed = store.list_versions("bucket").versions
                assert [v.is_latest for v in listed].count(True) <= 1
                with contextlib.suppress(errors.NoSuchKey):   # latest: a delete marker
                    get(store, "k")
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    listed = store.list_versions("bucket").versions
    assert len([v for v in listed if not v.delete_marker]) == 60
    assert len([v for v in listed if v.delete_marker]) == 12
    assert {v.version_id for v in listed if not v.delete_marker} == set(made)
    assert [v.is_latest for v in listed].count(True) == 1


PUBLIC_READ = acl.canned("public-read", OWNER_ID)


def test_a_commit_that_fails_leaves_the_acl_and_the_object_as_they_were(
        store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PutObjectAcl writes the version's file again and points the row at it: if the
    commit fails (disk full, an I/O error), the row still names the old file, which
    must stay, and the new one goes."""
    put(store, "k", b"hello")
    real = ix.Index.write

    @contextlib.contextmanager
    def commit_fails(self: ix.Index) -> Any:
        with real(self) as conn:
            yield conn
            conn.execute("ROLLBACK")   # what SQLite does on SQLITE_FULL at COMMIT
            conn.execute("BEGIN IMMEDIATE")
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ix.Index, "write", commit_fails)
    with pytest.raises(sqlite3.OperationalError):
        store.put_object_acl("bucket", "k", PUBLIC_READ)
    monkeypatch.undo()
    assert get(store, "k") == b"hello"
    assert store.head_object("bucket", "k").meta.acl is None
    assert len(object_files(root)) == 1
    # and the write lock is free: the next write goes through
    put(store, "k2", b"next")
    assert get(store, "k2") == b"next"


def test_workers_starting_together_sweep_once(
        store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep walks every object file: of the workers that start within the hour,
    only the first does it."""
    put(store, "k", b"data")
    path = Path(store.object_file("bucket", "k"))
    monkeypatch.setattr(FileStore, "_unlink_file", lambda *a: None)   # crash after commit
    store.delete_object("bucket", "k")
    monkeypatch.undo()
    old = time.time() - 3700
    os.utime(path, (old, old))
    FileStore(root)                  # the fixture's store swept at its start: not again
    assert path.exists()
    FileStore(root, sweep_every=0)
    assert not path.exists()


def test_an_index_made_before_checksums_and_listing_facts_gets_their_columns(
        tmp_path: Path) -> None:
    """An index of an earlier encproxy (its first schema) opens: the columns added since
    are added once, NULL for the versions it has, and new writes fill them."""
    root = tmp_path / "store"
    store = FileStore(root)
    store.create_bucket("bucket")
    store.put_object("bucket", "old", io.BytesIO(b"x"), 1)
    store.index.close()
    conn = sqlite3.connect(root / ix.INDEX_FILE)
    with conn:
        conn.execute("CREATE TABLE v AS SELECT bucket, key, seq, version_id, latest, "
                     "delete_marker, size, etag, mtime, storage_class, file, tags FROM versions")
        conn.execute("DROP TABLE versions")
        conn.execute("ALTER TABLE v RENAME TO versions")
    conn.close()
    reopened = FileStore(root)
    assert reopened.list_objects("bucket").contents[0].listing_facts is None
    reopened.put_object("bucket", "new", io.BytesIO(b"y"), 1,
                        listing_facts=lambda etag, size: f"{etag}.{size}")
    listed = {r.key: r.listing_facts for r in reopened.list_objects("bucket").contents}
    assert listed == {"old": None, "new": hashlib.md5(b"y").hexdigest() + ".1"}
    columns = [c[1] for c in reopened.index.connection().execute(
        "PRAGMA table_info(versions)").fetchall()]
    assert columns[-2:] == ["checksum", "listing_facts"]
