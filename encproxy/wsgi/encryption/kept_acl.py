"""An object's ACL, kept across the self-copies that re-wrap its data key.

``encproxy rotate`` and UpdateObjectEncryption rewrite an object's metadata by
copying it onto itself (CopyObject with REPLACE, or part by part into a new
upload).  S3 gives what a copy writes a new ACL (private, unless the request
names one), so a public-read object would silently turn private.  The copy
therefore names the object's current grants in ``x-amz-grant-*`` headers, read
just before it (a change of the ACL in between is lost: the window is one
request).
"""
from __future__ import annotations

from typing import Any

from encproxy.s3 import acl
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp


def kept_acl_headers(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                     version_id: str | None = None) -> dict[str, str]:
    """The ``x-amz-grant-*`` headers that keep the object's ACL through a copy.

    None needed (an empty dict) where the backend keeps no ACLs (NotImplemented).
    Any other failure to read the ACL is raised: rewriting the object without it
    would change who may read it.
    """
    query = "acl" + (("&versionId=" + subrequest.quote_param(version_id)) if version_id else "")
    resp = subrequest.request(app, parent, "GET", bucket, key, query)
    if resp.status == 501:
        return {}
    if not resp.ok:
        raise subrequest.failure(resp.status, resp.body)
    return acl.grant_headers_of_policy(resp.body)
