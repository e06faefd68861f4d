"""Fixtures shared by the whole suite: a real encproxy server and real clients."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from support.clients import make_client
from support.server import RunningServer, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("encproxy"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def s3(server: RunningServer):
    return make_client(server.endpoint)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    name = "test-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    yield name
    # Leave nothing behind, so that DeleteBucket's own rules stay exercised.
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)

