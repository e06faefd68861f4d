"""Checksums the file store keeps (issue 16, unencrypted objects): an object's in its
index row, a part's in its file's record, an upload's declared algorithm and type in
its record; COMPOSITE and FULL_OBJECT at Complete from the parts' checksums; an index
or a part written before checksums were kept reads as "no checksum"."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt

from encproxy import errors
from encproxy.filestore import checksums as fs_checksums
from encproxy.filestore import storefile as sf
from encproxy.filestore.layout import part_file_name
from encproxy.filestore.store import FileStore
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum

MiB = 1 << 20


def crc64(data: bytes) -> bytes:
    return crt.crc64nvme(data).to_bytes(8, "big")


def crc32c(data: bytes) -> bytes:
    return crt.crc32c(data).to_bytes(4, "big")


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


# -- single-part objects ----------------------------------------------------------------

def test_a_put_keeps_crc64nvme_by_default(store: FileStore) -> None:
    data = os.urandom(3 * MiB + 5)
    written = put(store, "k", data)
    assert written.checksum == StoredChecksum("crc64nvme", FULL_OBJECT, crc64(data))
    assert store.head_object("bucket", "k").checksum == written.checksum


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
def test_a_put_keeps_the_clients_algorithm(store: FileStore, algorithm: str) -> None:
    data = os.urandom(100_000)
    put(store, "k", data, checksum_algorithm=algorithm)
    kept = store.head_object("bucket", "k").checksum
    assert kept is not None and kept.algorithm == algorithm
    expected = {"crc32": crt.crc32(data).to_bytes(4, "big"), "crc32c": crc32c(data),
                "crc64nvme": crc64(data)}.get(algorithm) or hashlib.new(algorithm, data).digest()
    assert kept.digest == expected


def test_a_sealed_object_keeps_no_checksum(store: FileStore) -> None:
    """The encryption layer's writes (``digest_of``) keep their own checksum, sealed."""
    written = put(store, "k", b"ciphertext", digest_of=lambda: b"\x01" * 16)
    assert written.checksum is None
    assert store.head_object("bucket", "k").checksum is None


def test_an_acl_change_keeps_the_checksum(store: FileStore) -> None:
    put(store, "k", b"data", checksum_algorithm="sha256")
    store.put_object_acl("bucket", "k", None)
    kept = store.head_object("bucket", "k").checksum
    assert kept is not None and kept.digest == hashlib.sha256(b"data").digest()


def test_an_index_without_the_column_gets_it_and_its_rows_have_no_checksum(
        root: Path, store: FileStore) -> None:
    put(store, "old", b"old data")
    store.index.close()
    conn = sqlite3.connect(root / "index.sqlite3")
    # What an index written before checksums looks like: the same table, no column.
    conn.execute("ALTER TABLE versions DROP COLUMN checksum")
    conn.commit()
    assert "checksum" not in [c[1] for c in conn.execute("PRAGMA table_info(versions)")]
    conn.close()
    again = FileStore(root)
    assert again.head_object("bucket", "old").checksum is None
    assert put(again, "new", b"new").checksum is not None
    assert again.head_object("bucket", "new").checksum is not None


def test_a_malformed_checksum_in_the_index_is_damage(root: Path, store: FileStore) -> None:
    put(store, "k", b"data")
    conn = sqlite3.connect(root / "index.sqlite3")
    conn.execute("UPDATE versions SET checksum = 'crc32 FULL_OBJECT AAAA'")   # 3 bytes
    conn.commit()
    conn.close()
    with pytest.raises(errors.InternalError):
        store.head_object("bucket", "k")


@pytest.mark.parametrize("text", ["sha256 COMPOSITE " + base64.b64encode(bytes(32)).decode(),
                                  "crc64nvme FULL_OBJECT " + base64.b64encode(bytes(8)).decode()])
