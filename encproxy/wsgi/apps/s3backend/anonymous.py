"""What an anonymous caller may ask through an S3 backend: the backend's ACLs decide.

The authentication middleware calls ``BackendAnonymousAccess`` with a request that
carries no credentials at all.  encproxy cannot apply the backend's ACLs and bucket
policies itself, so it lets the backend apply them: every request made for an
anonymous caller goes to the backend unsigned (``S3BackendApp``), the caller's own
and every one the encryption layer makes for it, and the backend answers as it
would answer the caller directly.  encproxy's internal bucket is encproxy's: its
requests stay signed, and an anonymous caller never reaches it.

What is let through to the backend at all is an allowlist of the operations a
public bucket or object serves: object reads, writes (PutObject, POST Object) and
deletes, listings, HeadBucket, and ACL reads.  The rest is AccessDenied here,
before anything is sent:

* what encproxy answers itself, whatever the backend's ACLs say: ``?encryption``
  and UpdateObjectEncryption (encproxy's configuration and its keys), ListBuckets;
* copies and multipart uploads: encproxy builds them from requests of its own
  (a source read, held copies of parts in the internal bucket), which an
  anonymous caller's unsigned requests cannot make;
* every configuration write, and DeleteBucket.
"""
from __future__ import annotations

from collections.abc import Collection

from encproxy import errors
from encproxy.wsgi.request import S3Request

#: The operations an anonymous caller may send to an S3 backend, which then decides.
ALLOWED = frozenset({
    "GetObject", "HeadObject", "PutObject", "PostObject", "DeleteObject",
    "ListObjects", "ListObjectsV2", "HeadBucket", "GetObjectAcl", "GetBucketAcl",
})


class BackendAnonymousAccess:
    """Let an anonymous request through to the backend's own ACLs, or raise AccessDenied.

    ``hidden`` names buckets no anonymous request may reach (encproxy's internal bucket).
    """

    def __init__(self, hidden: Collection[str] = ()) -> None:
        self.hidden = frozenset(hidden)

    def __call__(self, req: S3Request) -> None:
        if req.operation not in ALLOWED or req.bucket is None or req.bucket in self.hidden:
            raise errors.AccessDenied()
