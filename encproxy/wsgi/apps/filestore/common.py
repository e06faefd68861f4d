"""What the file store's operations share: request checks and pieces of answers."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from urllib.parse import quote

from encproxy import errors
from encproxy.filestore.records import DeleteResult, ObjectMeta, ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl, metadata, preconditions, tagging, xml
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.operations import ALLOW_UNORDERED
from encproxy.s3.tagging import Tags
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request

MAX_PUT_SIZE = 5 * 1024**3
OWNER_ID = hashlib.sha256(b"encproxy-owner").hexdigest()
OWNER_NAME = "encproxy"
# Request headers for features the file store does not offer: refusing them is
# honest, ignoring them would silently drop what the client asked for.
UNSUPPORTED_WRITE_HEADERS = (
    "x-amz-website-redirect-location", "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
    "x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-aws-kms-key-id",
)


# -- answers ---------------------------------------------------------------------------
def quoted(etag: str) -> str:
    return '"' + etag.strip('"') + '"'


def owner_nodes() -> list[xml.Node]:
    """The children of an ``Owner`` (or ``Initiator``) element: there is one owner."""
    return [xml.Node("ID", OWNER_ID), xml.Node("DisplayName", OWNER_NAME)]


# -- versions ---------------------------------------------------------------------------
# Objects written while a bucket's versioning was never enabled, or is suspended, are its
# ``null`` version; the store issues other ids (32 hex digits) while it is Enabled.
NULL_VERSION = "null"
_VERSION_ID = re.compile(r"[0-9a-f]{32}")


def is_version_id(value: str) -> bool:
    """Whether ``value`` is ``null`` or of the form the store issues."""
    return value == NULL_VERSION or _VERSION_ID.fullmatch(value) is not None


def check_version_id(value: str, name: str = "versionId") -> str:
    """``null`` or an id of the form the store issues; InvalidArgument for any other.

    S3 answers InvalidArgument for a version id it could never have issued, and
    NoSuchVersion (the store's answer) for a well-formed one it does not have.
    """
    if is_version_id(value):
        return value
    if not value:
        raise errors.InvalidArgument("Version id cannot be the empty string",
                                     ArgumentName=name, ArgumentValue=value)
    raise errors.InvalidArgument("Invalid version id specified", ArgumentName=name,
                                 ArgumentValue=value)


def version_of(req: S3Request) -> str | None:
    """The request's ``versionId``, checked, or None without one."""
    value = req.query.get("versionId")
    return None if value is None else check_version_id(value)


def version_headers(store: FileStore, bucket: str, version_id: str,
                    named: bool = False, versioned: bool | None = None) -> dict[str, str]:
    """``x-amz-version-id`` on a read as S3 sends it: for every version of a bucket
    whose versioning was ever set, and whenever the request named a version; not for
    the objects of a bucket that never had versioning.  ``versioned``: whether it was
    ever set, if read with the version (None: it is read here)."""
    if named or version_id != NULL_VERSION:
        return {"x-amz-version-id": version_id}
    if versioned is None:
        versioned = store.bucket_versioning(bucket) is not None
    return {"x-amz-version-id": version_id} if versioned else {}


def written_headers(version_id: str) -> dict[str, str]:
    """``x-amz-version-id`` on a write (PUT, copy, complete): the new version's id while
    versioning is Enabled; nothing for a ``null`` version (never versioned, or
    Suspended), as S3 answers and ceph/s3-tests checks."""
    return {} if version_id == NULL_VERSION else {"x-amz-version-id": version_id}


def deleted_headers(result: DeleteResult) -> dict[str, str]:
    """The headers of a DeleteObject's answer: the version removed or the delete marker
    made, and whether it is a delete marker."""
    headers = {} if result.version_id is None else {"x-amz-version-id": result.version_id}
    if result.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


def tags_from_request(req: S3Request) -> Tags:
    """The tags ``x-amz-tagging`` gives (none without it)."""
    value = req.headers.get("x-amz-tagging")
    return () if value is None else tagging.parse_header(value)


def checksum_headers(req: S3Request) -> dict[str, str]:
    sums = req.environ.get(env.BODY_CHECKSUMS) or {}
    return {f"x-amz-checksum-{alg}": value for alg, value in sums.items()}


# -- writes ----------------------------------------------------------------------------
def acl_from_request(req: S3Request) -> acl.Acl | None:
    """The ACL the request's ``x-amz-acl`` or ``x-amz-grant-*`` headers give (None: none,
    which stores as private).  Objects and buckets have the one owner."""
    return acl.from_headers(req.headers, OWNER_ID)


def meta_from_request(req: S3Request) -> ObjectMeta:
    for name in UNSUPPORTED_WRITE_HEADERS:
        if name in req.headers:
            raise errors.NotImplementedError_(
                f"The {name} header is not supported by encproxy's file store.",
                Header=name)
    return ObjectMeta(content_headers=metadata.content_headers(req.headers),
                      user_metadata=metadata.user_metadata(req.headers),
                      storage_class=metadata.storage_class(req.headers),
                      acl=acl_from_request(req))


def put_length(req: S3Request) -> int:
    length = req.content_length()
    if length > MAX_PUT_SIZE:
        raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_SIZE))
    return length


