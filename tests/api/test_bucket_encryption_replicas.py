"""Bucket encryption configurations across restarts and across encproxy processes."""
from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.server import start_server

BOUND = 2.0  # [encryption] config_cache_seconds for these servers
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def configured(s3, bucket: str) -> bool:
    try:
        s3.get_bucket_encryption(Bucket=bucket)
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ServerSideEncryptionConfigurationNotFoundError"
        return False


def seen_within(check, expected: bool, limit: float) -> float:
    """Seconds until ``check()`` returns ``expected``; fails after ``limit``."""
    started = time.monotonic()
    while check() is not expected:
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"not seen after {elapsed:.1f}s (bound {BOUND}s)"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def two_servers(backend, tmp_path):
    env = {**backend.server_env(), "ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": str(BOUND)}
    first = start_server(tmp_path / "a", env=env)
    # One backend (the same file store root, or the same S3 server) and one keyring.
    shared = {**env, "ENCPROXY_BACKEND_ROOT": str(first.root),
              "ENCPROXY_KEYS_KEYRING": str(tmp_path / "a" / "keys")}
    second = start_server(tmp_path / "b", env=shared)
    yield first, second
    second.stop()
    first.stop()


def test_two_processes_share_configurations_within_the_bound(two_servers):
    first, second = two_servers
    a, b = make_client(first.endpoint), make_client(second.endpoint)
    name = "shared-" + uuid.uuid4().hex[:8]
    a.create_bucket(Bucket=name)
    for _ in range(4):  # warm every worker's cache of "not configured"
        assert not configured(b, name)
    a.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    # Each request may land on any worker; all of them must converge within the bound.
    seen_within(lambda: all(configured(b, name) for _ in range(4)), True, BOUND + 1.5)
    b.delete_bucket_encryption(Bucket=name)
    seen_within(lambda: any(configured(a, name) for _ in range(4)), False, BOUND + 1.5)
    seen_within(lambda: all(not configured(a, name) for _ in range(4)), True, BOUND + 1.5)


def test_configuration_survives_a_restart(backend, tmp_path):
    name = "durable-" + uuid.uuid4().hex[:8]
    server = start_server(tmp_path / "srv", env=backend.server_env())
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket=name)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                   "KMSMasterKeyID": "alias/test-key"},
            "BucketKeyEnabled": True}]})
    finally:
        server.stop()
    server = start_server(tmp_path / "srv", env=backend.server_env())
    try:
        s3 = make_client(server.endpoint)
        rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"][
            "Rules"][0]
        assert rule == {"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}, "BucketKeyEnabled": True}
    finally:
        server.stop()
