"""The file store's buckets and objects, on a real filesystem under tmp_path."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from encproxy import errors
from encproxy.filestore import objects as store_module
from encproxy.filestore import streams
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore

MiB = 1 << 20


class Body:
    """A request body: serves ``data`` in pieces of at most ``piece`` bytes.

    After ``fail_after`` bytes it raises ``exc`` (a client disconnect, a bad
    chunk signature); with ``stop_after`` it just ends early.
    """

    def __init__(self, data: bytes, *, piece: int = 64 * 1024, fail_after: int | None = None,
                 exc: BaseException | None = None, stop_after: int | None = None) -> None:
        self.data = data
        self.pos = 0
        self.piece = piece
        self.fail_after = fail_after
        self.exc = exc
        self.stop_after = stop_after

    def read(self, n: int) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise self.exc or OSError(errno.ECONNRESET, "client went away")
        end = min(self.pos + n, self.pos + self.piece, len(self.data))
        if self.stop_after is not None:
            end = min(end, self.stop_after)
        out = self.data[self.pos:end]
        self.pos = end
        return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> FileStore:
    s = FileStore(root)
    s.create_bucket("bucket")
    return s


def put(store: FileStore, key: str, data: bytes, bucket: str = "bucket",
        meta: ObjectMeta | None = None):
    return store.put_object(bucket, key, Body(data), len(data), meta)


def get(store: FileStore, key: str, bucket: str = "bucket") -> bytes:
    _, body = store.open_object(bucket, key)
    with body:
        return body.read()


def tmp_entries(root: Path) -> list[str]:
    return os.listdir(root / "tmp")


# -- root and buckets --------------------------------------------------------------------

def test_root_is_created_private(root: Path) -> None:
    FileStore(root)
    assert stat.S_IMODE(os.stat(root).st_mode) & 0o077 == 0
    names = sorted(os.listdir(root))
    assert [n for n in names if not n.startswith("index.sqlite3")] == ["buckets", "locks", "tmp"]
    assert "index.sqlite3" in names
    for name in names:
        assert stat.S_IMODE(os.stat(root / name).st_mode) & 0o077 == 0, name


def test_reopening_a_root_keeps_its_contents(store: FileStore, root: Path) -> None:
    put(store, "k", b"v")
    again = FileStore(root)
    assert get(again, "k") == b"v"
    assert [b.name for b in again.list_buckets()] == ["bucket"]


def test_buckets_are_listed_by_name(store: FileStore) -> None:
    before = time.time()
    for name in ("zeta", "alpha.1", "m-m"):
        store.create_bucket(name)
    listed = store.list_buckets()
    assert [b.name for b in listed] == ["alpha.1", "bucket", "m-m", "zeta"]
    assert all(b.created <= time.time() for b in listed)
    assert listed[0].created >= before - 1


def test_create_existing_bucket(store: FileStore) -> None:
    with pytest.raises(errors.BucketAlreadyOwnedByYou) as exc:
        store.create_bucket("bucket")
    assert exc.value.fields == {"BucketName": "bucket"}


def test_concurrent_creates_of_one_bucket_succeed_once(root: Path) -> None:
    store = FileStore(root)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        try:
            store.create_bucket("race")
            outcomes.append("created")
        except errors.BucketAlreadyOwnedByYou:
            outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert tmp_entries(root) == []


def test_require_and_exists(store: FileStore) -> None:
    assert store.bucket_exists("bucket")
    assert not store.bucket_exists("nope")
    store.require_bucket("bucket")
    with pytest.raises(errors.NoSuchBucket) as exc:
        store.require_bucket("nope")
    assert exc.value.fields == {"BucketName": "nope"}


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"),
    pytest.param("ab", id="too-short"),
    pytest.param("a" * 64, id="too-long"),
    pytest.param("..", id="dotdot"),
    pytest.param("../etc", id="traversal"),
    pytest.param("a/b/c", id="slash"),
    pytest.param("Upper", id="upper-case"),
    pytest.param(".abc", id="leading-dot"),
    pytest.param("abc-", id="trailing-dash"),
    pytest.param("ab\x00c", id="nul"),
])
def test_invalid_bucket_names_are_refused(store: FileStore, name: str) -> None:
    for call in (store.create_bucket, store.require_bucket, store.delete_bucket,
                 lambda n: store.put_object(n, "k", Body(b""), 0)):
        with pytest.raises(errors.InvalidBucketName):
            call(name)


def test_delete_empty_bucket(store: FileStore, root: Path) -> None:
    store.delete_bucket("bucket")
    assert store.list_buckets() == []
    with pytest.raises(errors.NoSuchBucket):
        store.delete_bucket("bucket")
    store.create_bucket("bucket")  # the name is free again
    assert tmp_entries(root) == []


def test_delete_bucket_with_objects(store: FileStore) -> None:
    put(store, "k", b"v")
    with pytest.raises(errors.BucketNotEmpty):
        store.delete_bucket("bucket")
    store.delete_object("bucket", "k")
    store.delete_bucket("bucket")  # emptied fan-out directories do not count


def test_delete_bucket_discards_pending_uploads(store: FileStore, root: Path) -> None:
    upload_id = store.create_upload("bucket", "k")
    store.upload_part("bucket", "k", upload_id, 1, Body(b"x"), 1)
    store.delete_bucket("bucket")
    store.create_bucket("bucket")
    assert store.list_uploads("bucket").uploads == []
    with pytest.raises(errors.NoSuchUpload):
        store.list_parts("bucket", "k", upload_id)
    assert tmp_entries(root) == []


def test_delete_bucket_racing_a_put_never_loses_an_acknowledged_object(
        store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PUT whose file is renamed in but not yet committed when the bucket is deleted
    fails (the file went with the bucket); a committed PUT makes the delete fail."""
    real = FileStore._rename_in

    def delete_between(self: FileStore, *args: Any) -> str:
        name = real(self, *args)
        store.delete_bucket("bucket")     # the index has no row yet: the bucket is empty
        return name

    monkeypatch.setattr(FileStore, "_rename_in", delete_between)
    with pytest.raises(errors.NoSuchBucket):
        put(store, "late", b"arrived")
    assert not store.bucket_exists("bucket")
    monkeypatch.undo()
    store.create_bucket("bucket")
    put(store, "kept", b"x")
    with pytest.raises(errors.BucketNotEmpty):
        store.delete_bucket("bucket")
    assert get(store, "kept") == b"x"


