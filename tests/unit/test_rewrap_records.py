"""Rewrap records in-process (``encproxy.wsgi.encryption.rewraps``): an older version's
data key wrapped again under the current version of its master key, kept in the internal
bucket, used by reads once the old master-key version is retired; verified, bound to its
version and object; taken away with its version.

The stack is the file store's (which rewrites versions in place and so never needs a
record): the records are written here as ``encproxy rotate`` writes them through an S3
backend, and read by the same code.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from encryption_testkit import (
    BUCKET,
    INTERNAL_BUCKET,
    KMS_KEY_ID,
    SSE,
    Stack,
    assert_error,
    build_stack,
    path,
    payload,
)
from werkzeug.test import TestResponse

from encproxy.crypto.keys import rewrap
from encproxy.format.envelope import Envelope
from encproxy.format.errors import RecordAuthenticationFailed, RecordMalformed
from encproxy.wsgi.encryption.rewraps import RewrapStore, rewrap_location

KMS = {SSE: "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": KMS_KEY_ID}
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
VERSIONING = (b"<VersioningConfiguration><Status>Enabled</Status>"
              b"</VersioningConfiguration>")


def versioned_object(stack: Stack, key: str, data: bytes, bucket_key: bool = False) -> str:
    """PUT ``data`` under SSE-KMS (with a bucket key, FORMAT.md §16) into the versioned
    bucket; its version id."""
    resp = stack.client.put(path(BUCKET), query_string="versioning", data=VERSIONING)
    assert resp.status_code == 200, resp.get_data()
    resp = stack.client.put(path(BUCKET, key), data=data, headers={
        **KMS, **({BUCKET_KEY: "true"} if bucket_key else {})})
    assert resp.status_code == 200, resp.get_data()
    return resp.headers["x-amz-version-id"]


def stored_envelope(stack: Stack, key: str, version_id: str) -> Envelope:
    record, _ = stack.store.open_object(BUCKET, key, version_id)
    return Envelope.decode(record.user_metadata["encproxy"])


def rewrap_aside(stack: Stack, key: str, version_id: str) -> RewrapStore:
    """What ``encproxy rotate`` does for an older version through an S3 backend."""
    store = stack.middleware.context.rewraps
    envelope = stored_envelope(stack, key, version_id)
    store.put(BUCKET, key, version_id, rewrap(stack.keys, envelope, BUCKET, key, KMS_KEY_ID),
              None)
    return store


def overwrite(stack: Stack, where: str, data: bytes) -> None:
    """The attacker's write: ``data`` at ``where`` in the internal bucket, on disk."""
    stack.store.put_object(INTERNAL_BUCKET, where, io.BytesIO(data), len(data))


def get_version(stack: Stack, key: str, version_id: str) -> TestResponse:
    return stack.client.get(path(BUCKET, key), query_string={"versionId": version_id})


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


