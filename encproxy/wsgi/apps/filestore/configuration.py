"""The file store's bucket and object configurations: it keeps CORS and tags (below),
ACLs (acls.py) and versioning (buckets.py), and no other.

Object tags (per version) and bucket tags are kept in the store's index
(``encproxy.s3.tagging`` checks them).  PutBucketCors, GetBucketCors and
DeleteBucketCors keep the bucket's CORS
configuration (``encproxy.s3.cors``) in its bucket record; the CORS layer
(``wsgi.edge.preflight``) evaluates it for preflights and for requests that
carry ``Origin`` (``preflight.py`` here).

Other reads are answered as S3 answers them for a bucket or object without that
configuration (``encproxy.s3.configuration_reads``), after the bucket (and the
object) is found, so that NoSuchBucket and NoSuchKey come first.  Deleting a
configuration that does not exist succeeds.  Writes are not implemented: the
app refuses them with NotImplemented, as it refuses any operation it has no
method for.
"""
from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.store import FileStore
from encproxy.s3 import configuration_reads as reads
from encproxy.s3 import cors, tagging
from encproxy.wsgi.apps.filestore.common import version_headers, version_of
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response

Handler = Callable[[S3Request], Response]


class ConfigurationOperations:
    store: FileStore

    def op_PutBucketCors(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        # S3 requires a digest of this body (the auth layer has verified any given).
        if not ("content-md5" in req.headers or "x-amz-trailer" in req.headers
                or any(h.startswith("x-amz-checksum-") for h in req.headers)):
            raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
        if req.content_length(required=False) > cors.MAX_CONFIGURATION_XML:
            raise errors.MaxMessageLengthExceeded()
        rules = cors.parse_configuration(req.read_small_body(cors.MAX_CONFIGURATION_XML))
        self.store.put_bucket_cors(req.bucket, rules)
        return Response(b"", status=200)

    def op_GetBucketCors(self, req: S3Request) -> Response:
        assert req.bucket is not None
        rules = self.store.bucket(req.bucket).cors
        if rules is None:
            raise errors.NoSuchCORSConfiguration(BucketName=req.bucket)
        return xml_response(cors.configuration_xml(rules), environ=req.environ)

    def op_DeleteBucketCors(self, req: S3Request) -> Response:
        assert req.bucket is not None
        if self.store.bucket(req.bucket).cors is not None:     # NoSuchBucket first
            self.store.put_bucket_cors(req.bucket, None)
        return Response(b"", status=204)

    # -- tags -------------------------------------------------------------------------------
    def op_GetObjectTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        version_id, tags = self.store.object_tags(req.bucket, req.key, version)
        return xml_response(tagging.tagging_xml(tags), environ=req.environ,
                            headers=version_headers(self.store, req.bucket, version_id,
                                                    version is not None))

    def op_PutObjectTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        tags = tagging.parse_tagging(req.read_small_body(tagging.MAX_TAGGING_XML))
        version_id = self.store.put_object_tags(req.bucket, req.key, tags, version)
        return Response(b"", status=200, headers=version_headers(
            self.store, req.bucket, version_id, version is not None))

    def op_DeleteObjectTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        version = version_of(req)
        version_id = self.store.put_object_tags(req.bucket, req.key, None, version)
        return Response(b"", status=204, headers=version_headers(
            self.store, req.bucket, version_id, version is not None))

    def op_GetBucketTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None
        tags = self.store.bucket_tags(req.bucket)
        if tags is None:
            raise errors.NoSuchTagSet(BucketName=req.bucket)
        return xml_response(tagging.tagging_xml(tags), environ=req.environ)

    def op_PutBucketTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        tags = tagging.parse_tagging(req.read_small_body(tagging.MAX_TAGGING_XML),
                                     tagging.MAX_BUCKET_TAGS)
        self.store.put_bucket_tags(req.bucket, tags)
        return Response(b"", status=204)

    def op_DeleteBucketTagging(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.put_bucket_tags(req.bucket, None)
        return Response(b"", status=204)

    def configuration_handler(self, operation: str) -> Handler | None:
        """The method that answers ``operation``, if it is a configuration this store
        answers for; None otherwise."""
        if operation in reads.BUCKET_OPERATIONS:
            return self._bucket_configuration
        if operation in reads.OBJECT_OPERATIONS:
            return self._object_configuration
        return None

    def _bucket_configuration(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.operation is not None
        op = req.operation
        self.store.require_bucket(req.bucket)
        if op in reads.BUCKET_DELETES:
            return Response(b"", status=204)
        if op in reads.EMPTY_DOCUMENTS:
            return xml_response(reads.EMPTY_DOCUMENTS[op](), environ=req.environ)
        if op in reads.MISSING:
            raise reads.missing(op, req.bucket)
        if op in reads.LISTINGS and op.startswith("Get") and "id" not in req.query:
            return xml_response(reads.empty_listing(op), environ=req.environ)
        # A configuration by id (get or delete): there is none.
        raise reads.no_such_configuration(req.query.get("id", ""))

    def _object_configuration(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None and req.operation is not None
        op = req.operation
        version = version_of(req)
        record = self.store.head_object(req.bucket, req.key, version)  # NoSuchKey, ...
        headers = version_headers(self.store, req.bucket, record.version_id,
                                  version is not None)
        if op in reads.OBJECT_DELETES:
            return Response(b"", status=204, headers=headers)
        if op in reads.OBJECT_LOCK_READS:
            raise reads.object_lock_missing()
        return xml_response(reads.EMPTY_DOCUMENTS[op](), environ=req.environ, headers=headers)

