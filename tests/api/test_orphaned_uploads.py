"""What encproxy keeps in its internal bucket for multipart uploads, through the real server:
DeleteBucket with open uploads (S3 deletes them with the bucket, and encproxy their
records and held copies), AbortMultipartUpload, and ``encproxy uploads orphans`` on the
state an older encproxy left (docs/OPERATIONS.md, "Orphaned upload state").

A server of its own per backend, with an internal bucket of its own (on S3 backends), so
that the command sees only this module's state. The internal bucket is read directly.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.clients import make_client
from support.server import start_server

from encproxy.wsgi.encryption.upload_store import upload_location

ENCPROXY = str(Path(sys.executable).with_name("encproxy"))
INTERNAL = "encproxy-orphans-internal"
SSE = {"ServerSideEncryption": "AES256"}


class Env:
    def __init__(self, backend, server, env: dict[str, str]) -> None:
        self.backend = backend
        self.server = server
        self.env = env
        self.internal = INTERNAL if backend.is_s3 else "encproxy-internal"
        self.client = backend.client() if backend.is_s3 else None
        self.s3 = make_client(server.endpoint)

    def internal_names(self, prefix: str) -> list[str]:
        if self.client is None:
            from encproxy.filestore.store import FileStore
            names: list[str] = []
            store = FileStore(self.server.root)
            marker = None
            while True:
                page = store.list_objects(self.internal, prefix=prefix, start_after=marker)
                names += [r.key for r in page.contents]
                if not page.is_truncated:
                    return names
                marker = page.next_marker
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.internal, Prefix=prefix):
            names += [o["Key"] for o in page.get("Contents", [])]
        return names

    def abort_behind_encproxy(self, bucket: str, key: str, upload_id: str) -> None:
        """What an older encproxy's Abort, or a client of the backend itself, did."""
        if self.client is None:
            from encproxy.filestore.store import FileStore
            FileStore(self.server.root).abort_upload(bucket, key, upload_id)
        else:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    def orphans(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ENCPROXY, "uploads", "orphans", *args, "--config",
                               str(self.server.config)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **self.env})


@pytest.fixture(scope="module")
def env(backend, tmp_path_factory):
    options = {"internal_bucket": INTERNAL} if backend.is_s3 else {}
    server_env = backend.server_env(**options)
    server = start_server(tmp_path_factory.mktemp("orphans"), env=server_env)
    yield Env(backend, server, server_env)
    server.stop()


def new_bucket(s3) -> str:
    name = "orph-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    return name


def open_upload(s3, bucket: str, key: str, attempts: int = 2) -> str:
    """An SSE-S3 upload whose part 1 (100 kB, so terminal) was uploaded ``attempts`` times:
    a held copy, a held reference and a part record per attempt (the bytes differ)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **SSE)["UploadId"]
    for attempt in range(attempts):
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                       Body=os.urandom(100_000 + attempt))
    return upload_id


def kinds(names: list[str], where: str) -> list[str]:
    return sorted(n[len(where):].split("/", 1)[0] for n in names)


def test_delete_bucket_with_open_uploads_leaves_nothing_behind(env: Env):
    s3 = env.s3
    bucket = new_bucket(s3)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    uploads = {f"k{i}": open_upload(s3, bucket, f"k{i}") for i in range(3)}
    where = {k: upload_location(bucket, k, u) for k, u in uploads.items()}
    for key, location in where.items():
        assert kinds(env.internal_names(location), location) == [
            "held", "held", "held-ref", "held-ref", "part", "part", "record"], key
    assert env.internal_names("bucket-encryption/" + bucket) != []

    s3.delete_bucket(Bucket=bucket)     # as on AWS: open uploads do not keep a bucket

    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket=bucket)
    assert info.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
    for location in where.values():
        assert env.internal_names(location) == []
    assert env.internal_names("bucket-encryption/" + bucket) == []


def test_delete_bucket_refused_keeps_its_uploads(env: Env):
    s3 = env.s3
    bucket = new_bucket(s3)
    upload_id = open_upload(s3, bucket, "k", attempts=1)
    s3.put_object(Bucket=bucket, Key="object", Body=b"x")
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "BucketNotEmpty"
    location = upload_location(bucket, "k", upload_id)
    assert len(env.internal_names(location)) == 4
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert env.internal_names(location) == []
    s3.delete_object(Bucket=bucket, Key="object")
    s3.delete_bucket(Bucket=bucket)


def test_abort_removes_every_held_copy(env: Env):
    s3 = env.s3
    bucket = new_bucket(s3)
    upload_id = open_upload(s3, bucket, "k", attempts=3)
    location = upload_location(bucket, "k", upload_id)
    assert kinds(env.internal_names(location), location) == ["held"] * 3 + ["held-ref"] * 3 \
        + ["part"] * 3 + ["record"]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert env.internal_names(location) == []
    s3.delete_bucket(Bucket=bucket)


def summary(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_orphans_command_on_state_an_older_encproxy_left(env: Env):
    s3 = env.s3
    bucket = new_bucket(s3)
    live = open_upload(s3, bucket, "live")
    gone = open_upload(s3, bucket, "gone")
    env.abort_behind_encproxy(bucket, "gone", gone)
    live_at = upload_location(bucket, "live", live)
    gone_at = upload_location(bucket, "gone", gone)
    live_state = env.internal_names(live_at)
    assert len(live_state) == 7 and len(env.internal_names(gone_at)) == 7

    listed = env.orphans()
    assert listed.returncode == 1, listed.stdout + listed.stderr    # orphans found
    assert f"orphan {gone_at}" in listed.stdout and live_at not in listed.stdout
    assert summary(listed.stdout).startswith("found 1, removed 0"), listed.stdout
    assert len(env.internal_names(gone_at)) == 7                    # a listing deletes nothing

    removed = env.orphans("--delete")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert summary(removed.stdout) == "found 1, removed 1, failed 0", removed.stdout
    assert env.internal_names(gone_at) == []
    assert env.internal_names(live_at) == live_state                # an upload that exists

    again = env.orphans()
    assert again.returncode == 0 and summary(again.stdout) == "found 0, removed 0, failed 0"
    # The live upload still completes, and reads back.
    body = os.urandom(1000)
    etag = s3.upload_part(Bucket=bucket, Key="live", UploadId=live, PartNumber=1,
                          Body=body)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="live", UploadId=live, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="live")["Body"].read() == body
    assert env.internal_names(live_at) == []
    s3.delete_object(Bucket=bucket, Key="live")
    s3.delete_bucket(Bucket=bucket)
