"""What the file store's operations share: request checks and pieces of answers."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import quote

from encproxy import errors
from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.s3 import acl, metadata, preconditions, xml
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.operations import ALLOW_UNORDERED
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request

MAX_PUT_SIZE = 5 * 1024**3
OWNER_ID = hashlib.sha256(b"encproxy-owner").hexdigest()
OWNER_NAME = "encproxy"
# Request headers for features the file store does not offer: refusing them is
# honest, ignoring them would silently drop what the client asked for.
UNSUPPORTED_WRITE_HEADERS = (
    "x-amz-tagging", "x-amz-website-redirect-location", "x-amz-object-lock-mode",
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
# The file store does not version objects: each key holds one object, whose version id is
# ``null``, as in an S3 bucket that never had versioning enabled.
NULL_VERSION = "null"


def check_version_id(value: str, name: str = "versionId") -> str:
    """``null``, the one version id the file store has; InvalidArgument for any other.

    S3 answers InvalidArgument for a version id it never issued (a well-formed id
    of a version that is gone is NoSuchVersion, but this store issues none).
    """
    if value == NULL_VERSION:
        return value
    if not value:
        raise errors.InvalidArgument("Version id cannot be the empty string",
                                     ArgumentName=name, ArgumentValue=value)
    raise errors.InvalidArgument("Invalid version id specified", ArgumentName=name,
                                 ArgumentValue=value)


def version_of(req: S3Request) -> str | None:
    """The request's ``versionId`` (only ever ``null``), or None without one."""
    value = req.query.get("versionId")
    return None if value is None else check_version_id(value)


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
    """The bucket, key and record of ``x-amz-copy-source``, its conditions checked."""
    source = parse_copy_source(req.headers["x-amz-copy-source"])
    if source.version_id is not None:
        check_version_id(source.version_id)
    bucket, key = source.bucket, source.key
    record = store.head_object(bucket, key)
    preconditions.check(req.headers, record.etag, record.last_modified,
                        prefix="x-amz-copy-source-if-")
    return bucket, key, record


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
