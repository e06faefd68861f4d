"""Rewriting one version's user metadata in place on the file store (issue 17): the store's
``replace_user_metadata``, the file-store app's CopyObject flagged with ``environ.IN_PLACE``
(never reachable from a client), and UpdateObjectEncryption of a non-current version
through the encryption layer, in-process (docs/ENCRYPTION.md, "Versions")."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from encryption_testkit import (
    BUCKET,
    ENVELOPE_METADATA,
    KMS_KEY_ID,
    Stack,
    build_stack,
    parse_xml,
    path,
)
from werkzeug.test import Client

from encproxy import errors
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.format.envelope import Envelope
from encproxy.keys.blob import WrappedKey
from encproxy.s3.acl import from_headers
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.filestore import FileStoreApp


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStore(tmp_path / "store")
    s.create_bucket("bucket")
    return s


def sput(store: FileStore, key: str, data: bytes, **kw: Any) -> Any:
    return store.put_object("bucket", key, io.BytesIO(data), len(data), **kw)


def sget(store: FileStore, key: str, version: str | None = None) -> bytes:
    _, body = store.open_object("bucket", key, version)
    with body:
        return body.read()


def versions(store: FileStore, key: str) -> list[str]:
    return [v.version_id for v in store.list_versions("bucket", prefix=key).versions]


# -- the store ------------------------------------------------------------------------------

def test_a_non_current_version_gets_new_user_metadata_and_keeps_the_rest(store) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    public = from_headers({"x-amz-acl": "public-read"}, "owner")
    meta = ObjectMeta(content_headers={"content-type": "text/x-old"},
                      user_metadata={"a": "1", "b": "2"}, storage_class="STANDARD_IA",
                      acl=public)
    old = sput(store, "k", b"old body", meta=meta, tags=(("t", "1"),),
               checksum_algorithm="crc32c")
    new = sput(store, "k", b"new body")
    before = store.head_object("bucket", "k", old.version_id)
    old_file = store.object_file("bucket", "k", old.version_id)

    out = store.replace_user_metadata("bucket", "k", old.version_id, {"a": "9"},
                                      '"' + old.etag + '"')
    after = store.head_object("bucket", "k", old.version_id)
    assert out.meta.user_metadata == after.meta.user_metadata == {"a": "9"}
    assert (after.etag, after.last_modified, after.size, after.version_id) == (
        before.etag, before.last_modified, before.size, old.version_id)
    assert after.meta.content_headers == before.meta.content_headers
    assert (after.meta.storage_class, after.meta.acl) == ("STANDARD_IA", public)
    assert after.checksum == before.checksum is not None
    assert store.object_tags("bucket", "k", old.version_id) == (old.version_id, (("t", "1"),))
    assert sget(store, "k", old.version_id) == b"old body"
    assert store.object_file("bucket", "k", old.version_id) != old_file   # a new file
    assert not Path(old_file).exists()
    # No new version; the current one is untouched.
    assert versions(store, "k") == [new.version_id, old.version_id]
    assert store.head_object("bucket", "k").version_id == new.version_id
    assert sget(store, "k") == b"new body"


def test_the_null_version_of_an_unversioned_bucket(store) -> None:
    rec = sput(store, "k", b"body", meta=ObjectMeta(user_metadata={"x": "1"}))
    store.replace_user_metadata("bucket", "k", None, {"x": "2"}, rec.etag)
    store.replace_user_metadata("bucket", "k", "null", {"x": "3"}, rec.etag)
    got = store.head_object("bucket", "k")
    assert got.meta.user_metadata == {"x": "3"} and got.version_id == "null"
    assert versions(store, "k") == ["null"] and sget(store, "k") == b"body"


def test_another_etag_is_refused_and_nothing_changes(store) -> None:
    rec = sput(store, "k", b"body", meta=ObjectMeta(user_metadata={"x": "1"}))
    file = store.object_file("bucket", "k")
    with pytest.raises(errors.PreconditionFailed):
        store.replace_user_metadata("bucket", "k", None, {"x": "2"}, '"' + "0" * 32 + '"')
    # Replaced since it was read: the new object's ETag is not the one expected.
    sput(store, "k", b"other body", meta=ObjectMeta(user_metadata={"x": "1"}))
    file = store.object_file("bucket", "k")
    with pytest.raises(errors.PreconditionFailed):
        store.replace_user_metadata("bucket", "k", None, {"x": "2"}, rec.etag)
    assert store.head_object("bucket", "k").meta.user_metadata == {"x": "1"}
    assert store.object_file("bucket", "k") == file
    tmp = store.layout.tmp
    assert not any(Path(tmp).iterdir())          # the refused rewrite left no file


def test_missing_versions_and_delete_markers(store) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    rec = sput(store, "k", b"body")
    marker = store.delete_object("bucket", "k").version_id
    with pytest.raises(errors.NoSuchKey):
        store.replace_user_metadata("bucket", "k", None, {}, rec.etag)
    with pytest.raises(errors.MethodNotAllowed):
        store.replace_user_metadata("bucket", "k", marker, {}, rec.etag)
    with pytest.raises(errors.NoSuchVersion):
        store.replace_user_metadata("bucket", "k", "0" * 32, {}, rec.etag)
    with pytest.raises(errors.NoSuchBucket):
        store.replace_user_metadata("nobucket", "k", None, {}, rec.etag)


class Interleaved(FileStore):
    """A store that runs ``between`` once, right after a version's file is opened and
    read by the next header rewrite: another writer's change landing mid-way."""

    between: Any = None

    def _read_object(self, *args: Any, **kwargs: Any) -> Any:
        out = super()._read_object(*args, **kwargs)
        between, self.between = self.between, None
        if between is not None:
            between()
        return out


