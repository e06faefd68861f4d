"""UpdateObjectEncryption in-process: the encryption layer over the real file store
(tests/unit/encryption_testkit.py), ``PUT /b/k?encryption`` with an ``ObjectEncryption``
body (encproxy/wsgi/encryption/update_encryption.py, docs/ENCRYPTION.md).

The object's stored ciphertext must be the same bytes afterwards (only its envelope is
new), its client-visible ETag and plaintext unchanged, and HEAD and GET must report
SSE-KMS under the new key. Refusals leave the object exactly as it was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from encryption_testkit import (
    BUCKET,
    KEY_ID,
    KMS_KEY_ID,
    NONE,
    PART,
    SSE,
    SSE_C,
    SSE_KMS,
    SSE_S3,
    MiB,
    Mode,
    Stack,
    assert_error,
    build_stack,
    get,
    head,
    multipart_upload,
    path,
    payload,
    put,
)
from werkzeug.test import Client, TestResponse

from encproxy import errors
from encproxy.format.constants import Protection
from encproxy.format.envelope import Envelope
from encproxy.keys.blob import WrappedKey
from encproxy.s3.object_encryption import parse_object_encryption
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.encryption.middleware import EncryptionMiddleware, EncryptionPolicy

KMS_KEY_HEADER = SSE + "-aws-kms-key-id"


def body_for(key_id: str, bucket_key: str | None = None, member: str = "SSE-KMS") -> bytes:
    extra = f"<BucketKeyEnabled>{bucket_key}</BucketKeyEnabled>" if bucket_key else ""
    return (f'<ObjectEncryption xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><{member}>'
            f"<KMSKeyArn>{key_id}</KMSKeyArn>{extra}</{member}></ObjectEncryption>").encode()


def update(client: Client, key: str, body: bytes, query: str = "encryption",
           headers: dict[str, str] | None = None) -> TestResponse:
    return client.put(path(BUCKET, key), query_string=query, data=body,
                      headers={"content-type": "application/xml", **(headers or {})},
                      environ_overrides={"CONTENT_LENGTH": str(len(body))})


def stored_state(stack: Stack, key: str) -> tuple[bytes, dict[str, str], Any]:
    """The stored ciphertext, user metadata and part sizes, read from the file store."""
    record, body = stack.stored(BUCKET, key)
    return body, dict(record.meta.user_metadata), record.part_sizes


def envelope_of(stack: Stack, key: str) -> Envelope:
    return Envelope.decode(stack.stored(BUCKET, key)[0].meta.user_metadata["encproxy"])


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


# -- the XML body (pure) ---------------------------------------------------------------------

@pytest.mark.parametrize("body,code", [
    pytest.param(body_for("k", member="SSE-S3"), "InvalidRequest", id="sse-s3-target"),
    pytest.param(body_for("k", member="DSSE-KMS"), "InvalidRequest", id="dsse-target"),
    pytest.param(b"<ObjectEncryption/>", "InvalidRequest", id="no-member"),
    pytest.param(b"<ObjectEncryption><SSE-KMS/></ObjectEncryption>", "InvalidRequest",
                 id="no-key"),
    pytest.param(body_for("  "), "InvalidRequest", id="empty-key"),
    pytest.param(body_for("k", "yes"), "InvalidRequest", id="bad-bucket-key"),
    pytest.param(b"<ServerSideEncryptionConfiguration/>", "MalformedXML", id="wrong-root"),
    pytest.param(b"<ObjectEncryption><SSE-KMS>", "MalformedXML", id="broken"),
    pytest.param(b'<!DOCTYPE x [<!ENTITY a "b">]><ObjectEncryption/>', "MalformedXML",
                 id="dtd"),
    pytest.param(b"<ObjectEncryption><SSE-KMS><KMSKeyArn>k</KMSKeyArn><Other/></SSE-KMS>"
                 b"</ObjectEncryption>", "MalformedXML", id="unknown-element"),
])
def test_body_refused(body: bytes, code: str) -> None:
    with pytest.raises(errors.S3Error) as caught:
        parse_object_encryption(body)
    assert getattr(caught.value, "code", None) == code


@pytest.mark.parametrize("body,key,bucket_key", [
    pytest.param(body_for("arn:aws:kms:us-east-1:111122223333:key/abcd"),
                 "arn:aws:kms:us-east-1:111122223333:key/abcd", False, id="arn"),
    pytest.param(body_for("other-key", "true"), "other-key", True, id="bucket-key"),
    pytest.param(body_for("other-key", "false"), "other-key", False, id="bucket-key-off"),
])
def test_body_parsed(body: bytes, key: str, bucket_key: bool) -> None:
    parsed = parse_object_encryption(body)
    assert (parsed.kms_key, parsed.bucket_key_enabled) == (key, bucket_key)


# -- the update --------------------------------------------------------------------------------

@pytest.mark.parametrize("start,target", [
    pytest.param(SSE_S3, KMS_KEY_ID, id="sse-s3-to-kms"),
    pytest.param(SSE_KMS, KEY_ID, id="kms-to-other-kms"),
    pytest.param(SSE_KMS, KMS_KEY_ID, id="kms-to-same-kms"),
])
@pytest.mark.parametrize("size", [0, 100, 3 * MiB + 17])
def test_single_part_object(stack: Stack, start: Mode, target: str, size: int) -> None:
    data = payload(size, seed=size)
    headers = {**start.write, "content-type": "text/x-test", "x-amz-meta-colour": "blue",
               "cache-control": "no-store"}
    assert put(stack.client, "o", data, headers).status_code == 200
    before = head(stack.client, "o")
    stored_before, meta_before, _ = stored_state(stack, "o")

    resp = update(stack.client, "o", body_for(target))
    assert resp.status_code == 200, resp.get_data()
    assert resp.get_data() == b""

    stored_after, meta_after, _ = stored_state(stack, "o")
    assert stored_after == stored_before                    # not one byte rewritten
    assert meta_after["colour"] == "blue"
    assert meta_after["encproxy"] != meta_before["encproxy"]
    envelope = envelope_of(stack, "o")
    assert envelope.protection is Protection.SSE_KMS
    assert WrappedKey.from_bytes(envelope.wrapped_key).key_id == target
    for client in (stack.client, stack.replica().client):  # a replica has nothing cached
        after = head(client, "o")
        assert after.headers["ETag"] == before.headers["ETag"]
        assert after.headers["Content-Length"] == str(size)
        assert after.headers[SSE] == "aws:kms"
        assert after.headers[KMS_KEY_HEADER] == target
        assert after.headers["Content-Type"] == "text/x-test"
        assert after.headers["Cache-Control"] == "no-store"
        got = get(client, "o")
        assert got.status_code == 200 and got.get_data() == data
        assert got.headers[SSE] == "aws:kms"


def test_multipart_object(stack: Stack) -> None:
    parts = {1: payload(PART, 1), 2: payload(PART, 2), 3: payload(123_456, 3)}
    multipart_upload(stack.client, "m", parts, SSE_S3)
    data = b"".join(parts[n] for n in sorted(parts))
    before = head(stack.client, "m")
    stored_before, meta_before, sizes_before = stored_state(stack, "m")
    assert sizes_before is not None and len(sizes_before) >= 3

    resp = update(stack.client, "m", body_for(KMS_KEY_ID))
    assert resp.status_code == 200, resp.get_data()

    stored_after, meta_after, sizes_after = stored_state(stack, "m")
    assert stored_after == stored_before and sizes_after == sizes_before
    assert envelope_of(stack, "m").protection is Protection.SSE_KMS
    for client in (stack.client, stack.replica().client):
        after = head(client, "m")
        assert after.headers["ETag"] == before.headers["ETag"]
        assert after.headers["ETag"].strip('"').endswith("-3")
        assert (after.headers[SSE], after.headers[KMS_KEY_HEADER]) == ("aws:kms", KMS_KEY_ID)
        assert get(client, "m").get_data() == data
        ranged = get(client, "m", {"Range": f"bytes={PART - 10}-{PART + 9}"})
        assert ranged.get_data() == data[PART - 10:PART + 10]
        assert get(client, "m", query="partNumber=2").get_data() == parts[2]
    # and on to another KMS key, the same way
    assert update(stack.client, "m", body_for(KEY_ID)).status_code == 200
    assert stored_state(stack, "m")[0] == stored_before
    assert head(stack.client, "m").headers[KMS_KEY_HEADER] == KEY_ID
    assert get(stack.client, "m").get_data() == data


def test_kms_context_is_kept(stack: Stack) -> None:
    import base64
    import json
    context = base64.b64encode(json.dumps({"team": "blue"}).encode()).decode()
    headers = {**SSE_KMS.write, SSE + "-context": context}
    assert put(stack.client, "c", b"with a context", headers).status_code == 200
    assert update(stack.client, "c", body_for(KEY_ID)).status_code == 200
    after = head(stack.client, "c")
    assert after.headers[SSE + "-context"] == context
    assert after.headers[KMS_KEY_HEADER] == KEY_ID
    assert get(stack.client, "c").get_data() == b"with a context"


# -- refusals: nothing changes ------------------------------------------------------------------

@pytest.mark.parametrize("written,body,query,status,code", [
    pytest.param(NONE, body_for(KMS_KEY_ID), "encryption", 400, "InvalidRequest",
                 id="unencrypted"),
    pytest.param(SSE_C, body_for(KMS_KEY_ID), "encryption", 400, "InvalidRequest", id="sse-c"),
    pytest.param(SSE_S3, body_for("no-such-key"), "encryption", 400, "KMS.NotFoundException",
                 id="unknown-key"),
    pytest.param(SSE_S3, body_for("arn:aws:kms:us-east-1:111122223333:key/1234abcd"),
                 "encryption", 400, "KMS.NotFoundException", id="foreign-arn"),
    pytest.param(SSE_S3, body_for(KMS_KEY_ID, member="SSE-S3"), "encryption", 400,
                 "InvalidRequest", id="sse-s3-target"),
    pytest.param(SSE_S3, b"not xml", "encryption", 400, "MalformedXML", id="malformed"),
    pytest.param(SSE_S3, body_for(KMS_KEY_ID), "encryption&versionId=3HL4kqtJlcpXroDTDmJ",
                 400, "InvalidArgument", id="unknown-version"),
])
def test_refused_and_nothing_changes(stack: Stack, written: Mode, body: bytes, query: str,
                                     status: int, code: str) -> None:
    data = payload(70_000, 7)
    assert put(stack.client, "r", data, written.write).status_code == 200
    before = stored_state(stack, "r")
    head_before = head(stack.client, "r", written.read)
    assert_error(update(stack.client, "r", body, query), status, code)
    assert stored_state(stack, "r") == before
    head_after = head(stack.client, "r", written.read)
    assert head_after.headers.get(SSE) == head_before.headers.get(SSE)
    assert head_after.headers["ETag"] == head_before.headers["ETag"]
    assert get(stack.client, "r", written.read).get_data() == data


def test_the_null_version_is_the_current_one(stack: Stack) -> None:
    assert put(stack.client, "v", b"versioned", SSE_S3.write).status_code == 200
    assert update(stack.client, "v", body_for(KMS_KEY_ID),
                  "encryption&versionId=null").status_code == 200
    assert head(stack.client, "v").headers[SSE] == "aws:kms"


def test_missing_object(stack: Stack) -> None:
    assert_error(update(stack.client, "absent", body_for(KMS_KEY_ID)), 404, "NoSuchKey")


def test_sigv2_is_refused(stack: Stack) -> None:
    """AWS requires SigV4 for this operation (authentication is not in this stack: the
    header alone marks the request as SigV2-signed)."""
    assert put(stack.client, "s", b"x", SSE_S3.write).status_code == 200
    resp = update(stack.client, "s", body_for(KMS_KEY_ID),
                  headers={"Authorization": "AWS AKID:c2lnbmF0dXJl"})
    assert_error(resp, 400, "InvalidRequest")
    assert head(stack.client, "s").headers[SSE] == "AES256"


# -- a concurrent overwrite is never clobbered ----------------------------------------------------

class Overwriter:
    """Between the encryption layer and the file store: just before each of the first
    ``times`` backend copies of ``key``, another client overwrites the object (through
    encproxy)."""

    def __init__(self, app: Any, key: str, overwrite: Any, times: int = 1) -> None:
        self.app, self.key, self.overwrite, self.times, self.fired = app, key, overwrite, \
            times, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        copying = "HTTP_X_AMZ_COPY_SOURCE" in environ   # CopyObject or UploadPartCopy
        ours = environ.get("PATH_INFO", "").endswith("/" + self.key)
        if copying and ours and self.fired < self.times:
            self.fired += 1
            self.overwrite()
        return self.app(environ, start_response)


@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_a_concurrent_overwrite_wins(stack: Stack, multipart: bool, times: int) -> None:
    newer = payload(40_000, 99)
    if multipart:
        multipart_upload(stack.client, "w", {1: payload(PART, 1), 2: payload(1000, 2)}, SSE_S3)
    else:
        assert put(stack.client, "w", payload(50_000, 98), SSE_S3.write).status_code == 200

    def overwrite() -> None:
        assert put(stack.client, "w", newer, SSE_S3.write).status_code == 200

    overwriter = Overwriter(stack.backend, "w", overwrite, times)
    middleware = EncryptionMiddleware(overwriter, stack.configs, stack.keys, EncryptionPolicy(
        allow_insecure_sse_c=True, default_key=KEY_ID))
    client = Client(Gateway(middleware, ()))
    resp = update(client, "w", body_for(KMS_KEY_ID))
    assert overwriter.fired == times
    if times == 2:      # changed under both attempts: given up, the newest object intact
        assert_error(resp, 503, "SlowDown")
        assert get(stack.client, "w").get_data() == newer
        assert head(stack.client, "w").headers[SSE] == "AES256"
        return
    # The first copy was refused (the object changed); the update was made again on the
    # newer object, whose bytes survive.
    assert resp.status_code == 200, resp.get_data()
    assert get(stack.client, "w").get_data() == newer
    assert head(stack.client, "w").headers[SSE] == "aws:kms"


# -- no backend app acts on ?encryption itself --------------------------------------------------

def test_the_file_store_alone_refuses_it(stack: Stack) -> None:
    """Below the encryption layer the request is refused, never taken for a PutObject."""
    assert put(stack.direct, "d", b"as stored").status_code == 200
    before = stored_state(stack, "d")
    resp = update(stack.direct, "d", body_for(KMS_KEY_ID))
    root = assert_error(resp, 501, "NotImplemented")
    assert root is not None and "UpdateObjectEncryption" in (root.findtext("Message") or "")
    assert stored_state(stack, "d") == before


def test_the_s3_backend_app_never_forwards_it() -> None:
    from encproxy.s3backend import forwarding
    assert forwarding.disposition("UpdateObjectEncryption") == forwarding.REFUSE
