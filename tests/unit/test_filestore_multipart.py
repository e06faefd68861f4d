"""Multipart uploads on a real store: parts, validation, ETags, listings, races."""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.filestore.layout import tmp_prefix
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import MIN_PART_SIZE, FileStore

MiB = 1 << 20


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> FileStore:
    s = FileStore(root)
    s.create_bucket("bucket")
    return s


def body(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def upload(store: FileStore, upload_id: str, number: int, data: bytes, key: str = "big"):
    return store.upload_part("bucket", key, upload_id, number, body(data), len(data))


def expected_etag(*parts: bytes) -> str:
    """The S3 multipart ETag, computed independently of the store's code."""
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return hashlib.md5(joined).hexdigest() + f"-{len(parts)}"


def read_all(store: FileStore, key: str) -> bytes:
    _, reader = store.open_object("bucket", key)
    with reader:
        return reader.read()


P1 = b"1" * MIN_PART_SIZE
P2 = bytes(range(256)) * (MIN_PART_SIZE // 256)
P3 = b"tail"


def test_parts_in_any_order_complete_in_part_order(store: FileStore, root: Path) -> None:
    meta = ObjectMeta(content_headers={"content-type": "video/mp4"}, user_metadata={"a": "b"})
    uid = store.create_upload("bucket", "big", meta)
    r3 = upload(store, uid, 3, P3)
    r1 = upload(store, uid, 1, P1)
    r2 = upload(store, uid, 2, P2)
    assert r1.etag == hashlib.md5(P1).hexdigest() and r1.size == len(P1)
    assert r1.quoted_etag == f'"{r1.etag}"'
    record = store.complete_upload("bucket", "big", uid,
                                   [(1, r1.quoted_etag), (2, r2.etag), (3, r3.etag.upper())])
    assert record.etag == expected_etag(P1, P2, P3)
    assert record.size == len(P1) + len(P2) + len(P3)
    assert record.part_sizes == (len(P1), len(P2), len(P3)) and record.parts_count == 3
    assert record.meta == meta
    assert store.head_object("bucket", "big") == record
    assert read_all(store, "big") == P1 + P2 + P3
    assert record.part_bounds(2) == (len(P1), len(P2))
    assert record.part_bounds(3) == (len(P1) + len(P2), 4)
    assert record.part_bounds(4) is None and record.part_bounds(0) is None
    assert store.list_uploads("bucket").uploads == []
    assert os.listdir(root / "buckets" / "bucket" / "uploads") == []
    assert os.listdir(root / "tmp") == []
    with pytest.raises(errors.NoSuchUpload):  # completing twice
        store.complete_upload("bucket", "big", uid, [(1, r1.etag)])


def test_reuploading_a_part_replaces_it(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big")
    first = upload(store, uid, 1, b"a" * 10)
    second = upload(store, uid, 1, b"b" * 20)
    parts = store.list_parts("bucket", "big", uid).parts
    assert [(p.number, p.etag, p.size) for p in parts] == [(1, second.etag, 20)]
    with pytest.raises(errors.InvalidPart):
        store.complete_upload("bucket", "big", uid, [(1, first.etag)])
    store.complete_upload("bucket", "big", uid, [(1, second.etag)])
    assert read_all(store, "big") == b"b" * 20


def test_complete_with_a_subset_of_parts(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big")
    r1, _, r3 = upload(store, uid, 1, P1), upload(store, uid, 2, P2), upload(store, uid, 5, P3)
    record = store.complete_upload("bucket", "big", uid, [(1, r1.etag), (5, r3.etag)])
    assert record.etag == expected_etag(P1, P3)
    assert record.part_sizes == (len(P1), len(P3))
    assert read_all(store, "big") == P1 + P3


def test_single_empty_part(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big")
    r = upload(store, uid, 1, b"")
    record = store.complete_upload("bucket", "big", uid, [(1, r.etag)])
    assert record.etag == expected_etag(b"")
    assert (record.size, record.part_sizes) == (0, (0,))
    assert read_all(store, "big") == b""


@pytest.fixture
def staged(store: FileStore) -> tuple[str, dict[int, str]]:
    """An upload with part 1 (5 MiB), part 2 (1 byte short of 5 MiB) and part 3 (small)."""
    uid = store.create_upload("bucket", "big")
    etags = {1: upload(store, uid, 1, P1).etag,
             2: upload(store, uid, 2, b"2" * (MIN_PART_SIZE - 1)).etag,
             3: upload(store, uid, 3, P3).etag}
    return uid, etags


@pytest.mark.parametrize("parts,error", [
    pytest.param(lambda e: [], errors.MalformedXML, id="no-parts"),
    pytest.param(lambda e: [(3, e[3]), (1, e[1])], errors.InvalidPartOrder, id="descending"),
    pytest.param(lambda e: [(1, e[1]), (1, e[1])], errors.InvalidPartOrder, id="repeated"),
    pytest.param(lambda e: [(0, e[1])], errors.InvalidPart, id="part-zero"),
    pytest.param(lambda e: [(1, e[1]), (4, e[3])], errors.InvalidPart, id="missing-part"),
    pytest.param(lambda e: [(1, e[3])], errors.InvalidPart, id="wrong-etag"),
    pytest.param(lambda e: [(1, e[1]), (10001, e[3])], errors.InvalidPart, id="beyond-10000"),
    pytest.param(lambda e: [(1, e[1]), (2, e[2]), (3, e[3])], errors.EntityTooSmall,
                 id="small-middle-part"),
    pytest.param(lambda e: [(2, e[2]), (3, e[3])], errors.EntityTooSmall,
                 id="small-first-part"),
])
def test_complete_validation(store: FileStore, root: Path, staged, parts, error) -> None:
    uid, etags = staged
    with pytest.raises(error):
        store.complete_upload("bucket", "big", uid, parts(etags))
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "big")
    # The upload survives a failed complete, intact, and completes afterwards.
    assert [p.number for p in store.list_parts("bucket", "big", uid).parts] == [1, 2, 3]
    assert os.listdir(root / "tmp") == []
    record = store.complete_upload("bucket", "big", uid, [(1, etags[1]), (3, etags[3])])
    assert record.size == len(P1) + len(P3)


def test_error_fields(store: FileStore, staged) -> None:
    uid, etags = staged
    with pytest.raises(errors.EntityTooSmall) as small:
        store.complete_upload("bucket", "big", uid, [(2, etags[2]), (3, etags[3])])
    assert small.value.fields == {"ProposedSize": str(MIN_PART_SIZE - 1),
                                  "MinSizeAllowed": str(MIN_PART_SIZE), "PartNumber": "2",
                                  "ETag": etags[2]}
    with pytest.raises(errors.InvalidPart) as missing:
        store.complete_upload("bucket", "big", uid, [(7, '"abc"')])
    assert missing.value.fields == {"UploadId": uid, "PartNumber": "7", "ETag": '"abc"'}


def test_upload_must_match_bucket_and_key(store: FileStore) -> None:
    store.create_bucket("other")
    uid = store.create_upload("bucket", "big")
    part = upload(store, uid, 1, b"x")
    wrong = [("bucket", "other-key", uid), ("other", "big", uid),
             ("bucket", "big", "0" * 48), ("bucket", "big", "../../etc"),
             ("bucket", "big", uid.upper()), ("bucket", "big", "")]
    for bucket, key, upload_id in wrong:
        with pytest.raises(errors.NoSuchUpload) as exc:
            store.upload_part(bucket, key, upload_id, 1, body(b"x"), 1)
        assert exc.value.fields == {"UploadId": upload_id}
        with pytest.raises(errors.NoSuchUpload):
            store.list_parts(bucket, key, upload_id)
        with pytest.raises(errors.NoSuchUpload):
            store.complete_upload(bucket, key, upload_id, [(1, part.etag)])
        with pytest.raises(errors.NoSuchUpload):
            store.abort_upload(bucket, key, upload_id)
        with pytest.raises(errors.NoSuchUpload):
            store.upload_part_copy(bucket, key, upload_id, 1, "bucket", "big")
    for call in (lambda: store.create_upload("nobucket", "k"),
                 lambda: store.upload_part("nobucket", "big", uid, 1, body(b""), 0),
                 lambda: store.list_uploads("nobucket")):
        with pytest.raises(errors.NoSuchBucket):
            call()
    assert store.list_parts("bucket", "big", uid).parts[0].etag == part.etag


@pytest.mark.parametrize("number", [0, -1, 10001, True, 1.0])
def test_part_numbers_out_of_range(store: FileStore, number: object) -> None:
    uid = store.create_upload("bucket", "big")
    with pytest.raises(errors.InvalidArgument) as exc:
        store.upload_part("bucket", "big", uid, number, body(b"x"), 1)  # type: ignore[arg-type]
    assert exc.value.fields["ArgumentName"] == "partNumber"


def test_part_number_10000(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big")
    r = upload(store, uid, 10000, b"last")
    assert store.complete_upload("bucket", "big", uid, [(10000, r.etag)]).size == 4


def test_upload_ids_are_unguessable_and_url_safe(store: FileStore) -> None:
    ids = [store.create_upload("bucket", "k") for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(len(i) == 48 and set(i) <= set("0123456789abcdef") for i in ids)
    assert ids == sorted(ids)  # and sort by initiation


def test_abort(store: FileStore, root: Path) -> None:
    uid = store.create_upload("bucket", "big")
    upload(store, uid, 1, b"x")
    store.abort_upload("bucket", "big", uid)
    for call in (lambda: store.abort_upload("bucket", "big", uid),
                 lambda: store.list_parts("bucket", "big", uid),
                 lambda: upload(store, uid, 2, b"y")):
        with pytest.raises(errors.NoSuchUpload):
            call()
    assert store.list_uploads("bucket").uploads == []
    assert os.listdir(root / "tmp") == []


def test_part_streaming_while_the_upload_is_aborted(store: FileStore, root: Path) -> None:
    uid = store.create_upload("bucket", "big")

    class AbortsMidway(io.BytesIO):
        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            if self.tell() == MiB:
                store.abort_upload("bucket", "big", uid)
            return super().read(min(n, MiB))

    with pytest.raises(errors.NoSuchUpload):
        store.upload_part("bucket", "big", uid, 1, AbortsMidway(b"z" * 2 * MiB), 2 * MiB)
    assert os.listdir(root / "tmp") == []
    assert os.listdir(root / "buckets" / "bucket" / "uploads") == []


def test_part_body_failures_leave_nothing(store: FileStore, root: Path) -> None:
    uid = store.create_upload("bucket", "big")
    with pytest.raises(errors.IncompleteBody):
        store.upload_part("bucket", "big", uid, 1, body(b"short"), 6)
    assert store.list_parts("bucket", "big", uid).parts == []
    assert os.listdir(root / "tmp") == []


def test_upload_part_copy(store: FileStore) -> None:
    src = os.urandom(MIN_PART_SIZE + 100)
    store.put_object("bucket", "src", body(src), len(src))
    uid = store.create_upload("bucket", "big")
    whole = store.upload_part_copy("bucket", "big", uid, 1, "bucket", "src")
    ranged = store.upload_part_copy("bucket", "big", uid, 2, "bucket", "src", (10, 19))
    assert whole.etag == hashlib.md5(src).hexdigest() and whole.size == len(src)
    assert ranged.etag == hashlib.md5(src[10:20]).hexdigest() and ranged.size == 10
    record = store.complete_upload("bucket", "big", uid, [(1, whole.etag), (2, ranged.etag)])
    assert read_all(store, "big") == src + src[10:20]
    assert record.etag == expected_etag(src, src[10:20])


@pytest.mark.parametrize("byte_range", [(0, MiB), (5, 4), (-1, 3)])
def test_upload_part_copy_bad_range(store: FileStore, byte_range: tuple[int, int]) -> None:
    store.put_object("bucket", "src", body(b"x" * MiB), MiB)
    uid = store.create_upload("bucket", "big")
    with pytest.raises(errors.InvalidRange):
        store.upload_part_copy("bucket", "big", uid, 1, "bucket", "src", byte_range)
    with pytest.raises(errors.NoSuchKey):
        store.upload_part_copy("bucket", "big", uid, 1, "bucket", "missing")


def test_copy_of_a_multipart_object_is_single_part(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big")
    r1, r2 = upload(store, uid, 1, P1), upload(store, uid, 2, P3)
    store.complete_upload("bucket", "big", uid, [(1, r1.etag), (2, r2.etag)])
    copy = store.copy_object("bucket", "big", "bucket", "copy")
    assert copy.etag == hashlib.md5(P1 + P3).hexdigest()
    assert copy.part_sizes is None
    assert store.head_object("bucket", "copy") == copy


def test_list_parts_pages(store: FileStore) -> None:
    uid = store.create_upload("bucket", "big", ObjectMeta(storage_class="GLACIER"))
    for n in (7, 2, 9, 4, 1):
        upload(store, uid, n, bytes([n]) * n)
    listing = store.list_parts("bucket", "big", uid)
    assert [(p.number, p.size) for p in listing.parts] == [(1, 1), (2, 2), (4, 4), (7, 7), (9, 9)]
    assert (listing.is_truncated, listing.next_marker) == (False, None)
    assert listing.upload.key == "big" and listing.upload.meta.storage_class == "GLACIER"
    pages, marker = [], 0
    while True:
        page = store.list_parts("bucket", "big", uid, part_number_marker=marker, max_parts=2)
        pages.append([p.number for p in page.parts])
        if not page.is_truncated:
            break
        marker = page.next_marker
    assert pages == [[1, 2], [4, 7], [9]]
    assert store.list_parts("bucket", "big", uid, part_number_marker=9).parts == []
    empty = store.list_parts("bucket", "big", uid, max_parts=0)
    assert (empty.parts, empty.is_truncated) == ([], False)


# -- ListMultipartUploads ----------------------------------------------------------------

@pytest.fixture
def many_uploads(store: FileStore) -> dict[str, list[str]]:
    """Uploads created in a scrambled key order; two keys have several uploads."""
    ids: dict[str, list[str]] = {}
    for key in ["photos/b", "a", "photos/a", "z", "a", "photos/2024/x", "é", "a", "b/c"]:
        ids.setdefault(key, []).append(store.create_upload("bucket", key))
    return ids


def test_list_uploads_order(store: FileStore, many_uploads: dict[str, list[str]]) -> None:
    listing = store.list_uploads("bucket")
    got = [(u.key, u.upload_id) for u in listing.uploads]
    want = [(k, i) for k in sorted(many_uploads, key=lambda k: k.encode())
            for i in many_uploads[k]]
    assert got == want  # by key, then initiation
    assert [u.initiated for u in listing.uploads if u.key == "a"] == \
        sorted(u.initiated for u in listing.uploads if u.key == "a")
    assert (listing.common_prefixes, listing.is_truncated) == ([], False)
    assert all(u.bucket == "bucket" for u in listing.uploads)


def test_list_uploads_markers_and_prefixes(store: FileStore,
                                           many_uploads: dict[str, list[str]]) -> None:
    a = many_uploads["a"]
    after_key = store.list_uploads("bucket", key_marker="a")
    assert next(u.key for u in after_key.uploads) == "b/c"
    after_id = store.list_uploads("bucket", key_marker="a", upload_id_marker=a[0])
    assert [u.upload_id for u in after_id.uploads][:2] == a[1:]
    ignored = store.list_uploads("bucket", upload_id_marker=a[1])
    assert len(ignored.uploads) == 9
    rolled = store.list_uploads("bucket", delimiter="/")
    assert [u.key for u in rolled.uploads] == ["a", "a", "a", "z", "é"]
    assert rolled.common_prefixes == ["b/", "photos/"]
    nested = store.list_uploads("bucket", prefix="photos/", delimiter="/")
    assert [u.key for u in nested.uploads] == ["photos/a", "photos/b"]
    assert nested.common_prefixes == ["photos/2024/"]
    page = store.list_uploads("bucket", max_uploads=2)
    assert page.is_truncated
    assert (page.next_key_marker, page.next_upload_id_marker) == ("a", a[1])
    page = store.list_uploads("bucket", delimiter="/", max_uploads=4)
    assert page.is_truncated and page.common_prefixes == ["b/"]
    assert (page.next_key_marker, page.next_upload_id_marker) == ("b/", None)
    assert store.list_uploads("bucket", max_uploads=0) == \
        type(page)([], [], False, None, None)


@pytest.mark.parametrize("delimiter", [None, "/"])
@pytest.mark.parametrize("max_uploads", [1, 2, 4])
def test_list_uploads_pages(store: FileStore, many_uploads: dict[str, list[str]],
                            delimiter: str | None, max_uploads: int) -> None:
    full = store.list_uploads("bucket", delimiter=delimiter)
    seen_uploads, seen_prefixes = [], []
    key_marker = id_marker = None
    for _ in range(20):
        page = store.list_uploads("bucket", delimiter=delimiter, key_marker=key_marker,
                                  upload_id_marker=id_marker, max_uploads=max_uploads)
        assert len(page.uploads) + len(page.common_prefixes) <= max_uploads
        seen_uploads += page.uploads
        seen_prefixes += page.common_prefixes
        if not page.is_truncated:
            break
        key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
    assert seen_uploads == full.uploads
    assert seen_prefixes == full.common_prefixes


# -- crashes -----------------------------------------------------------------------------

def test_interrupted_complete_is_put_back_by_the_sweep(store: FileStore, root: Path) -> None:
    uid = store.create_upload("bucket", "big")
    r = upload(store, uid, 1, b"data")
    # What a CompleteMultipartUpload that crashed after claiming the upload leaves behind.
    claim = root / "tmp" / (tmp_prefix("claim") + "dead")
    os.rename(root / "buckets" / "bucket" / "uploads" / uid, claim)
    with pytest.raises(errors.NoSuchUpload):
        store.list_parts("bucket", "big", uid)
    FileStore(root)  # too recent: left alone
    assert claim.exists()
    old = time.time() - 7200
    os.utime(claim, (old, old))
    stale_name = root / "tmp" / "claim-1-dead"
    os.rename(claim, stale_name)
    FileStore(root)
    assert os.listdir(root / "tmp") == []
    assert store.complete_upload("bucket", "big", uid, [(1, r.etag)]).size == 4


def test_concurrent_completes_have_one_winner(store: FileStore, root: Path) -> None:
    import threading
    uid = store.create_upload("bucket", "big")
    r1, r2 = upload(store, uid, 1, P1), upload(store, uid, 2, P3)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def complete() -> None:
        barrier.wait()
        try:
            store.complete_upload("bucket", "big", uid, [(1, r1.etag), (2, r2.etag)])
            outcomes.append("completed")
        except errors.NoSuchUpload:
            outcomes.append("gone")

    def abort() -> None:
        barrier.wait()
        try:
            store.abort_upload("bucket", "big", uid)
            outcomes.append("aborted")
        except errors.NoSuchUpload:
            outcomes.append("gone")

    threads = [threading.Thread(target=complete) for _ in range(5)] + \
        [threading.Thread(target=abort)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "gone"]
    assert len(outcomes) == 6 and len(winners) == 1
    if winners == ["completed"]:
        assert read_all(store, "big") == P1 + P3
    else:
        with pytest.raises(errors.NoSuchKey):
            store.head_object("bucket", "big")
    assert os.listdir(root / "tmp") == []
    assert os.listdir(root / "buckets" / "bucket" / "uploads") == []
