"""Versions under encryption on every backend (file store, moto, Ceph RGW), with boto3
through the real server (issue 17).

Versions written in every mode (SSE-S3, SSE-KMS, SSE-C; single-part and multipart) read
back by version id, whole and ranged; ListObjectVersions, HeadObject and GetObject report
plaintext sizes and ETags, also from a server that has seen none of them (cold facts and
layout caches); copies and part copies from a version; deletes by version id; what a
backend-side swap or move of a version's ciphertext does (docs/ENCRYPTION.md, "Versions");
``encproxy rotate`` on a versioned bucket (docs/OPERATIONS.md §6).

The file-store-only versioning tests (delete markers, suspension, tags, minio flows) are
in test_versioning_filestore.py.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.clients import make_client
from support.server import RunningServer, start_server

from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.format.envelope import Envelope
from encproxy.keys.blob import WrappedKey

MiB = 1024 * 1024
PART = 5 * MiB
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
CUSTOMER = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b"c" * 32}
COPY_CUSTOMER = {"CopySourceSSECustomerAlgorithm": "AES256",
                 "CopySourceSSECustomerKey": b"c" * 32}
ENCPROXY = str(Path(sys.executable).with_name("encproxy"))


@dataclass
class Written:
    mode: str
    version_id: str
    body: bytes
    etag: str                 # the client-visible ETag the write answered
    read: dict[str, Any]      # what a read of it needs (the SSE-C key)


def failure(call: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"].get("Code", "")


def empty_and_delete(s3: Any, name: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for o in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=o["Key"], VersionId=o["VersionId"])
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def versioned(s3: Any) -> Iterator[str]:
    """A versioned bucket whose objects are all encrypted (SSE-S3 by default)."""
    name = "vers-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    empty_and_delete(s3, name)


@pytest.fixture
def cold(server: RunningServer, backend: Any, tmp_path: Path) -> Iterator[Any]:
    """A client of a second server over the same backend and keys that has cached no
    facts and no layouts: what it reports it has looked up itself."""
    directory = tmp_path / "cold"
    directory.mkdir()
    keys = server.config.parent / "keys"
    (shutil.copytree if keys.is_dir() else shutil.copy2)(keys, directory / "keys")
    (directory / "data").symlink_to(server.root)
    second = start_server(directory, env=backend.server_env())
    try:
        yield make_client(second.endpoint)
    finally:
        second.stop()


def put_multipart(s3: Any, bucket: str, key: str, parts: list[bytes], **extra: Any
                  ) -> dict[str, Any]:
    read = {k: v for k, v in extra.items() if k.startswith("SSECustomer")}
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=p, **read)["ETag"]}
        for n, p in enumerate(parts, 1)]
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,  # type: ignore[no-any-return]
                                        MultipartUpload={"Parts": done})


def write_every_mode(s3: Any, bucket: str, key: str = "k") -> list[Written]:
    """Single-part versions in SSE-S3 (the bucket's default), SSE-KMS and SSE-C, and
    multipart versions in the three, oldest first; then a small current version."""
    out: list[Written] = []
    singles = {"sse-s3": {}, "sse-kms": {"ServerSideEncryption": "aws:kms",
                                         "SSEKMSKeyId": "test-key"}, "sse-c": CUSTOMER}
    for i, (mode, extra) in enumerate(singles.items()):
        body = os.urandom(70_000 + 1000 * i)   # more than one 64 KiB chunk
        resp = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        out.append(Written(mode, resp["VersionId"], body, resp["ETag"],
                           CUSTOMER if mode == "sse-c" else {}))
    for mode, extra in singles.items():
        parts = [os.urandom(PART), os.urandom(4321)]
        done = put_multipart(s3, bucket, key, parts, **extra)
        out.append(Written("multipart " + mode, done["VersionId"], b"".join(parts),
                           done["ETag"], CUSTOMER if mode == "sse-c" else {}))
    resp = s3.put_object(Bucket=bucket, Key=key, Body=b"current")
    out.append(Written("current", resp["VersionId"], b"current", resp["ETag"], {}))
    return out


def ranges_of(size: int) -> list[tuple[str, int, int]]:
    """(Range header, first, last) cases: start, middle, across the 64 KiB chunk and
    the part boundary, suffix, open-ended."""
    cases = [("bytes=0-0", 0, 0), ("bytes=17-99", 17, 99),
             (f"bytes=65530-{min(65545, size - 1)}", 65530, min(65545, size - 1)),
             ("bytes=-100", size - 100, size - 1), (f"bytes={size - 7}-", size - 7, size - 1)]
    if size > PART:
        cases.append((f"bytes={PART - 10}-{PART + 10}", PART - 10, PART + 10))
    return cases


def test_every_mode_reads_back_by_version_id(s3, versioned, cold):
    written = write_every_mode(s3, versioned)
    ids = [w.version_id for w in written]
    assert len(set(ids)) == len(ids) and all(ids)

    # A server that has seen none of them lists plaintext sizes, and the ETags the
    # writes answered (SSE-C: what HEAD with the key answers; S3 gives no MD5 for it).
    for client in (cold, s3):
        listed = client.list_object_versions(Bucket=versioned, Prefix="k")["Versions"]
        assert [v["VersionId"] for v in listed] == ids[::-1]
        assert [v["Size"] for v in listed] == [len(w.body) for w in written][::-1]
        assert [v["IsLatest"] for v in listed] == [True] + [False] * (len(written) - 1)
        for v, w in zip(listed, written[::-1], strict=True):
            assert v["ETag"] == client.head_object(Bucket=versioned, Key="k",
                                                   VersionId=w.version_id, **w.read)["ETag"]
            if "sse-c" not in w.mode:
                assert v["ETag"] == w.etag, w.mode

    for w in written:
        for client in (cold, s3):
            head = client.head_object(Bucket=versioned, Key="k", VersionId=w.version_id,
                                      **w.read)
            assert (head["ContentLength"], head["VersionId"]) == (len(w.body), w.version_id)
            assert head["ETag"] == w.etag, w.mode
            got = client.get_object(Bucket=versioned, Key="k", VersionId=w.version_id,
                                    **w.read)
            assert got["VersionId"] == w.version_id and got["ETag"] == w.etag
            assert hashlib.sha256(got["Body"].read()).digest() == \
                hashlib.sha256(w.body).digest(), w.mode
        if w.mode == "current":
            continue
        for header, first, last in ranges_of(len(w.body)):
            got = cold.get_object(Bucket=versioned, Key="k", VersionId=w.version_id,
                                  Range=header, **w.read)
            assert got["Body"].read() == w.body[first:last + 1], (w.mode, header)
            assert got["ContentRange"] == f"bytes {first}-{last}/{len(w.body)}"
            assert got["ETag"] == w.etag
    current = s3.get_object(Bucket=versioned, Key="k")
    assert current["Body"].read() == b"current" and current["VersionId"] == ids[-1]


def test_an_sse_c_version_needs_its_key(s3, versioned):
    old = s3.put_object(Bucket=versioned, Key="k", Body=b"secret", **CUSTOMER)["VersionId"]
    s3.put_object(Bucket=versioned, Key="k", Body=b"plain default")
    assert failure(s3.get_object, Bucket=versioned, Key="k", VersionId=old)[0] == 400
    wrong = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b"w" * 32}
    assert failure(s3.get_object, Bucket=versioned, Key="k", VersionId=old, **wrong)[0] == 403
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=old,
                         **CUSTOMER)["Body"].read() == b"secret"


def test_copies_and_part_copies_from_a_version(s3, versioned, quirks):
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "test-key"}
    old_single = os.urandom(100_000)
    sources = {
        "sse-kms": (s3.put_object(Bucket=versioned, Key="src", Body=old_single,
                                  **kms)["VersionId"], old_single, {}),
    }
    old_c = os.urandom(90_000)
    sources["sse-c"] = (s3.put_object(Bucket=versioned, Key="src", Body=old_c,
                                      **CUSTOMER)["VersionId"], old_c, COPY_CUSTOMER)
    parts = [os.urandom(PART), os.urandom(3000)]
    sources["multipart"] = (put_multipart(s3, versioned, "src", parts)["VersionId"],
                            b"".join(parts), {})
    s3.put_object(Bucket=versioned, Key="src", Body=b"the current one")

    answered: list[tuple[str, str | None]] = []   # (the copy's version, what it answered)
    for name, (vid, body, copy_read) in sources.items():
        source = {"Bucket": versioned, "Key": "src", "VersionId": vid}
        copied = s3.copy_object(Bucket=versioned, Key="dst-" + name, CopySource=source,
                                **copy_read)
        assert copied["CopySourceVersionId"] == vid, name
        got = s3.get_object(Bucket=versioned, Key="dst-" + name)
        assert got["Body"].read() == body, name
        assert got["ETag"] == copied["CopyObjectResult"]["ETag"]
        answered.append((got["VersionId"], copied.get("VersionId")))

        up = s3.create_multipart_upload(Bucket=versioned, Key="mp-" + name)["UploadId"]
        first, last = len(body) - 70_000, len(body) - 1
        part = s3.upload_part_copy(Bucket=versioned, Key="mp-" + name, UploadId=up,
                                   PartNumber=1, CopySource=source,
                                   CopySourceRange=f"bytes={first}-{last}", **copy_read)
        assert part["CopySourceVersionId"] == vid, name
        s3.complete_multipart_upload(Bucket=versioned, Key="mp-" + name, UploadId=up,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1,
                                          "ETag": part["CopyPartResult"]["ETag"]}]})
        assert s3.get_object(Bucket=versioned, Key="mp-" + name)["Body"].read() == \
            body[first:], name
    with quirks.breaks("copy-version-id"):    # relayed from the backend's copy
        assert all(got == said for got, said in answered), answered


def test_delete_by_version_id(s3, versioned, cold):
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"first" * 20_000)
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"second")
    third = put_multipart(s3, versioned, "k", [b"t" * PART, b"third"])
    s3.delete_object(Bucket=versioned, Key="k", VersionId=second["VersionId"])
    listed = cold.list_object_versions(Bucket=versioned, Prefix="k")["Versions"]
    assert [(v["VersionId"], v["Size"]) for v in listed] == [
        (third["VersionId"], PART + 5), (first["VersionId"], 100_000)]
    status, _ = failure(s3.get_object, Bucket=versioned, Key="k",
                        VersionId=second["VersionId"])
    assert status == 404
    # Deleting the current version by id makes the one before it current.
    s3.delete_object(Bucket=versioned, Key="k", VersionId=third["VersionId"])
    got = cold.get_object(Bucket=versioned, Key="k")
    assert got["Body"].read() == b"first" * 20_000
    assert (got["VersionId"], got["ETag"]) == (first["VersionId"], first["ETag"])
    assert cold.head_object(Bucket=versioned, Key="k")["ContentLength"] == 100_000
    # A delete without a version id leaves a marker; the version stays readable by id.
    assert s3.delete_object(Bucket=versioned, Key="k")["DeleteMarker"] is True
    assert failure(s3.get_object, Bucket=versioned, Key="k")[0] == 404
    assert s3.get_object(Bucket=versioned, Key="k",
                         VersionId=first["VersionId"])["Body"].read() == b"first" * 20_000


# -- the backend as attacker: versions swapped and moved (docs/ENCRYPTION.md "Versions") --
def stored_version(backend: Any, root: Path, bucket: str, key: str, version_id: str
                   ) -> tuple[bytes, dict[str, str]]:
    """A version's stored body and user metadata, read in the backend itself."""
    if backend.is_s3:
        got = backend.client().get_object(Bucket=bucket, Key=key, VersionId=version_id)
        return got["Body"].read(), dict(got["Metadata"])
    record, reader = FileStore(root).open_object(bucket, key, version_id)
    with reader:
        return reader.read(), dict(record.meta.user_metadata)


def store_version(backend: Any, root: Path, bucket: str, key: str, body: bytes,
                  metadata: dict[str, str]) -> str:
    """Write a body and user metadata as a new version in the backend itself; its id."""
    if backend.is_s3:
        return backend.client().put_object(  # type: ignore[no-any-return]
            Bucket=bucket, Key=key, Body=body, Metadata=metadata)["VersionId"]

    return FileStore(root).put_object(bucket, key, io.BytesIO(body), len(body),  # type: ignore[return-value]
                                      ObjectMeta(user_metadata=metadata)).version_id


def swap_in_index(root: Path, bucket: str, key: str, a: str, b: str) -> None:
    """On the file store: make the index row of version ``a`` name version ``b``'s file
    (with its size and fingerprint), as someone who can write the store's disk can."""
    with sqlite3.connect(root / "index.sqlite3") as conn:
        row = conn.execute("SELECT file, size, etag FROM versions WHERE bucket = ? AND "
                           "key = ? AND version_id = ?", (bucket, key, b)).fetchone()
        changed = conn.execute("UPDATE versions SET file = ?, size = ?, etag = ? WHERE "
                               "bucket = ? AND key = ? AND version_id = ?",
                               (*row, bucket, key, a)).rowcount
    assert changed == 1


def test_a_version_replaced_by_another_of_the_same_key(s3, versioned, backend, server):
    """Version A's stored body and metadata replaced by version B's (same key).

    The envelope binds a data key to bucket, key and object id, not to the version id,
    which the backend assigns after the write (FORMAT.md §3.3, §12 "Rollback"): B's
    ciphertext under A's version id decrypts, as B.  What encproxy guarantees is that it
    is released only as B: B's bytes with B's authenticated ETag and size, so a client
    that holds A's ETag (from its PUT) detects the swap with If-Match.  On the file
    store the attacker edits the index; an S3 backend cannot rewrite a version in place,
    so there the attacker's nearest move is a new version holding B's stored object.
    """
    a_body, b_body = os.urandom(80_000), os.urandom(90_000)
    a = s3.put_object(Bucket=versioned, Key="k", Body=a_body)
    b = s3.put_object(Bucket=versioned, Key="k", Body=b_body, ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="test-key")
    s3.put_object(Bucket=versioned, Key="k", Body=b"current")
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=a["VersionId"])["ETag"] == \
        a["ETag"]     # A's facts are cached now: a swap must not be answered from them
    if backend.is_s3:
        body, metadata = stored_version(backend, server.root, versioned, "k", b["VersionId"])
        target = store_version(backend, server.root, versioned, "k", body, metadata)
    else:
        swap_in_index(server.root, versioned, "k", a["VersionId"], b["VersionId"])
        target = a["VersionId"]

    got = s3.get_object(Bucket=versioned, Key="k", VersionId=target)
    assert got["Body"].read() == b_body
    assert (got["ETag"], got["ContentLength"]) == (b["ETag"], len(b_body))
    assert got["ServerSideEncryption"] == "aws:kms"
    head = s3.head_object(Bucket=versioned, Key="k", VersionId=target)
    assert (head["ETag"], head["ContentLength"]) == (b["ETag"], len(b_body))
    ranged = s3.get_object(Bucket=versioned, Key="k", VersionId=target, Range="bytes=100-199")
    assert ranged["Body"].read() == b_body[100:200] and ranged["ETag"] == b["ETag"]
    assert failure(s3.get_object, Bucket=versioned, Key="k", VersionId=target,
                   IfMatch=a["ETag"]) == (412, "PreconditionFailed")
    listed = {v["VersionId"]: v for v in s3.list_object_versions(
        Bucket=versioned, Prefix="k")["Versions"]}
    assert (listed[target]["ETag"], listed[target]["Size"]) == (b["ETag"], len(b_body))


