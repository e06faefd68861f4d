"""What S3 answers for a bucket or object configuration that does not exist (pure).

A store that keeps no bucket or object configuration (encproxy's file store)
still answers every read of one, the way AWS S3 answers it for a bucket or
object that has none: clients ask before they act (s3fs reads the versioning
status before it deletes a bucket; ceph/s3-tests read tags).  Two
kinds of answer, each from the AWS API reference:

* **an empty document** (200): versioning never enabled (no ``Status``), no
  logging, no notifications, no transfer acceleration, the bucket owner pays,
  an object without tags;
* **S3's "no such configuration" error** (404): policy (and so policy
  status), bucket tags, lifecycle, website, replication, object lock,
  ownership controls, public access block; an analytics, inventory, metrics or
  intelligent-tiering configuration by id (and an empty list without one).

ACLs and CORS are not here: the file store keeps them (``encproxy.s3.acl``,
``encproxy.s3.cors``).

Object retention and legal hold need object lock, which such a bucket cannot
have: S3 answers ``InvalidRequest`` (400).  Deleting a configuration that does
not exist succeeds (204), as in S3.
"""
from __future__ import annotations

from collections.abc import Callable

from encproxy import errors
from encproxy.s3 import xml

#: Reads answered with a document.
EMPTY_DOCUMENTS: dict[str, Callable[[], xml.Node]] = {
    "GetBucketVersioning": lambda: xml.Node("VersioningConfiguration"),
    "GetBucketLogging": lambda: xml.Node("BucketLoggingStatus"),
    "GetBucketNotificationConfiguration": lambda: xml.Node("NotificationConfiguration"),
    "GetBucketAccelerateConfiguration": lambda: xml.Node("AccelerateConfiguration"),
    "GetBucketRequestPayment": lambda: xml.fields("RequestPaymentConfiguration",
                                                  {"Payer": "BucketOwner"}),
    "GetObjectTagging": lambda: xml.Node("Tagging", xml.Node("TagSet")),
}

#: Reads answered with S3's error for a configuration that does not exist.
MISSING: dict[str, type[errors.S3Error]] = {
    "GetBucketPolicy": errors.NoSuchBucketPolicy,
    "GetBucketPolicyStatus": errors.NoSuchBucketPolicy,
    "GetBucketTagging": errors.NoSuchTagSet,
    "GetBucketLifecycleConfiguration": errors.NoSuchLifecycleConfiguration,
    "GetBucketWebsite": errors.NoSuchWebsiteConfiguration,
    "GetBucketReplication": errors.ReplicationConfigurationNotFoundError,
    "GetObjectLockConfiguration": errors.ObjectLockConfigurationNotFoundError,
    "GetBucketOwnershipControls": errors.OwnershipControlsNotFoundError,
    "GetPublicAccessBlock": errors.NoSuchPublicAccessBlockConfiguration,
}

#: Configurations addressed by ``id``: the root element of their (empty) listing,
#: which is what a read without an ``id`` is.
LISTINGS = {
    "GetBucketAnalyticsConfiguration": "ListBucketAnalyticsConfigurationResult",
    "GetBucketInventoryConfiguration": "ListInventoryConfigurationsResult",
    "GetBucketMetricsConfiguration": "ListMetricsConfigurationsResult",
    "GetBucketIntelligentTieringConfiguration":
        "ListBucketIntelligentTieringConfigurationsOutput",
}

#: Object reads that need object lock, which the bucket does not have.
OBJECT_LOCK_READS = frozenset({"GetObjectRetention", "GetObjectLegalHold"})

#: Deletes of a bucket configuration that does not exist: 204 No Content.
BUCKET_DELETES = frozenset({
    "DeleteBucketPolicy", "DeleteBucketTagging",
    "DeleteBucketLifecycleConfiguration", "DeleteBucketWebsite", "DeleteBucketReplication",
    "DeleteBucketOwnershipControls", "DeletePublicAccessBlock",
})
#: Deletes of an object configuration that does not exist: 204 No Content.
OBJECT_DELETES = frozenset({"DeleteObjectTagging"})

#: Every bucket-level operation this module answers.
BUCKET_OPERATIONS = frozenset(
    {op for op in EMPTY_DOCUMENTS if op.startswith("GetBucket")} | set(MISSING)
    | set(LISTINGS) | BUCKET_DELETES
    | {op.replace("Get", "Delete", 1) for op in LISTINGS})
#: Every object-level operation this module answers.
OBJECT_OPERATIONS = frozenset(
    {"GetObjectTagging"} | OBJECT_LOCK_READS | OBJECT_DELETES)


def missing(operation: str, bucket: str) -> errors.S3Error:
    """S3's error for a read of a bucket configuration that does not exist."""
    return MISSING[operation](BucketName=bucket)


def no_such_configuration(configuration_id: str) -> errors.S3Error:
    """A configuration by ``id`` (analytics, inventory, metrics, intelligent-tiering)."""
    return errors.NoSuchConfiguration(Id=configuration_id)


def empty_listing(operation: str) -> xml.Node:
    """The listing of configurations by id when there are none."""
    return xml.Node(LISTINGS[operation], xml.Node("IsTruncated", False))


def object_lock_missing() -> errors.S3Error:
    return errors.InvalidRequest("Bucket is missing Object Lock Configuration")