def copy_source(store: FileStore, req: S3Request) -> tuple[str, str, ObjectRecord]:
    """The bucket, key and record of ``x-amz-copy-source`` (its latest version, or the
    one ``?versionId=`` names), its conditions checked.  The record's ``version_id``
    pins the copy to the version checked."""
    source = parse_copy_source(req.headers["x-amz-copy-source"])
    if source.version_id is not None:
        check_version_id(source.version_id)
    bucket, key = source.bucket, source.key
    try:
        record = store.head_object(bucket, key, source.version_id)
    except errors.MethodNotAllowed:
        # A delete marker named by id: S3 refuses it as a copy source.
        raise errors.InvalidRequest("The source of a copy request may not specifically "
                                    "refer to a delete marker by version id.") from None
    preconditions.check(req.headers, record.etag, record.last_modified,
                        prefix="x-amz-copy-source-if-")
    return bucket, key, record


def copy_source_headers(store: FileStore, req: S3Request, bucket: str,
                        source: ObjectRecord) -> dict[str, str]:
    """``x-amz-copy-source-version-id``: the version copied, when S3 reports it."""
    named = "versionId=" in req.headers["x-amz-copy-source"]
    found = version_headers(store, bucket, source.version_id, named)
    return {"x-amz-copy-source-version-id": found["x-amz-version-id"]} if found else {}


# -- listings --------------------------------------------------------------------------
def list_params(req: S3Request) -> tuple[str, str | None, int, bool]:
    """Prefix, delimiter, max-keys and whether keys are URL-encoded."""
    encoding = req.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=encoding)
    max_keys = req.int_param("max-keys", 1000, 0, 1000)
    delimiter = req.query.get("delimiter") or None
    # Ceph RGW's allow-unordered (ListObjects, v1 and v2): any order will do, so the
    # store's sorted order does; RGW refuses it with a delimiter, and so does this.
    unordered = req.query.get(ALLOW_UNORDERED)
    if unordered is not None and unordered.lower() == "true" and delimiter:
        raise errors.InvalidArgument("allow-unordered cannot be used with a delimiter",
                                     ArgumentName=ALLOW_UNORDERED, ArgumentValue=unordered)
    return req.query.get("prefix", ""), delimiter, max_keys, encoding == "url"


def encoder(url: bool) -> Callable[[str], str]:
    if not url:
        return lambda s: s
    return lambda s: quote(s, safe="/")  # S3's encoding-type=url keeps '/'


def common_prefixes(prefixes: list[str], enc: Callable[[str], str]) -> list[xml.Node]:
    return [xml.Node("CommonPrefixes", xml.Node("Prefix", enc(p))) for p in prefixes]
