"""Object metadata carried in headers: what is stored and how it is sent back (pure)."""
from __future__ import annotations

import base64
from collections.abc import Mapping

from encproxy import errors

CONTENT_HEADERS = ("content-type", "content-encoding", "content-disposition",
                   "cache-control", "content-language", "expires")
USER_META_PREFIX = "x-amz-meta-"
MAX_USER_METADATA_BYTES = 2048
STORAGE_CLASSES = {"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                   "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS",
                   "EXPRESS_ONEZONE"}
# Response overrides a signed GET may ask for, and the header each one sets.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def content_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name in CONTENT_HEADERS:
        value = headers.get(name)
        if value:
            out[name] = value
    return out


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    meta = {name[len(USER_META_PREFIX):]: value for name, value in headers.items()
            if name.startswith(USER_META_PREFIX)}
    size = sum(len(k.encode("utf-8", "surrogateescape")) +
               len(v.encode("latin-1", "replace")) for k, v in meta.items())
    if size > MAX_USER_METADATA_BYTES:
        raise errors.MetadataTooLarge(Size=str(size), MaxSizeAllowed=str(MAX_USER_METADATA_BYTES))
    return meta


def storage_class(headers: Mapping[str, str]) -> str:
    value = headers.get("x-amz-storage-class", "STANDARD")
    if value not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=value)
    return value


def response_headers(content: Mapping[str, str], user: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers for GET/HEAD, with the names in the case S3 sends them."""
    out = [("-".join(p.capitalize() for p in name.split("-")), value)
           for name, value in content.items()]
    if "content-type" not in content:
        out.append(("Content-Type", "binary/octet-stream"))
    out.extend((USER_META_PREFIX + name, user_metadata_value(value))
               for name, value in user.items())
    return out


def user_metadata_value(value: str) -> str:
    """A stored user metadata value as S3 sends it back.

    AWS returns a value with non-US-ASCII characters "encoded as per RFC 2047 to make
    them mail-safe" (UsingMetadata.html), as one ``=?UTF-8?B?...?=`` encoded word,
    and US-ASCII values as they are.  ``value`` is the header as WSGI gives it (each
    byte sent one character, latin-1), and AWS encodes the UTF-8 of exactly those
    characters: sent as UTF-8, ``ö`` comes back as ``=?UTF-8?B?w4PCtg==?=`` (what MinIO
    measured against AWS, minio/minio#21282).  Raw non-ASCII bytes are never sent.
    """
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="
