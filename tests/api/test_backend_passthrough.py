"""What an S3 backend receives from encproxy, and what passes through it unchanged.

* Configuration subresources (tagging, ACLs, policy, CORS, versioning, lifecycle,
  object lock, website, notification, ...) pass through: each call gives the same
  outcome through encproxy as made directly against the backend (success and result,
  or the same error), and what is set through encproxy is what the backend holds.
* Operations that read or write object bodies and that encproxy does not implement,
  and unknown subresources, are refused with 501 NotImplemented.
* Bodies reach the backend as the client's data: no aws-chunked framing, no client
  checksums, exact lengths.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from support.raw_s3 import Signed, put_aws_chunked

S3_BACKENDS = ["moto", pytest.param("ceph", marks=pytest.mark.rgw),
               pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)]
pytestmark = pytest.mark.parametrize("backend", S3_BACKENDS, indirect=True)


def outcome(call: Callable[[], Any], *names: str) -> tuple[Any, ...]:
    """("ok", result without metadata) or ("error", code, status); bucket names masked."""
    try:
        result = call()
    except ClientError as exc:
        return ("error", exc.response["Error"]["Code"],
                exc.response["ResponseMetadata"]["HTTPStatusCode"])
    result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
    text = json.dumps(result, sort_keys=True, default=str)
    for name in names:
        text = text.replace(name, "BUCKET")
    return ("ok", json.loads(text))


@pytest.fixture
def pair(s3, backend_client) -> Iterator[tuple[str, str]]:
    """Twin buckets: one used through encproxy, one directly on the backend."""
    names = ("pt-" + uuid.uuid4().hex[:12], "pt-" + uuid.uuid4().hex[:12])
    s3.create_bucket(Bucket=names[0])
    backend_client.create_bucket(Bucket=names[1])
    yield names
    for client, name in ((s3, names[0]), (backend_client, names[1])):
        for version in client.list_object_versions(Bucket=name).get("Versions", []):
            client.delete_object(Bucket=name, Key=version["Key"],
                                 VersionId=version["VersionId"])
        for marker in client.list_object_versions(Bucket=name).get("DeleteMarkers", []):
            client.delete_object(Bucket=name, Key=marker["Key"], VersionId=marker["VersionId"])
        client.delete_bucket(Bucket=name)


POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "ReadOnly", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
    "Resource": ["arn:aws:s3:::{bucket}/*"]}]}

# Each step: (name, call(client, bucket)); steps run in order on both buckets.
BUCKET_STEPS: list[tuple[str, Callable[[Any, str], Any]]] = [
    ("put-tagging", lambda c, b: c.put_bucket_tagging(
        Bucket=b, Tagging={"TagSet": [{"Key": "team", "Value": "storage"}]})),
    ("get-tagging", lambda c, b: c.get_bucket_tagging(Bucket=b)),
    ("delete-tagging", lambda c, b: c.delete_bucket_tagging(Bucket=b)),
    ("get-tagging-gone", lambda c, b: c.get_bucket_tagging(Bucket=b)),
    ("get-acl", lambda c, b: c.get_bucket_acl(Bucket=b)),
    ("put-acl", lambda c, b: c.put_bucket_acl(Bucket=b, ACL="private")),
    ("put-policy", lambda c, b: c.put_bucket_policy(
        Bucket=b, Policy=json.dumps(POLICY).replace("{bucket}", b))),
    ("get-policy", lambda c, b: c.get_bucket_policy(Bucket=b)),
    ("delete-policy", lambda c, b: c.delete_bucket_policy(Bucket=b)),
    ("put-cors", lambda c, b: c.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]}]})),
    ("get-cors", lambda c, b: c.get_bucket_cors(Bucket=b)),
    ("delete-cors", lambda c, b: c.delete_bucket_cors(Bucket=b)),
    ("put-lifecycle", lambda c, b: c.put_bucket_lifecycle_configuration(
        Bucket=b, LifecycleConfiguration={"Rules": [
            {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
             "Expiration": {"Days": 7}}]})),
    ("get-lifecycle", lambda c, b: c.get_bucket_lifecycle_configuration(Bucket=b)),
    ("delete-lifecycle", lambda c, b: c.delete_bucket_lifecycle(Bucket=b)),
    ("put-website", lambda c, b: c.put_bucket_website(
        Bucket=b, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})),
    ("get-website", lambda c, b: c.get_bucket_website(Bucket=b)),
    ("delete-website", lambda c, b: c.delete_bucket_website(Bucket=b)),
    ("get-notification", lambda c, b: c.get_bucket_notification_configuration(Bucket=b)),
    ("put-notification", lambda c, b: c.put_bucket_notification_configuration(
        Bucket=b, NotificationConfiguration={})),
    ("put-ownership", lambda c, b: c.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})),
    ("get-ownership", lambda c, b: c.get_bucket_ownership_controls(Bucket=b)),
    ("put-public-access-block", lambda c, b: c.put_public_access_block(
        Bucket=b, PublicAccessBlockConfiguration={"BlockPublicAcls": True,
                                                  "IgnorePublicAcls": True,
                                                  "BlockPublicPolicy": True,
                                                  "RestrictPublicBuckets": True})),
    ("get-public-access-block", lambda c, b: c.get_public_access_block(Bucket=b)),
    ("get-object-lock", lambda c, b: c.get_object_lock_configuration(Bucket=b)),
    ("put-versioning", lambda c, b: c.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Enabled"})),
    ("get-versioning", lambda c, b: c.get_bucket_versioning(Bucket=b)),
]


def test_bucket_configuration_passes_through(s3, backend_client, pair):
    mine, theirs = pair
    for name, step in BUCKET_STEPS:
        through = outcome(lambda step=step: step(s3, mine), mine, theirs)
        direct = outcome(lambda step=step: step(backend_client, theirs), mine, theirs)
        assert through == direct, name
    # What was set through encproxy is what the backend holds.
    assert backend_client.get_bucket_versioning(Bucket=mine)["Status"] == "Enabled"
    s3.put_bucket_tagging(Bucket=mine, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert backend_client.get_bucket_tagging(Bucket=mine)["TagSet"] == [
        {"Key": "k", "Value": "v"}]


OBJECT_STEPS: list[tuple[str, Callable[[Any, str], Any]]] = [
    ("put", lambda c, b: c.put_object(Bucket=b, Key="o", Body=b"v1", Tagging="a=1")),
    ("get-tagging", lambda c, b: c.get_object_tagging(Bucket=b, Key="o")),
    ("put-tagging", lambda c, b: c.put_object_tagging(
        Bucket=b, Key="o", Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})),
    ("get-tagging-again", lambda c, b: c.get_object_tagging(Bucket=b, Key="o")),
    ("delete-tagging", lambda c, b: c.delete_object_tagging(Bucket=b, Key="o")),
    ("get-acl", lambda c, b: c.get_object_acl(Bucket=b, Key="o")),
    ("put-acl", lambda c, b: c.put_object_acl(Bucket=b, Key="o", ACL="private")),
    ("get-legal-hold", lambda c, b: c.get_object_legal_hold(Bucket=b, Key="o")),
    ("get-retention", lambda c, b: c.get_object_retention(Bucket=b, Key="o")),
]


def test_object_configuration_passes_through(s3, backend_client, pair):
    mine, theirs = pair
    for name, step in OBJECT_STEPS:
        through = outcome(lambda step=step: step(s3, mine), mine, theirs)
        direct = outcome(lambda step=step: step(backend_client, theirs), mine, theirs)
        if name == "put":  # a write, not configuration: its answer is encproxy's own
            assert through[0] == direct[0] == "ok"
            continue
        assert through == direct, name


def test_versions_are_listed_and_read_through_encproxy(s3, backend_client, pair):
    mine, _ = pair
    s3.put_bucket_versioning(Bucket=mine, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=mine, Key="v", Body=b"one")
    s3.put_object(Bucket=mine, Key="v", Body=b"two")
    versions = s3.list_object_versions(Bucket=mine)["Versions"]
    assert sorted(v["Size"] for v in versions) == [3, 3]
    assert first.get("VersionId") in {v["VersionId"] for v in versions}
    old = s3.get_object(Bucket=mine, Key="v", VersionId=first["VersionId"])
    assert old["Body"].read() == b"one"
    assert s3.get_object(Bucket=mine, Key="v")["Body"].read() == b"two"


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.restore_object(Bucket=b, Key="k",
                                                 RestoreRequest={"Days": 1}), id="restore"),
    pytest.param(lambda s3, b: s3.select_object_content(
        Bucket=b, Key="k", Expression="select * from s3object", ExpressionType="SQL",
        InputSerialization={"CSV": {}}, OutputSerialization={"CSV": {}}), id="select"),
    pytest.param(lambda s3, b: s3.get_object_torrent(Bucket=b, Key="k"), id="torrent"),
])
def test_body_operations_encproxy_does_not_implement_are_501(s3, bucket, call):
    s3.put_object(Bucket=bucket, Key="k", Body=b"a,b\n")
    with pytest.raises(ClientError) as exc:
        call(s3, bucket)
    assert exc.value.response["Error"]["Code"] == "NotImplemented"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


@pytest.mark.parametrize("method,query", [
    pytest.param("GET", "session", id="create-session"),
    pytest.param("GET", "mdsearch", id="rgw-metadata-search"),
    pytest.param("GET", "usage", id="rgw-usage"),
    pytest.param("GET", "metadataTable", id="metadata-table"),
    pytest.param("PUT", "encryption", id="backend-encryption-never"),
])
def test_unknown_subresources_are_501(server, bucket, method, query):
    url = f"{server.endpoint}/{bucket}?{query}"
    body = b"<x/>" if method == "PUT" else b""
    signed = Signed(method, url, {"content-length": str(len(body))} if body else {},
                    hashlib.sha256(body).hexdigest())
    resp = requests.request(method, url, data=body or None, headers=signed.headers, timeout=10)
    if query == "encryption":
        # Answered by encproxy itself (bucket default encryption), never by the backend.
        assert resp.status_code in (400, 501) and b"<Code>" in resp.content
        return
    assert resp.status_code == 501, resp.text
    assert b"<Code>NotImplemented</Code>" in resp.content


@pytest.mark.parametrize("form", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_backend_gets_the_data_not_the_framing(server, bucket, backend_client, form):
    data = os.urandom(200_000)
    resp = put_aws_chunked(f"{server.endpoint}/{bucket}/framed", data, form)
    assert resp.status_code == 200, resp.text
    stored = backend_client.get_object(Bucket=bucket, Key="framed")
    assert stored["ContentLength"] == len(data)
    assert stored["Body"].read() == data
    assert "aws-chunked" not in stored.get("ContentEncoding", "")
    assert stored["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'


def test_client_checksums_of_plain_objects_are_verified_and_forwarded(s3, bucket,
                                                                       backend_client, quirks):
    """A plain object's body is the client's, so its verified checksum goes on with it
    (an encrypted one's never does: test_checksums_roundtrip)."""
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"checksummed", ChecksumAlgorithm="SHA256")
    value = base64.b64encode(hashlib.sha256(b"checksummed").digest()).decode()
    assert put["ChecksumSHA256"] == value  # echoed by encproxy, which verified it
    head = backend_client.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(b"checksummed")
    with quirks.breaks("checksums-not-kept"):
        assert head.get("ChecksumSHA256") == value


def test_metadata_and_content_headers_reach_the_backend(s3, bucket, backend_client):
    s3.put_object(Bucket=bucket, Key="m", Body=b"x", ContentType="text/csv",
                  ContentDisposition="attachment", CacheControl="max-age=9",
                  Metadata={"colour": "blue"}, Tagging="t=1")
    head = backend_client.head_object(Bucket=bucket, Key="m")
    assert head["ContentType"] == "text/csv" and head["ContentDisposition"] == "attachment"
    assert head["CacheControl"] == "max-age=9" and head["Metadata"] == {"colour": "blue"}
    assert backend_client.get_object_tagging(Bucket=bucket, Key="m")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