def test_row_text_round_trips(text: str) -> None:
    checksum = fs_checksums.decode_row(text)
    assert checksum is not None and fs_checksums.encode_row(checksum) == text


@pytest.mark.parametrize("text", ["", "crc32", "md5 FULL_OBJECT AAAAAA==",
                                  "crc64nvme COMPOSITE AAAAAAAAAAA=", "crc32 OTHER AAAAAA==",
                                  "crc32 FULL_OBJECT !!!!"])
def test_malformed_row_text_is_refused(text: str) -> None:
    with pytest.raises(errors.InternalError):
        fs_checksums.decode_row(text)


def test_part_text_has_one_width_for_every_digest() -> None:
    placeholder = fs_checksums.part_placeholder("crc32c")
    text = fs_checksums.encode_part("crc32c", b"\x01\x02\x03\x04")
    assert len(text) == len(placeholder)
    assert fs_checksums.decode_part(text) == ("crc32c", b"\x01\x02\x03\x04")
    assert fs_checksums.decode_part(None) is None
    for bad in ("crc32c:" + "1" * 64, "crc32c:01", "md5:" + "0" * 64, 7):
        with pytest.raises(ValueError):
            fs_checksums.decode_part(bad)


# -- multipart uploads --------------------------------------------------------------------

def upload(store: FileStore, parts: list[bytes], checksum: tuple[str, str] | None = None,
           sent: str | None = None, **complete: Any) -> Any:
    upload_id = store.create_upload("bucket", "mp", checksum=checksum)
    named = []
    for number, body in enumerate(parts, 1):
        part = store.upload_part("bucket", "mp", upload_id, number, io.BytesIO(body),
                                 len(body), sent)
        named.append((number, part.etag))
    return upload_id, store.complete_upload("bucket", "mp", upload_id, named, **complete)


def test_a_composite_upload(store: FileStore) -> None:
    parts = [os.urandom(5 * MiB), b"tail"]
    _, record = upload(store, parts, ("crc32c", COMPOSITE), "crc32c")
    expected = crc32c(crc32c(parts[0]) + crc32c(parts[1]))
    assert record.checksum == StoredChecksum("crc32c", COMPOSITE, expected)
    assert record.checksum.value(record.parts_count) == \
        base64.b64encode(expected).decode() + "-2"
    assert store.head_object("bucket", "mp").checksum == record.checksum


def test_a_full_object_upload_combines_the_part_crcs(store: FileStore) -> None:
    parts = [os.urandom(5 * MiB + 3), os.urandom(5 * MiB), b"x"]
    _, record = upload(store, parts, ("crc32c", FULL_OBJECT), "crc32c")
    assert record.checksum == StoredChecksum("crc32c", FULL_OBJECT, crc32c(b"".join(parts)))


def test_an_upload_that_names_no_algorithm_gets_full_object_crc64nvme(store: FileStore) -> None:
    parts = [os.urandom(5 * MiB), b"end"]
    _, record = upload(store, parts, sent="crc32")   # a part's own checksum does not count
    assert record.checksum == StoredChecksum("crc64nvme", FULL_OBJECT, crc64(b"".join(parts)))


def test_parts_list_their_checksums_and_the_upload_its_settings(store: FileStore) -> None:
    upload_id = store.create_upload("bucket", "mp", checksum=("sha256", COMPOSITE))
    store.upload_part("bucket", "mp", upload_id, 1, io.BytesIO(b"one"), 3, "sha256")
    listing = store.list_parts("bucket", "mp", upload_id)
    assert listing.upload.checksum == ("sha256", COMPOSITE)
    assert [p.checksum for p in listing.parts] == [("sha256", hashlib.sha256(b"one").digest())]