def test_a_version_moved_to_another_key_or_body_fails_closed(s3, versioned, backend, server):
    """A version's stored object moved to another key, and a version's body under another
    version's envelope (same key), are integrity errors: 500, never plaintext."""
    a_body, b_body = os.urandom(80_000), os.urandom(80_000)
    a = s3.put_object(Bucket=versioned, Key="k", Body=a_body)["VersionId"]
    b = s3.put_object(Bucket=versioned, Key="k", Body=b_body)["VersionId"]
    a_stored, a_meta = stored_version(backend, server.root, versioned, "k", a)
    b_stored, _ = stored_version(backend, server.root, versioned, "k", b)
    moved = store_version(backend, server.root, versioned, "other", a_stored, a_meta)
    mixed = store_version(backend, server.root, versioned, "k", b_stored, a_meta)
    for key, vid in (("other", moved), ("k", mixed)):
        for extra in ({}, {"Range": "bytes=0-99"}, {"Range": "bytes=-100"}):
            status, code = failure(s3.get_object, Bucket=versioned, Key=key, VersionId=vid,
                                   **extra)
            assert (status, code) == (500, "InternalError"), (key, extra)
        # Not answered from what was learnt about the body under its own envelope.
        assert failure(s3.head_object, Bucket=versioned, Key=key, VersionId=vid)[0] == 500
        status, code = failure(s3.copy_object, Bucket=versioned, Key="copied",
                               CopySource={"Bucket": versioned, "Key": key, "VersionId": vid})
        assert (status, code) == (500, "InternalError"), key
    # The versions themselves are untouched.
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=a)["Body"].read() == a_body
    assert s3.get_object(Bucket=versioned, Key="k", VersionId=b)["Body"].read() == b_body


