"""Listings after a restart read the facts encproxy kept with each object (FORMAT.md §17:
records in the internal bucket, or the embedded store's index): plaintext sizes and
client ETags are right
for every kind of object and awkward key, page by page, and the records go with their
bucket.  On the file store, Ceph RGW and SeaweedFS (whose listing order is its own).
Records are written after the answer; a server stopped (as gunicorn stops its workers)
writes what it had queued first, which the counts after each stop check.
(That the restarted listing looks nothing up is shown in-process, where the backend
requests can be counted: tests/unit/test_fact_records.py.)
"""
from __future__ import annotations

import hashlib
import io
import os
import time
import uuid

from boto3.s3.transfer import TransferConfig
from support.backends import Stored
from support.clients import make_client
from support.server import start_server

SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
KEYS = ["plain-looking", "a b", "a!b", 'a"b', "a/b", "a-b", "a/b/c", "ünïcode/ключ",
        "z" * 150 + "/" + "z" * 149]
MiB = 1 << 20


def listing(s3, bucket: str, **extra) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **extra):
        out.update({o["Key"]: (o["Size"], o["ETag"]) for o in page.get("Contents", [])})
    return out


def write_objects(backend, tmp_path):
    """A bucket with default SSE-S3 and one without, written through a server that is then
    stopped; (backend root, env, encrypted bucket, plain bucket, expected listing)."""
    env = backend.server_env()
    server = start_server(tmp_path / "srv", env=env)
    enc, plain = "facts-" + uuid.uuid4().hex[:8], "facts-plain-" + uuid.uuid4().hex[:8]
    expected: dict[str, dict[str, tuple[int, str]]] = {enc: {}, plain: {}}
    try:
        s3 = make_client(server.endpoint)
        for bucket in (enc, plain):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_encryption(Bucket=enc, ServerSideEncryptionConfiguration=SSE_S3)
        for i, key in enumerate(KEYS):
            for bucket in (enc, plain):
                body = os.urandom(1000 + 17 * i)
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                expected[bucket][key] = (len(body), '"' + hashlib.md5(body).hexdigest() + '"')
        big = os.urandom(6 * MiB)
        s3.upload_fileobj(io.BytesIO(big), enc, "multi", Config=TransferConfig(
            multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
        head = s3.head_object(Bucket=enc, Key="multi")
        assert head["ETag"].endswith('-2"')
        expected[enc]["multi"] = (len(big), head["ETag"])
        s3.copy_object(Bucket=enc, Key="copy", CopySource={"Bucket": enc, "Key": "a b"})
        expected[enc]["copy"] = expected[enc]["a b"]
        assert listing(s3, enc) == expected[enc]
    finally:
        server.stop()
    return server.root, env, enc, plain, expected


def test_a_restarted_server_lists_from_the_records(backend, tmp_path):
    root, env, enc, plain, expected = write_objects(backend, tmp_path)
    stored = Stored(backend, root)
    # The embedded store keeps a PutObject's facts in its index: records are for the
    # multipart object and the copy.  Through an S3 backend every encrypted write has one,
    # and unencrypted objects get theirs from the first listing that meets them.
    recorded = stored.names("encproxy-internal", f"facts/{enc}/")
    assert len(recorded) == (len(expected[enc]) if backend.is_s3 else 2)
    # A client ETag of an encrypted object is its plaintext MD5: sealed in every name.
    for _, etag in expected[enc].values():
        assert not any(etag.strip('"').split("-")[0] in name for name in recorded)
    assert stored.names("encproxy-internal", f"facts/{plain}/") == []
    # Restarted: pages of three (each page reads its own range of records), a delimiter,
    # the unencrypted bucket; then DeleteBucket takes the records along.
    server = start_server(tmp_path / "srv", env=env)
    try:
        s3 = make_client(server.endpoint)
        assert listing(s3, enc, PaginationConfig={"PageSize": 3}) == expected[enc]
        rolled = s3.list_objects_v2(Bucket=enc, Delimiter="/")
        assert {o["Key"]: (o["Size"], o["ETag"]) for o in rolled["Contents"]} == {
            k: v for k, v in expected[enc].items() if "/" not in k}
        assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == [
            "a/", "z" * 150 + "/", "ünïcode/"]
        assert listing(s3, enc) == expected[enc]
        assert listing(s3, plain) == expected[plain]
        # Records are written after the answer (background.py): soon, not at once.
        wanted = len(expected[plain]) if backend.is_s3 else 0
        deadline = time.monotonic() + 10
        while len(stored.names("encproxy-internal", f"facts/{plain}/")) != wanted \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(stored.names("encproxy-internal", f"facts/{plain}/")) == wanted
        for key in expected[enc]:
            s3.delete_object(Bucket=enc, Key=key)
        assert stored.names("encproxy-internal", f"facts/{enc}/")   # stale, until ...
        s3.delete_bucket(Bucket=enc)
        assert stored.names("encproxy-internal", f"facts/{enc}/") == []
    finally:
        server.stop()