def test_put_into_a_bucket_deleted_mid_stream(store: FileStore, root: Path) -> None:
    class DeletesBucket(Body):
        def read(self, n: int) -> bytes:
            if self.pos == MiB:
                store.delete_bucket("bucket")
            return super().read(n)

    with pytest.raises(errors.NoSuchBucket):
        store.put_object("bucket", "k", DeletesBucket(b"x" * 2 * MiB), 2 * MiB)
    assert not store.bucket_exists("bucket")  # not resurrected by the writer
    assert tmp_entries(root) == []


# -- objects -----------------------------------------------------------------------------

def test_round_trip_with_metadata(store: FileStore) -> None:
    meta = ObjectMeta(content_headers={"Content-Type": "text/plain", "cache-control": "no-cache"},
                      user_metadata={"Color": "blue", "x": "ü"}, storage_class="STANDARD_IA")
    before = time.time()
    record = put(store, "hello.txt", b"hello world", meta=meta)
    assert record.key == "hello.txt"
    assert record.size == 11
    assert record.etag == hashlib.md5(b"hello world").hexdigest()
    assert record.quoted_etag == f'"{record.etag}"'
    assert before <= record.last_modified <= time.time()
    assert record.part_sizes is None and record.parts_count is None
    assert dict(record.content_headers) == {"content-type": "text/plain",
                                            "cache-control": "no-cache"}
    assert dict(record.user_metadata) == {"color": "blue", "x": "ü"}
    assert record.storage_class == "STANDARD_IA"
    assert store.head_object("bucket", "hello.txt") == record
    got, body = store.open_object("bucket", "hello.txt")
    with body:
        assert got == record
        assert body.read() == b"hello world"


def test_a_given_digest_is_kept_as_the_etag_without_hashing(store: FileStore,
                                                             monkeypatch) -> None:
    """A sealed object's fingerprint replaces the MD5 (environ.STORED_DIGEST)."""
    calls = []
    monkeypatch.setattr(store_module.digests, "md5_for", lambda n: calls.append(n))
    data = b"ciphertext" * 1000
    given = bytes(range(16))
    record = store.put_object("bucket", "sealed", Body(data), len(data),
                              digest_of=lambda: given)
    assert record.etag == given.hex() and calls == []
    assert store.head_object("bucket", "sealed").etag == given.hex()
    assert get(store, "sealed") == data
    with pytest.raises(errors.InternalError):
        store.put_object("bucket", "bad", Body(b"x"), 1, digest_of=lambda: b"short")
    assert [r.key for r in store.list_objects("bucket").contents] == ["sealed"]