# -- encproxy rotate and UpdateObjectEncryption on a versioned bucket ------------------
def wrapping(s3: Any, backend: Any, root: Path, bucket: str, key: str, version_id: str
             ) -> tuple[str, str]:
    """The (master key, version) a stored version's data key is wrapped under."""
    _, metadata = stored_version(backend, root, bucket, key, version_id)
    blob = WrappedKey.from_bytes(Envelope.decode(metadata["encproxy"]).wrapped_key)
    return blob.key_id, blob.key_version


def summary_count(output: str, name: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(name + " "):
            return int(line.split()[-1])
    raise AssertionError(f"{name!r} not in:\n{output}")


def rotate_cli(backend: Any, server: RunningServer) -> Any:
    env = {**os.environ, **backend.server_env()}

    def run(*args: str) -> str:
        result = subprocess.run([ENCPROXY, *args, "--config", str(server.config)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout
    return run


INTERNAL_BUCKET = "encproxy-internal"     # [backend] internal_bucket, the default


def rewrap_records(backend: Any, bucket: str) -> list[str]:
    """The names of the rewrap records the backend holds for ``bucket``."""
    listed = backend.client().list_objects_v2(Bucket=INTERNAL_BUCKET,
                                              Prefix=f"rewraps/{bucket}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def rotation_versions(s3: Any, bucket: str, kms: dict[str, str], b_sse: dict[str, str]
                      ) -> tuple[list[bytes], list[Any], Any, Any]:
    """What the rotate tests rotate: key a's three versions under ``kms`` (single-part
    with a tag, multipart, single-part with a tag and metadata), b's one (``b_sse``), c's
    under a delete marker, and d under SSE-C (which rotate skips).  The bodies of a's
    versions, their PUT answers, b's and c's."""
    bodies = [os.urandom(70_000), b"".join([os.urandom(PART), os.urandom(999)]),
              os.urandom(1000)]
    a = [s3.put_object(Bucket=bucket, Key="a", Body=bodies[0], Tagging="t=0", **kms),
         put_multipart(s3, bucket, "a", [bodies[1][:PART], bodies[1][PART:]], **kms),
         s3.put_object(Bucket=bucket, Key="a", Body=bodies[2], Tagging="t=2",
                       Metadata={"m": "2"}, **kms)]
    b = s3.put_object(Bucket=bucket, Key="b", Body=b"only version", **b_sse)
    c = s3.put_object(Bucket=bucket, Key="c", Body=b"deleted", **kms)
    s3.delete_object(Bucket=bucket, Key="c")            # a delete marker on top
    s3.put_object(Bucket=bucket, Key="d", Body=b"customer", **CUSTOMER)
    return bodies, a, b, c


def fresh_server(server: RunningServer, backend: Any, directory: Path) -> RunningServer:
    """Another server on the same backend (the same file store) and keyring, with nothing
    cached."""
    directory.mkdir()
    keys = server.config.parent / "keys"
    (shutil.copytree if keys.is_dir() else shutil.copy2)(keys, directory / "keys")
    if not backend.is_s3:
        (directory / "data").symlink_to(server.root)
    return start_server(directory, env=backend.server_env())


@pytest.mark.parametrize("backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)],
                         indirect=True)
def test_rotate_rewraps_every_version(s3, versioned, backend, server, tmp_path):
    """``encproxy rotate`` on a versioned bucket through an S3 backend, which rewrites no
    version in place (docs/OPERATIONS.md §6): current versions are re-wrapped by a self-copy
    (a new version: same bytes, ETag, tags); every older version, and each version a copy
    pushed down, gets a rewrap record, its envelope untouched; ``--delete-superseded``
    deletes the pushed-down duplicates.  Then the old master-key version is retired and a
    fresh server reads every version, whole and ranged, and lists plaintext sizes; a
    rewritten record is an integrity failure; a version deleted by id takes its record."""
    run = rotate_cli(backend, server)
    key_id = "rotv-" + versioned[-12:]
    run("keys", "create", key_id)
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    bodies, a, b, c = rotation_versions(s3, versioned, kms, kms)
    old = (key_id, "1")
    run("keys", "rotate", key_id)

    dry = run("rotate", "--bucket", versioned, "--dry-run")
    assert summary_count(dry, "objects listed") == 6, dry      # versions, no markers
    assert summary_count(dry, "would rewrap") == 5              # a's three, b's, c's
    assert summary_count(dry, "older versions left") == 0
    assert summary_count(dry, "skipped") == 1                   # d: SSE-C
    assert rewrap_records(backend, versioned) == []

    out = run("rotate", "--bucket", versioned)
    assert summary_count(out, "rewrapped") == 5, out
    # a v1, a v2, c v1; and a v3 and b v1, which the copies of the current versions pushed down
    assert summary_count(out, "rewrap records written") == 5
    assert summary_count(out, "older versions left") == 0
    assert summary_count(out, "superseded versions deleted") == 0
    assert f"{key_id} version 2: 5" in out and f"{key_id} version 1" not in out
    assert "older version(s) keep an old wrapping" not in out
    assert len(rewrap_records(backend, versioned)) == 5

    listed = s3.list_object_versions(Bucket=versioned)
    versions = {k: [v for v in listed["Versions"] if v["Key"] == k] for k in "abcd"}
    assert [v["VersionId"] for v in versions["a"][1:]] == [r["VersionId"] for r in a[::-1]]
    assert [v["VersionId"] for v in versions["b"][1:]] == [b["VersionId"]]
    new_a, new_b = versions["a"][0]["VersionId"], versions["b"][0]["VersionId"]
    assert wrapping(s3, backend, server.root, versioned, "a", new_a)[1] == "2"
    assert wrapping(s3, backend, server.root, versioned, "b", new_b)[1] == "2"
    for r in (*a, b):            # the older versions' own envelopes are never rewritten
        assert wrapping(s3, backend, server.root, versioned, "a" if r is not b else "b",
                        r["VersionId"]) == old
    got = s3.get_object(Bucket=versioned, Key="a")
    assert got["Body"].read() == bodies[2] and got["ETag"] == a[2]["ETag"]
    assert got["VersionId"] == new_a and got["Metadata"] == {"m": "2"}
    assert s3.get_object_tagging(Bucket=versioned, Key="a")["TagSet"] == [
        {"Key": "t", "Value": "2"}]
    assert failure(s3.head_object, Bucket=versioned, Key="c")[0] == 404   # still deleted

    again = run("rotate", "--bucket", versioned)
    assert summary_count(again, "already current") == 7, again   # and d skipped
    assert summary_count(again, "rewrapped") == 0
    assert summary_count(again, "rewrap records written") == 0

    # --delete-superseded removes the duplicates the copies pushed down (a v3, b v1) and
    # their records, and only those: older versions with other bodies stay.
    out = run("rotate", "--bucket", versioned, "--delete-superseded")
    assert summary_count(out, "superseded versions deleted") == 2, out
    assert summary_count(out, "already current") == 5
    assert summary_count(out, "older versions left") == 0
    remaining = {(v["Key"], v["VersionId"]) for v in s3.list_object_versions(
        Bucket=versioned)["Versions"]}
    assert ("a", a[2]["VersionId"]) not in remaining and ("b", b["VersionId"]) not in remaining
    assert {("a", a[0]["VersionId"]), ("a", a[1]["VersionId"]), ("a", new_a), ("b", new_b),
            ("c", c["VersionId"])} <= remaining
    assert len(rewrap_records(backend, versioned)) == 3       # a v1, a v2, c v1

    # Nothing needs version 1 of the key any more: retired, a fresh server reads it all.
    run("keys", "retire", key_id, "1")
    fresh = fresh_server(server, backend, tmp_path / "after-retire")
    try:
        client = make_client(fresh.endpoint)
        for r, body in zip(a[:2], bodies[:2], strict=True):
            got = client.get_object(Bucket=versioned, Key="a", VersionId=r["VersionId"])
            assert got["Body"].read() == body and got["ETag"] == r["ETag"]
            assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", key_id)
        ranged = client.get_object(Bucket=versioned, Key="a", VersionId=a[1]["VersionId"],
                                   Range=f"bytes={PART - 5}-{PART + 5}")
        assert ranged["Body"].read() == bodies[1][PART - 5:PART + 6]
        assert client.get_object(Bucket=versioned, Key="c", VersionId=c["VersionId"]
                                 )["Body"].read() == b"deleted"
        sizes = {(v["Key"], v["VersionId"]): v["Size"]
                 for v in client.list_object_versions(Bucket=versioned)["Versions"]}
        assert sizes[("a", a[0]["VersionId"])] == len(bodies[0])
        assert sizes[("a", a[1]["VersionId"])] == len(bodies[1])
        assert sizes[("c", c["VersionId"])] == len(b"deleted")
        copied = client.copy_object(Bucket=versioned, Key="from-old", CopySource={
            "Bucket": versioned, "Key": "a", "VersionId": a[0]["VersionId"]})
        assert copied["CopyObjectResult"]["ETag"] == a[0]["ETag"]
        assert client.get_object(Bucket=versioned, Key="from-old")["Body"].read() == bodies[0]

        # The backend rewrites c's record: an integrity failure, never other bytes.
        internal = backend.client()
        name = next(n for n in rewrap_records(backend, versioned)
                    if b'"c"' in internal.get_object(Bucket=INTERNAL_BUCKET, Key=n)[
                        "Body"].read())
        stored = internal.get_object(Bucket=INTERNAL_BUCKET, Key=name)["Body"].read()
        internal.put_object(Bucket=INTERNAL_BUCKET, Key=name,
                            Body=stored.replace(b'"key": "c"', b'"key": "a"'))
        assert failure(client.get_object, Bucket=versioned, Key="c",
                       VersionId=c["VersionId"]) == (500, "InternalError")
        internal.put_object(Bucket=INTERNAL_BUCKET, Key=name, Body=stored)
        assert client.get_object(Bucket=versioned, Key="c", VersionId=c["VersionId"]
                                 )["Body"].read() == b"deleted"
        internal.delete_object(Bucket=INTERNAL_BUCKET, Key=name)   # deleted: unreadable
        assert failure(client.get_object, Bucket=versioned, Key="c",
                       VersionId=c["VersionId"])[0] == 400       # KMS.NotFoundException
        internal.put_object(Bucket=INTERNAL_BUCKET, Key=name, Body=stored)

        # A version deleted by id through encproxy takes its record with it; one deleted
        # behind encproxy's back is collected by the next rotate.
        client.delete_object(Bucket=versioned, Key="a", VersionId=a[0]["VersionId"])
        assert len(rewrap_records(backend, versioned)) == 2
        backend.client().delete_object(Bucket=versioned, Key="c", VersionId=c["VersionId"])
        out = run("rotate", "--bucket", versioned)
        assert summary_count(out, "rewrap records of deleted versions removed") == 1, out
        assert len(rewrap_records(backend, versioned)) == 1   # a v2's
    finally:
        fresh.stop()


def test_a_suspended_bucket_keeps_older_versions(s3, versioned, quirks):
    """Versioning Suspended: a write replaces the key's null version only; versions with
    ids stay, readable by id (what rotate's handling of a suspended bucket relies on)."""
    kept = s3.put_object(Bucket=versioned, Key="k", Body=b"with an id")["VersionId"]
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=versioned, Key="k", Body=b"null 1")
    s3.put_object(Bucket=versioned, Key="k", Body=b"null 2")
    with quirks.breaks("suspended-put-drops-versions"):
        listed = s3.list_object_versions(Bucket=versioned)["Versions"]
        assert sorted((v["VersionId"], v["Size"]) for v in listed) == \
            sorted([("null", 6), (kept, 10)])
        assert s3.get_object(Bucket=versioned, Key="k",
                             VersionId=kept)["Body"].read() == b"with an id"
    with quirks.breaks("versions-null-listed-last"):   # newest first
        assert [(v["VersionId"], v["Size"]) for v in listed] == [("null", 6), (kept, 10)]


def test_rotate_a_suspended_bucket(s3, versioned, backend, server, quirks):
    """Versioning Suspended: the current ``null`` version is re-wrapped in place (the
    copy replaces it: nothing left behind), a multipart one too; an older version with an
    id is re-wrapped in a rewrap record through an S3 backend (its envelope unchanged),
    and in place on the file store."""
    in_place = not backend.is_s3
    run = rotate_cli(backend, server)
    key_id = "rots-" + versioned[-12:]
    run("keys", "create", key_id)
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    kept = s3.put_object(Bucket=versioned, Key="n", Body=b"with an id", **kms)["VersionId"]
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Suspended"})
    null = s3.put_object(Bucket=versioned, Key="n", Body=b"null version", **kms)
    with quirks.breaks("null-version-head"):   # what rotate looks at a version with
        assert s3.head_object(Bucket=versioned, Key="n",
                              VersionId="null")["ContentLength"] == len(b"null version")
    run("keys", "rotate", key_id)
    out = run("rotate", "--bucket", versioned)
    assert summary_count(out, "rewrapped") == 2, out
    assert summary_count(out, "older versions left") == 0
    listed = s3.list_object_versions(Bucket=versioned)["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted(["null", kept])
    assert wrapping(s3, backend, server.root, versioned, "n", "null") == (key_id, "2")
    assert wrapping(s3, backend, server.root, versioned, "n", kept) == (
        key_id, "2" if in_place else "1")
    assert s3.get_object(Bucket=versioned, Key="n",
                         VersionId=kept)["Body"].read() == b"with an id"
    got = s3.get_object(Bucket=versioned, Key="n")
    assert got["Body"].read() == b"null version" and got["ETag"] == null["ETag"]

    parts = [os.urandom(PART), os.urandom(2222)]
    done = put_multipart(s3, versioned, "m", parts, **kms)
    run("keys", "rotate", key_id)
    with quirks.breaks("multipart-acl-500"):
        out = run("rotate", "--bucket", versioned)
        # n (null), m (null) and the version with an id
        assert summary_count(out, "rewrapped") == 3, out
        assert wrapping(s3, backend, server.root, versioned, "m", "null") == (key_id, "3")
        got = s3.get_object(Bucket=versioned, Key="m", Range=f"bytes={PART - 5}-{PART + 5}")
        assert got["Body"].read() == b"".join(parts)[PART - 5:PART + 6]
        assert got["ETag"] == done["ETag"]
        assert [v["VersionId"] for v in s3.list_object_versions(
            Bucket=versioned, Prefix="m")["Versions"]] == ["null"]
    with quirks.breaks("versions-null-listed-last"):   # newest first
        assert [v["VersionId"] for v in listed] == ["null", kept]


@pytest.mark.parametrize("backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)],
                         indirect=True)
def test_update_object_encryption_of_versions(s3, versioned, backend, server):
    """UpdateObjectEncryption with a versionId: the current version's is updated (as a
    new version, the old one keeping its key: docs/ENCRYPTION.md); a non-current one is
    refused with 501 (no S3 backend rewrites a version in place), and nothing is written.
    The file store updates any version in place: test_update_object_encryption_in_place."""
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"first" * 1000)
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"second" * 1000)
    request = {"Bucket": versioned, "Key": "k", "ObjectEncryption": {
        "SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:111122223333:key/test-key"}}}
    assert failure(s3.update_object_encryption, VersionId=first["VersionId"],
                   **request) == (501, "NotImplemented")
    assert len(s3.list_object_versions(Bucket=versioned)["Versions"]) == 2
    s3.update_object_encryption(VersionId=second["VersionId"], **request)
    listed = s3.list_object_versions(Bucket=versioned)["Versions"]
    assert [v["VersionId"] for v in listed[1:]] == [second["VersionId"], first["VersionId"]]
    got = s3.get_object(Bucket=versioned, Key="k")
    assert got["Body"].read() == b"second" * 1000 and got["ETag"] == second["ETag"]
    assert got["ServerSideEncryption"] == "aws:kms" and got["VersionId"] == listed[0]["VersionId"]
    kept = s3.get_object(Bucket=versioned, Key="k", VersionId=second["VersionId"])
    assert kept["ServerSideEncryption"] == "AES256" and kept["Body"].read() == b"second" * 1000
    assert wrapping(s3, backend, server.root, versioned, "k", listed[0]["VersionId"])[0] == \
        "test-key"


