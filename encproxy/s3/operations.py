"""Which S3 operation a request is (pure).

Every layer (authentication, encryption, backends) decides what to do from
the operation name, so the classification lives in one place.  Names are the
AWS API action names.  Subresources that encproxy does not know map to
``None``: the caller must refuse them, never guess.
"""
from __future__ import annotations

from collections.abc import Container, Mapping

# Bucket subresources that neither read nor write object bodies.
BUCKET_CONFIG_SUBRESOURCES = {
    "acl": "BucketAcl", "tagging": "BucketTagging", "cors": "BucketCors",
    "policy": "BucketPolicy", "policyStatus": "BucketPolicyStatus",
    "lifecycle": "BucketLifecycleConfiguration", "versioning": "BucketVersioning",
    "website": "BucketWebsite", "notification": "BucketNotificationConfiguration",
    "logging": "BucketLogging", "replication": "BucketReplication",
    "object-lock": "ObjectLockConfiguration", "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock", "accelerate": "BucketAccelerateConfiguration",
    "requestPayment": "BucketRequestPayment", "analytics": "BucketAnalyticsConfiguration",
    "inventory": "BucketInventoryConfiguration", "metrics": "BucketMetricsConfiguration",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
    "encryption": "BucketEncryption",
}
OBJECT_CONFIG_SUBRESOURCES = {
    "acl": "ObjectAcl", "tagging": "ObjectTagging", "legal-hold": "ObjectLegalHold",
    "retention": "ObjectRetention",
}
# Object subresources that touch bodies and that encproxy does not implement.
OBJECT_BODY_SUBRESOURCES = {
    "select": "SelectObjectContent", "restore": "RestoreObject", "torrent": "GetObjectTorrent",
}
_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head"}


def classify(method: str, bucket: str | None, key: str | None,
             query: Container[str], headers: Mapping[str, str]) -> str | None:
    """The operation name, or None when the request names nothing encproxy knows.

    ``query`` holds the query parameter names; ``headers`` maps lower-case
    header names to values.
    """
    if bucket is None:
        return "ListBuckets" if method == "GET" else None
    if key is None:
        return _bucket_operation(method, query)
    return _object_operation(method, query, headers)


def _bucket_operation(method: str, query: Container[str]) -> str | None:
    for sub, name in BUCKET_CONFIG_SUBRESOURCES.items():
        if sub in query:
            verb = _VERB.get(method)
            if verb is None or verb == "Head":
                return None
            return verb + name
    if method == "GET":
        if "location" in query:
            return "GetBucketLocation"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versions" in query:
            return "ListObjectVersions"
        if "list-type" in query:
            return "ListObjectsV2"
        return "ListObjects"
    if method == "POST":
        return "DeleteObjects" if "delete" in query else ("PostObject" if not query else None)
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method)


def _object_operation(method: str, query: Container[str], headers: Mapping[str, str]) -> str | None:
    for sub, name in OBJECT_BODY_SUBRESOURCES.items():
        if sub in query:
            return name
    for sub, name in OBJECT_CONFIG_SUBRESOURCES.items():
        if sub in query:
            verb = _VERB.get(method)
            return None if verb is None or verb == "Head" else verb + name
    if "attributes" in query:
        return "GetObjectAttributes" if method == "GET" else None
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return None
    return None
