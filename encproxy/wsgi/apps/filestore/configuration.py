"""The file store's bucket and object configurations: it keeps none.

Reads are answered as S3 answers them for a bucket or object without that
configuration (``encproxy.s3.configuration_reads``), after the bucket (and the
object) is found, so that NoSuchBucket and NoSuchKey come first.  Deleting a
configuration that does not exist succeeds.  Writes are not implemented: the
app refuses them with NotImplemented, as it refuses any operation it has no
method for.
"""
from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

from encproxy.filestore.store import FileStore
from encproxy.s3 import configuration_reads as reads
from encproxy.wsgi.apps.filestore.common import OWNER_ID, OWNER_NAME, version_of
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import request_id, xml_response

Handler = Callable[[S3Request], Response]


class ConfigurationOperations:
    store: FileStore

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
        if op == "GetBucketAcl":
            return _acl(req)
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
        if op == "GetObjectAcl":
            return _acl(req, headers)
        return xml_response(reads.EMPTY_DOCUMENTS[op](), environ=req.environ, headers=headers)


def _acl(req: S3Request, headers: dict[str, str] | None = None) -> Response:
    resp = Response(reads.access_control_policy(OWNER_ID, OWNER_NAME), status=200,
                    content_type="application/xml", headers=headers)
    resp.headers["x-amz-request-id"] = request_id(req.environ)
    return resp
