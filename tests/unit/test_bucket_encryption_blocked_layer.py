"""BlockedEncryptionTypes enforced by the encryption layer in-process (real file store, real
keyring, real middleware: tests/unit/encryption_testkit.py).

With SSE-C blocked by the bucket's (verified) configuration, every write that asks for SSE-C
is 403 AccessDenied with an XML body and leaves nothing behind; writes that do not ask for it,
and reads of SSE-C objects stored before the block, work as before.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from encryption_testkit import (
    BUCKET,
    CUSTOMER_KEY,
    NONE,
    PART,
    SSE_C,
    SSE_KMS,
    SSE_S3,
    Mode,
    Stack,
    assert_error,
    assert_not_plaintext,
    build_stack,
    complete,
    create_upload,
    customer_headers,
    get,
    parse_xml,
    path,
    payload,
    put,
    upload_part,
)
from werkzeug.test import TestResponse

from encproxy.filestore.records import ObjectMeta
from encproxy.s3.bucket_encryption import BucketEncryption

BLOCK_SSE_C = BucketEncryption("AES256", None, False, ("SSE-C",))
SSE_C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


def keys_in(stack: Stack, prefix: str) -> list[str]:
    return [o.key for o in stack.store.list_objects(BUCKET, prefix=prefix).contents]


def assert_access_denied(resp: TestResponse) -> None:
    root = assert_error(resp, 403, "AccessDenied")
    assert root is not None and root.findtext("Message") == "Access Denied"


def copy_to(key: str, source_key: str, **headers: str) -> Callable[[Stack], TestResponse]:
    def send(stack: Stack) -> TestResponse:
        return stack.client.put(path(BUCKET, key), headers={
            "x-amz-copy-source": path(BUCKET, source_key), **headers})
    return send


WRONG_MD5 = {**SSE_C.write, SSE_C_KEY_MD5: base64.b64encode(b"0" * 16).decode()}
REFUSED: list[object] = [
    pytest.param(lambda s: put(s.client, "new", b"secret", SSE_C.write), id="put-object"),
    pytest.param(lambda s: put(s.client, "new", b"secret", WRONG_MD5),
                 id="put-object-wrong-key-md5-still-403"),
    pytest.param(lambda s: put(s.client, "new", b"secret", {
        "x-amz-server-side-encryption-customer-algorithm": "AES256"}),
                 id="put-object-one-header-still-403"),
    pytest.param(lambda s: s.client.post(path(BUCKET, "new"), query_string="uploads",
                                         headers=SSE_C.write), id="create-multipart-upload"),
    pytest.param(copy_to("new", "plain-source", **SSE_C.write), id="copy-object-destination"),
]


@pytest.mark.parametrize("send", REFUSED)
def test_writes_asking_for_sse_c_are_refused(stack: Stack, send) -> None:
    assert put(stack.client, "plain-source", b"source", {}).status_code == 200
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    assert_access_denied(send(stack))
    assert keys_in(stack, "new") == []
    assert list(stack.store.scan_uploads(BUCKET)) == []


@pytest.mark.parametrize("mode", [NONE, SSE_S3, SSE_KMS], ids=repr)
def test_other_writes_still_work_and_are_encrypted(stack: Stack, mode: Mode) -> None:
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    data = payload(200_000, seed=7)
    resp = put(stack.client, "k", data, mode.write)
    assert resp.status_code == 200, resp.get_data()
    assert get(stack.client, "k").get_data() == data
    _, stored = stack.stored(BUCKET, "k")
    assert_not_plaintext(stored, data)


@pytest.mark.parametrize("types", [("NONE",), (), None], ids=repr)
def test_sse_c_allowed_unless_blocked(stack: Stack, types) -> None:
    stack.configs.put(BUCKET, BucketEncryption("AES256", None, False, types))
    data = payload(1000, seed=8)
    assert put(stack.client, "c", data, SSE_C.write).status_code == 200
    assert get(stack.client, "c", SSE_C.read).get_data() == data


def test_block_then_unblock(stack: Stack) -> None:
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    assert_access_denied(put(stack.client, "c", b"x", SSE_C.write))
    stack.configs.put(BUCKET, BucketEncryption("AES256"))   # a new rule without the element
    assert put(stack.client, "c", b"x", SSE_C.write).status_code == 200
    stack.configs.put(BUCKET, BucketEncryption(None, None, False, ("SSE-C",)))
    assert_access_denied(put(stack.client, "c", b"y", SSE_C.write))
    stack.configs.delete(BUCKET)
    assert put(stack.client, "c", b"z", SSE_C.write).status_code == 200


def test_rule_without_default_uses_the_server_default(tmp_path: Path) -> None:
    for default, encrypted in (("AES256", True), ("none", False)):
        stack = build_stack(tmp_path / default, default=default)
        stack.configs.put(BUCKET, BucketEncryption(None, None, False, ("SSE-C",)))
        data = payload(100_000, seed=9)
        assert put(stack.client, "k", data).status_code == 200
        _, stored = stack.stored(BUCKET, "k")
        assert (stored != data) is encrypted
        assert get(stack.client, "k").get_data() == data


def test_sse_c_objects_stored_before_the_block_stay_readable_and_copyable(stack: Stack) -> None:
    data = payload(70_000, seed=10)
    assert put(stack.client, "old", data, SSE_C.write).status_code == 200
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    got = get(stack.client, "old", SSE_C.read)
    assert got.status_code == 200 and got.get_data() == data
    # The copy source's key only reads: a copy out of SSE-C into the bucket default works.
    resp = copy_to("copied", "old", **SSE_C.copy_source)(stack)
    assert resp.status_code == 200, resp.get_data()
    assert get(stack.client, "copied").get_data() == data
    # ... but not into SSE-C again.
    assert_access_denied(copy_to("copied2", "old", **SSE_C.copy_source, **SSE_C.write)(stack))
    assert keys_in(stack, "copied2") == []


def test_sse_c_upload_begun_before_the_block_gets_no_new_part(stack: Stack) -> None:
    key = "mp"
    upload_id = create_upload(stack.client, key, SSE_C.write)
    first = payload(PART, seed=11)
    resp = upload_part(stack.client, key, upload_id, 1, first, SSE_C.read)
    assert resp.status_code == 200, resp.get_data()
    etag1 = resp.headers["ETag"]
    assert put(stack.client, "src", b"copy me" * 1000, {}).status_code == 200
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    before = stack.store.list_objects("encproxy-internal").contents

    assert_access_denied(upload_part(stack.client, key, upload_id, 2, b"more", SSE_C.read))
    assert_access_denied(stack.client.put(path(BUCKET, key), query_string={
        "partNumber": 2, "uploadId": upload_id}, headers={
        "x-amz-copy-source": path(BUCKET, "src"), **SSE_C.read}))
    assert stack.store.list_objects("encproxy-internal").contents == before   # nothing held
    parts = parse_xml(stack.client.get(path(BUCKET, key), query_string={
        "uploadId": upload_id}).get_data()).findall("Part")
    assert [p.findtext("PartNumber") for p in parts] == ["1"]

    # Complete sends no data and chooses no encryption: the parts already there complete.
    done = complete(stack.client, key, upload_id, [(1, etag1)], SSE_C.read)
    assert done.status_code == 200, done.get_data()
    assert get(stack.client, key, SSE_C.read).get_data() == first


def test_part_with_a_customer_key_into_a_plain_upload_is_refused_too(stack: Stack) -> None:
    upload_id = create_upload(stack.client, "mp", SSE_S3.write)
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    other = customer_headers(CUSTOMER_KEY)
    assert_access_denied(upload_part(stack.client, "mp", upload_id, 1, b"x", other))
    ok = upload_part(stack.client, "mp", upload_id, 1, b"x")
    assert ok.status_code == 200, ok.get_data()


@pytest.mark.parametrize("edit", [
    pytest.param((b'"SSE-C"', b'"NONE"'), id="unblocked-in-the-backend"),
    pytest.param((b'"version": 2', b'"version": 1'), id="version-lowered"),
])
def test_a_block_edited_in_the_backend_fails_closed(stack: Stack, edit) -> None:
    """Only the verified record decides: a configuration whose block was edited away in the
    backend is an integrity failure (500), never a write that asks for SSE-C let through."""
    stack.configs.put(BUCKET, BLOCK_SSE_C)
    where = "bucket-encryption/" + BUCKET
    _, sealed = stack.stored("encproxy-internal", where)
    edited = sealed.replace(*edit)
    assert edited != sealed
    stack.store.put_object("encproxy-internal", where, io.BytesIO(edited), len(edited),
                           ObjectMeta())
    replica = stack.replica()   # nothing cached: it reads the edited record
    assert_error(put(replica.client, "c", b"x", SSE_C.write), 500, "InternalError")
    assert keys_in(stack, "c") == []
