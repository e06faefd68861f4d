"""``FileStoreApp``: the dispatch from an S3 operation to its ``op_<Operation>`` method.

The operations themselves are the mixins of buckets.py, objects.py, multipart.py,
acls.py and configuration.py.  A request the classification refused (operation None: unknown, or
a query parameter its operation does not take) is refused here before anything else.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.store import FileStore
from encproxy.s3.names import check_bucket_name
from encproxy.wsgi.apps.filestore.acls import AclOperations
from encproxy.wsgi.apps.filestore.buckets import BucketOperations
from encproxy.wsgi.apps.filestore.configuration import ConfigurationOperations
from encproxy.wsgi.apps.filestore.multipart import MultipartOperations
from encproxy.wsgi.apps.filestore.objects import ObjectOperations
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import s3_error_boundary


class FileStoreApp(BucketOperations, ObjectOperations, MultipartOperations,
                   AclOperations, ConfigurationOperations):
    def __init__(self, store: FileStore, region: str) -> None:
        self.store = store
        self.region = region
        self._app = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._app(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        op = req.operation
        if op is None:
            raise req.refusal()
        handler: Callable[[S3Request], Response] | None = \
            getattr(self, "op_" + op, None) or self.configuration_handler(op)
        if handler is None:
            raise errors.NotImplementedError_(f"encproxy's file store does not implement {op}.")
        if req.bucket is not None and op != "CreateBucket":
            check_bucket_name(req.bucket)
        return handler(req)
