"""What the file store keeps and returns: frozen values, no I/O.

Conventions the S3 edge relies on:

- ``etag`` fields are bare (no double quotes); ``quoted_etag`` adds them (see
  ``encproxy.filestore.etag``).
- Times are float seconds since the epoch (UTC); the edge formats them.
- ``ObjectMeta.content_headers`` maps *lower-case* header names
  (``content-type``, ``content-encoding``, ``content-disposition``,
  ``cache-control``, ``content-language``, ``expires``) to their values.
  ``user_metadata`` maps the lower-cased suffix of ``x-amz-meta-*`` to the value.
  Both are read-only mappings.
- The store checks metadata only for what could corrupt it or a response
  (header-name syntax, CR/LF/NUL in values, the 1 MiB header cap); S3 policy
  such as the 2 KB user-metadata limit and the list of storage classes is
  applied once, by the S3 layer (``encproxy.s3.metadata``).
- ``acl`` (objects, in ``ObjectMeta``; buckets, in ``BucketRecord``) is the stored
  access control list, or None for one never set: the owner's FULL_CONTROL alone
  (``private``), which is what every object and bucket of a store written before
  ACLs were kept has.
- ``cors`` (``BucketRecord``) is the bucket's CORS configuration
  (``encproxy.s3.cors``), or None for none.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from encproxy.errors import InvalidArgument
from encproxy.filestore import etag as etags
from encproxy.format.checksum import StoredChecksum
from encproxy.s3.acl import Acl, Grant
from encproxy.s3.cors import CorsConfiguration

CONTENT_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                   "content-language", "content-type", "expires")
DEFAULT_STORAGE_CLASS = "STANDARD"
# RFC 9110 token characters, lower case only (names are case-insensitive; S3 lower-cases them).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_STORAGE_CLASS = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_FORBIDDEN_IN_VALUES = ("\r", "\n", "\0")


def _check_value(name: str, value: object) -> str:
    if not isinstance(value, str) or any(c in value for c in _FORBIDDEN_IN_VALUES):
        raise InvalidArgument(f"The value of {name} is not a valid header value.",
                              ArgumentName=name)
    return value


def _content_headers(given: Mapping[str, str]) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for name, value in given.items():
        lname = name.lower() if isinstance(name, str) else ""
        if lname not in CONTENT_HEADERS:
            raise InvalidArgument(f"{name!r} is not a stored content header.",
                                  ArgumentName=str(name))
        out[lname] = _check_value(lname, value)
    return MappingProxyType(out)


def _user_metadata(given: Mapping[str, str]) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for name, value in given.items():
        lname = name.lower() if isinstance(name, str) else ""
        if not _TOKEN.fullmatch(lname) or lname in out:
            raise InvalidArgument("A user metadata name is empty, repeated or not a valid "
                                  "header name.", ArgumentName="x-amz-meta-" + str(name))
        out[lname] = _check_value("x-amz-meta-" + lname, value)
    return MappingProxyType(out)


def check_acl(acl: object) -> Acl | None:
    if acl is None:
        return None
    if not isinstance(acl, tuple) or not all(isinstance(g, Grant) for g in acl):
        raise InvalidArgument("An access control list must be a tuple of grants.",
                              ArgumentName="acl")
    return acl


@dataclass(frozen=True)
class ObjectMeta:
    """The metadata of an object, fixed when it is written (or its upload created), and
    its access control list (None: private), which PutObjectAcl may replace."""

    content_headers: Mapping[str, str] = field(default_factory=dict)
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = DEFAULT_STORAGE_CLASS
    acl: Acl | None = None

    def __post_init__(self) -> None:
        # Normalise and freeze, so that a stored record cannot be changed through
        # the dict the caller passed in.
        object.__setattr__(self, "content_headers", _content_headers(self.content_headers))
        object.__setattr__(self, "user_metadata", _user_metadata(self.user_metadata))
        if not isinstance(self.storage_class, str) or \
                not _STORAGE_CLASS.fullmatch(self.storage_class):
            raise InvalidArgument("The storage class is not a valid name.",
                                  ArgumentName="x-amz-storage-class")
        check_acl(self.acl)


@dataclass(frozen=True)
class ObjectRecord:
    """An object as stored: everything HEAD, GET and listings report.

    ``part_sizes`` is None for an object written in one piece (PUT, copy), and
    the size of each part, in order, for one made by CompleteMultipartUpload;
    ``part_bounds`` turns it into the byte range a ``partNumber`` read serves.
    """

    key: str
    size: int
    etag: str
    last_modified: float
    meta: ObjectMeta
    part_sizes: tuple[int, ...] | None = None
    # ``null`` for the version written while versioning was never enabled or suspended.
    version_id: str = "null"
    tag_count: int = 0
    # The object's checksum (FORMAT.md, "Checksums"); None: none kept.
    checksum: StoredChecksum | None = None
    # A multipart object's part digests, concatenated in part order, of ``checksum``'s
    # algorithm (None: not kept); ``part_checksum`` reads one.
    part_checksums: bytes | None = None
    # What the layer above asked the index to keep for its listings (FORMAT.md, "The
    # index": ``versions.listing_facts``); listed, never read by the store itself.
    listing_facts: str | None = None
    # Whether the bucket's versioning had ever been set, read in the same snapshot as the
    # version (``ObjectStore.open_object``); None: not read with it.  Not the object's
    # own: two records of one version compare equal whether or not they carry it.
    bucket_versioned: bool | None = field(default=None, compare=False)

    @property
    def quoted_etag(self) -> str:
        return etags.quote(self.etag)

    @property
    def parts_count(self) -> int | None:
        return None if self.part_sizes is None else len(self.part_sizes)

    @property
    def content_headers(self) -> Mapping[str, str]:
        return self.meta.content_headers

    @property
    def user_metadata(self) -> Mapping[str, str]:
        return self.meta.user_metadata

    @property
    def storage_class(self) -> str:
        return self.meta.storage_class

    def part_checksum(self, part_number: int) -> StoredChecksum | None:
        """The checksum of part ``part_number`` (1-based) of a multipart object, with the
        object's algorithm and type, as S3 shows it on a ``partNumber`` read; None when
        not kept."""
        checksum, sums, sizes = self.checksum, self.part_checksums, self.part_sizes
        if checksum is None or sums is None or sizes is None \
                or not 1 <= part_number <= len(sizes):
            return None
        size = len(checksum.digest)
        return checksum._replace(digest=sums[(part_number - 1) * size:part_number * size])

    def part_bounds(self, part_number: int) -> tuple[int, int] | None:
        """``(offset, length)`` of part ``part_number`` (1-based) in the body.

        An object written in one piece has exactly one part, the whole body (as
        in S3).  None when the object has no such part: the caller answers
        ``InvalidPartNumber``.
        """
        sizes = self.part_sizes if self.part_sizes is not None else (self.size,)
        if not 1 <= part_number <= len(sizes):
            return None
        return sum(sizes[: part_number - 1]), sizes[part_number - 1]


@dataclass(frozen=True)
class BucketRecord:
    name: str
    created: float
    acl: Acl | None = None   # None: private
    cors: CorsConfiguration | None = None   # None: no CORS configuration


@dataclass(frozen=True)
class PartRecord:
    """One uploaded part of a multipart upload; ``etag`` is the bare hex MD5."""

    number: int
    etag: str
    size: int
    last_modified: float
    # (algorithm, digest) of the part's bytes; None: none kept.
    checksum: tuple[str, bytes] | None = None

    @property
    def quoted_etag(self) -> str:
        return etags.quote(self.etag)


@dataclass(frozen=True)
class UploadRecord:
    """A multipart upload in progress; ``meta`` becomes the object's metadata."""

    upload_id: str
    bucket: str
    key: str
    initiated: float
    meta: ObjectMeta
    tags: tuple[tuple[str, str], ...] = ()
    # CreateMultipartUpload's (algorithm, type); None: it named none.
    checksum: tuple[str, str] | None = None


