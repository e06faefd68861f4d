"""The store's pure pieces: file format, names, ETags, records."""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.filestore import etag, layout, storefile
from encproxy.filestore.records import ObjectMeta, ObjectRecord


def write_file(path: Path, fields: dict, body: bytes, md5: bytes = bytes(16),
               when: float = 1.5) -> None:
    record = storefile.encode_fields(fields)
    path.write_bytes(storefile.encode_fixed(len(record), len(body), md5, when) + record + body)


def read_back(path: Path, kind: str) -> storefile.Header:
    fd = os.open(path, os.O_RDONLY)
    try:
        return storefile.read_header(fd, kind, str(path))
    finally:
        os.close(fd)


def test_fixed_header_layout() -> None:
    fixed = storefile.encode_fixed(10, 20, b"\x01" * 16, 2.0)
    assert len(fixed) == storefile.HEADER_SIZE == 48
    assert fixed[:8] == b"ENCPXFS\x00"
    assert struct.unpack(">HHIQ", fixed[8:24]) == (1, 0, 10, 20)
    assert fixed[24:40] == b"\x01" * 16
    assert struct.unpack(">d", fixed[40:48]) == (2.0,)


def test_object_file_round_trip(tmp_path: Path) -> None:
    meta = ObjectMeta({"content-type": "x/y"}, {"k": "ü"}, "STANDARD")
    fields = storefile.object_fields("clé/1", meta, [5, 5, 5, 2])
    md5 = hashlib.md5(b"whatever").digest()
    write_file(tmp_path / "o", fields, b"b" * 17, md5)
    h = read_back(tmp_path / "o", "object")
    assert h.body_offset == 48 + h.json_length
    assert h.fields["parts"] == [[5, 3], [2, 1]]  # run-length encoded
    record = storefile.object_record(h, "o")
    assert record == ObjectRecord("clé/1", 17, md5.hex() + "-4", 1.5, meta, (5, 5, 5, 2))
    assert (tmp_path / "o").read_bytes()[48:48 + h.json_length].isascii()


def test_header_record_is_capped_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "o"
    path.write_bytes(storefile.encode_fixed(storefile.MAX_JSON + 1, 0, bytes(16), 0.0))
    with pytest.raises(errors.InternalError):
        read_back(path, "object")
    with pytest.raises(errors.MetadataTooLarge):
        storefile.encode_fields({"kind": "object", "x": "y" * storefile.MAX_JSON})


@pytest.mark.parametrize("fields,kind", [
    pytest.param({"kind": "part", "upload_id": "u", "part_number": 1}, "object", id="wrong-kind"),
    pytest.param({"kind": "object", "key": 5, "meta": {}, "parts": None}, "object",
                 id="key-not-a-string"),
    pytest.param({"kind": "object", "key": "k", "parts": None}, "object", id="no-meta"),
    pytest.param({"kind": "object", "key": "k", "parts": [[1, 1]],
                  "meta": {"content_headers": {}, "user_metadata": {},
                           "storage_class": "STANDARD"}}, "object", id="parts-do-not-add-up"),
    pytest.param({"kind": "object", "key": "k", "parts": None,
                  "meta": {"content_headers": {"evil": "x"}, "user_metadata": {},
                           "storage_class": "STANDARD"}}, "object", id="invalid-stored-meta"),
])
def test_damaged_records(tmp_path: Path, fields: dict, kind: str) -> None:
    write_file(tmp_path / "o", fields, b"body")
    with pytest.raises(errors.InternalError):
        storefile.object_record(read_back(tmp_path / "o", kind), "o")


@pytest.mark.parametrize("given,bare", [
    pytest.param('"abc"', "abc", id="quoted"),
    pytest.param("abc", "abc", id="bare"),
    pytest.param(' "ABC" ', "abc", id="spaces-and-case"),
    pytest.param('W/"abc"', "abc", id="weak"),
    pytest.param('"abc-3"', "abc-3", id="multipart"),
])
def test_etag_quoting(given: str, bare: str) -> None:
    assert etag.unquote(given) == bare
    assert etag.same_etag(given, bare)
    assert etag.quote(given) == f'"{bare}"'


def test_multipart_etag_formula() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [hashlib.md5(p).digest() for p in parts]
    want = hashlib.md5(digests[0] + digests[1]).hexdigest() + "-2"
    assert etag.multipart_etag(etag.multipart_digest(digests), 2) == want


def test_upload_ids_and_temp_names() -> None:
    ids = [layout.new_upload_id() for _ in range(50)]
    assert all(layout.check_upload_id(i) == i for i in ids)
    assert len(set(ids)) == 50
    name = layout.tmp_prefix("put") + "xyz"
    when = layout.tmp_name_time(name)
    assert when is not None and abs(when - __import__("time").time()) < 5
    assert layout.tmp_name_time("tmpabc") is None


@pytest.mark.parametrize("name,number", [
    ("part-00001", 1), ("part-10000", 10000), ("part-00000", None), ("part-10001", None),
    ("part-1", None), ("upload", None), ("part-0000a", None),
])
def test_part_file_names(name: str, number: int | None) -> None:
    assert layout.part_number_of(name) == number
    if number is not None:
        assert layout.part_file_name(number) == name


def test_object_paths_depend_only_on_the_key_hash(tmp_path: Path) -> None:
    lay = layout.Layout(str(tmp_path))
    for key in ["../../x", "a/b", "\n", "é" * 512]:
        loc = lay.object("bucket", key)
        h = hashlib.sha256(key.encode()).hexdigest()
        assert loc.path == os.path.join(str(tmp_path), "buckets", "bucket", "objects",
                                        h[:2], h[2:4], h)
