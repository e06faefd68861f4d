"""Conditional writes (If-None-Match: *, If-Match) in-process: the real file store (atomic
check and rename under the object's lock), the real encryption layer over it (the client's
ETag translated to the stored object's), and the S3 backend app's refusal of conditions
its backend would ignore (tests/unit/encryption_testkit.py, docs/ENCRYPTION.md).
"""
from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from encryption_testkit import (
    ALL_MODES,
    BUCKET,
    NONE,
    PART,
    SSE_C,
    SSE_S3,
    Mode,
    Stack,
    assert_error,
    build_stack,
    complete,
    create_upload,
    md5_etag,
    parse_xml,
    path,
    payload,
    put,
    read_body,
    upload_part,
)
from test_backend_app import Answer, ScriptedClient, call
from werkzeug.test import TestResponse

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.filestore.store import FileStore
from encproxy.s3 import conditional_writes
from encproxy.settings import load
from encproxy.wsgi.apps.s3backend import S3BackendApp


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


def body_of(stack: Stack, key: str, mode: Mode) -> bytes:
    read = read_body(stack.client, key, mode.read)
    assert read.status == 200 and not read.aborted
    return read.body


def copy(stack: Stack, key: str, source: str, mode: Mode, **headers: str) -> TestResponse:
    return stack.client.put(path(BUCKET, key), headers={
        "x-amz-copy-source": f"/{BUCKET}/{source}", "x-amz-metadata-directive": "REPLACE",
        **mode.write, **mode.copy_source, **headers},
        environ_overrides={"CONTENT_LENGTH": "0"})


def backend_writes(stack: Stack, key: str) -> list[dict[str, str]]:
    """Headers of the writes of ``key`` that reached the file store (not HEAD/GET)."""
    return [dict(r.headers) for r in stack.recorder.requests
            if r.method in ("PUT", "POST") and r.path == path(BUCKET, key)]


# -- the pure rules -------------------------------------------------------------------------

@pytest.mark.parametrize("headers,current,outcome", [
    pytest.param({}, "abc", None, id="unconditional"),
    pytest.param({"if-none-match": "*"}, None, None, id="none-match-absent"),
    pytest.param({"if-none-match": "*"}, "abc", "PreconditionFailed", id="none-match-exists"),
    pytest.param({"if-match": '"abc"'}, "abc", None, id="match"),
    pytest.param({"if-match": '"x", "abc"'}, "abc", None, id="match-in-list"),
    pytest.param({"if-match": "*"}, "abc", None, id="match-star"),
    pytest.param({"if-match": '"abd"'}, "abc", "PreconditionFailed", id="mismatch"),
    pytest.param({"if-match": '"abc"'}, None, "NoSuchKey", id="match-absent"),
    pytest.param({"if-match": "*"}, None, "NoSuchKey", id="match-star-absent"),
])
def test_rules(headers: dict[str, str], current: str | None, outcome: str | None) -> None:
    conditions = conditional_writes.parse(headers)
    if outcome is None:
        conditions.check(current, "k")
        return
    with pytest.raises(errors.S3Error) as info:
        conditions.check(current, "k")
    assert info.value.code == outcome


@pytest.mark.parametrize("value", ['"abc"', "W/\"abc\"", "", "**"])
def test_if_none_match_other_than_star_is_not_implemented(value: str) -> None:
    with pytest.raises(errors.NotImplementedError_):
        conditional_writes.parse({"if-none-match": value})


# -- PutObject through the encryption layer ---------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES, ids=repr)
def test_if_none_match_creates_once(stack: Stack, mode: Mode) -> None:
    first, second = payload(1000, 1), payload(1000, 2)
    assert put(stack.client, "k", first, {**mode.write, "If-None-Match": "*"}).status_code == 200
    assert_error(put(stack.client, "k", second, {**mode.write, "If-None-Match": "*"}),
                 412, "PreconditionFailed")
    assert body_of(stack, "k", mode) == first


@pytest.mark.parametrize("mode", ALL_MODES, ids=repr)
def test_if_match_takes_the_etag_the_client_sees(stack: Stack, mode: Mode) -> None:
    first, second, third = payload(3000, 1), payload(3000, 2), payload(3000, 3)
    etag = put(stack.client, "k", first, mode.write).headers["ETag"]
    if mode.encrypted and not mode.sse_c:
        assert etag == md5_etag(first)     # the plaintext MD5, never the stored body's
    stored_etag = '"' + stack.store.head_object(BUCKET, "k").etag + '"'
    assert stored_etag != etag or not mode.encrypted or mode.sse_c
    resp = put(stack.client, "k", second, {**mode.write, "If-Match": etag})
    assert resp.status_code == 200, resp.get_data()
    assert body_of(stack, "k", mode) == second
    # The old ETag no longer names the object: refused, object kept.
    assert_error(put(stack.client, "k", third, {**mode.write, "If-Match": etag}),
                 412, "PreconditionFailed")
    assert body_of(stack, "k", mode) == second


