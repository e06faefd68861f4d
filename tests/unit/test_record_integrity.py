"""Records in the internal bucket, held copies and ``require``, driven in-process (issue 14).

The attacker here writes the file store directly, as someone with backend access.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from encryption_testkit import (
    BUCKET,
    INTERNAL_BUCKET,
    KEY_ID,
    KMS_KEY_ID,
    build_stack,
    complete,
    create_upload,
    error_of,
    path,
    put,
    upload_part,
)

from encproxy import errors
from encproxy.crypto.held import verified_held_segment
from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import PartEncryptor
from encproxy.crypto.records import root_id
from encproxy.filestore.records import ObjectMeta
from encproxy.format.constants import Kind, Suite
from encproxy.format.errors import (
    ChunkAuthenticationFailed,
    CiphertextTrailingData,
    CiphertextTruncated,
    FormatError,
    RecordsRootInvalid,
    SegmentHeaderAuthenticationFailed,
    SegmentLayoutMismatch,
    SegmentOutOfOrder,
)
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.config_store import PREFIX, BucketConfigStore
from encproxy.wsgi.buckets.generation import Generation
from encproxy.wsgi.buckets.records import ROOTS_PREFIX, RecordKeys
from encproxy.wsgi.encryption.upload_store import upload_location

MiB = 1024 * 1024


def copy_headers(src_bucket: str, src_key: str) -> dict[str, str]:
    return {"x-amz-copy-source": path(src_bucket, src_key)}


# -- the records root -----------------------------------------------------------------------

def records_of(stack, key_id: str = KEY_ID) -> RecordKeys:
    return RecordKeys(stack.backend, INTERNAL_BUCKET, stack.keys, key_id)


def stored_roots(stack) -> dict[str, bytes]:
    listed = stack.store.list_objects(INTERNAL_BUCKET, prefix=ROOTS_PREFIX).contents
    return {r.key: stack.stored(INTERNAL_BUCKET, r.key)[1] for r in listed}


def test_the_root_is_created_once_stored_wrapped_and_shared(tmp_path: Path):
    stack = build_stack(tmp_path)
    first = records_of(stack)
    sealed = first.seal("upload", "b", "k", "u", b"{}", None)
    roots = stored_roots(stack)
    assert len(roots) == 1
    (name, blob), = roots.items()
    assert 32 < len(blob) <= 512 and name == ROOTS_PREFIX + root_id(blob)   # wrapped
    second = records_of(stack)            # another process
    assert second.open("x", "upload", "b", "k", "u", sealed, None) == b"{}"
    second.seal("upload", "b", "k", "u2", b"{}", None)
    assert stored_roots(stack) == roots   # adopted, not made again


def test_racing_creators_both_open_every_record(tmp_path: Path):
    stack = build_stack(tmp_path)
    one, two = records_of(stack), records_of(stack)
    sealed_one = one.seal("upload", "b", "k", "u", b"1", None)      # creates a root
    (name, blob), = stored_roots(stack).items()
    stack.store.delete_object(INTERNAL_BUCKET, name)                # unseen by `two` ...
    sealed_two = two.seal("upload", "b", "k", "u2", b"2", None)     # ... which makes its own
    stack.store.put_object(INTERNAL_BUCKET, name, io.BytesIO(blob), len(blob), ObjectMeta())
    assert len(stored_roots(stack)) == 2
    assert one.open("x", "upload", "b", "k", "u2", sealed_two, None) == b"2"
    assert two.open("x", "upload", "b", "k", "u", sealed_one, None) == b"1"
    assert records_of(stack).open("x", "upload", "b", "k", "u", sealed_one, None) == b"1"


def test_a_root_wrapped_under_another_key_is_refused(tmp_path: Path, caplog):
    stack = build_stack(tmp_path)
    attacker = records_of(stack, KMS_KEY_ID)   # a key encproxy can use, but not the records key
    forged = attacker.seal("bucket-encryption", "b", "", None, b"{}", None)
    fresh = records_of(stack)
    with caplog.at_level(logging.ERROR), pytest.raises(RecordsRootInvalid):
        fresh.open("x", "bucket-encryption", "b", "", None, forged, None)
    assert "wrapped under key" in caplog.text and "RecordsRootInvalid" in caplog.text
    fresh.seal("upload", "b", "k", "u", b"{}", None)   # skips that root, makes its own
    assert len(stored_roots(stack)) == 2


def test_a_tampered_root_is_refused(tmp_path: Path):
    stack = build_stack(tmp_path)
    sealed = records_of(stack).seal("upload", "b", "k", "u", b"{}", None)
    (name, blob), = stored_roots(stack).items()
    bad = bytearray(blob)
    bad[-1] ^= 1
    stack.store.put_object(INTERNAL_BUCKET, name, io.BytesIO(bytes(bad)), len(bad),
                           ObjectMeta())
    with pytest.raises(RecordsRootInvalid):
        records_of(stack).open("x", "upload", "b", "k", "u", sealed, None)


# -- held copies ------------------------------------------------------------------------------

def held_segment(part: int = 9, size: int = 100_000) -> tuple[ObjectKeys, PartEncryptor, bytes]:
    keys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    enc = PartEncryptor(keys, part, size)
    data = b"".join(bytes(v) for v in enc.encrypt([bytes(size)]))
    return keys, enc, data


def pieces(data: bytes, size: int = 7_000) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_an_authentic_held_segment_streams_unchanged():
    keys, enc, data = held_segment()
    out = b"".join(verified_held_segment(keys, 9, 100_000, enc.header.salt, pieces(data)))
    assert out == data


@pytest.mark.parametrize("case,error", [
    ("header", SegmentHeaderAuthenticationFailed), ("middle", ChunkAuthenticationFailed),
    ("last", ChunkAuthenticationFailed), ("part", SegmentOutOfOrder),
    ("salt", SegmentLayoutMismatch), ("size", SegmentLayoutMismatch),
    ("short", CiphertextTruncated), ("long", CiphertextTrailingData),
])
def test_a_bad_held_segment_fails_before_its_last_byte(case: str, error: type[FormatError]):
    keys, enc, data = held_segment()
    part, size, salt = 9, 100_000, enc.header.salt
    raw = bytearray(data)
    if case in ("header", "middle", "last"):
        raw[{"header": 40, "middle": len(raw) // 2, "last": len(raw) - 1}[case]] ^= 1
    part = 8 if case == "part" else part
    salt = bytes(16) if case == "salt" else salt
    size = size + 1 if case == "size" else size
    raw = raw[:-1] if case == "short" else raw + (b"x" if case == "long" else b"")
    received = bytearray()
    with pytest.raises(error):
        for piece in verified_held_segment(keys, part, size, salt, pieces(bytes(raw))):
            received += piece
    assert len(received) < len(data)   # never the whole segment


# -- require, on every write path, whatever the record says ---------------------------------

def test_require_refuses_parts_of_an_unencrypted_upload(tmp_path: Path):
    lax = build_stack(tmp_path)   # default none: an unencrypted upload, legitimately
    upload_id = create_upload(lax.client, "plain")
    put(lax.client, "src", b"source bytes")
    strict = lax.replica(require=True, default="AES256")
    assert error_of(upload_part(strict.client, "plain", upload_id, 1, b"x" * 10)) == \
        (403, "AccessDenied")
    resp = strict.client.put(path(BUCKET, "plain"), query_string={
        "partNumber": 1, "uploadId": upload_id}, headers=copy_headers(BUCKET, "src"))
    assert error_of(resp) == (403, "AccessDenied")
    assert error_of(complete(strict.client, "plain", upload_id, [(1, '"x"')])) == \
        (403, "AccessDenied")
    assert error_of(put(lax.replica(require=True).client, "p", b"plain")) == \
        (403, "AccessDenied")


def test_a_rewritten_upload_record_fails_closed(tmp_path: Path):
    stack = build_stack(tmp_path, require=True, default="AES256")
    upload_id = create_upload(stack.client, "obj")
    where = upload_location(BUCKET, "obj", upload_id) + "record"
    forged = b'{"v": 1, "bucket": "data", "key": "obj", "mode": "none", "envelope": null}'
    stack.store.put_object(INTERNAL_BUCKET, where, io.BytesIO(forged), len(forged),
                           ObjectMeta())
    other = stack.replica(require=True, default="AES256")
    secret = b"PLAINTEXT-MARKER" * 100
    assert error_of(upload_part(other.client, "obj", upload_id, 1, secret)) == \
        (500, "InternalError")
    assert secret not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


# -- bucket configurations: authenticated, and seen at once by every worker -----------------

def test_a_tampered_configuration_is_an_integrity_failure(tmp_path: Path):
    stack = build_stack(tmp_path)
    stack.configs.put(BUCKET, BucketEncryption("aws:kms", KMS_KEY_ID, False))
    _, sealed = stack.stored(INTERNAL_BUCKET, PREFIX + BUCKET)
    edited = sealed.replace(KMS_KEY_ID.encode(), KEY_ID.encode())
    stack.store.put_object(INTERNAL_BUCKET, PREFIX + BUCKET, io.BytesIO(edited), len(edited),
                           ObjectMeta())
    with pytest.raises(errors.IntegrityError):
        stack.replica().configs.get(BUCKET)
    assert error_of(put(stack.replica().client, "k", b"data")) == (500, "InternalError")


def test_a_change_through_one_worker_is_seen_by_the_next_request_of_another(tmp_path: Path):
    stack = build_stack(tmp_path)
    counter = tmp_path / "generation"
    workers = [BucketConfigStore(stack.backend, INTERNAL_BUCKET, ttl=60.0,
                                 records=records_of(stack), generation=Generation(counter))
               for _ in range(2)]
    assert workers[1].get(BUCKET) is None                 # cached: "no configuration"
    workers[0].put(BUCKET, BucketEncryption("AES256", None, False))
    assert workers[1].get(BUCKET) == BucketEncryption("AES256", None, False)
    workers[0].delete(BUCKET)
    assert workers[1].get(BUCKET) is None
    resp = subrequest.request(stack.backend, None, "GET", INTERNAL_BUCKET, PREFIX + BUCKET)
    assert resp.status == 404
