"""ACLs in the file store (FORMAT.md): kept with the bucket record and in the object's own
file, replaced atomically, and read as private where a store written before them has none.
Also the one anonymous decision: ``AnonymousAccess`` called by the authentication layer
before any layer below acts (in-process, over the real stack of encryption_testkit)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from encproxy import errors
from encproxy.filestore import storefile as sf
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl
from encproxy.s3.acl import ALL_USERS, Grant
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.apps.filestore import AnonymousAccess
from encproxy.wsgi.apps.filestore.common import OWNER_ID
from encproxy.wsgi.auth.middleware import AuthenticationMiddleware
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp
from encryption_testkit import BUCKET, INTERNAL_BUCKET, build_stack, error_of

PUBLIC_READ = acl.canned("public-read", OWNER_ID)
PUBLIC_RW = acl.canned("public-read-write", OWNER_ID)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStore(tmp_path / "store")
    s.create_bucket("bkt")
    return s


def put(store: FileStore, key: str, data: bytes, grants: acl.Acl | None = None) -> None:
    store.put_object("bkt", key, io.BytesIO(data), len(data), ObjectMeta(acl=grants))


# -- storage --------------------------------------------------------------------------------

def test_bucket_acl_kept_and_replaced(store: FileStore) -> None:
    created = store.bucket("bkt").created
    assert store.bucket("bkt").acl is None                  # private
    store.put_bucket_acl("bkt", PUBLIC_READ)
    assert store.bucket("bkt").acl == PUBLIC_READ
    assert store.bucket("bkt").created == created           # creation time kept
    store.create_bucket("ccc", PUBLIC_RW)
    assert store.bucket("ccc").acl == PUBLIC_RW
    assert [b.name for b in store.list_buckets()] == ["bkt", "ccc"]
    with pytest.raises(errors.NoSuchBucket):
        store.put_bucket_acl("nope", PUBLIC_READ)


def test_object_acl_written_with_the_object_and_replaced_alone(store: FileStore) -> None:
    put(store, "k", b"body", PUBLIC_READ)
    before = store.head_object("bkt", "k")
    assert before.meta.acl == PUBLIC_READ
    store.put_object_acl("bkt", "k", None)
    after, reader = store.open_object("bkt", "k")
    with reader:
        assert reader.read() == b"body"
    assert after.meta.acl is None
    assert (after.etag, after.last_modified, after.size) == \
        (before.etag, before.last_modified, before.size)
    put(store, "k", b"new")                               # a new object: its own ACL
    assert store.head_object("bkt", "k").meta.acl is None
    with pytest.raises(errors.NoSuchKey):
        store.put_object_acl("bkt", "missing", PUBLIC_READ)


def test_multipart_upload_acl_goes_to_the_object(store: FileStore) -> None:
    upload = store.create_upload("bkt", "m", ObjectMeta(acl=PUBLIC_READ))
    part = store.upload_part("bkt", "m", upload, 1, io.BytesIO(b"p"), 1)
    assert store.complete_upload("bkt", "m", upload, [(1, part.etag)]).meta.acl == PUBLIC_READ
    assert store.head_object("bkt", "m").meta.acl == PUBLIC_READ


def test_copy_takes_the_acl_it_is_given(store: FileStore) -> None:
    put(store, "src", b"x", PUBLIC_READ)
    assert store.copy_object("bkt", "src", "bkt", "dst", ObjectMeta()).meta.acl is None
    assert store.head_object("bkt", "dst").meta.acl is None


def test_acl_of_an_object_replaced_meanwhile_is_not_applied(store: FileStore,
                                                           monkeypatch: Any) -> None:
    """PutObjectAcl copies the body, then renames under the object's lock only if the object
    is still the version it copied; a PUT in between wins, whole."""
    put(store, "k", b"old", PUBLIC_READ)
    from encproxy.filestore import objects

    real_copy = objects.copy_range

    def copy_then_overwrite(*args: Any, **kwargs: Any) -> None:
        real_copy(*args, **kwargs)
        monkeypatch.setattr(objects, "copy_range", real_copy)
        put(store, "k", b"newer")

    monkeypatch.setattr(objects, "copy_range", copy_then_overwrite)
    store.put_object_acl("bkt", "k", PUBLIC_RW)
    record, reader = store.open_object("bkt", "k")
    with reader:
        assert reader.read() == b"newer"
    assert record.meta.acl is None


def test_records_without_acl_read_as_private(store: FileStore) -> None:
    """A store written before ACLs were kept: no "acl" key anywhere."""
    put(store, "k", b"data", PUBLIC_READ)
    store.put_bucket_acl("bkt", PUBLIC_READ)
    for path, kind in ((Path(store.object_file("bkt", "k")), "object"),
                       (Path(store.layout.bucket_record("bkt")), "bucket")):
        raw = path.read_bytes()
        fixed = sf.FIXED.unpack_from(raw)
        json_length, body_length, md5, when = fixed[3], fixed[4], fixed[5], fixed[6]
        fields = json.loads(raw[sf.HEADER_SIZE:sf.HEADER_SIZE + json_length])
        assert fields["kind"] == kind
        fields.pop("acl", None)
        if kind == "object":
            fields["meta"].pop("acl")
        record = sf.encode_fields(fields)
        path.write_bytes(sf.encode_fixed(len(record), body_length, md5, when) + record
                         + raw[sf.HEADER_SIZE + json_length:])
    assert store.head_object("bkt", "k").meta.acl is None
    assert store.bucket("bkt").acl is None


@pytest.mark.parametrize("value", [
    pytest.param("public", id="not-a-list"),
    pytest.param([["Group", "http://example.com/", "READ"]], id="unknown-group"),
    pytest.param([["CanonicalUser", OWNER_ID]], id="short"),
    pytest.param([["CanonicalUser", OWNER_ID, "ALL"]], id="bad-permission"),
])
def test_damaged_acl_is_damage(store: FileStore, value: Any) -> None:
    put(store, "k", b"data")
    path = Path(store.object_file("bkt", "k"))
    raw = path.read_bytes()
    fixed = sf.FIXED.unpack_from(raw)
    fields = json.loads(raw[sf.HEADER_SIZE:sf.HEADER_SIZE + fixed[3]])
    fields["meta"]["acl"] = value
    record = sf.encode_fields(fields)
    path.write_bytes(sf.encode_fixed(len(record), fixed[4], fixed[5], fixed[6]) + record
                     + raw[sf.HEADER_SIZE + fixed[3]:])
    with pytest.raises(errors.InternalError):
        store.head_object("bkt", "k")


# -- the anonymous decision, in-process -----------------------------------------------------

class Seen:
    """The innermost app's view: which environs reached it (beside the real stack)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.environs: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.environs.append(dict(environ))
        return self.app(environ, start_response)