def test_empty_object(store: FileStore) -> None:
    record = put(store, "empty", b"")
    assert record.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert record.size == 0
    assert get(store, "empty") == b""
    assert record.part_bounds(1) == (0, 0)
    assert record.part_bounds(2) is None


def test_overwrite_replaces_body_and_metadata(store: FileStore) -> None:
    put(store, "k", b"first", meta=ObjectMeta(user_metadata={"v": "1"}))
    second = put(store, "k", b"second!")
    assert get(store, "k") == b"second!"
    assert store.head_object("bucket", "k") == second
    assert dict(second.user_metadata) == {}
    assert [r.key for r in store.list_objects("bucket").contents] == ["k"]


def test_metadata_is_frozen(store: FileStore) -> None:
    user = {"a": "1"}
    meta = ObjectMeta(user_metadata=user)
    user["b"] = "2"
    assert dict(meta.user_metadata) == {"a": "1"}
    with pytest.raises(TypeError):
        meta.user_metadata["c"] = "3"  # type: ignore[index]


@pytest.mark.parametrize("meta", [
    pytest.param(dict(content_headers={"X-Other": "v"}), id="not-a-content-header"),
    pytest.param(dict(content_headers={"Content-Type": "a\r\nSet-Cookie: x"}), id="crlf-value"),
    pytest.param(dict(user_metadata={"bad name": "v"}), id="space-in-name"),
    pytest.param(dict(user_metadata={"": "v"}), id="empty-name"),
    pytest.param(dict(user_metadata={"A": "1", "a": "2"}), id="repeated-name"),
    pytest.param(dict(user_metadata={"n": "v\nx"}), id="newline-value"),
    pytest.param(dict(storage_class="standard"), id="storage-class-syntax"),
])
def test_invalid_metadata_is_refused(meta: dict) -> None:
    with pytest.raises(errors.InvalidArgument):
        ObjectMeta(**meta)


def test_oversized_header_is_refused(store: FileStore, root: Path) -> None:
    meta = ObjectMeta(content_headers={"content-disposition": "x" * (1 << 20)})
    with pytest.raises(errors.MetadataTooLarge):
        put(store, "k", b"v", meta=meta)
    assert tmp_entries(root) == []


def test_missing_objects_and_buckets(store: FileStore) -> None:
    with pytest.raises(errors.NoSuchKey) as exc:
        store.head_object("bucket", "nope")
    assert exc.value.fields == {"Key": "nope"}
    with pytest.raises(errors.NoSuchKey):
        store.open_object("bucket", "nope")
    for call in (lambda: store.head_object("nobucket", "k"),
                 lambda: store.open_object("nobucket", "k"),
                 lambda: store.delete_object("nobucket", "k"),
                 lambda: store.put_object("nobucket", "k", Body(b"x"), 1),
                 lambda: store.list_objects("nobucket")):
        with pytest.raises(errors.NoSuchBucket):
            call()


def test_delete_is_idempotent(store: FileStore, root: Path) -> None:
    put(store, "k", b"v")
    store.delete_object("bucket", "k")
    store.delete_object("bucket", "k")
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "k")
    assert os.listdir(root / "buckets" / "bucket" / "objects") == []


KEYS = [
    pytest.param("plain", id="plain"),
    pytest.param("dir/sub/file.txt", id="slashes"),
    pytest.param("with space  and\ttab", id="spaces"),
    pytest.param("..", id="dotdot"),
    pytest.param("../../etc/passwd", id="traversal"),
    pytest.param("/leading/slash", id="leading-slash"),
    pytest.param("a//b///", id="double-slashes"),
    pytest.param("100%25 %00 %2F", id="percent"),
    pytest.param("line\nbreak\r\n", id="newlines"),
    pytest.param("nul\x00inside", id="nul"),
    pytest.param("üñíçødé/日本語/😀", id="unicode"),
    pytest.param("é" * 512, id="1024-bytes-two-byte-chars"),
    pytest.param("k" * 1024, id="1024-bytes"),
    pytest.param("/" * 1024, id="1024-slashes"),
]


