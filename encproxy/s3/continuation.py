"""encproxy's ListObjectsV2 continuation tokens over an S3 backend (pure).

Tokens are opaque to clients.  encproxy wraps the backend's, so that a token it did not
issue is refused (Ceph RGW and moto accept anything as a token), and puts beside it the
key after which the next page starts (the last key or common prefix of the page that
issued it).  Only the backend knows where its own token points; with that key the
encryption layer can read the next page's facts records while the backend lists it
(encproxy/wsgi/encryption/listings.py).  The key is a hint a client could forge: it
decides which records are read ahead, never which are trusted, and records read from the
wrong place are not used (fact_records.py).

A token is URL-safe base64 of a tag byte, then for tag 2 the key's UTF-8 length (two
bytes, big-endian) and the key, then the backend's token.  Tokens of tag 1 (the
backend's token alone, issued before the key was carried) are still taken.
"""
from __future__ import annotations

import base64
import struct

from encproxy import errors

_BARE = 1       # the backend's token alone
_AFTER = 2      # the key the next page starts after, then the backend's token


def wrap(backend_token: str, after: str) -> str:
    """The client's token for the backend's ``backend_token``, whose page starts after
    ``after`` (a key too long to carry, which no S3 key is, is carried as the empty
    key: every page starts after it)."""
    key = after.encode("utf-8")
    if len(key) > 0xFFFF:
        key = b""
    raw = bytes([_AFTER]) + struct.pack(">H", len(key)) + key + backend_token.encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decoded(token: str) -> tuple[str | None, str]:
    """(the key the page starts after, or None; the backend's token); ValueError for a
    token encproxy did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (ValueError, UnicodeError):
        raise ValueError("not base64") from None
    if raw[:1] == bytes([_BARE]):
        return None, raw[1:].decode("utf-8")
    if raw[:1] == bytes([_AFTER]) and len(raw) >= 3:
        (length,) = struct.unpack_from(">H", raw, 1)
        if 3 + length <= len(raw):
            return raw[3:3 + length].decode("utf-8"), raw[3 + length:].decode("utf-8")
    raise ValueError("not a token encproxy issued")


def unwrap(token: str) -> str:
    """The backend's token inside a client's; InvalidArgument for anything else."""
    try:
        return _decoded(token)[1]
    except ValueError:  # UnicodeDecodeError included
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


def start_after(token: str) -> str | None:
    """The key the token's page starts after; None if it carries none, or is not a
    token encproxy issued (the listing refuses it)."""
    try:
        return _decoded(token)[0]
    except ValueError:
        return None
