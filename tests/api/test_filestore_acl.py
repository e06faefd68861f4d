"""ACLs and anonymous requests on the file store, through the real server (issue 15).

The file store keeps bucket and object ACLs (canned, grant headers, XML bodies) and lets
a caller without credentials do what the AllUsers group is granted; the encryption layer
still encrypts what an anonymous caller writes and decrypts what it may read.  With
``[auth] anonymous = refuse`` every anonymous request is AccessDenied, on the file store and
through an S3 backend (the last test).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore
import pytest
import requests
from botocore.config import Config

from support.clients import empty_and_delete, failure, make_client
from support.server import start_server

FILE = pytest.mark.parametrize("backend", ["file"], indirect=True)
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
MARKER = b"ANON-PLAINTEXT-MARKER-51c9"
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
MiB = 1024 * 1024



def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(32)
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture(scope="module")
def anon(server) -> Any:
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        config=Config(signature_version=botocore.UNSIGNED,
                                      s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


@pytest.fixture
def owner(s3) -> dict[str, str]:
    return s3.list_buckets()["Owner"]


@pytest.fixture
def new_bucket(s3) -> Iterator[Callable[..., str]]:
    """Buckets made with CreateBucket's own arguments (ACL=...), emptied and removed after."""
    made: list[str] = []

    def make(**kwargs: Any) -> str:
        name = "acl-" + uuid.uuid4().hex[:12]
        s3.create_bucket(Bucket=name, **kwargs)
        made.append(name)
        return name

    yield make
    for name in made:
        empty_and_delete(s3, name)