@pytest.mark.parametrize("key", KEYS)
def test_any_key_round_trips_inside_root(store: FileStore, root: Path, tmp_path: Path,
                                         key: str) -> None:
    data = key.encode("utf-8")
    put(store, key, data)
    assert get(store, key) == data
    assert store.head_object("bucket", key).key == key
    assert [r.key for r in store.list_objects("bucket").contents] == [key]
    # Nothing outside the root; nothing named after the key inside it.
    assert os.listdir(tmp_path) == ["store"]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.realpath(os.path.join(dirpath, name))
            assert path.startswith(str(root) + os.sep)
            assert name in ("tmp", "buckets", "bucket", "objects", "uploads", "locks") or \
                name.startswith("index.sqlite3") or all(c in "0123456789abcdef." for c in name)
    store.delete_object("bucket", key)
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", key)


def test_key_length_limit(store: FileStore) -> None:
    put(store, "x" * 1024, b"ok")
    with pytest.raises(errors.KeyTooLongError):
        put(store, "x" * 1025, b"no")
    with pytest.raises(errors.KeyTooLongError):
        put(store, "é" * 512 + "x", b"no")  # 1025 bytes in 513 characters
    for call in (lambda: store.head_object("bucket", "x" * 1025),
                 lambda: store.delete_object("bucket", "x" * 1025),
                 lambda: store.create_upload("bucket", "x" * 1025)):
        with pytest.raises(errors.KeyTooLongError):
            call()


@pytest.mark.parametrize("key", [pytest.param("", id="empty"),
                                 pytest.param("bad\udcffsurrogate", id="lone-surrogate")])
def test_keys_that_are_not_utf8_strings(store: FileStore, key: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        put(store, key, b"x")


# -- failed writes -----------------------------------------------------------------------

@pytest.mark.parametrize("exc", [
    pytest.param(errors.XAmzContentSHA256Mismatch(), id="s3-error"),
    pytest.param(OSError(errno.ECONNRESET, "reset"), id="disconnect"),
    pytest.param(KeyboardInterrupt(), id="interrupt"),
])
def test_body_that_raises_leaves_nothing(store: FileStore, root: Path,
                                         exc: BaseException) -> None:
    put(store, "kept", b"old version")
    body = Body(b"n" * 3 * MiB, fail_after=2 * MiB, exc=exc)
    with pytest.raises(type(exc)) as raised:
        store.put_object("bucket", "new", body, 3 * MiB)
    assert raised.value is exc
    body = Body(b"n" * 3 * MiB, fail_after=MiB, exc=exc)
    with pytest.raises(type(exc)):
        store.put_object("bucket", "kept", body, 3 * MiB)
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "new")
    assert get(store, "kept") == b"old version"
    assert tmp_entries(root) == []


def test_short_body_is_incomplete(store: FileStore, root: Path) -> None:
    with pytest.raises(errors.IncompleteBody):
        store.put_object("bucket", "k", Body(b"x" * 100), 101)
    with pytest.raises(errors.IncompleteBody):
        store.put_object("bucket", "k", Body(b"x" * 3 * MiB, stop_after=MiB + 7), 3 * MiB)
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "k")
    assert tmp_entries(root) == []


def test_reader_returning_too_much_is_an_error(store: FileStore, root: Path) -> None:
    class Greedy:
        def read(self, n: int) -> bytes:
            return b"x" * (n + 1)

    with pytest.raises(errors.InternalError):
        store.put_object("bucket", "k", Greedy(), 10)
    assert tmp_entries(root) == []


