"""``[backend_credentials]``: a client credential signed through to its own backend user.

Two teams share one encproxy in front of Ceph RGW.  Team B's credential is mapped to an RGW
user of its own; the main credential is not, and goes as encproxy's backend identity.  Every
request made for team B, including those encproxy makes on its behalf (a copy's read of its
source, the existence check of PutBucketEncryption), reaches RGW as team B's user, so that
RGW's own ownership and ACLs separate the teams as they did before encproxy stood in front;
encproxy's internal bucket stays encproxy's.  Needs a backend that enforces its users:
Ceph RGW (moto lets any credential do anything).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from support.backends import Backend
from support.clients import failure, make_client
from support.server import RunningServer, start_server

pytestmark = pytest.mark.parametrize("backend", [pytest.param("ceph", marks=pytest.mark.rgw)],
                                     indirect=True)

TEAM_B = ("team-b-client", "team-b-client-secret-0123456789")
TEAM_B_RGW = ("TEAMBRGWACCESS", "team-b-rgw-secret-0123456789")
AES256 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
MARKER = b"TEAM-PLAINTEXT-MARKER"



def rgw_user(backend: Backend, uid: str, access_key: str, secret_key: str) -> None:
    assert backend.directory is not None
    subprocess.run(["radosgw-admin", "-c", str(backend.directory / "ceph.conf"), "user",
                    "create", "--uid", uid, "--display-name", uid, "--access-key", access_key,
                    "--secret-key", secret_key], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def shared(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """encproxy with two client credentials: the main one unmapped, team B's mapped."""
    rgw_user(backend, "team-b-" + uuid.uuid4().hex[:8], *TEAM_B_RGW)
    env = {**backend.server_env(), f"ENCPROXY_CREDENTIALS_{TEAM_B[0]}": TEAM_B[1],
           f"ENCPROXY_BACKEND_CREDENTIALS_{TEAM_B[0]}": " ".join(TEAM_B_RGW)}
    running = start_server(tmp_path_factory.mktemp("identities"), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def main(shared: RunningServer) -> Any:
    return make_client(shared.endpoint)


@pytest.fixture(scope="module")
def team_b(shared: RunningServer) -> Any:
    return make_client(shared.endpoint, access_key=TEAM_B[0], secret=TEAM_B[1])


@pytest.fixture(scope="module")
def rgw_as_team_b(backend: Backend) -> Any:
    assert backend.endpoint is not None
    return boto3.client("s3", endpoint_url=backend.endpoint, region_name=backend.region,
                        aws_access_key_id=TEAM_B_RGW[0], aws_secret_access_key=TEAM_B_RGW[1],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


@pytest.fixture
def buckets(main, team_b) -> Iterator[tuple[str, str]]:
    """One encrypting bucket per team, each created through encproxy by its team."""
    a, b = "team-a-" + uuid.uuid4().hex[:10], "team-b-" + uuid.uuid4().hex[:10]
    for client, name in ((main, a), (team_b, b)):
        client.create_bucket(Bucket=name)
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=AES256)
    yield a, b
    for client, name in ((main, a), (team_b, b)):
        for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)


def test_each_team_reaches_the_backend_as_its_own_user(main, team_b, rgw_as_team_b, backend,
                                                       buckets):
    a, b = buckets
    body = MARKER + os.urandom(70_000)
    team_b.put_object(Bucket=b, Key="k", Body=body)
    got = team_b.get_object(Bucket=b, Key="k")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    # RGW holds team B's bucket and object as team B's user, and only ciphertext.
    assert b in {x["Name"] for x in rgw_as_team_b.list_buckets()["Buckets"]}
    assert a not in {x["Name"] for x in rgw_as_team_b.list_buckets()["Buckets"]}
    at_rest = rgw_as_team_b.get_object(Bucket=b, Key="k")["Body"].read()
    assert MARKER not in at_rest and len(at_rest) > len(body)
    # ListBuckets through encproxy is each team's own listing.
    assert {x["Name"] for x in team_b.list_buckets()["Buckets"]} & {a, b} == {b}
    assert {x["Name"] for x in main.list_buckets()["Buckets"]} & {a, b} == {a}
    assert hashlib.md5(body).hexdigest() in team_b.head_object(Bucket=b, Key="k")["ETag"]


def test_one_team_cannot_touch_the_others_objects(main, team_b, buckets):
    a, b = buckets
    main.put_object(Bucket=a, Key="secret", Body=MARKER)
    team_b.put_object(Bucket=b, Key="mine", Body=b"team b's")
    assert failure(lambda: team_b.get_object(Bucket=a, Key="secret")) == (403, "AccessDenied")
    assert failure(lambda: team_b.put_object(Bucket=a, Key="secret", Body=b"x")) == \
        (403, "AccessDenied")
    assert failure(lambda: team_b.delete_object(Bucket=a, Key="secret"))[0] == 403
    assert failure(lambda: main.get_object(Bucket=b, Key="mine")) == (403, "AccessDenied")
    # A copy reads its source as the caller: team B cannot copy team A's object out...
    assert failure(lambda: team_b.copy_object(Bucket=b, Key="stolen",
                                              CopySource={"Bucket": a, "Key": "secret"})) == \
        (403, "AccessDenied")
    assert failure(lambda: team_b.head_object(Bucket=b, Key="stolen"))[0] == 404
    # ...nor configure the other team's bucket.
    assert failure(lambda: team_b.put_bucket_encryption(
        Bucket=a, ServerSideEncryptionConfiguration=AES256))[0] == 403
    # Everything of team A is still there, unchanged.
    assert main.get_object(Bucket=a, Key="secret")["Body"].read() == MARKER


def test_a_grant_on_the_backend_is_honoured(main, team_b, buckets, backend):
    """The backend's own ACLs decide: once team A grants read to everyone authenticated,
    team B reads team A's object, decrypted, and may copy it into its own bucket."""
    a, b = buckets
    body = MARKER + os.urandom(5000)
    main.put_object(Bucket=a, Key="shared", Body=body, ACL="authenticated-read")
    assert team_b.get_object(Bucket=a, Key="shared")["Body"].read() == body
    team_b.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": a, "Key": "shared"})
    assert team_b.get_object(Bucket=b, Key="copy")["Body"].read() == body


def test_a_bucket_others_may_read_keeps_its_encryption_the_owners(main, team_b, buckets):
    """encproxy answers ``?encryption`` itself, so no backend decides it: as on S3, it is
    the bucket owner's alone.  Team B may list team A's bucket, once granted, but may not
    read, replace or remove its encryption (removing it would let later writes land in
    plaintext)."""
    a, _ = buckets
    main.put_bucket_acl(Bucket=a, ACL="authenticated-read")
    assert team_b.list_objects_v2(Bucket=a)["KeyCount"] == 0
    assert failure(lambda: team_b.delete_bucket_encryption(Bucket=a)) == (403, "AccessDenied")
    assert failure(lambda: team_b.get_bucket_encryption(Bucket=a)) == (403, "AccessDenied")
    other = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "other-key"}}]}
    assert failure(lambda: team_b.put_bucket_encryption(
        Bucket=a, ServerSideEncryptionConfiguration=other)) == (403, "AccessDenied")
    rule = main.get_bucket_encryption(Bucket=a)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
