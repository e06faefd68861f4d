"""The file store's bucket and object configurations: it keeps CORS (below) and ACLs
(acls.py), and no other.

PutBucketCors, GetBucketCors and DeleteBucketCors keep the bucket's CORS
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
from encproxy.s3 import cors
from encproxy.wsgi.apps.filestore.common import version_of
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
        self.store.head_object(req.bucket, req.key)  # NoSuchBucket, NoSuchKey
        headers = {} if version is None else {"x-amz-version-id": version}
        if op in reads.OBJECT_DELETES:
            return Response(b"", status=204, headers=headers)
        if op in reads.OBJECT_LOCK_READS:
            raise reads.object_lock_missing()
        return xml_response(reads.EMPTY_DOCUMENTS[op](), environ=req.environ, headers=headers)

