"""An object's tags, carried by the copies encproxy makes itself.

An encrypted CopyObject is a write encproxy makes (a PUT of the re-encrypted body, or
a backend copy with a new envelope), and ``encproxy rotate`` and UpdateObjectEncryption
re-wrap a data key by copying the object onto itself.  S3 gives a copy the source's
tags unless the request replaces them, so the source's are read before the copy
(:func:`read_tags`) and sent with it (:func:`tag_headers`).  Ceph RGW 16.2 ignores a
copy's ``x-amz-tagging`` (and drops every tag of an object whose metadata a copy
replaces) and a CreateMultipartUpload's, so once the copy is made, tags there are set
again with PutObjectTagging on the version it made (:func:`restore_tags`).  A change of
the tags between the read and the copy is lost: the window is one request, as for the
ACL (``kept_acl``).
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote, urlencode

from encproxy.s3 import tagging, xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp


def _query(version_id: str | None) -> str:
    return "tagging" + (("&versionId=" + subrequest.quote_param(version_id))
                        if version_id else "")


def read_tags(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
              version_id: str | None = None) -> tagging.Tags | None:
    """The tags of the object (version); None where the backend keeps no tags
    (NotImplemented).  Any other failure is raised: a copy without them would lose them."""
    resp = subrequest.request(app, parent, "GET", bucket, key, _query(version_id))
    if resp.status == 501:
        return None
    if not resp.ok:
        raise subrequest.failure(resp.status, resp.body)
    # Ceph RGW 16.2 answers an untagged object's tags with an empty body.
    return tagging.parse_tagging(resp.body) if resp.body.strip() else ()


def header_value(tags: tagging.Tags) -> str:
    """``x-amz-tagging``: the tags as URL-encoded query parameters."""
    return urlencode(tags, quote_via=quote)


def tag_headers(tags: tagging.Tags | None) -> dict[str, str]:
    """``x-amz-tagging`` for a write that must get exactly ``tags`` (none for no tags, or
    None: a backend that keeps no tags).  A copy the backend makes also needs
    ``x-amz-tagging-directive: REPLACE``, which its caller adds."""
    return {"x-amz-tagging": header_value(tags)} if tags else {}


def restore_tags(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                 tags: tagging.Tags | None, version_id: str | None) -> None:
    """Set ``tags`` on the version a copy made (the latest when the backend named none),
    where a backend may have ignored the copy's own ``x-amz-tagging``."""
    if not tags:
        return
    body = xml.render(tagging.tagging_xml(tags))
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")
    resp = subrequest.request(app, parent, "PUT", bucket, key, _query(version_id),
                              headers={"content-md5": md5}, body=body)
    if not resp.ok:
        raise subrequest.failure(resp.status, resp.body)


__all__ = ["header_value", "read_tags", "restore_tags", "tag_headers"]