def grants(policy: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(type, id or URI, permission) of each grant, order aside."""
    out = set()
    for g in policy["Grants"]:
        grantee = g["Grantee"]
        out.add((grantee["Type"], grantee.get("ID") or grantee.get("URI"), g["Permission"]))
    assert len(out) == len(policy["Grants"])
    return out


def canned(owner_id: str, name: str) -> set[tuple[str, str, str]]:
    extra = {"private": set(), "bucket-owner-full-control": set(),
             "public-read": {("Group", ALL_USERS, "READ")},
             "public-read-write": {("Group", ALL_USERS, "READ"), ("Group", ALL_USERS, "WRITE")},
             "authenticated-read": {("Group", AUTHENTICATED, "READ")},
             "log-delivery-write": {("Group", LOG_DELIVERY, "WRITE"),
                                    ("Group", LOG_DELIVERY, "READ_ACP")}}[name]
    return {("CanonicalUser", owner_id, "FULL_CONTROL")} | extra


CANNED = ["private", "public-read", "public-read-write", "authenticated-read",
          "bucket-owner-full-control", "log-delivery-write"]


# -- ACLs kept and answered -------------------------------------------------------------------

@FILE
@pytest.mark.parametrize("name", CANNED)
def test_canned_acls_round_trip(s3, owner, new_bucket, name):
    bucket = new_bucket(ACL=name)
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == canned(owner["ID"], name)
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ACL=name)
    got = s3.get_object_acl(Bucket=bucket, Key="o")
    assert got["Owner"] == owner
    assert grants(got) == canned(owner["ID"], name)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="private")
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == canned(owner["ID"], "private")
    assert grants(s3.get_object_acl(Bucket=bucket, Key="o")) == canned(owner["ID"], "private")


@FILE
def test_put_acl_by_canned_header_keeps_object_body_etag_and_time(s3, owner, bucket):
    put = s3.put_object(Bucket=bucket, Key="o", Body=b"body stays")
    before = s3.head_object(Bucket=bucket, Key="o")
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="public-read")
    after = s3.head_object(Bucket=bucket, Key="o")
    assert after["ETag"] == before["ETag"] == put["ETag"]
    assert after["LastModified"] == before["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"body stays"
    assert grants(s3.get_object_acl(Bucket=bucket, Key="o")) == canned(owner["ID"],
                                                                        "public-read")


@FILE
def test_grant_headers(s3, owner, bucket):
    s3.put_bucket_acl(Bucket=bucket, GrantRead=f'uri="{ALL_USERS}"',
                      GrantFullControl=f'id="{owner["ID"]}"')
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == {
        ("Group", ALL_USERS, "READ"), ("CanonicalUser", owner["ID"], "FULL_CONTROL")}
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", GrantReadACP=f'uri="{ALL_USERS}"')
    assert grants(s3.get_object_acl(Bucket=bucket, Key="o")) == {
        ("Group", ALL_USERS, "READ_ACP")}


@FILE
def test_xml_body(s3, owner, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    policy = {"Owner": owner, "Grants": [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]},
         "Permission": "FULL_CONTROL"}]}
    s3.put_object_acl(Bucket=bucket, Key="o", AccessControlPolicy=policy)
    assert grants(s3.get_object_acl(Bucket=bucket, Key="o")) == {
        ("Group", ALL_USERS, "READ"), ("CanonicalUser", owner["ID"], "FULL_CONTROL")}
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == {
        ("Group", ALL_USERS, "READ"), ("CanonicalUser", owner["ID"], "FULL_CONTROL")}
    assert s3.get_object_acl(Bucket=bucket, Key="o", VersionId="null")["Grants"]


@FILE
@pytest.mark.parametrize("call,expected", [
    pytest.param(lambda s3, b, o: s3.put_bucket_acl(Bucket=b, ACL="public-ready"),
                 (400, "InvalidArgument"), id="bad-canned"),
    pytest.param(lambda s3, b, o: s3.put_object(Bucket=b, Key="n", ACL="public-ready"),
                 (400, "InvalidArgument"), id="bad-canned-put"),
    pytest.param(lambda s3, b, o: s3.put_bucket_acl(Bucket=b, ACL="private",
                                                    GrantRead=f'uri="{ALL_USERS}"'),
                 (400, "InvalidRequest"), id="canned-and-grants"),
    pytest.param(lambda s3, b, o: s3.put_bucket_acl(Bucket=b, GrantRead='id="_foo"'),
                 (400, "InvalidArgument"), id="unknown-id"),
    pytest.param(lambda s3, b, o: s3.put_bucket_acl(
        Bucket=b, AccessControlPolicy={"Owner": o, "Grants": [
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@example.com"},
             "Permission": "READ"}]}),
        (400, "UnresolvableGrantByEmailAddress"), id="email"),
    pytest.param(lambda s3, b, o: s3.put_object(Bucket=b, Key="n", ACL="aws-exec-read"),
                 (501, "NotImplemented"), id="aws-exec-read"),
    pytest.param(lambda s3, b, o: s3.put_object_acl(Bucket=b, Key="missing", ACL="private"),
                 (404, "NoSuchKey"), id="no-such-key"),
    pytest.param(lambda s3, b, o: s3.put_object_acl(Bucket=b, Key="o", ACL="private",
                                                    VersionId="v1"),
                 (400, "InvalidArgument"), id="version-not-null"),
])
def test_acl_errors_change_nothing(s3, owner, bucket, call, expected):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    before = grants(s3.get_bucket_acl(Bucket=bucket))
    assert failure(lambda: call(s3, bucket, owner)) == expected
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == before
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["o"]


@FILE
def test_malformed_acl_body(server, s3, bucket):
    resp = requests.put(s3.generate_presigned_url(
        "put_bucket_acl", Params={"Bucket": bucket}), data=b"<AccessControlPolicy><Oops")
    assert resp.status_code == 400 and b"<Code>MalformedACLError</Code>" in resp.content


@FILE
def test_empty_acl_stays_empty_and_the_owner_keeps_access(s3, owner, bucket):
    """s3-tests' test_bucket_acl_revoke_all: an ACL of no grants is kept as such."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": []})
    s3.put_object_acl(Bucket=bucket, Key="o", AccessControlPolicy={"Owner": owner,
                                                                   "Grants": []})
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == []
    assert s3.get_object_acl(Bucket=bucket, Key="o")["Grants"] == []
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"


@FILE
def test_copy_resets_acl_unless_given_and_self_copy_keeps_it(s3, owner, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", ACL="public-read")
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="plain", CopySource=source)
    assert grants(s3.get_object_acl(Bucket=bucket, Key="plain")) == canned(owner["ID"],
                                                                            "private")
    s3.copy_object(Bucket=bucket, Key="given", CopySource=source, ACL="public-read-write")
    assert grants(s3.get_object_acl(Bucket=bucket, Key="given")) == canned(
        owner["ID"], "public-read-write")
    s3.copy_object(Bucket=bucket, Key="src", CopySource=source, MetadataDirective="REPLACE",
                   Metadata={"new": "1"})
    assert grants(s3.get_object_acl(Bucket=bucket, Key="src")) == canned(owner["ID"],
                                                                          "public-read")


@FILE
def test_multipart_upload_acl_is_the_objects(s3, owner, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m", ACL="public-read")
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload["UploadId"], PartNumber=1,
                          Body=b"part")
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})
    assert grants(s3.get_object_acl(Bucket=bucket, Key="m")) == canned(owner["ID"],
                                                                        "public-read")