def test_rewrites_of_one_version_that_overlap_lose_nothing(tmp_path) -> None:
    store = Interleaved(tmp_path / "store")
    store.create_bucket("bucket")
    rec = sput(store, "k", b"body", meta=ObjectMeta(user_metadata={"x": "1"}))
    public = from_headers({"x-amz-acl": "public-read"}, "owner")

    # An ACL change overtaken by a metadata rewrite is made again on the new file.
    store.between = lambda: store.replace_user_metadata("bucket", "k", None, {"x": "2"},
                                                        rec.etag)
    store.put_object_acl("bucket", "k", public)
    got = store.head_object("bucket", "k")
    assert (got.meta.acl, got.meta.user_metadata) == (public, {"x": "2"})

    # A metadata rewrite overtaken by an ACL change is refused: the caller reads again.
    store.between = lambda: store.put_object_acl("bucket", "k", None)
    with pytest.raises(errors.PreconditionFailed):
        store.replace_user_metadata("bucket", "k", None, {"x": "3"}, rec.etag)
    got = store.head_object("bucket", "k")
    assert (got.meta.acl, got.meta.user_metadata) == (None, {"x": "2"})
    assert sget(store, "k") == b"body" and versions(store, "k") == ["null"]
    assert not any(Path(store.layout.tmp).iterdir())
    files = [p.name for p in Path(store.object_file("bucket", "k")).parent.iterdir()]
    assert len(files) == 1                      # every superseded copy removed


# -- the file-store app: only the environ flag asks for it ---------------------------------

def in_place_copy(app: FileStoreApp, key: str, version: str, etag: str,
                  flag: bool, headers: dict[str, str] | None = None) -> Any:
    overrides: dict[str, Any] = {env.BUCKET: "bucket", env.KEY: key,
                                 env.RAW_PATH: "/bucket/" + key, env.RAW_QUERY: ""}
    if flag:
        overrides[env.IN_PLACE] = True
    return Client(app).put("/bucket/" + key, headers={
        "x-amz-copy-source": f"/bucket/{key}?versionId={version}",
        "x-amz-metadata-directive": "REPLACE", "x-amz-copy-source-if-match": etag,
        "x-amz-meta-envelope": "new", **(headers or {})}, environ_overrides=overrides)