def test_a_part_must_carry_the_uploads_algorithm(store: FileStore) -> None:
    upload_id = store.create_upload("bucket", "mp", checksum=("sha256", COMPOSITE))
    for sent in (None, "crc32"):
        with pytest.raises(errors.InvalidRequest):
            store.upload_part("bucket", "mp", upload_id, 1, io.BytesIO(b"one"), 3, sent)
    assert store.list_parts("bucket", "mp", upload_id).parts == []


def test_a_part_copy_gets_the_uploads_checksum(store: FileStore) -> None:
    source = os.urandom(200_000)
    put(store, "src", source)
    upload_id = store.create_upload("bucket", "mp", checksum=("crc32c", FULL_OBJECT))
    part = store.upload_part_copy("bucket", "mp", upload_id, 1, "bucket", "src", (10, 99))
    assert part.checksum == ("crc32c", crc32c(source[10:100]))
    assert store.list_parts("bucket", "mp", upload_id).parts[0].checksum == part.checksum


def test_expected_sees_the_checksum_before_the_object_exists(store: FileStore) -> None:
    """The S3 layer's whole-object check runs before anything is written; when it
    raises, the upload is put back and can be completed."""
    parts = [b"only part"]
    seen: list[Any] = []

    def refuse(checksum: StoredChecksum | None, count: int) -> None:
        seen.append((checksum, count))
        raise errors.BadDigest()

    upload_id = store.create_upload("bucket", "mp")
    etag = store.upload_part("bucket", "mp", upload_id, 1, io.BytesIO(parts[0]),
                             len(parts[0])).etag
    with pytest.raises(errors.BadDigest):
        store.complete_upload("bucket", "mp", upload_id, [(1, etag)], expected=refuse)
    assert seen == [(StoredChecksum("crc64nvme", FULL_OBJECT, crc64(parts[0])), 1)]
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "mp")
    record = store.complete_upload("bucket", "mp", upload_id, [(1, etag)])
    assert record.checksum == seen[0][0]


def test_a_part_written_before_checksums_leaves_the_object_without_one(
        root: Path, store: FileStore) -> None:
    upload_id = store.create_upload("bucket", "mp")
    etag = store.upload_part("bucket", "mp", upload_id, 1, io.BytesIO(b"data"), 4).etag
    # Rewrite the part's record as an older encproxy wrote it: no checksum field.
    path = root / "buckets" / "bucket" / "uploads" / upload_id / part_file_name(1)
    fd = os.open(path, os.O_RDONLY)
    try:
        header = sf.read_header(fd, "part", str(path))
    finally:
        os.close(fd)
    old = sf.encode_fields(sf.part_fields(upload_id, 1))
    path.write_bytes(sf.encode_fixed(len(old), 4, header.md5, header.time) + old + b"data")
    assert store.list_parts("bucket", "mp", upload_id).parts[0].checksum is None
    record = store.complete_upload("bucket", "mp", upload_id, [(1, etag)])
    assert record.checksum is None


# -- what a completed object keeps of its parts, and copies --------------------------------

def test_a_completed_object_keeps_its_part_checksums(store: FileStore) -> None:
    """Each part's digest stays with the object (its file's record), for partNumber
    reads; an ACL change keeps them."""
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    _, record = upload(store, parts, ("crc32c", COMPOSITE), "crc32c")
    store.put_object_acl("bucket", "mp", None)
    head = store.head_object("bucket", "mp")
    for number, body in enumerate(parts, 1):
        assert head.part_checksum(number) == StoredChecksum("crc32c", COMPOSITE, crc32c(body))
    assert head.part_checksum(0) is None and head.part_checksum(4) is None


def test_an_object_without_a_checksum_keeps_no_part_checksums(store: FileStore) -> None:
    """An upload with a part written before checksums were kept: no object checksum,
    so no part checksums either (they are of the object's algorithm)."""
    parts = [os.urandom(5 * MiB), b"tail"]
    upload_id = store.create_upload("bucket", "mp")
    named = []
    for number, body in enumerate(parts, 1):
        named.append((number, store.upload_part("bucket", "mp", upload_id, number,
                                                io.BytesIO(body), len(body)).etag))
    _strip_part_checksum(store, upload_id, 1)
    record = store.complete_upload("bucket", "mp", upload_id, named)
    assert record.checksum is None
    head = store.head_object("bucket", "mp")
    assert head.part_checksums is None and head.part_checksum(1) is None


