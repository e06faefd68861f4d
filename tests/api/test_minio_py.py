"""The MinIO Python SDK (minio-py) against encproxy, as applications drive it.

minio-py signs and streams its own way (SigV4 with the payload's SHA-256 in the header,
its own multipart cut-over and part sizes, ranged reads by offset and length), so it is a
client of its own, beside boto3, the aws CLI and the Node SDK.  Every object is written
into a bucket with default encryption (SSE-S3, set through minio-py) and read back whole
and ranged; contents are checked by hash, listed sizes and ETags against the plaintext,
and what the backend holds must not contain the plaintext.  The versioning flows of
minio-py's own functional tests (set/get versioning, stat/get/remove by version id,
listings with versions) and object tags run on versioned encrypted buckets.
"""
from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Tags
from minio.error import S3Error
from minio.sseconfig import Rule, SSEConfig
from minio.versioningconfig import SUSPENDED, VersioningConfig

from support.server import ACCESS_KEY, SECRET_KEY

MiB = 1 << 20
MARKER = b"MINIO-PY-PLAINTEXT-MARKER"
# Sizes users send: empty, one byte, a small file, a large single PUT, and objects that
# minio-py uploads in 5 MiB parts (a short last part, and parts that end exactly).
SIZES = [0, 1, 4096, 20 * MiB]
MULTIPART_SIZES = [12 * MiB + 12345, 10 * MiB]


