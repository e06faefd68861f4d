"""The file store keeps no bucket or object configuration but ACLs and CORS, and answers
every read of one as AWS S3 answers for a bucket or object that has none
(docs/BACKENDS.md, the file store): an empty document, S3's "no such configuration" error
(CORS too, until PutBucketCors), or (for ACLs never set) the owner's FULL_CONTROL ACL.
Deleting a configuration that does not exist succeeds; writes are 501 NotImplemented,
ACLs and CORS aside (kept since issue 15: test_filestore_acl.py, test_cors_preflight.py),
and versioning and tags (kept since issue 17: test_versioning_filestore.py).

boto3 through the real server, on the file store only (an S3 backend answers these itself:
test_backend_passthrough.py).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.parametrize("backend", ["file"], indirect=True)

SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
KEY = "o"


def failure(call: Callable[[], Any]) -> tuple[int, str, dict[str, Any]]:
    with pytest.raises(ClientError) as exc:
        call()
    error = exc.value.response["Error"]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error


def without_metadata(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "ResponseMetadata"}


@pytest.fixture(params=["plain", "encrypted"])
def filled(request, s3, bucket) -> str:
    """A bucket with one object; the encryption layer must pass these calls unchanged."""
    if request.param == "encrypted":
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"data")
    yield bucket
    s3.delete_object(Bucket=bucket, Key=KEY)


# -- documents -------------------------------------------------------------------------------

@pytest.mark.parametrize("call,expected", [
    pytest.param(lambda s3, b: s3.get_bucket_versioning(Bucket=b), {}, id="versioning"),
    pytest.param(lambda s3, b: s3.get_bucket_logging(Bucket=b), {}, id="logging"),
    pytest.param(lambda s3, b: s3.get_bucket_notification_configuration(Bucket=b), {},
                 id="notification"),
    pytest.param(lambda s3, b: s3.get_bucket_accelerate_configuration(Bucket=b), {},
                 id="accelerate"),
    pytest.param(lambda s3, b: s3.get_bucket_request_payment(Bucket=b),
                 {"Payer": "BucketOwner"}, id="request-payment"),
    pytest.param(lambda s3, b: s3.get_object_tagging(Bucket=b, Key=KEY), {"TagSet": []},
                 id="object-tagging"),
    pytest.param(lambda s3, b: s3.get_object_tagging(Bucket=b, Key=KEY, VersionId="null"),
                 {"TagSet": [], "VersionId": "null"}, id="object-tagging-null-version"),
    pytest.param(lambda s3, b: s3.list_bucket_analytics_configurations(Bucket=b),
                 {"IsTruncated": False}, id="analytics-list"),
    pytest.param(lambda s3, b: s3.list_bucket_inventory_configurations(Bucket=b),
                 {"IsTruncated": False}, id="inventory-list"),
    pytest.param(lambda s3, b: s3.list_bucket_metrics_configurations(Bucket=b),
                 {"IsTruncated": False}, id="metrics-list"),
    pytest.param(lambda s3, b: s3.list_bucket_intelligent_tiering_configurations(Bucket=b),
                 {"IsTruncated": False}, id="intelligent-tiering-list"),
])
def test_empty_documents(s3, filled, call, expected):
    result = call(s3, filled)
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert without_metadata(result) == expected


def test_versioning_was_never_enabled_so_s3fs_can_delete_a_bucket(s3):
    """s3fs reads the versioning status before it deletes a bucket."""
    name = "cfg-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    status = s3.get_bucket_versioning(Bucket=name)
    assert "Status" not in status and "MFADelete" not in status
    s3.delete_bucket(Bucket=name)
    assert failure(lambda: s3.get_bucket_versioning(Bucket=name))[:2] == (404, "NoSuchBucket")


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.get_bucket_acl(Bucket=b), id="bucket"),
    pytest.param(lambda s3, b: s3.get_object_acl(Bucket=b, Key=KEY), id="object"),
    pytest.param(lambda s3, b: s3.get_object_acl(Bucket=b, Key=KEY, VersionId="null"),
                 id="object-null-version"),
])
def test_acl_is_the_owners_full_control(s3, filled, call):
    owner = s3.list_buckets()["Owner"]
    assert owner["ID"] and owner["DisplayName"]
    acl = call(s3, filled)
    assert acl["Owner"] == owner
    assert acl["Grants"] == [{"Grantee": {**owner, "Type": "CanonicalUser"},
                              "Permission": "FULL_CONTROL"}]


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call,status,code", [
    pytest.param(lambda s3, b: s3.get_bucket_cors(Bucket=b), 404, "NoSuchCORSConfiguration",
                 id="cors"),
    pytest.param(lambda s3, b: s3.get_bucket_policy(Bucket=b), 404, "NoSuchBucketPolicy",
                 id="policy"),
    pytest.param(lambda s3, b: s3.get_bucket_policy_status(Bucket=b), 404,
                 "NoSuchBucketPolicy", id="policy-status"),
    pytest.param(lambda s3, b: s3.get_bucket_tagging(Bucket=b), 404, "NoSuchTagSet",
                 id="bucket-tagging"),
    pytest.param(lambda s3, b: s3.get_bucket_lifecycle_configuration(Bucket=b), 404,
                 "NoSuchLifecycleConfiguration", id="lifecycle"),
    pytest.param(lambda s3, b: s3.get_bucket_website(Bucket=b), 404,
                 "NoSuchWebsiteConfiguration", id="website"),
    pytest.param(lambda s3, b: s3.get_bucket_replication(Bucket=b), 404,
                 "ReplicationConfigurationNotFoundError", id="replication"),
    pytest.param(lambda s3, b: s3.get_object_lock_configuration(Bucket=b), 404,
                 "ObjectLockConfigurationNotFoundError", id="object-lock"),
    pytest.param(lambda s3, b: s3.get_bucket_ownership_controls(Bucket=b), 404,
                 "OwnershipControlsNotFoundError", id="ownership-controls"),
    pytest.param(lambda s3, b: s3.get_public_access_block(Bucket=b), 404,
                 "NoSuchPublicAccessBlockConfiguration", id="public-access-block"),
])
def test_no_such_configuration(s3, filled, call, status, code):
    got_status, got_code, error = failure(lambda: call(s3, filled))
    assert (got_status, got_code) == (status, code)
    assert error["BucketName"] == filled


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.get_bucket_analytics_configuration(Bucket=b, Id="a"),
                 id="analytics"),
    pytest.param(lambda s3, b: s3.get_bucket_inventory_configuration(Bucket=b, Id="a"),
                 id="inventory"),
    pytest.param(lambda s3, b: s3.get_bucket_metrics_configuration(Bucket=b, Id="a"),
                 id="metrics"),
    pytest.param(lambda s3, b: s3.get_bucket_intelligent_tiering_configuration(Bucket=b,
                                                                             Id="a"),
                 id="intelligent-tiering"),
    pytest.param(lambda s3, b: s3.delete_bucket_metrics_configuration(Bucket=b, Id="a"),
                 id="delete-metrics"),
])
def test_configuration_by_id_does_not_exist(s3, filled, call):
    status, code, _ = failure(lambda: call(s3, filled))
    assert (status, code) == (404, "NoSuchConfiguration")


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.get_object_retention(Bucket=b, Key=KEY), id="retention"),
    pytest.param(lambda s3, b: s3.get_object_legal_hold(Bucket=b, Key=KEY), id="legal-hold"),
])
def test_object_lock_reads_need_object_lock(s3, filled, call):
    status, code, error = failure(lambda: call(s3, filled))
    assert (status, code) == (400, "InvalidRequest")
    assert "Object Lock" in error["Message"]


BUCKET_READS = [
    pytest.param(lambda s3, b: s3.get_bucket_versioning(Bucket=b), id="versioning"),
    pytest.param(lambda s3, b: s3.get_bucket_acl(Bucket=b), id="acl"),
    pytest.param(lambda s3, b: s3.get_bucket_cors(Bucket=b), id="cors"),
    pytest.param(lambda s3, b: s3.get_bucket_policy(Bucket=b), id="policy"),
    pytest.param(lambda s3, b: s3.get_bucket_tagging(Bucket=b), id="tagging"),
    pytest.param(lambda s3, b: s3.get_bucket_logging(Bucket=b), id="logging"),
    pytest.param(lambda s3, b: s3.get_public_access_block(Bucket=b), id="public-access-block"),
    pytest.param(lambda s3, b: s3.get_bucket_request_payment(Bucket=b), id="request-payment"),
    pytest.param(lambda s3, b: s3.list_bucket_metrics_configurations(Bucket=b),
                 id="metrics-list"),
    pytest.param(lambda s3, b: s3.delete_bucket_cors(Bucket=b), id="delete-cors"),
]


@pytest.mark.parametrize("call", BUCKET_READS)
def test_no_such_bucket_comes_first(s3, call):
    missing = "nope-" + uuid.uuid4().hex[:12]
    status, code, _ = failure(lambda: call(s3, missing))
    assert (status, code) == (404, "NoSuchBucket")


@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b, k: s3.get_object_acl(Bucket=b, Key=k), id="acl"),
    pytest.param(lambda s3, b, k: s3.get_object_tagging(Bucket=b, Key=k), id="tagging"),
    pytest.param(lambda s3, b, k: s3.get_object_retention(Bucket=b, Key=k), id="retention"),
    pytest.param(lambda s3, b, k: s3.get_object_legal_hold(Bucket=b, Key=k), id="legal-hold"),
    pytest.param(lambda s3, b, k: s3.delete_object_tagging(Bucket=b, Key=k),
                 id="delete-tagging"),
])
def test_no_such_key_comes_first(s3, filled, call):
    status, code, _ = failure(lambda: call(s3, filled, "missing"))
    assert (status, code) == (404, "NoSuchKey")
    missing = "nope-" + uuid.uuid4().hex[:12]
    status, code, _ = failure(lambda: call(s3, missing, KEY))
    assert (status, code) == (404, "NoSuchBucket")


@pytest.mark.parametrize("version,message", [
    pytest.param("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", "Invalid version id specified",
                 id="other-version"),
    pytest.param("", "Version id cannot be the empty string", id="empty"),
])
def test_object_reads_of_a_version_that_cannot_exist(s3, filled, version, message):
    for call in (s3.get_object_acl, s3.get_object_tagging):
        status, code, error = failure(lambda: call(Bucket=filled, Key=KEY,  # noqa: B023
                                                   VersionId=version))
        assert (status, code) == (400, "InvalidArgument")
        assert error["Message"] == message


# -- deletes and writes ----------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    pytest.param(lambda s3, b: s3.delete_bucket_cors(Bucket=b), id="cors"),
    pytest.param(lambda s3, b: s3.delete_bucket_policy(Bucket=b), id="policy"),
    pytest.param(lambda s3, b: s3.delete_bucket_tagging(Bucket=b), id="tagging"),
    pytest.param(lambda s3, b: s3.delete_bucket_lifecycle(Bucket=b), id="lifecycle"),
    pytest.param(lambda s3, b: s3.delete_bucket_website(Bucket=b), id="website"),
    pytest.param(lambda s3, b: s3.delete_bucket_replication(Bucket=b), id="replication"),
    pytest.param(lambda s3, b: s3.delete_bucket_ownership_controls(Bucket=b),
                 id="ownership-controls"),
    pytest.param(lambda s3, b: s3.delete_public_access_block(Bucket=b),
                 id="public-access-block"),
    pytest.param(lambda s3, b: s3.delete_object_tagging(Bucket=b, Key=KEY),
                 id="object-tagging"),
])
def test_deleting_a_configuration_that_does_not_exist_succeeds(s3, filled, call):
    assert call(s3, filled)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # ...and the bucket and its object are untouched.
    assert s3.get_object(Bucket=filled, Key=KEY)["Body"].read() == b"data"


@pytest.mark.parametrize("write,read", [
    # (Versioning and tags are kept: tests/api/test_versioning_filestore.py.)
    pytest.param(lambda s3, b: s3.put_bucket_policy(Bucket=b, Policy="{}"),
                 lambda s3, b: failure(lambda: s3.get_bucket_policy(Bucket=b))[1],
                 id="policy"),
    pytest.param(lambda s3, b: s3.put_public_access_block(
        Bucket=b, PublicAccessBlockConfiguration={"BlockPublicAcls": True}),
        lambda s3, b: failure(lambda: s3.get_public_access_block(Bucket=b))[1],
        id="public-access-block"),
])
def test_writes_are_not_implemented_and_change_nothing(s3, filled, write, read):
    before = read(s3, filled)
    status, code, _ = failure(lambda: write(s3, filled))
    assert (status, code) == (501, "NotImplemented")
    assert read(s3, filled) == before


def test_list_buckets_pages_by_prefix_max_buckets_and_token(s3):
    """ListBuckets' paging parameters (AWS, 2024) are honoured, never ignored."""
    prefix = "page-" + uuid.uuid4().hex[:8] + "-"
    names = [prefix + str(i) for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    seen, token, pages = [], None, 0
    while True:
        args = {"Prefix": prefix, "MaxBuckets": 2}
        if token:
            args["ContinuationToken"] = token
        page = s3.list_buckets(**args)
        pages += 1
        seen += [b["Name"] for b in page["Buckets"]]
        assert len(page["Buckets"]) <= 2 and page["Prefix"] == prefix
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == names and pages == 3
    assert [b["Name"] for b in s3.list_buckets(Prefix=prefix)["Buckets"]] == names
    assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-3")["Buckets"] == []
    assert failure(lambda: s3.list_buckets(ContinuationToken="!!"))[:2] == \
        (400, "InvalidArgument")
    for name in names:
        s3.delete_bucket(Bucket=name)