def _strip_part_checksum(store: FileStore, upload_id: str, number: int) -> None:
    """Rewrite a part's file as one written before checksums were kept."""
    path = os.path.join(store.layout.upload("bucket", upload_id), part_file_name(number))
    with open(path, "rb") as f:
        fd = os.open(path, os.O_RDONLY)
        try:
            h = sf.read_header(fd, "part", path)
        finally:
            os.close(fd)
        f.seek(h.body_offset)
        body = f.read()
    fields = dict(h.fields)
    del fields["checksum"]
    record = sf.encode_fields(fields)
    with open(path, "wb") as f:
        f.write(sf.encode_fixed(len(record), len(body), h.md5, h.time))
        f.write(record)
        f.write(body)


def test_part_checksums_of_another_size_than_the_objects_are_damage(
        root: Path, store: FileStore) -> None:
    upload(store, [os.urandom(5 * MiB), b"tail"], ("crc32c", COMPOSITE), "crc32c")
    conn = sqlite3.connect(root / "index.sqlite3")
    # The row now names a SHA-256 checksum: 32-byte part digests, not the file's 4.
    conn.execute("UPDATE versions SET checksum = ?",
                 (fs_checksums.encode_row(StoredChecksum("sha256", COMPOSITE, bytes(32))),))
    conn.commit()
    conn.close()
    with pytest.raises(errors.InternalError):
        store.head_object("bucket", "mp")


def test_a_copy_keeps_a_full_object_checksum(store: FileStore) -> None:
    data = os.urandom(300_000)
    put(store, "src", data, checksum_algorithm="sha256")
    copied = store.copy_object("bucket", "src", "bucket", "dst")
    expected = StoredChecksum("sha256", FULL_OBJECT, hashlib.sha256(data).digest())
    assert copied.checksum == expected
    assert store.head_object("bucket", "dst").checksum == expected


def test_a_copy_computes_the_algorithm_asked_for(store: FileStore) -> None:
    data = os.urandom(300_000)
    put(store, "src", data, checksum_algorithm="sha256")
    copied = store.copy_object("bucket", "src", "bucket", "dst", checksum_algorithm="crc32c")
    assert copied.checksum == StoredChecksum("crc32c", FULL_OBJECT, crc32c(data))
    assert store.head_object("bucket", "dst").checksum == copied.checksum
    _, reader = store.open_object("bucket", "dst")
    try:
        assert reader.read() == data
    finally:
        reader.close()


def test_a_copy_of_a_composite_object_gets_crc64nvme(store: FileStore) -> None:
    """A COMPOSITE checksum cannot describe a single-part copy: S3's default instead."""
    parts = [os.urandom(5 * MiB), b"tail"]
    upload(store, parts, ("sha1", COMPOSITE), "sha1")
    copied = store.copy_object("bucket", "mp", "bucket", "dst")
    assert copied.checksum == StoredChecksum("crc64nvme", FULL_OBJECT, crc64(b"".join(parts)))
    assert copied.etag == hashlib.md5(b"".join(parts)).hexdigest()
    assert store.head_object("bucket", "dst").part_checksums is None


def test_a_copy_of_an_object_without_a_checksum_keeps_none(store: FileStore) -> None:
    """A sealed object (or one written before checksums were kept): what the store
    would hash is not the object the client sees."""
    put(store, "src", b"ciphertext", digest_of=lambda: b"\x01" * 16)
    assert store.copy_object("bucket", "src", "bucket", "dst").checksum is None
    assert store.head_object("bucket", "dst").checksum is None
