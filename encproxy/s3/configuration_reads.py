"""What S3 answers for a bucket or object configuration that does not exist (pure).

A store that keeps no bucket or object configuration (encproxy's file store)
still answers every read of one, the way AWS S3 answers it for a bucket or
object that has none: clients ask before they act (s3fs reads the versioning
status before it deletes a bucket; ceph/s3-tests read ACLs and tags).  Three
kinds of answer, each from the AWS API reference:

* **an empty document** (200): versioning never enabled (no ``Status``), no
  logging, no notifications, no transfer acceleration, the bucket owner pays,
  an object without tags;
* **S3's "no such configuration" error** (404): CORS, policy (and so policy
  status), bucket tags, lifecycle, website, replication, object lock,
  ownership controls, public access block; an analytics, inventory, metrics or
  intelligent-tiering configuration by id (and an empty list without one);
* **the owner's ACL**: the one owner with FULL_CONTROL, as a bucket or object
  gets it when it is created without grants.

Object retention and legal hold need object lock, which such a bucket cannot
have: S3 answers ``InvalidRequest`` (400).  Deleting a configuration that does
not exist succeeds (204), as in S3.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from encproxy import errors
from encproxy.s3 import xml

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

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
    "GetBucketCors": errors.NoSuchCORSConfiguration,
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

#: Access control lists: the owner's FULL_CONTROL.
ACL_READS = frozenset({"GetBucketAcl", "GetObjectAcl"})

#: Deletes of a bucket configuration that does not exist: 204 No Content.
BUCKET_DELETES = frozenset({
    "DeleteBucketCors", "DeleteBucketPolicy", "DeleteBucketTagging",
    "DeleteBucketLifecycleConfiguration", "DeleteBucketWebsite", "DeleteBucketReplication",
    "DeleteBucketOwnershipControls", "DeletePublicAccessBlock",
})
#: Deletes of an object configuration that does not exist: 204 No Content.
OBJECT_DELETES = frozenset({"DeleteObjectTagging"})

#: Every bucket-level operation this module answers.
BUCKET_OPERATIONS = frozenset(
    {op for op in EMPTY_DOCUMENTS if op.startswith("GetBucket")} | set(MISSING)
    | set(LISTINGS) | {"GetBucketAcl"} | BUCKET_DELETES
    | {op.replace("Get", "Delete", 1) for op in LISTINGS})
#: Every object-level operation this module answers.
OBJECT_OPERATIONS = frozenset(
    {"GetObjectTagging", "GetObjectAcl"} | OBJECT_LOCK_READS | OBJECT_DELETES)


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


def access_control_policy(owner_id: str, display_name: str) -> bytes:
    """The ACL of a bucket or object created without grants: the owner's FULL_CONTROL.

    ``Grantee`` carries ``xsi:type``, which clients read as the grantee's type,
    so the document is built as an element (``xml.Node`` has no attributes).
    """
    root = ET.Element("AccessControlPolicy")
    _owner(ET.SubElement(root, "Owner"), owner_id, display_name)
    grant = ET.SubElement(ET.SubElement(root, "AccessControlList"), "Grant")
    grantee = ET.SubElement(grant, "Grantee", {"xmlns:xsi": XSI_NS,
                                               "xsi:type": "CanonicalUser"})
    _owner(grantee, owner_id, display_name)
    ET.SubElement(grant, "Permission").text = "FULL_CONTROL"
    return xml.render_element(root)


def _owner(parent: ET.Element, owner_id: str, display_name: str) -> None:
    ET.SubElement(parent, "ID").text = owner_id
    ET.SubElement(parent, "DisplayName").text = display_name