@pytest.mark.parametrize("length", [-1, 1.5, True, "3"])
def test_bad_lengths(store: FileStore, length: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        store.put_object("bucket", "k", Body(b"abc"), length)  # type: ignore[arg-type]


def test_body_is_read_in_pieces_of_at_most_1_mib(store: FileStore) -> None:
    asked: list[int] = []

    class Recording(Body):
        def read(self, n: int) -> bytes:
            asked.append(n)
            return super().read(n)

    store.put_object("bucket", "k", Recording(b"z" * (2 * MiB + 5), piece=1 << 30), 2 * MiB + 5)
    assert asked == [MiB, MiB, 5]


# -- readers -----------------------------------------------------------------------------

def test_reader_seeks_within_the_body(store: FileStore) -> None:
    data = bytes(range(256)) * 10
    put(store, "k", data)
    record, body = store.open_object("bucket", "k")
    with body:
        assert body.seekable() and body.readable()
        assert body.size == record.size == len(data)
        assert body.seek(100) == 100
        assert body.read(10) == data[100:110]
        assert body.tell() == 110
        assert body.seek(-5, io.SEEK_END) == len(data) - 5
        assert body.read(100) == data[-5:]
        assert body.read(1) == b""
        body.seek(10, io.SEEK_SET)
        body.seek(5, io.SEEK_CUR)
        buf = bytearray(4)
        assert body.readinto(buf) == 4 and bytes(buf) == data[15:19]
        body.seek(len(data) + 10)
        assert body.read(5) == b""
        with pytest.raises(ValueError):
            body.seek(-1)
    assert body.closed
    with pytest.raises(ValueError):
        body.read(1)


def test_reader_keeps_the_version_it_opened(store: FileStore) -> None:
    put(store, "k", b"A" * MiB)
    _, replaced = store.open_object("bucket", "k")
    put(store, "k", b"B" * 10)
    _, deleted = store.open_object("bucket", "k")
    store.delete_object("bucket", "k")
    with replaced, deleted:
        assert replaced.read() == b"A" * MiB
        assert deleted.read() == b"B" * 10


# -- concurrency -------------------------------------------------------------------------

def test_concurrent_writers_leave_one_whole_version(store: FileStore, root: Path) -> None:
    size = 2 * MiB + 123
    bodies = [bytes([65 + i]) * size for i in range(8)]
    barrier = threading.Barrier(len(bodies) + 2)  # writers, the reader, this thread
    failures: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def write(data: bytes) -> None:
        barrier.wait()
        try:
            for _ in range(3):
                store.put_object("bucket", "hot", Body(data, piece=100_000), len(data))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def read() -> None:
        barrier.wait()
        while not stop.is_set():
            try:
                record, body = store.open_object("bucket", "hot")
            except errors.NoSuchKey:
                continue
            with body:
                data = body.read()
            # Every read sees one whole version whose header matches its body.
            assert hashlib.md5(data).hexdigest() == record.etag
            assert data in bodies
            seen.add(record.etag)

    writers = [threading.Thread(target=write, args=(b,)) for b in bodies]
    reader = threading.Thread(target=read)
    for t in [*writers, reader]:
        t.start()
    barrier.wait()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert not failures
    final = get(store, "hot")
    assert final in bodies
    assert store.head_object("bucket", "hot").etag == hashlib.md5(final).hexdigest()
    assert tmp_entries(root) == []


def test_concurrent_put_and_delete_of_neighbours(store: FileStore) -> None:
    """Fan-out directories removed by deletes never break a concurrent put."""
    errors_seen: list[BaseException] = []

    def churn(prefix: str) -> None:
        try:
            for i in range(40):
                put(store, f"{prefix}{i % 3}", b"x")
                store.delete_object("bucket", f"{prefix}{(i + 1) % 3}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=churn, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_seen


# -- copy --------------------------------------------------------------------------------

def test_copy_keeps_or_replaces_metadata(store: FileStore) -> None:
    store.create_bucket("other")
    src = put(store, "src", b"payload", meta=ObjectMeta(user_metadata={"a": "1"}))
    kept = store.copy_object("bucket", "src", "other", "dst")
    assert (kept.key, kept.etag, kept.size) == ("dst", src.etag, 7)
    assert dict(kept.user_metadata) == {"a": "1"}
    assert get(store, "dst", bucket="other") == b"payload"
    replaced = store.copy_object("bucket", "src", "bucket", "dst2",
                                 ObjectMeta(content_headers={"content-type": "a/b"}))
    assert dict(replaced.user_metadata) == {}
    assert store.head_object("bucket", "dst2") == replaced


def test_copy_onto_itself(store: FileStore, root: Path) -> None:
    data = os.urandom(3 * MiB)
    src = put(store, "self", data)
    copied = store.copy_object("bucket", "self", "bucket", "self",
                               ObjectMeta(user_metadata={"new": "yes"}))
    assert copied.etag == src.etag
    assert get(store, "self") == data
    assert dict(store.head_object("bucket", "self").user_metadata) == {"new": "yes"}
    assert tmp_entries(root) == []


def test_copy_errors(store: FileStore) -> None:
    put(store, "src", b"x")
    with pytest.raises(errors.NoSuchKey):
        store.copy_object("bucket", "missing", "bucket", "dst")
    with pytest.raises(errors.NoSuchBucket):
        store.copy_object("nobucket", "src", "bucket", "dst")
    with pytest.raises(errors.NoSuchBucket):
        store.copy_object("bucket", "src", "nobucket", "dst")


def test_copy_without_kernel_copy(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(streams.os, "copy_file_range", unsupported)
    data = os.urandom(MiB + 17)
    put(store, "src", data)
    store.copy_object("bucket", "src", "bucket", "dst")
    assert get(store, "dst") == data


# -- damage and housekeeping -------------------------------------------------------------

def object_file(root: Path) -> Path:
    files = [Path(d) / f for d, _, fs in os.walk(root / "buckets" / "bucket" / "objects")
             for f in fs]
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda b: b[:-1], id="truncated-body"),
    pytest.param(lambda b: b + b"x", id="padded"),
    pytest.param(lambda b: b"X" + b[1:], id="bad-magic"),
    pytest.param(lambda b: b[:8] + b"\x00\x02" + b[10:], id="future-version"),
    pytest.param(lambda b: b[:12] + b"\x7f\xff\xff\xff" + b[16:], id="huge-record-length"),
    pytest.param(lambda b: b[:48] + b"}" + b[49:], id="bad-json"),
    pytest.param(lambda b: b[:48] + b"[" + b[49:], id="json-not-an-object"),
    pytest.param(lambda b: b[:30], id="truncated-header"),
    pytest.param(lambda b: b"", id="empty-file"),
])
def test_damaged_files_are_reported_not_served(store: FileStore, root: Path, damage,
                                               caplog: pytest.LogCaptureFixture) -> None:
    put(store, "k", b"some body")
    path = object_file(root)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(errors.InternalError):
        store.head_object("bucket", "k")
    with pytest.raises(errors.InternalError):
        store.open_object("bucket", "k")
    # Listings come from the index, which never reads the file: the damage shows on reads.
    assert [r.key for r in store.list_objects("bucket").contents] == ["k"]
    assert "damaged file" in caplog.text