@dataclass(frozen=True)
class ListResult:
    """One page of ListObjects, in S3 order (see ``encproxy.filestore.listing``).

    ``next_marker`` is set exactly when ``is_truncated``: the last key or common
    prefix of this page.  Passed back as ``start_after`` it yields the next page
    (v1 ``NextMarker``/``marker``; v2 encodes it as the continuation token).
    """

    contents: list[ObjectRecord]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None


@dataclass(frozen=True)
class VersionRecord:
    """One entry of ListObjectVersions: a version or (``delete_marker``) a delete marker,
    whose size is 0 and ETag empty."""

    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    last_modified: float
    storage_class: str
    listing_facts: str | None = None

    @property
    def quoted_etag(self) -> str:
        return etags.quote(self.etag)


@dataclass(frozen=True)
class VersionListResult:
    """One page of ListObjectVersions, by key, then newest first.

    When ``is_truncated``, ``next_key_marker`` is the last key or common prefix of the
    page and ``next_version_id_marker`` the last version id (None when the page ends in
    a common prefix).
    """

    versions: list[VersionRecord]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None


@dataclass(frozen=True)
class DeleteResult:
    """What a delete did: the version it removed or the delete marker it made
    (``version_id`` None: the bucket never had versioning, nothing to report), and
    whether that version is a delete marker."""

    version_id: str | None
    delete_marker: bool


@dataclass(frozen=True)
class UploadListResult:
    """One page of ListMultipartUploads, by key, then by initiation.

    When ``is_truncated``, ``next_key_marker`` is the last key or common prefix
    of the page and ``next_upload_id_marker`` the last upload id (None when the
    page ends in a common prefix).
    """

    uploads: list[UploadRecord]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


@dataclass(frozen=True)
class PartListResult:
    """One page of ListParts; ``next_marker`` (a part number) is set when truncated."""

    upload: UploadRecord
    parts: list[PartRecord]
    is_truncated: bool
    next_marker: int | None