def test_the_app_rewrites_in_place_only_for_the_environ_flag(store) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    app = FileStoreApp(store, region="us-east-1")
    old = sput(store, "k", b"old", meta=ObjectMeta(user_metadata={"envelope": "old"}))
    cur = sput(store, "k", b"current")

    resp = in_place_copy(app, "k", old.version_id, '"' + old.etag + '"', flag=True)
    assert resp.status_code == 200, resp.get_data()
    root = parse_xml(resp.get_data())
    assert root.tag.endswith("CopyObjectResult")
    assert root.findtext("{*}ETag") == '"' + old.etag + '"'
    assert resp.headers["x-amz-version-id"] == old.version_id
    assert versions(store, "k") == [cur.version_id, old.version_id]
    assert store.head_object("bucket", "k", old.version_id).meta.user_metadata == {
        "envelope": "new"}

    stale = in_place_copy(app, "k", old.version_id, '"' + "0" * 32 + '"', flag=True)
    assert stale.status_code == 412

    # What a client can send: headers only.  None of them is the flag: the request is an
    # ordinary copy, which makes a new current version.
    for name in ("encproxy.in_place", "encproxy-in-place", "X-Encproxy-In-Place",
                 "HTTP-ENCPROXY-IN-PLACE"):
        resp = in_place_copy(app, "k", old.version_id, '"' + old.etag + '"', flag=False,
                             headers={name: "true"})
        assert resp.status_code == 200, resp.get_data()
        assert resp.headers["x-amz-version-id"] not in (old.version_id, cur.version_id)
    assert len(versions(store, "k")) == 6


# -- UpdateObjectEncryption of a non-current version, through the encryption layer ---------

def update_encryption(stack: Stack, key: str, version: str | None, kms_key: str) -> Any:
    query = "encryption" + ("" if version is None else "&versionId=" + version)
    body = (b"<ObjectEncryption xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><SSE-KMS>"
            b"<KMSKeyArn>" + kms_key.encode() + b"</KMSKeyArn></SSE-KMS></ObjectEncryption>")
    return stack.client.put(path(BUCKET, key), query_string=query, data=body)


def wrapped_under(stack: Stack, key: str, version: str) -> str:
    record = stack.store.head_object(BUCKET, key, version)
    return WrappedKey.from_bytes(Envelope.decode(
        record.meta.user_metadata[ENVELOPE_METADATA]).wrapped_key).key_id


def test_update_object_encryption_of_a_non_current_version_in_place(tmp_path) -> None:
    stack = build_stack(tmp_path)
    stack.store.put_bucket_versioning(BUCKET, "Enabled")
    ids = []
    for body in (b"first" * 5000, b"second"):
        resp = stack.client.put(path(BUCKET, "k"), data=body,
                                headers={"x-amz-server-side-encryption": "AES256"})
        assert resp.status_code == 200
        ids.append(resp.headers["x-amz-version-id"])
    before = [stack.client.head(path(BUCKET, "k"), query_string="versionId=" + v)
              for v in ids]

    resp = update_encryption(stack, "k", ids[0], KMS_KEY_ID)
    assert resp.status_code == 200, resp.get_data()
    assert [v.version_id for v in stack.store.list_versions(BUCKET).versions] == ids[::-1]
    assert wrapped_under(stack, "k", ids[0]) == KMS_KEY_ID
    got = stack.client.get(path(BUCKET, "k"), query_string="versionId=" + ids[0])
    assert got.get_data() == b"first" * 5000
    assert got.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert got.headers["x-amz-server-side-encryption-aws-kms-key-id"] == KMS_KEY_ID
    for name in ("ETag", "Last-Modified", "x-amz-version-id"):
        assert got.headers[name] == before[0].headers[name]
    current = stack.client.get(path(BUCKET, "k"))
    assert current.headers["x-amz-server-side-encryption"] == "AES256"
    assert current.headers["x-amz-version-id"] == ids[1]
