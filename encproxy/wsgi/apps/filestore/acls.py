"""The file store's access control lists: PutBucketAcl, GetBucketAcl, PutObjectAcl,
GetObjectAcl.

The store keeps each bucket's ACL in its bucket record and each object's in the
object's own file (encproxy/filestore/FORMAT.md), so a PutObject, CopyObject,
CompleteMultipartUpload or POST replaces an object and its ACL together.  One
account owns everything (``common.OWNER_ID``): grants can name it or S3's groups
(``encproxy.s3.acl``).  The ACLs decide what anonymous callers may do
(``anonymous.AnonymousAccess``); authenticated callers are that one owner.
"""
from __future__ import annotations

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl
from encproxy.wsgi.apps.filestore.common import (
    OWNER_ID,
    OWNER_NAME,
    acl_from_request,
    version_headers,
    version_of,
)
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import request_id


class AclOperations:
    store: FileStore

    def op_GetBucketAcl(self, req: S3Request) -> Response:
        assert req.bucket is not None
        return _policy(req, self.store.bucket(req.bucket).acl)

    def op_PutBucketAcl(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        self.store.put_bucket_acl(req.bucket, requested_acl(req))
        return Response(b"", status=200)

    def op_GetObjectAcl(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        record = self.store.head_object(req.bucket, req.key, version)
        return _policy(req, record.meta.acl, version_headers(
            self.store, req.bucket, record.version_id, version is not None))

    def op_PutObjectAcl(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        self.store.head_object(req.bucket, req.key, version)   # NoSuchBucket, NoSuchKey first
        record = self.store.put_object_acl(req.bucket, req.key, requested_acl(req), version)
        return Response(b"", status=200, headers=version_headers(
            self.store, req.bucket, record.version_id, version is not None))


def requested_acl(req: S3Request) -> acl.Acl:
    """The ACL a Put*Acl gives: by ``x-amz-acl``, by ``x-amz-grant-*``, or by an
    AccessControlPolicy body; headers and a body together are UnexpectedContent, as
    in S3, and neither is MalformedACLError."""
    body = req.read_small_body(acl.MAX_POLICY_XML)
    from_headers = acl_from_request(req)
    if body.strip():
        if from_headers is not None:
            raise errors.UnexpectedContent()
        return acl.parse_policy(body, OWNER_ID)
    if from_headers is None:
        raise errors.MalformedACLError()
    return from_headers


def _policy(req: S3Request, grants: acl.Acl | None,
            headers: dict[str, str] | None = None) -> Response:
    if grants is None:                  # never set: private (an empty ACL stays empty)
        grants = acl.owner_full_control(OWNER_ID)
    document = acl.policy_xml(grants, OWNER_ID, OWNER_NAME)
    resp = Response(document, status=200, content_type="application/xml", headers=headers)
    resp.headers["x-amz-request-id"] = request_id(req.environ)
    return resp
