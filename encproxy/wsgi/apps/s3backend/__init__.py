"""Any S3 server as a WSGI app that speaks plain S3: forwarding, re-signed.

``S3BackendApp`` is to an S3 server what ``FileStoreApp`` is to a local
directory: the bottom of encproxy's stack, usable on its own, trusting its
caller (authentication and body verification happen above it).  Every request
it forwards is re-signed with the backend's credentials by
:class:`~encproxy.s3backend.client.S3BackendClient`; what it forwards and what
it relays is decided by the allowlists of :mod:`encproxy.s3backend.forwarding`.

It behaves like the file store: the same operations, the same validation
before anything reaches the backend (bucket names, metadata size, storage
classes, part numbers, list arguments, copy rules), the same answers where
the client's view differs from the backend's (GetBucketLocation and HeadBucket
report encproxy's region, CreateBucket of an existing bucket is
BucketAlreadyOwnedByYou).  Backend errors come back as the same S3 errors,
rendered by ``encproxy.wsgi.responses`` like encproxy's own; an unreachable
backend is 503 ServiceUnavailable.  Bucket and object configuration
subresources (tagging, ACLs, policy, versioning, lifecycle, ...) pass through
verbatim; what reads or writes object bodies and is not implemented is
refused with NotImplemented.  Known differences between backends, and what
encproxy does about them, are in docs/BACKENDS.md.

Start at app.py (the dispatch, and ``build_s3_backend``); relay.py sends
requests and turns the backend's answers into the client's; the operations
that need more than forwarding are in buckets.py (buckets and listings),
objects.py and multipart.py.
"""
from encproxy.wsgi.apps.s3backend.app import S3BackendApp, build_s3_backend

__all__ = ["S3BackendApp", "build_s3_backend"]
