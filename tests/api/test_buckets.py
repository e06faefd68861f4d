"""Bucket operations through the real server with boto3."""
from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support.server import ACCESS_KEY, SECRET_KEY, start_server


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_create_list_head_delete(s3):
    name = "bkt-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name in names
    assert names == sorted(names)
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert status(exc) == 404


def test_create_twice_in_us_east_1_is_ok_and_keeps_the_bucket(s3, bucket):
    """S3's legacy us-east-1 answer: 200, nothing created, the ACL reset to the request's;
    the bucket's objects and its encryption configuration stay."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_object(Bucket=bucket, Key="kept", Body=b"still here")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"

    def public() -> bool:
        return any(g["Grantee"].get("URI") == all_users
                   for g in s3.get_bucket_acl(Bucket=bucket)["Grants"])

    assert public()
    again = s3.create_bucket(Bucket=bucket)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert again["Location"] == "/" + bucket
    assert not public()
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="kept")
    assert got["Body"].read() == b"still here"
    assert got["ServerSideEncryption"] == "AES256"


def test_create_twice_elsewhere_is_already_owned(backend, tmp_path_factory):
    """Outside us-east-1, S3 answers a second CreateBucket BucketAlreadyOwnedByYou."""
    region = "eu-west-1"
    running = start_server(tmp_path_factory.mktemp("eu-west-1"),
                           env={**backend.server_env(), "ENCPROXY_SERVER_REGION": region})
    try:
        client = boto3.client(
            "s3", endpoint_url=running.endpoint, region_name=region,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        name = "twice-" + uuid.uuid4().hex[:10]
        client.create_bucket(Bucket=name,
                             CreateBucketConfiguration={"LocationConstraint": region})
        try:
            with pytest.raises(ClientError) as exc:
                client.create_bucket(Bucket=name,
                                     CreateBucketConfiguration={"LocationConstraint": region})
            assert code(exc) == "BucketAlreadyOwnedByYou"
            assert status(exc) == 409
        finally:
            client.delete_bucket(Bucket=name)
    finally:
        running.stop()


@pytest.mark.parametrize("name", ["ab", "UPPER", "a..b", "-abc", "192.168.0.1", "a" * 64])
def test_invalid_bucket_name(s3, name):
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert code(exc) == "InvalidBucketName"


def test_location_constraint(s3):
    name = "bkt-" + uuid.uuid4().hex[:10]
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name,
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code(exc) == "IllegalLocationConstraintException"


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert code(exc) == "BucketNotEmpty"
    assert status(exc) == 409


def test_missing_bucket(s3):
    name = "missing-" + uuid.uuid4().hex[:10]
    for call in (lambda: s3.list_objects_v2(Bucket=name),
                 lambda: s3.put_object(Bucket=name, Key="k", Body=b""),
                 lambda: s3.get_object(Bucket=name, Key="k"),
                 lambda: s3.delete_bucket(Bucket=name),
                 lambda: s3.get_bucket_location(Bucket=name)):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "NoSuchBucket"


def test_virtual_hosted_style(server, s3):
    from support.clients import make_client
    from urllib.parse import urlsplit
    vs3 = make_client(f"http://s3.localhost:{server.port}", addressing="virtual")

    def resolve_to_loopback(request, **_):
        # *.localhost is loopback (RFC 6761), but this resolver does not know it:
        # connect to 127.0.0.1 and keep the virtual host in the Host header.
        host = urlsplit(request.url).hostname
        request.headers["Host"] = urlsplit(request.url).netloc
        request.url = request.url.replace(host, "127.0.0.1", 1)

    vs3.meta.events.register("before-send.s3", resolve_to_loopback)
    name = "vhost-" + uuid.uuid4().hex[:8]
    vs3.create_bucket(Bucket=name)
    vs3.put_object(Bucket=name, Key="dir/a b.txt", Body=b"hello")
    assert s3.get_object(Bucket=name, Key="dir/a b.txt")["Body"].read() == b"hello"
    assert [o["Key"] for o in vs3.list_objects_v2(Bucket=name)["Contents"]] == ["dir/a b.txt"]
    vs3.delete_object(Bucket=name, Key="dir/a b.txt")
    vs3.delete_bucket(Bucket=name)


def test_unimplemented_subresource_is_501_xml(s3, bucket, backend):
    if backend.is_s3:
        # An S3 backend passes configuration subresources through
        # (test_backend_passthrough.py); what touches bodies is refused everywhere.
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        with pytest.raises(ClientError) as exc:
            s3.restore_object(Bucket=bucket, Key="k", RestoreRequest={"Days": 1})
        assert code(exc) == "NotImplemented"
        assert status(exc) == 501
        return
    # The file store answers configuration reads as S3 does for none
    # (test_filestore_configuration_reads.py) and refuses the writes it does not keep.
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
            "IndexDocument": {"Suffix": "index.html"}})
    assert code(exc) == "NotImplemented"
    assert status(exc) == 501


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_list_buckets_pages_never_count_the_internal_bucket(backend, tmp_path_factory):
    """s3-tests test_list_buckets_paginated: ``MaxBuckets=1`` lists one bucket a page.  The
    internal bucket, hidden from clients, sorts between these two: the page it falls on is
    filled from the backend's next one.  (The file store: Ceph RGW 16.2 pages no
    ListBuckets.)"""
    running = start_server(tmp_path_factory.mktemp("pages"), env=backend.server_env())
    try:
        client = boto3.client(
            "s3", endpoint_url=running.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        uid = uuid.uuid4().hex[:8]
        before, after = f"encproxy-h{uid}", f"encproxy-j{uid}"    # "encproxy-internal"
        for name in (before, after):
            client.create_bucket(Bucket=name)
        client.put_bucket_encryption(Bucket=before, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        client.put_object(Bucket=before, Key="k", Body=b"x")    # the internal bucket exists
        pages, token = [], None
        while True:
            page = client.list_buckets(MaxBuckets=1, Prefix="encproxy-",
                                       **({"ContinuationToken": token} if token else {}))
            pages.append([b["Name"] for b in page["Buckets"]])
            token = page.get("ContinuationToken")
            if not token:
                break
        assert pages[:2] == [[before], [after]]
        assert all(len(names) == 1 for names in pages[:-1]) and len(pages) <= 3
        assert "encproxy-internal" not in sum(pages, [])
    finally:
        running.stop()
