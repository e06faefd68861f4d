"""``[backend] addressing = virtual``: the bucket travels in the Host header.

Connections still go to the endpoint (no wildcard DNS needed); moto and Ceph RGW
(``rgw dns name = localhost``) take the bucket from ``BUCKET.localhost``.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from support.backends import Backend
from support.clients import make_client
from support.server import RunningServer, start_server

pytestmark = pytest.mark.parametrize(
    "backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)], indirect=True)


@pytest.fixture(scope="module")
def virtual_server(backend: Backend, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[RunningServer]:
    assert backend.endpoint is not None
    endpoint = f"http://localhost:{urlsplit(backend.endpoint).port}"
    server = start_server(tmp_path_factory.mktemp("virtual"),
                          env=backend.server_env(endpoint=endpoint, addressing="virtual"))
    yield server
    server.stop()


def test_virtual_addressing_round_trip(virtual_server, backend_client):
    s3 = make_client(virtual_server.endpoint)
    name = "virt-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    body = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=name, Key="dir/a b+c", Body=body, Metadata={"m": "1"})
    got = s3.get_object(Bucket=name, Key="dir/a b+c")
    assert got["Body"].read() == body and got["Metadata"] == {"m": "1"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["dir/a b+c"]
    assert backend_client.head_object(Bucket=name, Key="dir/a b+c")["ContentLength"] == \
        len(body)
    up = s3.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=name, Key="mp", UploadId=up, PartNumber=1,
                          Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=name, Key="mp")["Body"].read() == b"part"
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "dir/a b+c"}, {"Key": "mp"}]})
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in backend_client.list_buckets()["Buckets"]]