def test_stale_temp_files_are_swept(store: FileStore, root: Path) -> None:
    old, fresh = root / "tmp" / "put-1-abc", root / "tmp" / "put-zz"
    old.write_bytes(b"abandoned")
    fresh.write_bytes(b"in progress")
    (root / "tmp" / "bucket-2-x").mkdir()
    hour_ago = time.time() - 3700
    for p in (old, root / "tmp" / "bucket-2-x"):
        os.utime(p, (hour_ago, hour_ago))
    FileStore(root)
    assert tmp_entries(root) == ["put-zz"]


def test_fresh_name_protects_an_old_directory(store: FileStore, root: Path) -> None:
    """A directory just renamed into tmp/ has an old mtime but a new name time."""
    from encproxy.filestore.layout import tmp_prefix
    moved = root / "tmp" / (tmp_prefix("delbucket") + "x")
    moved.mkdir()
    hour_ago = time.time() - 7200
    os.utime(moved, (hour_ago, hour_ago))
    assert store.cleanup_stale() == 0
    assert moved.exists()


def _write_in_another_process(root: str, fill: int) -> None:
    store = FileStore(root)
    data = bytes([fill]) * (MiB + 3)
    for _ in range(5):
        store.put_object("bucket", "shared", Body(data, piece=50_000), len(data))


def test_writers_in_several_processes(store: FileStore, root: Path) -> None:
    """gunicorn's worker processes share the root with no lock between them."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_in_another_process, args=(str(root), 97 + i))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    final = get(store, "shared")
    assert final in [bytes([97 + i]) * (MiB + 3) for i in range(4)]
    assert store.head_object("bucket", "shared").etag == hashlib.md5(final).hexdigest()
    assert tmp_entries(root) == []


def test_a_read_says_whether_the_bucket_was_ever_versioned_from_the_same_snapshot(
        store: FileStore) -> None:
    """open_object reads the bucket's versioning with the version, for the read's
    x-amz-version-id (none for a bucket that never had versioning)."""
    store.put_object("bucket", "k", io.BytesIO(b"v0"), 2)
    record, body = store.open_object("bucket", "k")
    body.close()
    assert (record.version_id, record.bucket_versioned) == ("null", False)
    store.put_bucket_versioning("bucket", "Enabled")
    record, body = store.open_object("bucket", "k")   # the same null version, now
    body.close()
    assert (record.version_id, record.bucket_versioned) == ("null", True)
    store.put_bucket_versioning("bucket", "Suspended")
    store.put_object("bucket", "k", io.BytesIO(b"v1"), 2)
    record, body = store.open_object("bucket", "k")
    body.close()
    assert (record.version_id, record.bucket_versioned) == ("null", True)