@pytest.mark.parametrize("bucket_key", [False, True], ids=["kms", "kms-bucket-key"])
def test_a_retired_master_key_version_reads_through_the_record(stack: Stack,
                                                               bucket_key: bool) -> None:
    data = payload(70_000, seed=1)
    version = versioned_object(stack, "k", data, bucket_key)
    assert (stored_envelope(stack, "k", version).bucket_key is not None) is bucket_key
    stack.keys.rotate_key(KMS_KEY_ID)
    rewrap_aside(stack, "k", version)
    stack.keys.retire_version(KMS_KEY_ID, "1")
    cold = stack.replica()                     # no cached data key
    resp = get_version(cold, "k", version)
    assert resp.status_code == 200, resp.get_data()
    assert resp.get_data() == data
    assert resp.headers["x-amz-server-side-encryption-aws-kms-key-id"] == KMS_KEY_ID
    ranged = cold.client.get(path(BUCKET, "k"), query_string={"versionId": version},
                             headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.get_data() == data[100:200]
    # Without the record, the retired version is what it was: not found.
    cold.store.delete_object(INTERNAL_BUCKET, rewrap_location(BUCKET, "k", version))
    assert get_version(stack.replica(), "k", version).status_code == 400


def test_a_version_that_still_unwraps_never_reads_the_record(stack: Stack) -> None:
    data = payload(1000, seed=2)
    version = versioned_object(stack, "k", data)
    stack.keys.rotate_key(KMS_KEY_ID)
    rewrap_aside(stack, "k", version)
    where = rewrap_location(BUCKET, "k", version)
    overwrite(stack, where, b"garbage")   # never looked at
    assert get_version(stack.replica(), "k", version).get_data() == data


@pytest.mark.parametrize("damage", ["body", "moved-to-another-version", "other-object"])
def test_a_damaged_record_is_an_integrity_failure(stack: Stack, damage: str) -> None:
    data = payload(1000, seed=3)
    version = versioned_object(stack, "k", data)
    other = versioned_object(stack, "other", payload(10, seed=4))
    stack.keys.rotate_key(KMS_KEY_ID)
    store = rewrap_aside(stack, "k", version)
    rewrap_aside(stack, "other", other)
    where = rewrap_location(BUCKET, "k", version)
    if damage == "body":
        record, reader = stack.store.open_object(INTERNAL_BUCKET, where)
        with reader:
            stored = reader.read()
        overwrite(stack, where, stored.replace(b'"v": 1', b'"v": 1 '))
    elif damage == "moved-to-another-version":
        _, reader = stack.store.open_object(INTERNAL_BUCKET,
                                            rewrap_location(BUCKET, "other", other))
        with reader:
            overwrite(stack, where, reader.read())
    else:
        # A record sealed for this version, but naming another object's data key.
        envelope = stored_envelope(stack, "other", other)
        store.put(BUCKET, "k", version, rewrap(stack.keys, envelope, BUCKET, "other",
                                               KMS_KEY_ID), None)
    stack.keys.retire_version(KMS_KEY_ID, "1")
    resp = get_version(stack.replica(), "k", version)
    assert_error(resp, 500, "InternalError")
    assert data[:64] not in resp.get_data()
    expected = RecordMalformed if damage == "other-object" else RecordAuthenticationFailed
    with pytest.raises(expected):
        found = store.get(BUCKET, "k", version, None)
        assert found is not None
        found.applied_to(stored_envelope(stack, "k", version))


def test_deleting_a_version_deletes_its_record(stack: Stack) -> None:
    first = versioned_object(stack, "k", payload(100, seed=5))
    second = versioned_object(stack, "k", payload(100, seed=6))
    stack.keys.rotate_key(KMS_KEY_ID)
    store = rewrap_aside(stack, "k", first)
    assert store.get(BUCKET, "k", first, None) is not None
    resp = stack.client.delete(path(BUCKET, "k"), query_string={"versionId": first})
    assert resp.status_code == 204, resp.get_data()
    assert store.get(BUCKET, "k", first, None) is None
    # A delete without a version id (a delete marker) leaves the versions and records.
    rewrap_aside(stack, "k", second)
    assert stack.client.delete(path(BUCKET, "k")).status_code == 204
    assert store.get(BUCKET, "k", second, None) is not None


def test_collect_removes_only_the_records_of_versions_gone(stack: Stack) -> None:
    kept = versioned_object(stack, "kept", payload(100, seed=7))
    gone = versioned_object(stack, "gone", payload(100, seed=8))
    stack.keys.rotate_key(KMS_KEY_ID)
    store = rewrap_aside(stack, "kept", kept)
    rewrap_aside(stack, "gone", gone)
    stack.store.delete_object(BUCKET, "gone", gone)      # behind encproxy's back
    existing = {("kept", kept)}
    assert store.collect(BUCKET, lambda k, v: (k, v) in existing, None) == 1
    assert store.get(BUCKET, "kept", kept, None) is not None
    assert store.get(BUCKET, "gone", gone, None) is None
