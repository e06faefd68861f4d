"""The embedded file store as a WSGI app that speaks plain S3: ``FileStoreApp``.

It trusts its caller: authentication and body verification happen in the
layers above (``encproxy.wsgi.auth.middleware``), which hand it a verified body stream.
Storage itself is ``encproxy.filestore``; this package only maps S3 requests
onto it and renders S3 responses.

Start at app.py (the dispatch); the operations are in buckets.py (buckets and
object listings, object versions included), objects.py, multipart.py, acls.py
(bucket and object ACLs) and configuration.py (the other bucket and object
configurations, of which the store keeps none); common.py holds what they share.
anonymous.py decides, by the stored ACLs, what a caller without credentials may do
(the authentication middleware asks it).
"""
from encproxy.wsgi.apps.filestore.anonymous import AnonymousAccess
from encproxy.wsgi.apps.filestore.app import FileStoreApp

__all__ = ["AnonymousAccess", "FileStoreApp"]
