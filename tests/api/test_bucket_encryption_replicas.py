"""Bucket encryption configurations across restarts and across encproxy processes."""
from __future__ import annotations

import time

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
def two_servers(tmp_path):
    env = {"ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": str(BOUND)}
    first = start_server(tmp_path / "a", env=env)
    shared = {**env, "ENCPROXY_BACKEND_ROOT": str(first.root),
              "ENCPROXY_KEYS_KEYRING": str(tmp_path / "a" / "keys")}
    second = start_server(tmp_path / "b", env=shared)
    yield first, second
    second.stop()
    first.stop()


def test_two_processes_share_configurations_within_the_bound(two_servers):
    first, second = two_servers
    a, b = make_client(first.endpoint), make_client(second.endpoint)
    a.create_bucket(Bucket="shared")
    for _ in range(4):  # warm every worker's cache of "not configured"
        assert not configured(b, "shared")
    a.put_bucket_encryption(Bucket="shared", ServerSideEncryptionConfiguration=SSE_S3)
    # Each request may land on any worker; all of them must converge within the bound.
    seen_within(lambda: all(configured(b, "shared") for _ in range(4)), True, BOUND + 1.5)
    b.delete_bucket_encryption(Bucket="shared")
    seen_within(lambda: any(configured(a, "shared") for _ in range(4)), False, BOUND + 1.5)
    seen_within(lambda: all(not configured(a, "shared") for _ in range(4)), True, BOUND + 1.5)


def test_configuration_survives_a_restart(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="durable")
        s3.put_bucket_encryption(Bucket="durable", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                   "KMSMasterKeyID": "alias/test-key"},
            "BucketKeyEnabled": True}]})
    finally:
        server.stop()
    server = start_server(tmp_path / "srv")
    try:
        s3 = make_client(server.endpoint)
        rule = s3.get_bucket_encryption(Bucket="durable")["ServerSideEncryptionConfiguration"][
            "Rules"][0]
        assert rule == {"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}, "BucketKeyEnabled": True}
    finally:
        server.stop()
