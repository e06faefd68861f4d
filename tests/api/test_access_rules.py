"""``[access]``: three client credentials on one gateway, each doing exactly what its
line allows (docs/OPERATIONS.md §11), through the real server on the file store and in
front of Ceph RGW.

* ``team-a``: all on ``team-a-*`` (KMS key ``test-key`` only), read on ``shared-*``;
* ``team-b``: read and write on ``team-b-*``, read, write and delete on ``shared-*``;
* ``auditor``: read on every bucket;
* the main credential has no line: full access (it sets the buckets up).

Every operation class is tried by a client that may and by one that may not: object
reads, writes, deletes, listings, multipart uploads, copies from and to buckets (both
sides checked), bucket configuration, ``?encryption``, UpdateObjectEncryption and KMS
keys, presigned URLs and POST uploads.  A refusal is S3's 403 AccessDenied, changes
nothing, and is in the access log; ListBuckets lists a client's own buckets; SIGHUP
applies a changed line to the running server.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from support.backends import Backend
from support.clients import make_client
from support.server import ACCESS_KEY, RunningServer, start_server

pytestmark = pytest.mark.parametrize(
    "backend", ["file", pytest.param("ceph", marks=pytest.mark.rgw)], indirect=True)

TEAM_A = ("team-a", "team-a-secret-0123456789abcdef")
TEAM_B = ("team-b", "team-b-secret-0123456789abcdef")
AUDITOR = ("auditor", "auditor-secret-0123456789abcdef")
RULES = {
    "team-a": "team-a-*: all; shared-*: read",
    "team-b": "team-b-*: read, write; shared-*: read write delete",
    "auditor": "*: read",
}
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
PART = 5 * 1024 * 1024


def access_section(rules: dict[str, str]) -> str:
    lines = "".join(f"{client} = {grants}\n" for client, grants in rules.items())
    return f"\n[access]\n{lines}\n[access_kms_keys]\nteam-a = test-key\n"


@pytest.fixture(scope="module")
def gateway(backend: Backend, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningServer]:
    env = {**backend.server_env()}
    for client, secret in (TEAM_A, TEAM_B, AUDITOR):
        env[f"ENCPROXY_CREDENTIALS_{client}"] = secret
    running = start_server(tmp_path_factory.mktemp("access"), extra=access_section(RULES),
                           env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clients(gateway: RunningServer) -> dict[str, Any]:
    out = {"main": make_client(gateway.endpoint)}
    for name, secret in (TEAM_A, TEAM_B, AUDITOR):
        out[name] = make_client(gateway.endpoint, access_key=name, secret=secret)
    return out


@pytest.fixture
def buckets(clients: dict[str, Any]) -> Iterator[dict[str, str]]:
    """team-a-…, team-b-… and shared-…, made by the main credential, one object in each."""
    main = clients["main"]
    suffix = uuid.uuid4().hex[:10]
    names = {kind: f"{kind}-{suffix}" for kind in ("team-a", "team-b", "shared")}
    for name in names.values():
        main.create_bucket(Bucket=name)
        main.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
        main.put_object(Bucket=name, Key="doc", Body=b"the document of " + name.encode())
    yield names
    for name in names.values():
        for page in main.get_paginator("list_object_versions").paginate(Bucket=name):
            for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
                main.delete_object(Bucket=name, Key=obj["Key"], VersionId=obj["VersionId"])
        for up in main.list_multipart_uploads(Bucket=name).get("Uploads", []):
            main.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        main.delete_bucket(Bucket=name)


def outcome(call: Callable[[], Any]) -> str:
    """"ok", or the S3 error code the call failed with (a 403 must be AccessDenied)."""
    try:
        call()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if code == "403":   # a HEAD: no body, botocore names the status
            code = "AccessDenied"
        assert (status == 403) == (code == "AccessDenied"), (status, code)
        return code
    return "ok"


def denied(call: Callable[[], Any]) -> bool:
    return outcome(call) == "AccessDenied"


def test_object_reads_writes_and_deletes(clients, buckets):
    a, b, auditor, main = clients["team-a"], clients["team-b"], clients["auditor"], \
        clients["main"]
    ta, tb, shared = buckets["team-a"], buckets["team-b"], buckets["shared"]
    # read
    assert outcome(lambda: a.get_object(Bucket=ta, Key="doc")["Body"].read()) == "ok"
    assert outcome(lambda: a.head_object(Bucket=shared, Key="doc")) == "ok"
    assert outcome(lambda: auditor.get_object(Bucket=tb, Key="doc")) == "ok"
    assert denied(lambda: a.get_object(Bucket=tb, Key="doc"))
    assert denied(lambda: b.head_object(Bucket=ta, Key="doc"))
    assert denied(lambda: b.get_object_tagging(Bucket=ta, Key="doc"))
    # listings
    assert outcome(lambda: a.list_objects_v2(Bucket=ta)) == "ok"
    assert outcome(lambda: auditor.list_objects(Bucket=ta)) == "ok"
    assert denied(lambda: b.list_objects_v2(Bucket=ta))
    assert denied(lambda: a.list_object_versions(Bucket=tb))
    assert denied(lambda: b.list_multipart_uploads(Bucket=ta))
    # write
    assert outcome(lambda: a.put_object(Bucket=ta, Key="new", Body=b"a")) == "ok"
    assert outcome(lambda: b.put_object(Bucket=shared, Key="from-b", Body=b"b")) == "ok"
    assert denied(lambda: a.put_object(Bucket=shared, Key="from-a", Body=b"a"))
    assert denied(lambda: auditor.put_object(Bucket=ta, Key="doc", Body=b"overwritten"))
    assert denied(lambda: b.put_object_tagging(Bucket=ta, Key="doc", Tagging={"TagSet": []}))
    # delete
    assert outcome(lambda: b.delete_object(Bucket=shared, Key="from-b")) == "ok"
    assert outcome(lambda: a.delete_object(Bucket=ta, Key="new")) == "ok"
    assert denied(lambda: b.delete_object(Bucket=tb, Key="doc"))       # read, write only
    assert denied(lambda: auditor.delete_object(Bucket=ta, Key="doc"))
    assert denied(lambda: b.delete_objects(Bucket=ta, Delete={"Objects": [{"Key": "doc"}]}))
    # nothing a refusal touched changed
    for name in (ta, tb, shared):
        body = main.get_object(Bucket=name, Key="doc")["Body"].read()
        assert body == b"the document of " + name.encode()
    assert "from-a" not in [o["Key"] for o in main.list_objects_v2(Bucket=shared)["Contents"]]


def test_multipart_uploads(clients, buckets):
    a, b = clients["team-a"], clients["team-b"]
    ta = buckets["team-a"]
    up = a.create_multipart_upload(Bucket=ta, Key="mp")["UploadId"]
    assert denied(lambda: b.upload_part(Bucket=ta, Key="mp", UploadId=up, PartNumber=1,
                                        Body=b"x" * 10))
    assert denied(lambda: b.list_parts(Bucket=ta, Key="mp", UploadId=up))
    assert denied(lambda: b.abort_multipart_upload(Bucket=ta, Key="mp", UploadId=up))
    assert denied(lambda: b.create_multipart_upload(Bucket=ta, Key="other"))
    etag = a.upload_part(Bucket=ta, Key="mp", UploadId=up, PartNumber=1,
                         Body=b"p" * 1000)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    assert denied(lambda: b.complete_multipart_upload(Bucket=ta, Key="mp", UploadId=up,
                                                      MultipartUpload=parts))
    a.complete_multipart_upload(Bucket=ta, Key="mp", UploadId=up, MultipartUpload=parts)
    assert a.get_object(Bucket=ta, Key="mp")["Body"].read() == b"p" * 1000


def test_copies_check_both_sides(clients, buckets):
    a, b = clients["team-a"], clients["team-b"]
    ta, tb, shared = buckets["team-a"], buckets["team-b"], buckets["shared"]
    # read on the source and write on the destination
    assert outcome(lambda: a.copy_object(Bucket=ta, Key="copied",
                                         CopySource={"Bucket": shared, "Key": "doc"})) == "ok"
    assert a.get_object(Bucket=ta, Key="copied")["Body"].read() == \
        b"the document of " + shared.encode()
    assert denied(lambda: a.copy_object(Bucket=ta, Key="stolen",
                                        CopySource={"Bucket": tb, "Key": "doc"}))
    assert denied(lambda: b.copy_object(Bucket=ta, Key="pushed",
                                        CopySource={"Bucket": tb, "Key": "doc"}))
    up = a.create_multipart_upload(Bucket=ta, Key="mpc")["UploadId"]
    assert denied(lambda: a.upload_part_copy(Bucket=ta, Key="mpc", UploadId=up, PartNumber=1,
                                             CopySource={"Bucket": tb, "Key": "doc"}))
    assert outcome(lambda: a.upload_part_copy(
        Bucket=ta, Key="mpc", UploadId=up, PartNumber=1,
        CopySource={"Bucket": shared, "Key": "doc"})) == "ok"
    a.abort_multipart_upload(Bucket=ta, Key="mpc", UploadId=up)
    keys = [o["Key"] for o in clients["main"].list_objects_v2(Bucket=ta)["Contents"]]
    assert "stolen" not in keys and "pushed" not in keys


def test_bucket_administration_and_encryption(clients, buckets):
    a, b, auditor, main = clients["team-a"], clients["team-b"], clients["auditor"], \
        clients["main"]
    ta, tb = buckets["team-a"], buckets["team-b"]
    assert outcome(lambda: a.put_bucket_tagging(
        Bucket=ta, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})) == "ok"
    assert denied(lambda: b.put_bucket_tagging(
        Bucket=tb, Tagging={"TagSet": [{"Key": "team", "Value": "b"}]}))   # no admin
    assert outcome(lambda: auditor.get_bucket_tagging(Bucket=ta)) == "ok"  # a config read
    # ?encryption is bucket administration, reads included
    assert outcome(lambda: a.get_bucket_encryption(Bucket=ta)) == "ok"
    assert denied(lambda: auditor.get_bucket_encryption(Bucket=ta))
    assert denied(lambda: b.put_bucket_encryption(Bucket=tb,
                                                  ServerSideEncryptionConfiguration=SSE_S3))
    assert denied(lambda: b.delete_bucket_encryption(Bucket=tb))
    assert main.get_bucket_encryption(Bucket=tb)["ServerSideEncryptionConfiguration"]
    # CreateBucket and DeleteBucket
    own, other = f"team-a-{uuid.uuid4().hex[:8]}", f"team-b-{uuid.uuid4().hex[:8]}"
    assert outcome(lambda: a.create_bucket(Bucket=own)) == "ok"
    assert denied(lambda: b.create_bucket(Bucket=other))
    assert denied(lambda: a.create_bucket(Bucket=other))
    assert denied(lambda: b.delete_bucket(Bucket=own))
    assert outcome(lambda: a.delete_bucket(Bucket=own)) == "ok"
    assert outcome(lambda: main.head_bucket(Bucket=other)) != "ok"   # never created


def test_kms_keys_and_update_object_encryption(clients, buckets):
    a, b = clients["team-a"], clients["team-b"]
    ta, tb = buckets["team-a"], buckets["team-b"]
    kms = {"ServerSideEncryption": "aws:kms"}
    assert outcome(lambda: a.put_object(Bucket=ta, Key="k", Body=b"k", SSEKMSKeyId="test-key",
                                        **kms)) == "ok"
    assert denied(lambda: a.put_object(Bucket=ta, Key="k2", Body=b"k", SSEKMSKeyId="other-key",
                                       **kms))
    assert denied(lambda: b.put_object(Bucket=tb, Key="k", Body=b"k", SSEKMSKeyId="test-key",
                                       **kms))
    # Naming no key uses the server's default: nothing to allow.
    assert outcome(lambda: b.put_object(Bucket=tb, Key="k", Body=b"k", **kms)) == "ok"
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "other-key"}}]}
    assert denied(lambda: a.put_bucket_encryption(Bucket=ta,
                                                  ServerSideEncryptionConfiguration=config))
    assert clients["main"].get_bucket_encryption(Bucket=ta)[
        "ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    def update(client: Any, bucket: str, key_id: str) -> Any:
        # botocore wants an ARN; the local keyring reads the key name out of it.
        arn = f"arn:aws:kms:us-east-1:111122223333:key/{key_id}"
        return client.update_object_encryption(
            Bucket=bucket, Key="doc", ObjectEncryption={"SSEKMS": {"KMSKeyArn": arn}})
    assert outcome(lambda: update(a, ta, "test-key")) == "ok"
    assert denied(lambda: update(a, ta, "other-key"))
    assert denied(lambda: update(b, tb, "test-key"))   # no keys permission at all
    head = clients["main"].head_object(Bucket=ta, Key="doc")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "test-key"


def test_presigned_urls_and_post_carry_the_signers_rights(clients, buckets):
    a, b, auditor = clients["team-a"], clients["team-b"], clients["auditor"]
    ta = buckets["team-a"]
    own = a.generate_presigned_url("get_object", Params={"Bucket": ta, "Key": "doc"})
    assert requests.get(own, timeout=30).status_code == 200
    other = b.generate_presigned_url("get_object", Params={"Bucket": ta, "Key": "doc"})
    refused = requests.get(other, timeout=30)
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    put = auditor.generate_presigned_url("put_object", Params={"Bucket": ta, "Key": "doc"})
    assert requests.put(put, data=b"overwritten", timeout=30).status_code == 403
    for client, expected in ((b, 403), (a, 204)):
        form = client.generate_presigned_post(ta, "posted")
        resp = requests.post(form["url"], data=form["fields"],
                             files={"file": ("f", b"posted body")}, timeout=30)
        assert resp.status_code == expected, resp.text
    assert a.get_object(Bucket=ta, Key="doc")["Body"].read() == \
        b"the document of " + ta.encode()
    assert a.get_object(Bucket=ta, Key="posted")["Body"].read() == b"posted body"


def test_list_buckets_shows_a_clients_own(clients, buckets):
    def names(client: Any) -> set[str]:
        return {b["Name"] for b in client.list_buckets()["Buckets"]}
    ta, tb, shared = buckets["team-a"], buckets["team-b"], buckets["shared"]
    assert {ta, shared} <= names(clients["team-a"]) and tb not in names(clients["team-a"])
    assert {tb, shared} <= names(clients["team-b"]) and ta not in names(clients["team-b"])
    assert {ta, tb, shared} <= names(clients["auditor"])
    assert {ta, tb, shared} <= names(clients["main"])
    assert all(n.startswith(("team-a-", "shared-")) for n in names(clients["team-a"]))


def test_refusal_is_s3s_and_logged(gateway, clients, buckets):
    tb = buckets["team-b"]
    url = clients["team-a"].generate_presigned_url("get_object",
                                                   Params={"Bucket": tb, "Key": "doc"})
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in resp.text and "<RequestId>" in resp.text
    request_id = resp.headers["x-amz-request-id"]
    clients["team-b"].get_object(Bucket=tb, Key="doc")
    clients["main"].head_bucket(Bucket=tb)
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in gateway.log_text().splitlines()
                 if line.startswith('{"time"') and '"request_id"' in line]
        refused = [d for d in lines if d["request_id"] == request_id]
        if refused or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refused and refused[0]["access"] == f"denied: no read on {tb}"
    assert refused[0]["access_key"] == "team-a" and refused[0]["status"] == 403
    mine = [d for d in lines if d["access_key"] == "team-b" and d["bucket"] == tb]
    assert any(d["access"] == "allowed" for d in mine)
    assert any(d["access"] == "full" for d in lines if d["access_key"] == ACCESS_KEY)


def test_sighup_applies_a_changed_line(gateway, clients, buckets):
    ta = buckets["team-a"]
    b = clients["team-b"]
    assert denied(lambda: b.put_object(Bucket=ta, Key="b-was-here", Body=b"b"))
    original = gateway.config.read_text()
    changed = dict(RULES, **{"team-b": RULES["team-b"] + "; team-a-*: write"})
    gateway.config.write_text(original.replace(access_section(RULES), access_section(changed)))
    try:
        os.kill(gateway.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while denied(lambda: b.put_object(Bucket=ta, Key="b-was-here", Body=b"b")):
            assert time.monotonic() < deadline, "the reload never applied the new line"
            time.sleep(0.5)
        assert b.put_object(Bucket=ta, Key="b-was-here", Body=b"b")["ETag"]
    finally:
        gateway.config.write_text(original)
        os.kill(gateway.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not denied(lambda: b.put_object(Bucket=ta, Key="b-again", Body=b"b")):
        assert time.monotonic() < deadline, "the reload never restored the old line"
        time.sleep(0.5)
