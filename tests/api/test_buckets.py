"""Bucket operations through the real server with boto3."""
from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError


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


def test_create_twice_is_already_owned(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket)
    assert code(exc) == "BucketAlreadyOwnedByYou"
    assert status(exc) == 409


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
    # (test_filestore_configuration_reads.py) and refuses the writes.
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert code(exc) == "NotImplemented"
    assert status(exc) == 501