# -- anonymous requests -----------------------------------------------------------------------

@FILE
def test_anonymous_get_of_public_object_in_private_encrypting_bucket(s3, anon, stored,
                                                                     new_bucket):
    bucket = new_bucket(ACL="private")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(200_000)
    s3.put_object(Bucket=bucket, Key="pub", Body=data, ACL="public-read")
    assert MARKER not in stored.read(bucket, "pub").body
    got = anon.get_object(Bucket=bucket, Key="pub")
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256"
    ranged = anon.get_object(Bucket=bucket, Key="pub", Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]
    assert anon.head_object(Bucket=bucket, Key="pub")["ContentLength"] == len(data)
    # The bucket is private: no listing, and a missing key is not told apart.
    assert failure(lambda: anon.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    assert failure(lambda: anon.get_object(Bucket=bucket, Key="nope")) == (403, "AccessDenied")
    # The object's ACL is not public-read-acp, nor writable by everyone.
    assert failure(lambda: anon.get_object_acl(Bucket=bucket, Key="pub")) == \
        (403, "AccessDenied")
    assert failure(lambda: anon.put_object(Bucket=bucket, Key="pub", Body=b"x")) == \
        (403, "AccessDenied")


@FILE
def test_anonymous_get_of_private_object_in_public_bucket(s3, anon, new_bucket):
    bucket = new_bucket(ACL="public-read")
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s", ACL="private")
    assert failure(lambda: anon.get_object(Bucket=bucket, Key="secret")) == \
        (403, "AccessDenied")
    assert failure(lambda: anon.head_object(Bucket=bucket, Key="secret"))[0] == 403
    # Listing is allowed, so a missing key is NoSuchKey (s3-tests' object_gone).
    assert failure(lambda: anon.get_object(Bucket=bucket, Key="gone")) == (404, "NoSuchKey")
    assert [o["Key"] for o in anon.list_objects(Bucket=bucket)["Contents"]] == ["secret"]
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]
    assert anon.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert failure(lambda: anon.delete_object(Bucket=bucket, Key="secret")) == \
        (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"s"


@FILE
def test_anonymous_put_into_public_read_write_bucket_is_encrypted(s3, anon, stored,
                                                                  new_bucket):
    bucket = new_bucket(ACL="public-read-write")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    data = marked(100_000)
    put = anon.put_object(Bucket=bucket, Key="drop", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    assert MARKER not in stored.read(bucket, "drop").body
    assert MARKER not in stored.all_bytes()
    assert s3.get_object(Bucket=bucket, Key="drop")["Body"].read() == data
    # Written without an ACL: private, so the anonymous writer cannot read it back.
    assert failure(lambda: anon.get_object(Bucket=bucket, Key="drop")) == (403, "AccessDenied")
    anon.delete_object(Bucket=bucket, Key="drop")
    assert failure(lambda: s3.head_object(Bucket=bucket, Key="drop"))[0] == 404


@FILE
def test_anonymous_multipart_upload_with_a_held_tail(s3, anon, stored, new_bucket):
    """A short last part goes through encproxy's internal bucket (held copies, records):
    encproxy's own sub-requests, which work for an allowed anonymous upload."""
    bucket = new_bucket(ACL="public-read-write")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    parts_data = [marked(5 * MiB), marked(1000)]
    upload = anon.create_multipart_upload(Bucket=bucket, Key="big", ACL="public-read")
    parts = []
    for number, data in enumerate(parts_data, 1):
        part = anon.upload_part(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                                PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    anon.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                                   MultipartUpload={"Parts": parts})
    assert anon.get_object(Bucket=bucket, Key="big")["Body"].read() == b"".join(parts_data)
    assert MARKER not in stored.all_bytes()


@FILE
def test_anonymous_put_into_private_bucket_writes_nothing(s3, anon, stored, bucket):
    data = marked(1000)
    assert failure(lambda: anon.put_object(Bucket=bucket, Key="x", Body=data)) == \
        (403, "AccessDenied")
    assert failure(lambda: anon.create_multipart_upload(Bucket=bucket, Key="x")) == \
        (403, "AccessDenied")
    assert failure(lambda: s3.head_object(Bucket=bucket, Key="x"))[0] == 404
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert MARKER not in stored.all_bytes()


@FILE
@pytest.mark.parametrize("call", [
    pytest.param(lambda c, b: c.get_bucket_encryption(Bucket=b), id="get-encryption"),
    pytest.param(lambda c, b: c.put_bucket_encryption(
        Bucket=b, ServerSideEncryptionConfiguration=SSE_S3), id="put-encryption"),
    pytest.param(lambda c, b: c.delete_bucket_encryption(Bucket=b), id="delete-encryption"),
    pytest.param(lambda c, b: c.list_buckets(), id="list-buckets"),
    pytest.param(lambda c, b: c.delete_bucket(Bucket=b), id="delete-bucket"),
    pytest.param(lambda c, b: c.create_bucket(Bucket=b + "-new"), id="create-bucket"),
    pytest.param(lambda c, b: c.get_bucket_versioning(Bucket=b), id="bucket-config"),
    pytest.param(lambda c, b: c.get_bucket_acl(Bucket=b), id="bucket-acl-read"),
    pytest.param(lambda c, b: c.put_bucket_acl(Bucket=b, ACL="private"), id="bucket-acl-write"),
    pytest.param(lambda c, b: c.get_bucket_location(Bucket=b), id="location"),
    pytest.param(lambda c, b: c.list_objects_v2(Bucket="encproxy-internal"),
                 id="internal-bucket-list"),
    pytest.param(lambda c, b: c.put_object(Bucket="encproxy-internal", Key="k", Body=b"x"),
                 id="internal-bucket-put"),
])
def test_anonymous_refusals(s3, anon, new_bucket, call):
    bucket = new_bucket(ACL="public-read-write")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    assert failure(lambda: call(anon, bucket)) == (403, "AccessDenied")
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == canned(
        s3.list_buckets()["Owner"]["ID"], "public-read-write")


@FILE
def test_anonymous_acl_permissions(s3, anon, owner, new_bucket):
    bucket = new_bucket(GrantReadACP=f'uri="{ALL_USERS}"', GrantWriteACP=f'uri="{ALL_USERS}"',
                        GrantFullControl=f'id="{owner["ID"]}"')
    assert grants(anon.get_bucket_acl(Bucket=bucket)) == grants(s3.get_bucket_acl(Bucket=bucket))
    anon.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == canned(owner["ID"], "public-read")
    anon.list_objects(Bucket=bucket)
    assert failure(lambda: anon.get_bucket_acl(Bucket=bucket)) == (403, "AccessDenied")


@FILE
def test_anonymous_post_object(server, s3, new_bucket):
    """s3-tests' test_post_object_anonymous_request: a form without any signature."""
    bucket = new_bucket(ACL="public-read-write")
    resp = requests.post(f"{server.endpoint}/{bucket}", files={
        "key": (None, "foo.txt"), "acl": (None, "public-read"),
        "Content-Type": (None, "text/plain"), "file": ("foo.txt", b"bar")})
    assert resp.status_code == 204, resp.text
    assert s3.get_object(Bucket=bucket, Key="foo.txt")["Body"].read() == b"bar"
    private = new_bucket(ACL="public-read")
    resp = requests.post(f"{server.endpoint}/{private}", files={
        "key": (None, "foo.txt"), "file": ("foo.txt", b"bar")})
    assert resp.status_code == 403 and b"AccessDenied" in resp.content
    assert failure(lambda: s3.head_object(Bucket=private, Key="foo.txt"))[0] == 404
    # Some authentication but no policy is not anonymous: refused as before.
    resp = requests.post(f"{server.endpoint}/{bucket}", files={
        "key": (None, "partial.txt"), "AWSAccessKeyId": (None, "nobody"),
        "file": ("partial.txt", b"bar")})
    assert resp.status_code == 403 and b"AccessDenied" in resp.content
    assert failure(lambda: s3.head_object(Bucket=bucket, Key="partial.txt"))[0] == 404


@FILE
@pytest.mark.parametrize("query,headers", [
    pytest.param("X-Amz-Signature=00", {}, id="signature-only"),
    pytest.param("X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request",
                 {}, id="credential-only"),
    pytest.param("AWSAccessKeyId=nobody&Expires=9999999999&Signature=abc", {},
                 id="sigv2-bad"),
    pytest.param("", {"Authorization": "AWS4-HMAC-SHA256 garbage"}, id="bad-header"),
])
def test_partial_or_bad_signatures_stay_refused(server, s3, new_bucket, query, headers):
    bucket = new_bucket(ACL="public-read")
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    assert requests.get(f"{server.endpoint}/{bucket}/pub").content == b"public"
    resp = requests.get(f"{server.endpoint}/{bucket}/pub?{query}", headers=headers)
    assert resp.status_code in (400, 403), resp.text
    assert b"public" not in resp.content


@pytest.mark.parametrize("backend", ["file", "moto"], indirect=True)
def test_anonymous_refused_whatever_the_acls_when_configured(backend, tmp_path_factory):
    """``[auth] anonymous = refuse``: AccessDenied for every anonymous request, on the file
    store and through an S3 backend, even for a public-read object in a public bucket."""
    running = start_server(tmp_path_factory.mktemp("refuse"),
                           env={**backend.server_env(), "ENCPROXY_AUTH_ANONYMOUS": "refuse"})
    try:
        s3 = make_client(running.endpoint)
        anon = boto3.client("s3", endpoint_url=running.endpoint, region_name="us-east-1",
                            config=Config(signature_version=botocore.UNSIGNED,
                                          s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))
        bucket = "refuse-" + uuid.uuid4().hex[:10]
        s3.create_bucket(Bucket=bucket, ACL="public-read-write")
        try:
            s3.put_object(Bucket=bucket, Key="o", Body=b"x", ACL="public-read")
            assert failure(lambda: anon.get_object(Bucket=bucket, Key="o")) == \
                (403, "AccessDenied")
            assert failure(lambda: anon.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
            assert failure(lambda: anon.put_object(Bucket=bucket, Key="n", Body=b"x")) == \
                (403, "AccessDenied")
            assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"
            assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["o"]
        finally:
            for key in ("o", "n"):
                s3.delete_object(Bucket=bucket, Key=key)
            s3.delete_bucket(Bucket=bucket)
    finally:
        running.stop()
