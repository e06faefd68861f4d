"""Anonymous requests through an S3 backend: sent unsigned, so that the backend's own
ACLs decide them, and still encrypted and decrypted by encproxy.  (The file store's own
ACLs are tested in test_filestore_acl.py.)"""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
import requests
from botocore.config import Config

from support.clients import failure

pytestmark = pytest.mark.parametrize(
    "backend", ["moto", pytest.param("ceph", marks=pytest.mark.rgw)], indirect=True)

INTERNAL_BUCKET = "encproxy-internal"
AES256 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}



@pytest.fixture
def anon(server) -> Any:
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        config=Config(signature_version=botocore.UNSIGNED,
                                      s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


@pytest.fixture
def public_bucket(s3) -> Iterator[Callable[[str], str]]:
    """Encrypting buckets created with a canned ACL, emptied and removed after."""
    made: list[str] = []

    def make(acl: str) -> str:
        name = "anon-" + uuid.uuid4().hex[:12]
        s3.create_bucket(Bucket=name, ACL=acl)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=AES256)
        made.append(name)
        return name

    yield make
    for name in made:
        for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)


def test_public_object_is_served_decrypted(s3, anon, backend_client, public_bucket):
    bucket = public_bucket("public-read")
    body = b"public and encrypted " + os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="pub", Body=body, ACL="public-read")
    got = anon.get_object(Bucket=bucket, Key="pub")
    assert got["Body"].read() == body
    assert got["ServerSideEncryption"] == "AES256"
    assert anon.head_object(Bucket=bucket, Key="pub")["ContentLength"] == len(body)
    ranged = anon.get_object(Bucket=bucket, Key="pub", Range="bytes=5-20")["Body"].read()
    assert ranged == body[5:21]
    listed = anon.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("pub", len(body))]
    at_rest = backend_client.get_object(Bucket=bucket, Key="pub")["Body"].read()
    assert body[:21] not in at_rest and len(at_rest) > len(body)


def test_private_object_is_the_backends_to_refuse(s3, anon, public_bucket, quirks):
    bucket = public_bucket("public-read")
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret bytes")
    with quirks.breaks("anonymous-acls-ignored"):
        assert failure(lambda: anon.get_object(Bucket=bucket, Key="private")) == \
            (403, "AccessDenied")


def test_anonymous_write_to_a_public_bucket_lands_encrypted(s3, anon, backend_client,
                                                            public_bucket):
    bucket = public_bucket("public-read-write")
    body = b"written by nobody " + os.urandom(500)
    anon.put_object(Bucket=bucket, Key="drop", Body=body)
    assert s3.get_object(Bucket=bucket, Key="drop")["Body"].read() == body
    at_rest = backend_client.get_object(Bucket=bucket, Key="drop")["Body"].read()
    assert body[:18] not in at_rest


def test_anonymous_write_to_a_private_bucket_is_refused(s3, anon, public_bucket, quirks):
    bucket = public_bucket("private")
    with quirks.breaks("anonymous-acls-ignored"):
        assert failure(lambda: anon.put_object(Bucket=bucket, Key="x", Body=b"x")) == \
            (403, "AccessDenied")
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_what_encproxy_answers_itself_is_never_anonymous(s3, anon, server, public_bucket):
    """Whatever the backend's ACLs say: encproxy's configuration, keys, internal bucket,
    and the operations it builds from requests of its own."""
    bucket = public_bucket("public-read-write")
    s3.put_object(Bucket=bucket, Key="src", Body=b"source", ACL="public-read-write")
    refusals = {
        "GetBucketEncryption": lambda: anon.get_bucket_encryption(Bucket=bucket),
        "PutBucketEncryption": lambda: anon.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=AES256),
        "DeleteBucketEncryption": lambda: anon.delete_bucket_encryption(Bucket=bucket),
        "ListBuckets": lambda: anon.list_buckets(),
        "CreateMultipartUpload": lambda: anon.create_multipart_upload(Bucket=bucket, Key="m"),
        "CopyObject": lambda: anon.copy_object(Bucket=bucket, Key="copy",
                                               CopySource={"Bucket": bucket, "Key": "src"}),
        "DeleteBucket": lambda: anon.delete_bucket(Bucket=bucket),
        "PutBucketAcl": lambda: anon.put_bucket_acl(Bucket=bucket, ACL="private"),
        "internal bucket": lambda: anon.list_objects_v2(Bucket=INTERNAL_BUCKET),
    }
    for name, call in refusals.items():
        assert failure(call) == (403, "AccessDenied"), name
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"source"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]


def test_refused_when_configured_to(backend, tmp_path_factory, s3, public_bucket):
    """``[auth] anonymous = refuse``: AccessDenied, whatever the ACLs say."""
    from support.server import start_server
    bucket = public_bucket("public-read")
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    running = start_server(tmp_path_factory.mktemp("anon-refuse"),
                           env={**backend.server_env(), "ENCPROXY_AUTH_ANONYMOUS": "refuse"})
    try:
        resp = requests.get(f"{running.endpoint}/{bucket}/pub", timeout=10)
        assert resp.status_code == 403
        assert b"<Code>AccessDenied</Code>" in resp.content
        assert b"public" not in resp.content
    finally:
        running.stop()


def first_answer(endpoint: str, path: str, body: bytes) -> tuple[str, bytes]:
    """An anonymous PUT with ``Expect: 100-continue``, as ceph/s3-tests' test_100_continue
    sends it: the status of the first answer, and what the socket held after it."""
    parts = urlsplit(endpoint)
    head = (f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head)
        first = sock.recv(65536)
        status = first.split(b" ", 2)[1].decode()
        chunk = b""
        if status == "100":
            sock.sendall(body)
            rest = b""
            while b"\r\n\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return status, rest
        while chunk := sock.recv(65536):    # the refusal closes the connection: read it all
            first += chunk
        return status, first


def test_expect_continue_gets_the_backends_refusal_before_the_body(server, s3, backend_client,
                                                                    public_bucket):
    """Where the backend decides (an anonymous caller, sent on unsigned), a client's
    ``Expect: 100-continue`` gets the backend's 403 instead of "100 Continue", and sends
    no body; where the backend lets it write, "100 Continue", and the object lands
    encrypted (ceph/s3-tests test_100_continue)."""
    private, public = public_bucket("private"), public_bucket("public-read-write")
    body = b"anonymous body " * 100
    status, answer = first_answer(server.endpoint, f"/{private}/k", body)
    assert status == "403", answer
    assert b"AccessDenied" in answer
    assert "Contents" not in s3.list_objects_v2(Bucket=private)
    status, answer = first_answer(server.endpoint, f"/{public}/k", body)
    assert status == "100", answer
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert s3.get_object(Bucket=public, Key="k")["Body"].read() == body
    assert body[:15] not in backend_client.get_object(Bucket=public, Key="k")["Body"].read()
