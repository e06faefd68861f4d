"""Which S3 operation a request is, decided by allowlist (pure).

Every layer (authentication, encryption, backends) decides what to do from
the operation name, so the classification lives in one place.  Names are the
AWS API action names.

A request is classified in two steps, both by allowlist:

1. the method, the path (service, bucket or object) and the subresource in the
   query name an operation (:func:`name_operation`);
2. every query parameter must be one that operation takes (:data:`PARAMETERS`,
   from the AWS API model) or one that any request may carry
   (:data:`ANY_OPERATION`: the SDKs' routing hint and a presigned URL's
   authentication).

A request that names nothing encproxy knows, or that carries a parameter its
operation does not take, classifies as ``None``.  Every layer hands ``None``
down untouched, and the backend app refuses it (:func:`refusal`) before
anything acts on it.  The second step matters because AWS keeps adding
subresources to existing paths: ``PUT /b/k?renameObject`` would otherwise be
taken for PutObject (an empty object written), ``PUT /b/k?encryption`` for
PutObject (the object replaced by the XML body), ``DELETE /b/k?annotation``
for DeleteObject (the object deleted).
"""
from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping

from encproxy import errors

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
# Bucket configurations addressed by an ``id`` (and listed, without one, page by page).
_CONFIGURATIONS_BY_ID = frozenset({"analytics", "inventory", "metrics", "intelligent-tiering"})
_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head"}
#: The methods S3 has; any other is MethodNotAllowed, not NotImplemented.
METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})

# -- query parameters ------------------------------------------------------------------

#: A presigned URL's Signature Version 4 authentication.  ``X-Amz-Content-Sha256``
#: is not in AWS's list, but the Node SDK v3 presigner always signs it into the URL.
SIGV4_QUERY_AUTH = frozenset({
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Content-Sha256",
})
#: A presigned URL's Signature Version 2 authentication.
SIGV2_QUERY_AUTH = frozenset({"AWSAccessKeyId", "Signature", "Expires"})
#: Parameters any request may carry: the client's authentication (never forwarded:
#: encproxy signs its own requests) and the SDKs' routing hint ``x-id``.
ANY_OPERATION = SIGV4_QUERY_AUTH | SIGV2_QUERY_AUTH | {"x-id"}

_LISTING = frozenset({"delimiter", "encoding-type", "prefix"})
# Ceph RGW's extension: the keys may come unordered (file store: see its listing).
ALLOW_UNORDERED = "allow-unordered"
_OVERRIDES = frozenset({"response-cache-control", "response-content-disposition",
                        "response-content-encoding", "response-content-language",
                        "response-content-type", "response-expires"})
# ``x-amz-checksum-mode`` is a header that presigners (Node SDK v3) hoist into the
# query; it only asks for checksums in the answer.
_READ = _OVERRIDES | {"versionId", "partNumber", "x-amz-checksum-mode"}
_UPLOAD = frozenset({"partNumber", "uploadId"})
#: What S3 appends to a POST Object's ``success_action_redirect`` URL.  A form may
#: redirect the browser to a listing or an object of the same gateway, which S3
#: answers as if the parameters were absent; they name no subresource.
POST_REDIRECT = frozenset({"bucket", "key", "etag"})


def _configuration_parameters() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {}
    for sub, name in BUCKET_CONFIG_SUBRESOURCES.items():
        by_id = sub in _CONFIGURATIONS_BY_ID
        table["Get" + name] = frozenset({sub, "id", "continuation-token"} if by_id else {sub})
        for verb in ("Put", "Delete"):
            table[verb + name] = frozenset({sub, "id"} if by_id else {sub})
    for sub, name in OBJECT_CONFIG_SUBRESOURCES.items():
        for verb in ("Get", "Put", "Delete"):
            table[verb + name] = frozenset({sub, "versionId"})
    return table