def anonymous_client(tmp_path: Path) -> tuple[Client, Any, Seen]:
    stack = build_stack(tmp_path)
    seen = Seen(stack.middleware)
    auth = AuthenticationMiddleware(seen, {}.get, region="us-east-1",
                                    anonymous=AnonymousAccess(stack.store,
                                                              hidden=(INTERNAL_BUCKET,)))
    return Client(Gateway(auth, ())), stack, seen


def test_allowed_anonymous_request_is_marked_and_has_no_access_key(tmp_path: Path) -> None:
    client, stack, seen = anonymous_client(tmp_path)
    stack.store.put_bucket_acl(BUCKET, PUBLIC_RW)
    resp = client.put(f"/{BUCKET}/k", data=b"anonymous bytes")
    assert resp.status_code == 200, resp.get_data()
    assert seen.environs[-1][env.ANONYMOUS] is True
    assert env.ACCESS_KEY not in seen.environs[-1]
    # Written through the encryption layer (sub-requests below it are encproxy's own).
    assert stack.recorder.requests and stack.stored(BUCKET, "k")[0].meta.acl is None


@pytest.mark.parametrize("method,path", [
    pytest.param("PUT", f"/{BUCKET}/k", id="put-private-bucket"),
    pytest.param("GET", f"/{BUCKET}", id="list-private-bucket"),
    pytest.param("GET", f"/{INTERNAL_BUCKET}", id="internal-bucket"),
    pytest.param("PUT", f"/{BUCKET}?encryption", id="bucket-encryption"),
    pytest.param("GET", "/", id="list-buckets"),
])
def test_refused_anonymous_request_reaches_no_layer(tmp_path: Path, method: str,
                                                    path: str) -> None:
    client, stack, seen = anonymous_client(tmp_path)
    resp = client.open(path, method=method, data=b"x" if method == "PUT" else None)
    assert error_of(resp) == (403, "AccessDenied")
    assert seen.environs == [] and stack.recorder.requests == []


def test_internal_bucket_hidden_even_if_its_acl_says_public(tmp_path: Path) -> None:
    client, stack, seen = anonymous_client(tmp_path)
    stack.store.put_bucket_acl(INTERNAL_BUCKET, PUBLIC_RW)
    assert error_of(client.get(f"/{INTERNAL_BUCKET}")) == (403, "AccessDenied")
    assert seen.environs == []


def test_without_an_authorizer_anonymous_stays_refused(tmp_path: Path) -> None:
    """The S3 backend's stack: no authorizer, so even a public bucket is AccessDenied."""
    stack = build_stack(tmp_path)
    stack.store.put_bucket_acl(BUCKET, PUBLIC_RW)
    seen = Seen(stack.middleware)
    client = Client(Gateway(AuthenticationMiddleware(seen, {}.get, region="us-east-1"), ()))
    assert error_of(client.get(f"/{BUCKET}")) == (403, "AccessDenied")
    assert error_of(client.put(f"/{BUCKET}/k", data=b"x")) == (403, "AccessDenied")
    assert seen.environs == []


def test_the_file_store_app_does_not_authorize_sub_requests_again(tmp_path: Path) -> None:
    """The decision made explicit: once the authentication layer allowed an anonymous
    request, what encproxy does for it below (records and held copies in the internal
    bucket, ciphertext in the client's bucket) is not checked against the ACLs again,
    whether or not a sub-request carries the anonymous marker."""
    stack = build_stack(tmp_path)
    parent = {env.ANONYMOUS: True, env.REQUEST_ID: "r"}
    put = subrequest.request(stack.backend, parent, "PUT", INTERNAL_BUCKET, "uploads/x/record",
                             body=b"record")
    assert put.ok, put.body
    got = subrequest.request(stack.backend, parent, "GET", INTERNAL_BUCKET, "uploads/x/record")
    assert got.ok and got.body == b"record"
    assert stack.store.bucket(INTERNAL_BUCKET).acl is None      # private, yet served


def test_authorizer_refuses_without_operation_or_bucket(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)
    access = AnonymousAccess(stack.store)
    environ = {"REQUEST_METHOD": "GET", env.BUCKET: None, env.KEY: None, env.RAW_QUERY: ""}
    with pytest.raises(errors.AccessDenied):
        access(S3Request.from_environ(environ))
    stack.store.put_bucket_acl(BUCKET, (Grant(acl.GROUP, ALL_USERS, acl.FULL_CONTROL),))
    ok = {"REQUEST_METHOD": "GET", env.BUCKET: BUCKET, env.KEY: None, env.RAW_QUERY: ""}
    access(S3Request.from_environ(ok))                    # FULL_CONTROL covers READ