@pytest.mark.parametrize("mode", [SSE_S3], ids=repr)
def test_the_stored_etag_is_not_the_clients(stack: Stack, mode: Mode) -> None:
    put(stack.client, "k", payload(2000, 1), mode.write)
    stored_etag = '"' + stack.store.head_object(BUCKET, "k").etag + '"'
    assert_error(put(stack.client, "k", payload(2000, 2), {**mode.write, "If-Match": stored_etag}),
                 412, "PreconditionFailed")
    assert body_of(stack, "k", mode) == payload(2000, 1)


def test_the_backend_gets_its_own_etag(stack: Stack) -> None:
    etag = put(stack.client, "k", payload(100, 1), SSE_S3.write).headers["ETag"]
    stored_etag = stack.store.head_object(BUCKET, "k").etag
    stack.recorder.requests.clear()
    assert put(stack.client, "k", payload(100, 2), {"If-Match": etag}).status_code == 200
    (written,) = backend_writes(stack, "k")
    assert written["if-match"].strip('"') == stored_etag
    assert "if-none-match" not in written


@pytest.mark.parametrize("mode", ALL_MODES, ids=repr)
def test_if_match_on_a_missing_object_is_no_such_key(stack: Stack, mode: Mode) -> None:
    assert_error(put(stack.client, "k", b"x", {**mode.write, "If-Match": '"' + "0" * 32 + '"'}),
                 404, "NoSuchKey")
    assert_error(stack.client.head(path(BUCKET, "k")), 404, "NoSuchKey")


def test_a_plain_write_over_an_encrypted_object_matches_its_plaintext_etag(tmp_path: Path
                                                                            ) -> None:
    stack = build_stack(tmp_path)
    etag = put(stack.client, "k", payload(500, 1), SSE_S3.write).headers["ETag"]
    plain = build_stack(tmp_path, default="none")     # writes stored as sent
    resp = put(plain.client, "k", payload(500, 2), {"If-Match": etag})
    assert resp.status_code == 200, resp.get_data()
    assert plain.stored(BUCKET, "k")[1] == payload(500, 2)


@pytest.mark.parametrize("value", ['"abc"', "x"])
def test_if_none_match_with_an_etag_is_refused(stack: Stack, value: str) -> None:
    assert_error(put(stack.client, "k", b"data", {"If-None-Match": value}), 501,
                 "NotImplemented")
    assert_error(put(stack.direct, "k", b"data", {"If-None-Match": value}), 501,
                 "NotImplemented")
    assert_error(stack.client.head(path(BUCKET, "k")), 404, "NoSuchKey")


def test_a_tampered_seal_fails_the_condition_closed(stack: Stack) -> None:
    etag = put(stack.client, "k", payload(4000, 1), SSE_S3.write).headers["ETag"]
    stack.flip_stored_byte(BUCKET, "k", -1)     # inside the sealed ETag at the end
    tampered = stack.stored(BUCKET, "k")[1]
    resp = put(stack.replica().client, "k", payload(4000, 2), {"If-Match": etag})
    assert resp.status_code >= 400, resp.get_data()
    assert stack.stored(BUCKET, "k")[1] == tampered    # nothing written


# -- the file store alone: atomic -----------------------------------------------------------

class GatedBody(io.RawIOBase):
    """A body that waits at ``gate`` before its last byte: every writer has streamed its
    body before any commits."""

    def __init__(self, data: bytes, gate: threading.Barrier) -> None:
        self.data, self.gate, self.pos = data, gate, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:   # type: ignore[override]
        if self.pos >= len(self.data):
            return b""
        if self.pos == len(self.data) - 1:
            self.gate.wait(timeout=10)
        n = 1 if self.pos == len(self.data) - 1 else min(n, len(self.data) - 1 - self.pos)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def race(store: FileStore, headers: dict[str, str], writers: int = 8
         ) -> tuple[list[int], list[str]]:
    """``writers`` concurrent conditional puts of one key: who won, what failed."""
    gate = threading.Barrier(writers)
    won: list[int] = []
    failed: list[str] = []

    def write(i: int) -> None:
        data = payload(70_000, i)
        try:
            store.put_object(BUCKET, "k", GatedBody(data, gate), len(data),
                             precondition=conditional_writes.precondition(headers, "k"))
            won.append(i)
        except errors.S3Error as exc:
            failed.append(exc.code)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return won, failed


