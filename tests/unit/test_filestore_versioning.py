"""Versioning and tags on the file store: the store (Python) and its S3 app, in-process
(werkzeug Client -> Gateway -> FileStoreApp, and the encryption layer above it)."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from encryption_testkit import (
    BUCKET,
    Stack,
    assert_error,
    build_stack,
    get,
    head,
    parse_xml,
    path,
    put,
)

from encproxy import errors
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.s3 import conditional_writes

VERSION_ID = re.compile(r"[0-9a-f]{32}")


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


# -- the store ------------------------------------------------------------------------------

def test_never_versioned_bucket_keeps_one_null_version(store: FileStore) -> None:
    assert store.bucket_versioning("bucket") is None
    assert sput(store, "k", b"one").version_id == "null"
    sput(store, "k", b"two")
    assert [(v.version_id, v.is_latest) for v in store.list_versions("bucket").versions] == \
        [("null", True)]
    result = store.delete_object("bucket", "k")
    assert (result.version_id, result.delete_marker) == (None, False)
    assert store.list_versions("bucket").versions == []


def test_enabled_versioning_keeps_every_version(store: FileStore) -> None:
    sput(store, "k", b"before")                        # the null version stays
    store.put_bucket_versioning("bucket", "Enabled")
    ids = [sput(store, "k", b"v%d" % i).version_id for i in range(3)]
    assert all(VERSION_ID.fullmatch(i) for i in ids) and len(set(ids)) == 3
    assert sget(store, "k") == b"v2"
    for i, vid in enumerate(ids):
        assert sget(store, "k", vid) == b"v%d" % i
        assert store.head_object("bucket", "k", vid).version_id == vid
    assert sget(store, "k", "null") == b"before"
    listed = store.list_versions("bucket").versions
    assert [v.version_id for v in listed] == [*reversed(ids), "null"]
    assert [v.is_latest for v in listed] == [True, False, False, False]
    assert [v.size for v in listed] == [2, 2, 2, 6]
    assert listed[0].etag == hashlib.md5(b"v2").hexdigest()


def test_delete_markers(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    first = sput(store, "k", b"data").version_id
    marker = store.delete_object("bucket", "k")
    assert marker.delete_marker and VERSION_ID.fullmatch(marker.version_id or "")
    with pytest.raises(errors.NoSuchKey) as latest:
        store.head_object("bucket", "k")
    assert latest.value.headers == {"x-amz-delete-marker": "true",
                                    "x-amz-version-id": marker.version_id}
    with pytest.raises(errors.MethodNotAllowed) as by_id:
        store.head_object("bucket", "k", marker.version_id)
    assert by_id.value.headers["x-amz-delete-marker"] == "true"
    assert store.list_objects("bucket").contents == []
    assert sget(store, "k", first) == b"data"
    listed = store.list_versions("bucket").versions
    assert [(v.version_id, v.delete_marker, v.is_latest) for v in listed] == [
        (marker.version_id, True, True), (first, False, False)]
    # Removing the marker by id brings the version back as the latest.
    removed = store.delete_object("bucket", "k", marker.version_id)
    assert (removed.version_id, removed.delete_marker) == (marker.version_id, True)
    assert sget(store, "k") == b"data"
    assert store.list_versions("bucket").versions[0].is_latest


def test_deleting_a_version_by_id(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    a = sput(store, "k", b"a").version_id
    b = sput(store, "k", b"b").version_id
    assert store.delete_object("bucket", "k", b).version_id == b
    assert sget(store, "k") == b"a"
    assert store.delete_object("bucket", "k", b).delete_marker is False   # gone: no error
    store.delete_object("bucket", "k", a)
    with pytest.raises(errors.NoSuchKey):
        store.head_object("bucket", "k")
    with pytest.raises(errors.NoSuchVersion):
        store.head_object("bucket", "k", a)


def test_suspended_versioning_writes_and_deletes_the_null_version(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    kept = sput(store, "k", b"kept").version_id
    store.put_bucket_versioning("bucket", "Suspended")
    assert store.bucket_versioning("bucket") == "Suspended"
    assert sput(store, "k", b"null one").version_id == "null"
    assert sput(store, "k", b"null two").version_id == "null"     # replaces it
    assert [v.version_id for v in store.list_versions("bucket").versions] == ["null", kept]
    marker = store.delete_object("bucket", "k")
    assert (marker.version_id, marker.delete_marker) == ("null", True)
    listed = store.list_versions("bucket").versions
    assert [(v.version_id, v.delete_marker) for v in listed] == [("null", True), (kept, False)]
    assert sget(store, "k", kept) == b"kept"


def test_conditional_writes_decide_on_the_latest_version(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    create = conditional_writes.precondition({"if-none-match": "*"}, "k")
    sput(store, "k", b"one", precondition=create)
    with pytest.raises(errors.PreconditionFailed):
        sput(store, "k", b"two", precondition=create)
    store.delete_object("bucket", "k")                 # latest is now a delete marker
    sput(store, "k", b"three", precondition=create)    # ... which is no object
    etag = store.head_object("bucket", "k").etag
    sput(store, "k", b"four",
         precondition=conditional_writes.precondition({"if-match": f'"{etag}"'}, "k"))
    with pytest.raises(errors.PreconditionFailed):
        sput(store, "k", b"five",
             precondition=conditional_writes.precondition({"if-match": f'"{etag}"'}, "k"))
    assert sget(store, "k") == b"four"


def test_a_bucket_with_versions_or_markers_is_not_empty(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    vid = sput(store, "k", b"x").version_id
    marker = store.delete_object("bucket", "k").version_id
    with pytest.raises(errors.BucketNotEmpty):
        store.delete_bucket("bucket")
    store.delete_object("bucket", "k", vid)
    with pytest.raises(errors.BucketNotEmpty):
        store.delete_bucket("bucket")                  # the marker remains
    store.delete_object("bucket", "k", marker)
    store.delete_bucket("bucket")
    assert not store.bucket_exists("bucket")


def test_copies_and_part_copies_read_the_version_named(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    old = sput(store, "src", b"old" * 10).version_id
    sput(store, "src", b"new" * 10)
    copy = store.copy_object("bucket", "src", "bucket", "dst", src_version=old)
    assert VERSION_ID.fullmatch(copy.version_id)
    assert sget(store, "dst") == b"old" * 10
    upload = store.create_upload("bucket", "mp")
    store.upload_part_copy("bucket", "mp", upload, 1, "bucket", "src", (0, 5), src_version=old)
    part = store.list_parts("bucket", "mp", upload).parts[0]
    done = store.complete_upload("bucket", "mp", upload, [(1, part.etag)])
    assert sget(store, "mp") == b"oldold"
    assert VERSION_ID.fullmatch(done.version_id)


def test_acl_of_one_version(store: FileStore) -> None:
    from encproxy.s3 import acl
    store.put_bucket_versioning("bucket", "Enabled")
    old = sput(store, "k", b"old").version_id
    sput(store, "k", b"new")
    public = acl.from_headers({"x-amz-acl": "public-read"}, "owner")
    store.put_object_acl("bucket", "k", public, old)
    assert store.head_object("bucket", "k", old).meta.acl == public
    assert store.head_object("bucket", "k").meta.acl is None
    assert sget(store, "k", old) == b"old"


def test_tags_belong_to_a_version(store: FileStore) -> None:
    store.put_bucket_versioning("bucket", "Enabled")
    old = sput(store, "k", b"old", tags=(("a", "1"),)).version_id
    new = sput(store, "k", b"new").version_id
    assert store.object_tags("bucket", "k") == (new, ())
    assert store.object_tags("bucket", "k", old) == (old, (("a", "1"),))
    assert store.head_object("bucket", "k", old).tag_count == 1
    store.put_object_tags("bucket", "k", (("b", "2"), ("c", "3")))
    assert store.head_object("bucket", "k").tag_count == 2
    store.put_object_tags("bucket", "k", None, old)
    assert store.object_tags("bucket", "k", old) == (old, ())
    with pytest.raises(errors.NoSuchKey):
        store.put_object_tags("bucket", "missing", None)
    with pytest.raises(errors.NoSuchVersion):
        store.put_object_tags("bucket", "k", (("a", "b"),), "0" * 32)
    marker = store.delete_object("bucket", "k").version_id
    with pytest.raises(errors.NoSuchKey):
        store.put_object_tags("bucket", "k", (("a", "b"),))
    with pytest.raises(errors.MethodNotAllowed):
        store.put_object_tags("bucket", "k", (("a", "b"),), marker)
    with pytest.raises(errors.NoSuchBucket):
        store.put_object_tags("nobucket", "k", None)
    upload = store.create_upload("bucket", "mp", ObjectMeta(), (("x", "y"),))
    part = store.upload_part("bucket", "mp", upload, 1, io.BytesIO(b"p"), 1)
    store.complete_upload("bucket", "mp", upload, [(1, part.etag)])
    assert store.object_tags("bucket", "mp")[1] == (("x", "y"),)


@pytest.mark.parametrize("page", [1, 2, 3, 7])
@pytest.mark.parametrize("delimiter", [None, "/"])
def test_version_pages_join_up_to_the_whole_listing(store: FileStore, page: int,
                                                    delimiter: str | None) -> None:
    sput(store, "a", b"null")
    store.put_bucket_versioning("bucket", "Enabled")
    for key in ("a", "a", "b/1", "b/2", "c", "c"):
        sput(store, key, b"x")
    store.delete_object("bucket", "c")
    whole = store.list_versions("bucket", delimiter=delimiter)
    seen: list[tuple[str, str]] = []
    prefixes: list[str] = []
    key_marker = id_marker = None
    while True:
        result = store.list_versions("bucket", delimiter=delimiter, key_marker=key_marker,
                                     version_id_marker=id_marker, max_keys=page)
        seen += [(v.key, v.version_id) for v in result.versions]
        prefixes += result.common_prefixes
        if not result.is_truncated:
            break
        key_marker, id_marker = result.next_key_marker, result.next_version_id_marker
    assert seen == [(v.key, v.version_id) for v in whole.versions]
    assert prefixes == whole.common_prefixes
    assert len(whole.versions) == (8 if delimiter is None else 6)


# -- the S3 app, in-process -------------------------------------------------------------------

@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


VERSIONING = b"""<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Status>%s</Status></VersioningConfiguration>"""


def set_versioning(client: Any, status: str) -> Any:
    return client.put(path(BUCKET), query_string="versioning",
                      data=VERSIONING % status.encode())


@pytest.mark.parametrize("via", ["direct", "client"])
def test_versioning_configuration(stack: Stack, via: str) -> None:
    client = getattr(stack, via)
    got = client.get(path(BUCKET), query_string="versioning")
    assert got.status_code == 200
    assert parse_xml(got.get_data()).find("Status") is None     # never enabled
    assert set_versioning(client, "Enabled").status_code == 200
    assert parse_xml(client.get(path(BUCKET), query_string="versioning").get_data()
                     ).findtext("Status") == "Enabled"
    assert_error(set_versioning(client, "Sometimes"), 400,
                 "IllegalVersioningConfigurationException")
    mfa = client.put(path(BUCKET), query_string="versioning", data=(
        b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete>"
        b"</VersioningConfiguration>"))
    assert_error(mfa, 501, "NotImplemented")
    assert set_versioning(client, "Suspended").status_code == 200
    assert stack.store.bucket_versioning(BUCKET) == "Suspended"


@pytest.mark.parametrize("via", ["direct", "client"])
def test_version_headers_and_reads_by_id(stack: Stack, via: str) -> None:
    client = getattr(stack, via)
    plain = put(client, "k", b"unversioned")
    assert "x-amz-version-id" not in plain.headers   # a bucket that never had versioning
    set_versioning(client, "Enabled")
    first = put(client, "k", b"first").headers["x-amz-version-id"]
    second = put(client, "k", b"second!").headers["x-amz-version-id"]
    assert VERSION_ID.fullmatch(first) and VERSION_ID.fullmatch(second) and first != second
    for vid, body in ((first, b"first"), (second, b"second!"), ("null", b"unversioned")):
        got = get(client, "k", query=f"versionId={vid}")
        assert got.status_code == 200 and got.get_data() == body
        assert got.headers["x-amz-version-id"] == vid
    assert get(client, "k").headers["x-amz-version-id"] == second
    ranged = get(client, "k", {"Range": "bytes=1-3"}, query=f"versionId={first}")
    assert ranged.status_code == 206 and ranged.get_data() == b"irs"
    assert_error(get(client, "k", query="versionId=not-a-version"), 400, "InvalidArgument")
    assert_error(get(client, "k", query="versionId=" + "0" * 32), 404, "NoSuchVersion")
    set_versioning(client, "Suspended")
    suspended = put(client, "k", b"null again")
    assert "x-amz-version-id" not in suspended.headers    # a null version, as S3
    assert get(client, "k").headers["x-amz-version-id"] == "null"
    assert get(client, "k", query=f"versionId={first}").get_data() == b"first"


@pytest.mark.parametrize("via", ["direct", "client"])
def test_delete_markers_over_http(stack: Stack, via: str) -> None:
    client = getattr(stack, via)
    put(client, "gone", b"x")
    deleted = client.delete(path(BUCKET, "gone"))
    assert deleted.status_code == 204 and "x-amz-delete-marker" not in deleted.headers
    missing = head(client, "gone")
    assert missing.status_code == 404 and missing.headers["x-amz-delete-marker"] == "false"
    set_versioning(client, "Enabled")
    vid = put(client, "k", b"data").headers["x-amz-version-id"]
    deleted = client.delete(path(BUCKET, "k"))
    assert deleted.status_code == 204
    assert deleted.headers["x-amz-delete-marker"] == "true"
    marker = deleted.headers["x-amz-version-id"]
    assert VERSION_ID.fullmatch(marker)
    for method in (get, head):
        resp = method(client, "k")
        assert resp.status_code == 404
        assert resp.headers["x-amz-delete-marker"] == "true"
        assert resp.headers["x-amz-version-id"] == marker
    assert_error(get(client, "k", query=f"versionId={marker}"), 405, "MethodNotAllowed")
    undelete = client.delete(path(BUCKET, "k"), query_string=f"versionId={marker}")
    assert undelete.headers["x-amz-delete-marker"] == "true"
    assert undelete.headers["x-amz-version-id"] == marker
    assert get(client, "k").get_data() == b"data"
    gone = client.delete(path(BUCKET, "k"), query_string=f"versionId={vid}")
    assert gone.status_code == 204 and gone.headers["x-amz-version-id"] == vid
    assert get(client, "k").status_code == 404


def test_list_object_versions_xml(stack: Stack) -> None:
    client = stack.direct
    put(client, "a", b"null")
    set_versioning(client, "Enabled")
    v1 = put(client, "a", b"one").headers["x-amz-version-id"]
    marker = client.delete(path(BUCKET, "a")).headers["x-amz-version-id"]
    put(client, "d/x", b"y")
    resp = client.get(path(BUCKET), query_string="versions&max-keys=2")
    doc = parse_xml(resp.get_data())
    assert doc.tag == "ListVersionsResult"
    assert doc.findtext("IsTruncated") == "true"
    entries = [(e.tag, e.findtext("VersionId"), e.findtext("IsLatest")) for e in doc
               if e.tag in ("Version", "DeleteMarker")]
    assert entries == [("DeleteMarker", marker, "true"), ("Version", v1, "false")]
    assert doc.findtext("NextKeyMarker") == "a" and doc.findtext("NextVersionIdMarker") == v1
    version = doc.find("Version")
    assert version is not None
    assert version.findtext("Size") == "3"
    assert version.findtext("ETag") == f'"{hashlib.md5(b"one").hexdigest()}"'
    assert version.findtext("StorageClass") == "STANDARD"
    rest = parse_xml(client.get(path(BUCKET), query_string=(
        f"versions&key-marker=a&version-id-marker={v1}&delimiter=/")).get_data())
    assert [e.findtext("VersionId") for e in rest.findall("Version")] == ["null"]
    assert [p.findtext("Prefix") for p in rest.findall("CommonPrefixes")] == ["d/"]
    assert rest.findtext("IsTruncated") == "false"
    assert_error(client.get(path(BUCKET), query_string="versions&version-id-marker=null"),
                 400, "InvalidArgument")


def test_delete_objects_with_versions(stack: Stack) -> None:
    client = stack.direct
    set_versioning(client, "Enabled")
    vid = put(client, "k", b"x").headers["x-amz-version-id"]
    body = (f"<Delete><Object><Key>k</Key><VersionId>{vid}</VersionId></Object>"
            "<Object><Key>other</Key></Object>"
            "<Object><Key>k</Key><VersionId>bad</VersionId></Object></Delete>").encode()
    resp = client.post(path(BUCKET), query_string="delete", data=body,
                       headers={"Content-MD5": __import__("base64").b64encode(
                           hashlib.md5(body).digest()).decode()})
    doc = parse_xml(resp.get_data())
    deleted = doc.findall("Deleted")
    assert [(d.findtext("Key"), d.findtext("VersionId"), d.findtext("DeleteMarker"))
            for d in deleted][0] == ("k", vid, None)
    made = deleted[1]
    assert made.findtext("Key") == "other" and made.findtext("DeleteMarker") == "true"
    assert VERSION_ID.fullmatch(made.findtext("DeleteMarkerVersionId") or "")
    [error] = doc.findall("Error")
    assert (error.findtext("Key"), error.findtext("Code")) == ("k", "NoSuchVersion")
    assert stack.store.list_objects(BUCKET).contents == []


def test_copy_from_a_version(stack: Stack) -> None:
    client = stack.client
    set_versioning(client, "Enabled")
    old = put(client, "src", b"old body").headers["x-amz-version-id"]
    put(client, "src", b"new body")
    copied = client.put(path(BUCKET, "dst"), headers={
        "x-amz-copy-source": f"/{BUCKET}/src?versionId={old}"})
    assert copied.status_code == 200, copied.get_data()
    assert copied.headers["x-amz-copy-source-version-id"] == old
    assert VERSION_ID.fullmatch(copied.headers["x-amz-version-id"])
    assert get(client, "dst").get_data() == b"old body"


def test_tagging_over_http(stack: Stack) -> None:
    client = stack.direct
    put(client, "k", b"x", {"x-amz-tagging": "a=1&b=two%20words"})
    assert head(client, "k").headers["x-amz-tagging-count"] == "2"
    doc = parse_xml(client.get(path(BUCKET, "k"), query_string="tagging").get_data())
    assert [(t.findtext("Key"), t.findtext("Value")) for t in doc.iter("Tag")] == [
        ("a", "1"), ("b", "two words")]
    tags = "".join(f"<Tag><Key>k{i}</Key><Value>v</Value></Tag>" for i in range(11))
    too_many = client.put(path(BUCKET, "k"), query_string="tagging",
                          data=f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode())
    assert_error(too_many, 400, "InvalidTag")
    ok = client.put(path(BUCKET, "k"), query_string="tagging",
                    data=b"<Tagging><TagSet><Tag><Key>only</Key><Value>one</Value></Tag>"
                         b"</TagSet></Tagging>")
    assert ok.status_code == 200
    assert head(client, "k").headers["x-amz-tagging-count"] == "1"
    assert client.delete(path(BUCKET, "k"), query_string="tagging").status_code == 204
    assert "x-amz-tagging-count" not in head(client, "k").headers
    # CopyObject: the source's tags unless the directive is REPLACE.
    put(client, "src", b"s", {"x-amz-tagging": "from=source"})
    client.put(path(BUCKET, "c1"), headers={"x-amz-copy-source": f"/{BUCKET}/src"})
    client.put(path(BUCKET, "c2"), headers={"x-amz-copy-source": f"/{BUCKET}/src",
                                            "x-amz-tagging-directive": "REPLACE",
                                            "x-amz-tagging": "new=1&newer=2"})
    assert stack.store.object_tags(BUCKET, "c1")[1] == (("from", "source"),)
    assert stack.store.object_tags(BUCKET, "c2")[1] == (("new", "1"), ("newer", "2"))
    # Bucket tags.
    assert_error(client.get(path(BUCKET), query_string="tagging"), 404, "NoSuchTagSet")
    put_tags = client.put(path(BUCKET), query_string="tagging",
                          data=b"<Tagging><TagSet><Tag><Key>team</Key><Value>x</Value></Tag>"
                               b"</TagSet></Tagging>")
    assert put_tags.status_code == 204
    doc = parse_xml(client.get(path(BUCKET), query_string="tagging").get_data())
    assert [t.findtext("Key") for t in doc.iter("Tag")] == ["team"]
    assert client.delete(path(BUCKET), query_string="tagging").status_code == 204
    assert_error(client.get(path(BUCKET), query_string="tagging"), 404, "NoSuchTagSet")
