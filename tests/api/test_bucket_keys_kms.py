"""SSE-KMS with S3 Bucket Keys through the real server, with the awskms provider against
moto's KMS (docs/KEYS.md, Bucket keys; FORMAT.md §16).

The KMS calls are counted by the server's own metric
(``encproxy_key_provider_calls_total{provider="awskms"}``, summed over both gunicorn
workers): 1,000 GETs of different objects in a bucket with ``BucketKeyEnabled`` cost
at most 10 calls, and reads without bucket keys cost at least one each (100 of them are
enough to show that the metric counts what reaches KMS).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from support.clients import make_client
from support.keys_services import start_moto
from support.operations import scrape, value
from support.server import RunningServer, start_server

AWS_KEY, AWS_SECRET = "AKIAENCPROXYBUCKETKEY", "encproxy-bucket-key-test-secret"
OBJECTS = 1_000
UNKEYED_OBJECTS = 100
THREADS = 16
MARKER = b"bucket-key-plaintext-marker:"
BUCKET_KEY = "BucketKeyEnabled"


@pytest.fixture(scope="module")
def kms_server(backend, tmp_path_factory) -> Iterator[tuple[RunningServer, str]]:
    moto = start_moto(tmp_path_factory.mktemp("kms"))
    try:
        kms = boto3.client("kms", endpoint_url=moto.endpoint, region_name="us-east-1",
                           aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET)
        arn = kms.create_key(Description="encproxy bucket keys")["KeyMetadata"]["Arn"]
        env = {**backend.server_env(), "ENCPROXY_KEYS_PROVIDER": "awskms",
               "ENCPROXY_KEYS_ENDPOINT": moto.endpoint, "ENCPROXY_KEYS_REGION": "us-east-1",
               "ENCPROXY_KEYS_ACCESS_KEY": AWS_KEY, "ENCPROXY_KEYS_SECRET_KEY": AWS_SECRET,
               "ENCPROXY_KEYS_DEFAULT_KEY": arn}
        server = start_server(tmp_path_factory.mktemp("bucket-keys"), env=env, create=False)
        try:
            yield server, arn
        finally:
            server.stop()
    finally:
        moto.stop()


def kms_calls(server: RunningServer) -> float:
    """Every call that reached KMS so far, by any worker (wrap, unwrap, describe, ...)."""
    return value(scrape(server.endpoint), "encproxy_key_provider_calls_total",
                 provider="awskms")


def parallel(call: Callable[[int], Any], n: int) -> list[Any]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(call, range(n)))


def body(i: int) -> bytes:
    return MARKER + str(i).encode() + b":" + os.urandom(64)


def kms_bucket(s3: Any, arn: str, bucket_key: bool) -> str:
    name = "bk-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": arn},
        "BucketKeyEnabled": bucket_key}]})
    return name


def write_and_read(server: RunningServer, s3: Any, bucket: str,
                   objects: int = OBJECTS) -> tuple[float, float]:
    """Write ``objects`` objects, then GET every one; the KMS calls of the writes and of
    the reads.  Every read is checked against what was written."""
    bodies: dict[int, bytes] = {}

    def put(i: int) -> bool:
        bodies[i] = body(i)
        answer = s3.put_object(Bucket=bucket, Key=f"obj/{i:04d}", Body=bodies[i])
        return bool(answer.get(BUCKET_KEY))

    before = kms_calls(server)
    flags = parallel(put, objects)
    written = kms_calls(server)

    def get(i: int) -> bool:
        answer = s3.get_object(Bucket=bucket, Key=f"obj/{i:04d}")
        assert answer["Body"].read() == bodies[i]
        assert answer["ServerSideEncryption"] == "aws:kms"
        return bool(answer.get(BUCKET_KEY))

    read_flags = parallel(get, objects)
    read = kms_calls(server)
    assert set(flags) == set(read_flags) and len(set(flags)) == 1
    return written - before, read - written


# What is counted is encproxy's calls to the KMS, which the storage backend does not change:
# one backend is enough for 2 x 1,000 objects (the header and update tests run on all).
@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_bucket_keys_cost_at_most_ten_kms_calls_for_1000_gets(kms_server):
    server, arn = kms_server
    s3 = make_client(server.endpoint, max_pool_connections=THREADS)

    with_keys = kms_bucket(s3, arn, bucket_key=True)
    writes, reads = write_and_read(server, s3, with_keys)
    assert s3.head_object(Bucket=with_keys, Key="obj/0000")[BUCKET_KEY] is True
    print(f"bucket keys: {writes:.0f} KMS calls for {OBJECTS} PUTs, {reads:.0f} for "
          f"{OBJECTS} GETs")
    assert reads <= 10
    assert writes <= 10

    # Without bucket keys: one Decrypt per GET, one Encrypt per PUT.
    without = kms_bucket(s3, arn, bucket_key=False)
    plain_writes, plain_reads = write_and_read(server, s3, without, UNKEYED_OBJECTS)
    assert BUCKET_KEY not in s3.head_object(Bucket=without, Key="obj/0000")
    print(f"no bucket keys: {plain_writes:.0f} KMS calls for {UNKEYED_OBJECTS} PUTs, "
          f"{plain_reads:.0f} for {UNKEYED_OBJECTS} GETs")
    assert plain_reads >= UNKEYED_OBJECTS
    assert plain_writes >= UNKEYED_OBJECTS


def test_the_bucket_key_header_follows_the_envelope(kms_server, backend):
    server, arn = kms_server
    s3 = make_client(server.endpoint)
    keyed = kms_bucket(s3, arn, bucket_key=True)
    plain = kms_bucket(s3, arn, bucket_key=False)

    # The request header overrides the bucket's setting, both ways.
    off = s3.put_object(Bucket=keyed, Key="off", Body=b"off", ServerSideEncryption="aws:kms",
                        BucketKeyEnabled=False)
    assert BUCKET_KEY not in off
    on = s3.put_object(Bucket=plain, Key="on", Body=b"on", ServerSideEncryption="aws:kms",
                       BucketKeyEnabled=True)
    assert on[BUCKET_KEY] is True
    assert BUCKET_KEY not in s3.head_object(Bucket=keyed, Key="off")
    assert s3.get_object(Bucket=plain, Key="on")[BUCKET_KEY] is True
    # SSE-S3 has no bucket keys, whatever the request says (as S3).
    sse_s3 = s3.put_object(Bucket=keyed, Key="s3", Body=b"s3", ServerSideEncryption="AES256",
                           BucketKeyEnabled=True)
    assert BUCKET_KEY not in sse_s3 and BUCKET_KEY not in s3.head_object(Bucket=keyed, Key="s3")

    # Multipart: Create, UploadPart, Complete, and the object.
    create = s3.create_multipart_upload(Bucket=keyed, Key="mp")
    assert create[BUCKET_KEY] is True
    data = MARKER + os.urandom(5 * 1024 * 1024)
    part = s3.upload_part(Bucket=keyed, Key="mp", UploadId=create["UploadId"], PartNumber=1,
                          Body=data)
    assert part[BUCKET_KEY] is True
    done = s3.complete_multipart_upload(
        Bucket=keyed, Key="mp", UploadId=create["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done[BUCKET_KEY] is True
    got = s3.get_object(Bucket=keyed, Key="mp")
    assert got[BUCKET_KEY] is True and got["Body"].read() == data

    # A copy takes the destination bucket's setting: with a bucket key, and without one.
    copied = s3.copy_object(Bucket=keyed, Key="copy", CopySource={"Bucket": plain, "Key": "on"})
    assert copied[BUCKET_KEY] is True
    uncopied = s3.copy_object(Bucket=plain, Key="copy", CopySource={"Bucket": keyed,
                                                                     "Key": "mp"})
    assert BUCKET_KEY not in uncopied
    assert s3.get_object(Bucket=plain, Key="copy")["Body"].read() == data
    assert s3.get_object(Bucket=keyed, Key="copy")["Body"].read() == b"on"

    # What an object answers is its envelope's, not the bucket's current configuration.
    s3.put_bucket_encryption(Bucket=keyed, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": arn},
        "BucketKeyEnabled": False}]})
    assert s3.head_object(Bucket=keyed, Key="mp")[BUCKET_KEY] is True
    assert BUCKET_KEY not in s3.put_object(Bucket=keyed, Key="later", Body=b"later")
    # The key id reported is the master key's, read from the authenticated bucket key.
    assert s3.head_object(Bucket=keyed, Key="mp")["SSEKMSKeyId"] == arn


def test_update_object_encryption_honours_bucket_key_enabled(kms_server):
    server, arn = kms_server
    s3 = make_client(server.endpoint)
    bucket = kms_bucket(s3, arn, bucket_key=False)
    data = MARKER + os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="x", Body=data, ServerSideEncryption="AES256")
    s3.update_object_encryption(Bucket=bucket, Key="x", ObjectEncryption={
        "SSEKMS": {"KMSKeyArn": arn, "BucketKeyEnabled": True}})
    got = s3.get_object(Bucket=bucket, Key="x")
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"], got[BUCKET_KEY]) == (
        "aws:kms", arn, True)
    assert got["Body"].read() == data
    s3.update_object_encryption(Bucket=bucket, Key="x", ObjectEncryption={
        "SSEKMS": {"KMSKeyArn": arn, "BucketKeyEnabled": False}})
    head = s3.head_object(Bucket=bucket, Key="x")
    assert BUCKET_KEY not in head and head["SSEKMSKeyId"] == arn
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == data