def test_concurrent_if_none_match_puts_one_wins(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.create_bucket(BUCKET)
    won, failed = race(store, {"if-none-match": "*"})
    assert len(won) == 1 and failed == ["PreconditionFailed"] * 7
    record, reader = store.open_object(BUCKET, "k")
    with reader:
        assert reader.read() == payload(70_000, won[0])


def test_concurrent_if_match_puts_one_wins(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.create_bucket(BUCKET)
    first = store.put_object(BUCKET, "k", io.BytesIO(b"v1"), 2)
    won, failed = race(store, {"if-match": '"' + first.etag + '"'})
    assert len(won) == 1 and failed == ["PreconditionFailed"] * 7
    record, reader = store.open_object(BUCKET, "k")
    with reader:
        assert reader.read() == payload(70_000, won[0])


def test_a_failed_condition_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.create_bucket(BUCKET)
    store.put_object(BUCKET, "k", io.BytesIO(b"v1"), 2)
    with pytest.raises(errors.PreconditionFailed):
        store.put_object(BUCKET, "k", io.BytesIO(b"v2"), 2,
                         precondition=conditional_writes.precondition({"if-none-match": "*"},
                                                                      "k"))
    assert list((tmp_path / "tmp").iterdir()) == []


# -- CopyObject -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES, ids=repr)
def test_copy_conditions(stack: Stack, mode: Mode) -> None:
    put(stack.client, "src", payload(2000, 1), mode.write)
    dest_etag = put(stack.client, "dst", payload(2000, 2), mode.write).headers["ETag"]
    assert_error(copy(stack, "dst", "src", mode, **{"If-None-Match": "*"}),
                 412, "PreconditionFailed")
    assert_error(copy(stack, "dst", "src", mode, **{"If-Match": '"' + "1" * 32 + '"'}),
                 412, "PreconditionFailed")
    assert_error(copy(stack, "new", "src", mode, **{"If-Match": dest_etag}), 404, "NoSuchKey")
    assert body_of(stack, "dst", mode) == payload(2000, 2)
    resp = copy(stack, "dst", "src", mode, **{"If-Match": dest_etag})
    assert resp.status_code == 200, resp.get_data()
    assert body_of(stack, "dst", mode) == payload(2000, 1)
    assert copy(stack, "new", "src", mode, **{"If-None-Match": "*"}).status_code == 200
    assert body_of(stack, "new", mode) == payload(2000, 1)


def test_copy_of_a_multipart_source_keeps_the_condition(stack: Stack) -> None:
    upload_id = create_upload(stack.client, "src", SSE_S3.write)
    parts = [(n, upload_part(stack.client, "src", upload_id, n, payload(PART, n)).headers["ETag"])
             for n in (1, 2)]
    assert complete(stack.client, "src", upload_id, parts).status_code == 200
    put(stack.client, "dst", b"keep me", SSE_S3.write)
    assert_error(copy(stack, "dst", "src", SSE_S3, **{"If-None-Match": "*"}),
                 412, "PreconditionFailed")
    assert body_of(stack, "dst", SSE_S3) == b"keep me"
    assert stack.store.list_uploads(BUCKET).uploads == []    # the backend upload was aborted


# -- CompleteMultipartUpload ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [NONE, SSE_S3, SSE_C], ids=repr)
def test_complete_conditions(stack: Stack, mode: Mode) -> None:
    etag = put(stack.client, "k", b"existing", mode.write).headers["ETag"]
    upload_id = create_upload(stack.client, "k", mode.write)
    parts = [(n, upload_part(stack.client, "k", upload_id, n, payload(PART if n == 1 else 100, n),
                             mode.write).headers["ETag"]) for n in (1, 2)]
    assert_error(complete(stack.client, "k", upload_id, parts,
                          {**mode.write, "If-None-Match": "*"}), 412, "PreconditionFailed")
    assert body_of(stack, "k", mode) == b"existing"
    assert_error(complete(stack.client, "k", upload_id, parts,
                          {**mode.write, "If-Match": '"' + "2" * 32 + '"'}),
                 412, "PreconditionFailed")
    # The upload is still there; with the right ETag it completes.
    resp = complete(stack.client, "k", upload_id, parts, {**mode.write, "If-Match": etag})
    assert resp.status_code == 200, resp.get_data()
    assert parse_xml(resp.get_data()).tag == "CompleteMultipartUploadResult"
    assert body_of(stack, "k", mode) == payload(PART, 1) + payload(100, 2)


def test_complete_if_none_match_on_a_new_key(stack: Stack) -> None:
    upload_id = create_upload(stack.client, "k", SSE_S3.write)
    parts = [(1, upload_part(stack.client, "k", upload_id, 1, b"small").headers["ETag"])]
    resp = complete(stack.client, "k", upload_id, parts, {"If-None-Match": "*"})
    assert resp.status_code == 200, resp.get_data()
    assert body_of(stack, "k", SSE_S3) == b"small"


# -- the S3 backend app refuses what its backend would ignore ---------------------------------

COPY = {"x-amz-copy-source": "/bkt/src"}


@pytest.mark.parametrize("method,query,headers,enforced", [
    pytest.param("PUT", "", {"If-None-Match": "*"}, frozenset({"PutObject"}), id="put"),
    pytest.param("PUT", "", {**COPY, "If-None-Match": "*"},
                 frozenset({"PutObject", "CopyObject:If-None-Match"}), id="copy-header"),
])
def test_backend_forwards_what_it_enforces(method: str, query: str, headers: dict[str, str],
                                           enforced: frozenset[str]) -> None:
    body = b"" if "x-amz-copy-source" in headers else b"data"
    answer = Answer(200, [("ETag", '"e"')], b"<CopyObjectResult><ETag>\"e\"</ETag>"
                    b"</CopyObjectResult>" if not body else b"")
    backend = ScriptedClient(answer)
    resp = call(S3BackendApp(backend, "us-east-1", enforced), method, "/bkt/k", query, body,
                headers)
    assert resp.status_code == 200, resp.get_data()
    (sent,) = backend.sent
    assert {k.lower(): v for k, v in sent.headers.items()}["if-none-match"] == "*"


@pytest.mark.parametrize("method,query,headers,enforced", [
    pytest.param("PUT", "", {**COPY, "If-None-Match": "*"}, frozenset({"PutObject"}),
                 id="copy"),
    pytest.param("PUT", "", {**COPY, "If-Match": '"e"'},
                 frozenset({"CopyObject:If-None-Match"}), id="copy-other-header"),
    pytest.param("POST", "uploadId=u1", {"If-None-Match": "*"}, frozenset({"PutObject"}),
                 id="complete"),
    pytest.param("PUT", "", {"If-Match": '"e"'}, frozenset(), id="put-not-enforced"),
    pytest.param("PUT", "", {"If-None-Match": '"e"'}, frozenset({"PutObject"}),
                 id="none-match-etag"),
])
def test_backend_refuses_what_it_would_ignore(method: str, query: str, headers: dict[str, str],
                                              enforced: frozenset[str]) -> None:
    backend = ScriptedClient()   # nothing may reach it
    body = (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag>"
            b"</Part></CompleteMultipartUpload>") if method == "POST" else b""
    resp = call(S3BackendApp(backend, "us-east-1", enforced), method, "/bkt/k", query, body,
                headers)
    assert resp.status_code == 501, resp.get_data()
    assert parse_xml(resp.get_data()).findtext("Code") == "NotImplemented"
    assert backend.sent == []



# -- [backend] conditional_writes ---------------------------------------------------------------

SETTINGS = """
[server]
listen = 127.0.0.1:9000
[credentials]
AKIDEXAMPLE = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
[backend]
type = file
root = data
"""


@pytest.mark.parametrize("value,parsed", [
    pytest.param(None, {"PutObject"}, id="default"),
    pytest.param("", set(), id="none"),
    pytest.param("PutObject, CopyObject, CompleteMultipartUpload",
                 {"PutObject", "CopyObject", "CompleteMultipartUpload"}, id="aws"),
    pytest.param("PutObject,CompleteMultipartUpload:If-None-Match",
                 {"PutObject", "CompleteMultipartUpload:If-None-Match"}, id="moto"),
])
def test_setting(tmp_path: Path, value: str | None, parsed: set[str]) -> None:
    environ = {} if value is None else {"ENCPROXY_BACKEND_CONDITIONAL_WRITES": value}
    assert load(SETTINGS, tmp_path, environ=environ).get(
        "backend", "conditional_writes") == parsed


@pytest.mark.parametrize("value", ["GetObject", "PutObject:If-Modified-Since", "putobject"])
def test_bad_setting_stops_start_up(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError):
        load(SETTINGS, tmp_path, environ={"ENCPROXY_BACKEND_CONDITIONAL_WRITES": value})