# -- the file store: every version re-wrapped in place -----------------------------------
def version_facts(s3: Any, bucket: str) -> list[tuple[Any, ...]]:
    """What a version listing says of every version and delete marker."""
    listed = s3.list_object_versions(Bucket=bucket)
    return [(v["Key"], v["VersionId"], v.get("ETag"), v.get("Size"), v["LastModified"],
             v["IsLatest"]) for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_rotate_rewraps_every_version_in_place(s3, versioned, backend, server, tmp_path):
    """The file store: ``encproxy rotate`` re-wraps every version in place, current or
    not (docs/OPERATIONS.md §6): no new version; version ids, ETags, sizes, LastModified and
    tags unchanged; every version reads back, whole and ranged; nothing is left under the
    old master-key version, which ``keys retire`` then takes without any version becoming
    unreadable (a fresh server reads them all)."""
    run = rotate_cli(backend, server)
    key_id = "rotp-" + versioned[-12:]
    run("keys", "create", key_id)
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    bodies, a, b, c = rotation_versions(s3, versioned, kms, {})   # b: SSE-S3 default
    before = version_facts(s3, versioned)
    run("keys", "rotate", key_id)

    dry = run("rotate", "--bucket", versioned, "--dry-run")
    assert summary_count(dry, "objects listed") == 6, dry
    assert summary_count(dry, "would rewrap") == 4              # a's three, c's
    assert summary_count(dry, "already current") == 1           # b: the default key's
    assert summary_count(dry, "older versions left") == 0
    assert summary_count(dry, "skipped") == 1                   # d: SSE-C
    assert version_facts(s3, versioned) == before
    assert wrapping(s3, backend, server.root, versioned, "a", a[0]["VersionId"]) == (
        key_id, "1")

    out = run("rotate", "--bucket", versioned)
    assert summary_count(out, "rewrapped") == 4, out
    assert summary_count(out, "older versions left") == 0
    assert f"{key_id} version 1" not in out and f"{key_id} version 2: 4" in out
    assert "older version(s) keep an old wrapping" not in out
    assert version_facts(s3, versioned) == before               # no version made or moved
    for key, r in [*(("a", r) for r in a), ("c", c)]:
        assert wrapping(s3, backend, server.root, versioned, key, r["VersionId"]) == (
            key_id, "2")
    for r, body in zip(a, bodies, strict=True):
        got = s3.get_object(Bucket=versioned, Key="a", VersionId=r["VersionId"])
        assert got["Body"].read() == body and got["ETag"] == r["ETag"]
        assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", key_id)
    ranged = s3.get_object(Bucket=versioned, Key="a", VersionId=a[1]["VersionId"],
                           Range=f"bytes={PART - 5}-{PART + 5}")
    assert ranged["Body"].read() == bodies[1][PART - 5:PART + 6]
    assert s3.get_object_tagging(Bucket=versioned, Key="a", VersionId=a[0]["VersionId"]
                                 )["TagSet"] == [{"Key": "t", "Value": "0"}]
    current = s3.get_object(Bucket=versioned, Key="a")
    assert current["VersionId"] == a[2]["VersionId"] and current["Metadata"] == {"m": "2"}
    assert s3.get_object(Bucket=versioned, Key="b")["Body"].read() == b"only version"
    assert failure(s3.head_object, Bucket=versioned, Key="c")[0] == 404   # still deleted
    again = run("rotate", "--bucket", versioned)
    assert summary_count(again, "already current") == 5 and summary_count(again, "rewrapped") == 0

    # Nothing uses version 1 of the key any more: retired, every version still reads.
    run("keys", "retire", key_id, "1")
    fresh = fresh_server(server, backend, tmp_path / "after-retire")
    try:
        client = make_client(fresh.endpoint)
        for r, body in zip(a, bodies, strict=True):
            assert client.get_object(Bucket=versioned, Key="a", VersionId=r["VersionId"]
                                     )["Body"].read() == body
        assert client.get_object(Bucket=versioned, Key="c", VersionId=c["VersionId"]
                                 )["Body"].read() == b"deleted"
    finally:
        fresh.stop()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_update_object_encryption_in_place(s3, versioned, backend, server):
    """The file store: UpdateObjectEncryption of any version, current or not, rewrites that
    version in place, as AWS does: no new version, the same version id, ETag and
    LastModified; the other versions keep their encryption."""
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"first" * 1000)
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"second" * 1000)
    before = version_facts(s3, versioned)
    request = {"Bucket": versioned, "Key": "k", "ObjectEncryption": {
        "SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:111122223333:key/other-key"}}}
    s3.update_object_encryption(VersionId=first["VersionId"], **request)
    assert version_facts(s3, versioned) == before
    old = s3.get_object(Bucket=versioned, Key="k", VersionId=first["VersionId"])
    assert old["Body"].read() == b"first" * 1000 and old["ETag"] == first["ETag"]
    assert (old["ServerSideEncryption"], old["SSEKMSKeyId"]) == ("aws:kms", "other-key")
    assert wrapping(s3, backend, server.root, versioned, "k", first["VersionId"])[0] == \
        "other-key"
    assert s3.head_object(Bucket=versioned, Key="k")["ServerSideEncryption"] == "AES256"

    s3.update_object_encryption(**request)                  # the current version, unnamed
    assert version_facts(s3, versioned) == before
    got = s3.get_object(Bucket=versioned, Key="k")
    assert got["VersionId"] == second["VersionId"] and got["ETag"] == second["ETag"]
    assert got["Body"].read() == b"second" * 1000 and got["ServerSideEncryption"] == "aws:kms"
