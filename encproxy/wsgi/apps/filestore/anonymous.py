"""What an anonymous caller may do on the file store: the stored ACLs decide.

On the file store (unless ``[auth] anonymous = refuse``; ``encproxy.wsgi.stack``)
the authentication middleware calls ``AnonymousAccess`` with a request that has
no credentials at all, before any layer below acts, and the request goes on only
if this returns.  As S3 maps ACL permissions of the AllUsers group
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html#permissions):

* bucket READ: list the bucket (v1, v2, versions, multipart uploads), HeadBucket;
* bucket WRITE: write and delete its objects (PutObject, POST Object,
  DeleteObject(s), the multipart operations);
* object READ: GetObject, HeadObject;
* READ_ACP / WRITE_ACP (of the bucket or the object): read / write that ACL;
* FULL_CONTROL: all of these.

CopyObject and UploadPartCopy need READ on the source object and WRITE on the
destination bucket.  Everything else (ListBuckets, bucket configurations,
``?encryption``, DeleteBucket, ...) is AccessDenied.  A bucket that does not exist
is NoSuchBucket; an object that does not exist is NoSuchKey when the caller may
list the bucket, AccessDenied otherwise (S3 does not tell a caller who cannot list
a bucket which keys it holds).

This is the one decision: the layers below (bucket encryption, the encryption
layer) act for the request once it is allowed, and their sub-requests, to the
client's bucket as to encproxy's internal bucket, are encproxy's own.  The
internal bucket is never allowed to an anonymous caller, whatever its ACL.
"""
from __future__ import annotations

from collections.abc import Collection

from encproxy import errors
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl
from encproxy.s3.copy_source import parse_copy_source
from encproxy.wsgi.request import S3Request

BUCKET_PERMISSIONS = {
    **dict.fromkeys(("ListObjects", "ListObjectsV2", "ListObjectVersions",
                     "ListMultipartUploads", "HeadBucket"), acl.READ),
    **dict.fromkeys(("PutObject", "PostObject", "DeleteObject", "DeleteObjects",
                     "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
                     "AbortMultipartUpload", "ListParts"), acl.WRITE),
    "GetBucketAcl": acl.READ_ACP,
    "PutBucketAcl": acl.WRITE_ACP,
}
OBJECT_PERMISSIONS = {
    "GetObject": acl.READ,
    "HeadObject": acl.READ,
    "GetObjectAcl": acl.READ_ACP,
    "PutObjectAcl": acl.WRITE_ACP,
}
COPIES = frozenset({"CopyObject", "UploadPartCopy"})


class AnonymousAccess:
    """Allow an anonymous request by the ACLs in ``store``, or raise S3's error.

    ``hidden`` names buckets no anonymous request may reach (encproxy's internal
    bucket).
    """

    def __init__(self, store: FileStore, hidden: Collection[str] = ()) -> None:
        self.store = store
        self.hidden = frozenset(hidden)

    def __call__(self, req: S3Request) -> None:
        op, bucket = req.operation, req.bucket
        if op is None or bucket is None or bucket in self.hidden:
            raise errors.AccessDenied()
        if op in BUCKET_PERMISSIONS:
            self._bucket_allows(bucket, BUCKET_PERMISSIONS[op])
        elif op in OBJECT_PERMISSIONS and req.key is not None:
            self._object_allows(bucket, req.key, OBJECT_PERMISSIONS[op],
                                req.query.get("versionId"))
        elif op in COPIES and req.key is not None and "x-amz-copy-source" in req.headers:
            source = parse_copy_source(req.headers["x-amz-copy-source"])
            if source.bucket in self.hidden:
                raise errors.AccessDenied()
            self._object_allows(source.bucket, source.key, acl.READ, source.version_id)
            self._bucket_allows(bucket, acl.WRITE)
        else:
            raise errors.AccessDenied()

    def _bucket_acl(self, bucket: str) -> acl.Acl:
        return self.store.bucket(bucket).acl or ()    # None: private, nothing for AllUsers

    def _bucket_allows(self, bucket: str, permission: str) -> None:
        if not acl.grants_to_all_users(self._bucket_acl(bucket), permission):
            raise errors.AccessDenied()

    def _object_allows(self, bucket: str, key: str, permission: str,
                       version_id: str | None = None) -> None:
        """By the ACL of the version asked for (each version has its own, as in S3)."""
        bucket_acl = self._bucket_acl(bucket)          # NoSuchBucket first
        try:
            record = self.store.head_object(bucket, key, version_id)
        except (errors.NoSuchKey, errors.NoSuchVersion, errors.MethodNotAllowed):
            if acl.grants_to_all_users(bucket_acl, acl.READ):
                raise
            raise errors.AccessDenied() from None
        if not acl.grants_to_all_users(record.meta.acl or (), permission):
            raise errors.AccessDenied()