#: The query parameters each operation takes (the AWS API model's ``querystring``
#: members, and the subresource that names it).  The one table every backend uses.
PARAMETERS: dict[str, frozenset[str]] = {
    "ListBuckets": frozenset({"max-buckets", "continuation-token", "prefix", "bucket-region"}),
    "CreateBucket": frozenset(), "HeadBucket": frozenset(), "DeleteBucket": frozenset(),
    "GetBucketLocation": frozenset({"location"}),
    "ListObjects": _LISTING | POST_REDIRECT | {"marker", "max-keys", ALLOW_UNORDERED},
    "ListObjectsV2": _LISTING | {"list-type", "continuation-token", "fetch-owner", "max-keys",
                                 "start-after", ALLOW_UNORDERED},
    "ListObjectVersions": _LISTING | {"versions", "key-marker", "max-keys",
                                      "version-id-marker"},
    "ListMultipartUploads": _LISTING | {"uploads", "key-marker", "max-uploads",
                                        "upload-id-marker"},
    "DeleteObjects": frozenset({"delete"}),
    "PostObject": frozenset(),
    "PutObject": frozenset(), "CopyObject": frozenset(),
    "GetObject": _READ | POST_REDIRECT, "HeadObject": _READ | POST_REDIRECT,
    "DeleteObject": frozenset({"versionId"}),
    "GetObjectAttributes": frozenset({"attributes", "versionId"}),
    "UpdateObjectEncryption": frozenset({"encryption", "versionId"}),
    "CreateMultipartUpload": frozenset({"uploads"}),
    "UploadPart": _UPLOAD, "UploadPartCopy": _UPLOAD,
    "CompleteMultipartUpload": frozenset({"uploadId"}),
    "AbortMultipartUpload": frozenset({"uploadId"}),
    "ListParts": frozenset({"uploadId", "max-parts", "part-number-marker"}),
    "SelectObjectContent": frozenset({"select", "select-type"}),
    "RestoreObject": frozenset({"restore", "versionId"}),
    "GetObjectTorrent": frozenset({"torrent"}),
    **_configuration_parameters(),
}


def stray_parameter(operation: str, names: Iterable[str]) -> str | None:
    """The first query parameter ``operation`` does not take, or None."""
    allowed = PARAMETERS.get(operation, frozenset())
    for name in names:
        if name not in allowed and name not in ANY_OPERATION:
            return name
    return None


def check_parameters(operation: str, names: Iterable[str]) -> None:
    """NotImplemented for a query parameter that ``operation`` does not take."""
    stray = stray_parameter(operation, names)
    if stray is not None:
        raise _stray_error(operation, stray)


def _stray_error(operation: str, stray: str) -> errors.S3Error:
    return errors.NotImplementedError_(
        f"encproxy does not implement the query parameter {stray!r} with {operation}.",
        ArgumentName=stray)


# -- classification --------------------------------------------------------------------

def classify(method: str, bucket: str | None, key: str | None,
             query: Collection[str], headers: Mapping[str, str]) -> str | None:
    """The operation name, or None when the request must be refused (:func:`refusal`).

    ``query`` holds the query parameter names; ``headers`` maps lower-case
    header names to values.
    """
    operation = name_operation(method, bucket, key, query, headers)
    if operation is None or stray_parameter(operation, query) is not None:
        return None
    return operation


def refusal(method: str, bucket: str | None, key: str | None,
            query: Collection[str], headers: Mapping[str, str]) -> errors.S3Error:
    """The error for a request that :func:`classify` names None."""
    if method not in METHODS:
        return errors.MethodNotAllowed(Method=method, ResourceType="OBJECT")
    named = name_operation(method, bucket, key, query, headers)
    if named is not None:
        stray = stray_parameter(named, query)
        if stray is not None:
            return _stray_error(named, stray)
    return errors.NotImplementedError_("encproxy does not implement this request.")


def name_operation(method: str, bucket: str | None, key: str | None,
                   query: Container[str], headers: Mapping[str, str]) -> str | None:
    """What the method, path and subresource name, before the parameters are checked."""
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
        return "DeleteObjects" if "delete" in query else "PostObject"
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
    if "encryption" in query:
        # UpdateObjectEncryption (AWS, 2025): re-keys an object without rewriting it.
        return "UpdateObjectEncryption" if method == "PUT" else None
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
