"""Per-client access rules (``[access]``, docs/OPERATIONS.md §11): which buckets a
client credential may use, and for what.

A client without an ``[access]`` line keeps full access, as before rules existed.  A
client with one may do exactly what its grants allow and nothing else::

    [access]
    team-a = team-a-*: all; shared: read
    backup = *: read

Each grant is a bucket pattern (shell-style: ``*`` any run of characters, ``?`` one)
and the permissions it gives on the buckets it matches:

* ``read``: object reads (GET, HEAD, attributes, tags, ACLs), listings (objects,
  versions, uploads, parts), HeadBucket and the bucket's configuration reads; the
  *source* of a copy;
* ``write``: object writes (PutObject, POST Object, the *destination* of a copy,
  multipart uploads, object tags and ACLs);
* ``delete``: DeleteObject and DeleteObjects;
* ``admin``: CreateBucket, DeleteBucket, bucket configuration writes and every
  ``?encryption`` request (S3 gives a bucket's encryption configuration to its owner);
* ``keys``: UpdateObjectEncryption (re-keying objects is key management);
* ``all``: the five.

ListBuckets lists only the buckets a client has some permission on.
``[access_kms_keys]`` names the KMS keys a restricted client may name (in
PutBucketEncryption, in an SSE-KMS request header, in UpdateObjectEncryption); with no
line it may name none, and writes with the server's or the bucket's default key.

Pure: no I/O.  The decision is taken once per request, after authentication
(``encproxy.wsgi.auth.access``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from encproxy.s3 import operations

READ, WRITE, DELETE, ADMIN, KEYS = "read", "write", "delete", "admin", "keys"
PERMISSIONS = (READ, WRITE, DELETE, ADMIN, KEYS)
ALL = "all"

_OBJECT_READS = frozenset({"GetObject", "HeadObject", "GetObjectAttributes", "ListParts"})
_BUCKET_READS = frozenset({
    "ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads", "HeadBucket",
    "GetBucketLocation"})
_WRITES = frozenset({
    "PutObject", "PostObject", "CopyObject", "UploadPart", "UploadPartCopy",
    "CreateMultipartUpload", "CompleteMultipartUpload", "AbortMultipartUpload"})
_DELETES = frozenset({"DeleteObject", "DeleteObjects"})
_ADMIN = frozenset({"CreateBucket", "DeleteBucket"})
_KEYS = frozenset({"UpdateObjectEncryption"})
# Subresources, by the names encproxy.s3.operations gives them: an object's are read
# (Get) or written (Put, Delete) with the object; a bucket's configuration is read
# with the bucket and written by its administrator; ?encryption is administration.
_BUCKET_CONFIGS = frozenset(operations.BUCKET_CONFIG_SUBRESOURCES.values())
_OBJECT_CONFIGS = frozenset(operations.OBJECT_CONFIG_SUBRESOURCES.values())
_OBJECT_BODIES = {"SelectObjectContent": READ, "GetObjectTorrent": READ,
                  "RestoreObject": WRITE}
#: Operations that copy from another object: they need ``read`` on its bucket too.
COPIES = frozenset({"CopyObject", "UploadPartCopy"})

_PATTERN = re.compile(r"[a-z0-9.*?-]{1,63}")


def permission_for(operation: str) -> str | None:
    """The permission ``operation`` needs on its bucket; None for ListBuckets (filtered,
    never refused) and for operations no permission covers (refused)."""
    if operation in _OBJECT_READS or operation in _BUCKET_READS:
        return READ
    if operation in _WRITES:
        return WRITE
    if operation in _DELETES:
        return DELETE
    if operation in _ADMIN:
        return ADMIN
    if operation in _KEYS:
        return KEYS
    if operation in _OBJECT_BODIES:
        return _OBJECT_BODIES[operation]
    for verb in ("Get", "Put", "Delete"):
        if not operation.startswith(verb):
            continue
        subresource = operation[len(verb):]
        if subresource == "BucketEncryption":
            return ADMIN
        if subresource in _OBJECT_CONFIGS:
            return READ if verb == "Get" else WRITE
        if subresource in _BUCKET_CONFIGS:
            return READ if verb == "Get" else ADMIN
    return None


@dataclass(frozen=True)
class Grant:
    pattern: str
    permissions: frozenset[str]

    def covers(self, bucket: str) -> bool:
        return fnmatchcase(bucket, self.pattern)


@dataclass(frozen=True)
class ClientRules:
    """One restricted client's grants and the KMS keys it may name (normalized ids)."""
    grants: tuple[Grant, ...]
    kms_keys: frozenset[str] = frozenset()

    def allows(self, permission: str, bucket: str) -> bool:
        return any(permission in g.permissions and g.covers(bucket) for g in self.grants)

    def sees(self, bucket: str) -> bool:
        """Whether ListBuckets shows ``bucket``: some permission on it."""
        return any(g.covers(bucket) for g in self.grants)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the permission it lacks on that bucket."""
    permission: str
    bucket: str

    def __str__(self) -> str:
        return f"no {self.permission} on {self.bucket}"


def decide(rules: ClientRules, operation: str, bucket: str | None,
           copy_source_bucket: str | None = None) -> Refusal | None:
    """None when ``rules`` allow the request, else why not."""
    if bucket is None:   # ListBuckets: filtered by ``sees``
        return None
    permission = permission_for(operation)
    if permission is None:
        return Refusal("permission", bucket)
    if not rules.allows(permission, bucket):
        return Refusal(permission, bucket)
    if copy_source_bucket is not None and not rules.allows(READ, copy_source_bucket):
        return Refusal(READ, copy_source_bucket)
    return None


def parse_grants(text: str) -> tuple[Grant, ...]:
    """``PATTERN: PERMISSION[, PERMISSION...][; PATTERN: ...]``; ValueError naming the
    problem."""
    grants = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        pattern, colon, names = part.partition(":")
        pattern = pattern.strip()
        if not colon:
            raise ValueError(f"{part!r}: expected BUCKET-PATTERN: PERMISSIONS")
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(f"{pattern!r} is not a bucket name pattern (a-z 0-9 . - * ?)")
        words = [w for w in re.split(r"[\s,]+", names.strip()) if w]
        if not words:
            raise ValueError(f"{pattern!r}: no permissions (read, write, delete, admin, "
                             "keys, all)")
        unknown = [w for w in words if w not in PERMISSIONS and w != ALL]
        if unknown:
            raise ValueError(f"{pattern!r}: unknown permission {unknown[0]!r} (read, write, "
                             "delete, admin, keys, all)")
        given = frozenset(PERMISSIONS) if ALL in words else frozenset(words)
        grants.append(Grant(pattern, given))
    if not grants:
        raise ValueError("no grants: give at least one BUCKET-PATTERN: PERMISSIONS")
    return tuple(grants)


def parse_key_list(text: str) -> tuple[str, ...]:
    """KMS key ids separated by white space or commas."""
    keys = tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)
    if not keys:
        raise ValueError("no key ids")
    return keys


def unrestricted(credentials: Iterable[str], rules: Mapping[str, ClientRules]) -> list[str]:
    """The clients with full access: every credential without an ``[access]`` line."""
    return sorted(c for c in credentials if c not in rules)


__all__ = ["ADMIN", "ALL", "COPIES", "ClientRules", "DELETE", "Grant", "KEYS", "PERMISSIONS",
           "READ", "Refusal", "WRITE", "decide", "parse_grants", "parse_key_list",
           "permission_for", "unrestricted"]
