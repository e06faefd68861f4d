"""The file store's service and bucket operations, object listings included."""
from __future__ import annotations

import base64
from collections.abc import Callable

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.records import ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.s3 import xml
from encproxy.s3.dates import iso8601
from encproxy.s3.names import check_bucket_name
from encproxy.wsgi.apps.filestore.common import (
    common_prefixes,
    encoder,
    list_params,
    owner_nodes,
    quoted,
    refuse_acl,
)
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response


class BucketOperations:
    store: FileStore
    region: str

    # -- service and buckets ----------------------------------------------------------
    def op_ListBuckets(self, req: S3Request) -> Response:
        root = xml.Node("ListAllMyBucketsResult")
        root.add("Owner", owner_nodes())
        buckets = root.add("Buckets")
        for b in self.store.list_buckets():
            buckets.add("Bucket", [xml.Node("Name", b.name),
                                   xml.Node("CreationDate", iso8601(b.created))])
        return xml_response(root, environ=req.environ)

    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        check_bucket_name(req.bucket)
        refuse_acl(req)
        body = req.read_small_body(xml.MAX_REQUEST_XML)
        if body.strip():
            config = xml.parse(body)
            if config.tag != "CreateBucketConfiguration":
                raise errors.MalformedXML()
            constraint = xml.child_text(config, "LocationConstraint")
            if constraint and constraint != self.region:
                raise errors.IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible for the region "
                    f"specific endpoint this request was sent to.")
        self.store.create_bucket(req.bucket)
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def op_HeadBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        return Response(b"", status=200, headers={"x-amz-bucket-region": self.region})

    def op_DeleteBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.delete_bucket(req.bucket)
        return Response(b"", status=204)

    def op_GetBucketLocation(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        # us-east-1 is reported as an empty constraint, as S3 does.
        return xml_response(xml.Node("LocationConstraint",
                                     None if self.region == "us-east-1" else self.region),
                            environ=req.environ)

    # -- listing ----------------------------------------------------------------------
    def op_ListObjects(self, req: S3Request) -> Response:
        assert req.bucket is not None
        prefix, delimiter, max_keys, url = list_params(req)
        marker = req.query.get("marker", "")
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=marker or None, max_keys=max_keys)
        enc = encoder(url)
        root = xml.Node("ListBucketResult")
        root.add("Name", req.bucket)
        root.add("Prefix", enc(prefix))
        root.add("Marker", enc(marker))
        if result.is_truncated and delimiter and result.next_marker:
            root.add("NextMarker", enc(result.next_marker))
        root.add("MaxKeys", max_keys)
        if delimiter:
            root.add("Delimiter", enc(delimiter))
        root.add("IsTruncated", result.is_truncated)
        root.extend(_contents(result.contents, enc, owner=True))
        root.extend(common_prefixes(result.common_prefixes, enc))
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        assert req.bucket is not None
        if req.query.get("list-type") != "2":
            raise errors.InvalidArgument("Invalid List Type specified in Request",
                                         ArgumentName="list-type",
                                         ArgumentValue=req.query.get("list-type", ""))
        prefix, delimiter, max_keys, url = list_params(req)
        token = req.query.get("continuation-token")
        start_after = req.query.get("start-after", "")
        after = _decode_token(token) if token is not None else (start_after or None)
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=after, max_keys=max_keys)
        enc = encoder(url)
        root = xml.Node("ListBucketResult")
        root.add("Name", req.bucket)
        root.add("Prefix", enc(prefix))
        if token is not None:
            root.add("ContinuationToken", token)
        if start_after:
            root.add("StartAfter", enc(start_after))
        root.add("KeyCount", len(result.contents) + len(result.common_prefixes))
        root.add("MaxKeys", max_keys)
        if delimiter:
            root.add("Delimiter", enc(delimiter))
        root.add("IsTruncated", result.is_truncated)
        if result.is_truncated and result.next_marker:
            root.add("NextContinuationToken", _encode_token(result.next_marker))
        owner = req.query.get("fetch-owner") == "true"
        root.extend(_contents(result.contents, enc, owner=owner))
        root.extend(common_prefixes(result.common_prefixes, enc))
        if url:
            root.add("EncodingType", "url")
        return xml_response(root, environ=req.environ)


def _contents(records: list[ObjectRecord], encode: Callable[[str], str],
              owner: bool) -> list[xml.Node]:
    out = []
    for r in records:
        node = xml.Node("Contents")
        node.add("Key", encode(r.key))
        node.add("LastModified", iso8601(r.last_modified))
        node.add("ETag", quoted(r.etag))
        node.add("Size", r.size)
        if owner:
            node.add("Owner", owner_nodes())
        node.add("StorageClass", r.meta.storage_class)
        out.append(node)
    return out


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None
