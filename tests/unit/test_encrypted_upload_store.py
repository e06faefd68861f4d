"""Upload records and held copies in the internal bucket, over the file store app."""
from __future__ import annotations

from pathlib import Path

import pytest

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys
from encproxy.filestore.store import FileStore
from encproxy.format.constants import Kind, Suite
from encproxy.wsgi import subrequest
from encproxy.wsgi.apps.filestore import FileStoreApp
from encproxy.keys.local import LocalKeyring
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.encryption.upload_store import UploadRecord, UploadStore, upload_location


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(tmp_path: Path) -> FileStoreApp:
    return FileStoreApp(FileStore(tmp_path / "store"), region="us-east-1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def records(app: FileStoreApp, tmp_path: Path) -> RecordKeys:
    keyring = LocalKeyring(tmp_path / "keys")
    keyring.create_key("records")
    return RecordKeys(app, "encproxy-internal", keyring, "records")


@pytest.fixture
def store(app: FileStoreApp, clock: Clock, records: RecordKeys) -> UploadStore:
    return UploadStore(app, "encproxy-internal", records, key_ttl=10.0, clock=clock)


RECORD = UploadRecord("bkt", "a/key", "aws:kms", "ZW52ZWxvcGU", "test-key", "e30=")


def fresh_records(records: RecordKeys) -> RecordKeys:
    """The same records key, as another process has it (nothing cached)."""
    return RecordKeys(records.app, records.internal_bucket, records.keys, records.key_id)


def test_record_round_trip_and_cache(store: UploadStore, app: FileStoreApp,
                                     records: RecordKeys):
    assert store.get("bkt", "a/key", "u1", None) is None
    store.put("u1", RECORD, None)
    assert UploadRecord.from_json(RECORD.to_json()) == RECORD
    fresh = UploadStore(app, "encproxy-internal", fresh_records(records))   # another process: reads the backend
    assert fresh.get("bkt", "a/key", "u1", None) == RECORD
    assert fresh.get("bkt", "a/key", "u2", None) is None
    assert fresh.get("bkt", "other", "u1", None) is None   # bound to bucket and key
    plain = UploadRecord("bkt", "p", "none")
    store.put("u3", plain, None)
    assert not fresh.get("bkt", "p", "u3", None).encrypted   # type: ignore[union-attr]


def test_locations_do_not_collide():
    seen = {upload_location(*t) for t in [("ab", "c", "u"), ("a", "bc", "u"), ("a", "b", "cu"),
                                          ("a", "b/c", "u"), ("a/b", "c", "u")]}
    assert len(seen) == 5 and all(s.startswith("uploads/") and s.endswith("/") for s in seen)


def test_held_copies_are_found_by_etag_and_forgotten(store: UploadStore, app: FileStoreApp,
                                                     records: RecordKeys):
    store.put("u1", RECORD, None)
    etags, copies = {}, {}
    for salt, body in ((b"\x01" * 16, b"first upload"), (b"\x02" * 16, b"second upload")):
        name = store.held_key("bkt", "a/key", "u1", 7, salt)
        resp = subrequest.request(app, None, "PUT", "encproxy-internal", name, body=body)
        # The part's ETag (UploadPartCopy's answer) need not be the copy's: SeaweedFS
        # answers `…-2` for a copy it stored in chunks.
        etags[body], copies[body] = f'"{salt.hex()}-2"', resp.headers["etag"]
        store.remember_held("bkt", "a/key", "u1", 7, salt, etags[body], len(body), None,
                            copies[body])
    found = store.find_held("bkt", "a/key", "u1", 7, etags[b"second upload"], None)
    assert found == (store.held_key("bkt", "a/key", "u1", 7, b"\x02" * 16), 13, b"\x02" * 16,
                     copies[b"second upload"].strip('"'))
    assert store.find_held("bkt", "a/key", "u1", 8, etags[b"second upload"], None) is None
    # A reference written before the copy's ETag was kept names none (If-Match then uses
    # the part's ETag, as before).
    store.remember_held("bkt", "a/key", "u1", 9, b"\x03" * 16, '"old"', 5, None)
    old = store.find_held("bkt", "a/key", "u1", 9, '"old"', None)
    assert old is not None and old.copy_etag is None
    store.forget("bkt", "a/key", "u1", None)
    resp = subrequest.request(app, None, "GET", "encproxy-internal", query="list-type=2&prefix=uploads/")
    assert b"<Contents>" not in resp.body
    assert UploadStore(app, "encproxy-internal", fresh_records(records)).get(
        "bkt", "a/key", "u1", None) is None


def test_keys_are_cached_briefly(store: UploadStore, clock: Clock):
    keys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    store.cache_keys("bkt", "k", "u", keys)
    assert store.cached_keys("bkt", "k", "u") is keys
    clock.now = 9.9
    assert store.cached_keys("bkt", "k", "u") is keys
    clock.now = 10.0
    assert store.cached_keys("bkt", "k", "u") is None


def test_an_unreadable_record_is_an_internal_error(store: UploadStore, app: FileStoreApp):
    store.put("u1", RECORD, None)
    where = upload_location("bkt", "a/key", "u9") + "record"
    subrequest.request(app, None, "PUT", "encproxy-internal", where, body=b"{not json")
    with pytest.raises(errors.IntegrityError) as caught:   # the client sees InternalError
        store.get("bkt", "a/key", "u9", None)
    assert caught.value.code == "InternalError"