def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(1000)
    return (unit * (size // len(unit) + 1))[:size]


def md5_etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(data: bytes, part: int) -> str:
    md5s = b"".join(hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part))
    return f"{hashlib.md5(md5s).hexdigest()}-{(len(data) + part - 1) // part}"


@pytest.fixture(scope="module")
def mc(server: Any) -> Minio:
    host = server.endpoint.split("://", 1)[1]
    return Minio(host, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                 region="us-east-1")


def read_all(mc: Minio, bucket: str, key: str, **kwargs: Any) -> bytes:
    response = mc.get_object(bucket, key, **kwargs)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


@pytest.fixture
def encrypted(mc: Minio, bucket: str) -> str:
    mc.set_bucket_encryption(bucket, SSEConfig(Rule.new_sse_s3_rule()))
    rule = mc.get_bucket_encryption(bucket).rule
    assert rule is not None and rule.sse_algorithm == "AES256"
    return bucket


@pytest.fixture
def versioned(mc: Minio) -> Iterator[str]:
    """A versioned bucket with default encryption; every version removed afterwards."""
    name = "minio-" + uuid.uuid4().hex[:12]
    mc.make_bucket(name)
    mc.set_bucket_encryption(name, SSEConfig(Rule.new_sse_s3_rule()))
    yield name
    for obj in mc.list_objects(name, recursive=True, include_version=True):
        mc.remove_object(name, obj.object_name, version_id=obj.version_id)
    mc.remove_bucket(name)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
def test_put_get_stat_and_list(mc: Minio, stored: Any, encrypted: str, size: int) -> None:
    data = marked(size)
    key = f"dir/obj-{size}.bin"
    # part_size above the object: one PutObject, whatever the size.
    written = mc.put_object(encrypted, key, io.BytesIO(data), len(data), part_size=64 * MiB)
    assert written.etag == md5_etag(data)
    assert read_all(mc, encrypted, key) == data
    if size > 1:
        assert read_all(mc, encrypted, key, offset=1, length=size // 2) == data[1:1 + size // 2]
    stat = mc.stat_object(encrypted, key)
    assert (stat.size, stat.etag) == (size, md5_etag(data))
    listed = list(mc.list_objects(encrypted, prefix="dir/", recursive=True))
    assert [(o.object_name, o.size, o.etag) for o in listed] == [(key, size, md5_etag(data))]
    if size >= len(MARKER):
        assert MARKER not in stored.read(encrypted, key).body


@pytest.mark.parametrize("size", MULTIPART_SIZES, ids=lambda s: f"{s}B")
def test_multipart_put_and_fput_fget(mc: Minio, stored: Any, encrypted: str, tmp_path: Path,
                                     size: int) -> None:
    data = marked(size)
    src, out = tmp_path / "src.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    written = mc.fput_object(encrypted, "big.bin", str(src), part_size=5 * MiB)
    assert written.etag == multipart_etag(data, 5 * MiB)
    mc.fget_object(encrypted, "big.bin", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    # A stream of unknown length: minio-py cuts it into parts itself.
    mc.put_object(encrypted, "stream.bin", io.BytesIO(data), -1, part_size=5 * MiB)
    assert read_all(mc, encrypted, "stream.bin") == data
    tail = read_all(mc, encrypted, "stream.bin", offset=5 * MiB - 10, length=20)
    assert tail == data[5 * MiB - 10:5 * MiB + 10]
    sizes = {o.object_name: o.size for o in mc.list_objects(encrypted, recursive=True)}
    assert sizes == {"big.bin": size, "stream.bin": size}
    assert mc.stat_object(encrypted, "big.bin").size == size
    assert MARKER not in stored.read(encrypted, "big.bin").body


def test_versions_by_id(mc: Minio, versioned: str) -> None:
    """minio-py's versioning flow: enable, write twice, stat/get/remove by version id."""
    mc.set_bucket_versioning(versioned, VersioningConfig(ENABLED))
    assert mc.get_bucket_versioning(versioned).status == ENABLED
    first, second = marked(70_000), marked(5000)
    v1 = mc.put_object(versioned, "doc", io.BytesIO(first), len(first)).version_id
    v2 = mc.put_object(versioned, "doc", io.BytesIO(second), len(second)).version_id
    assert v1 and v2 and v1 != v2
    for version, data in ((v1, first), (v2, second)):
        stat = mc.stat_object(versioned, "doc", version_id=version)
        assert (stat.version_id, stat.size, stat.etag) == (version, len(data), md5_etag(data))
        assert read_all(mc, versioned, "doc", version_id=version) == data
        assert read_all(mc, versioned, "doc", version_id=version, offset=3, length=50) == \
            data[3:53]
    assert read_all(mc, versioned, "doc") == second
    listed = [(o.version_id, o.size, o.etag, o.is_latest)
              for o in mc.list_objects(versioned, include_version=True)]
    assert sorted(listed) == sorted([(v1, len(first), md5_etag(first), "false"),
                                     (v2, len(second), md5_etag(second), "true")])
    mc.remove_object(versioned, "doc", version_id=v2)
    assert read_all(mc, versioned, "doc") == first   # the older version is current again
    with pytest.raises(S3Error) as gone:
        mc.stat_object(versioned, "doc", version_id=v2)
    assert gone.value.code in ("NoSuchVersion", "NoSuchKey")


def test_delete_marker_and_suspension(mc: Minio, versioned: str) -> None:
    mc.set_bucket_versioning(versioned, VersioningConfig(ENABLED))
    data = marked(3000)
    v1 = mc.put_object(versioned, "k", io.BytesIO(data), len(data)).version_id
    mc.remove_object(versioned, "k")   # a delete marker on top
    with pytest.raises(S3Error) as hidden:
        mc.stat_object(versioned, "k")
    assert hidden.value.code == "NoSuchKey"
    markers = [o for o in mc.list_objects(versioned, include_version=True)
               if o.is_delete_marker]
    assert len(markers) == 1
    assert read_all(mc, versioned, "k", version_id=v1) == data
    mc.set_bucket_versioning(versioned, VersioningConfig(SUSPENDED))
    assert mc.get_bucket_versioning(versioned).status == SUSPENDED
    other = marked(100)
    mc.put_object(versioned, "k", io.BytesIO(other), len(other))
    assert read_all(mc, versioned, "k") == other
    assert mc.stat_object(versioned, "k").version_id in (None, "null")


def test_object_tags(mc: Minio, encrypted: str) -> None:
    data = marked(2048)
    tags = Tags.new_object_tags()
    tags["team"] = "storage"
    tags["class"] = "backup"
    mc.put_object(encrypted, "tagged", io.BytesIO(data), len(data), tags=tags)
    assert dict(mc.get_object_tags(encrypted, "tagged") or {}) == {"team": "storage",
                                                                    "class": "backup"}
    replaced = Tags.new_object_tags()
    replaced["team"] = "other"
    mc.set_object_tags(encrypted, "tagged", replaced)
    assert dict(mc.get_object_tags(encrypted, "tagged") or {}) == {"team": "other"}
    mc.delete_object_tags(encrypted, "tagged")
    assert not mc.get_object_tags(encrypted, "tagged")
    assert read_all(mc, encrypted, "tagged") == data
