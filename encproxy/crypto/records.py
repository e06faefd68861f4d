"""Authenticated records: what encproxy keeps about itself in the backend (FORMAT.md §14).

Upload records, part records, held-copy references and bucket encryption
configurations live in
the internal bucket, which an attacker with backend access can rewrite.  Each one
is stored as::

    "encproxy-record/2 " || root id || " " || hex(tag) || "\\n" || body

with ``tag = HMAC-SHA256(K_purpose, mac_input(...))`` where

    PRK       = HKDF-Extract(salt = "encproxy/1 records", IKM = R)
    K_purpose = HKDF-Expand(PRK, "encproxy/1 record " || purpose, 32)

and ``R`` is a 32-byte records root key, stored only wrapped under a master key, named
by its root id (``root_id``: a hash of its wrapped blob).
``mac_input`` is a length-prefixed encoding of (version, purpose, bucket, key,
upload id or none, body), so a record verifies only for what it describes.

Pure module: no I/O.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final

from encproxy.crypto.keys import hkdf_expand, hkdf_extract
from encproxy.format.errors import RecordAuthenticationFailed, RecordMalformed

RECORD_VERSION: Final = 2
ROOT_KEY_SIZE: Final = 32
TAG_SIZE: Final = 32
MAX_RECORD_BODY: Final = 64 * 1024

PURPOSE_UPLOAD: Final = "upload"
PURPOSE_HELD: Final = "held"
PURPOSE_BUCKET_CONFIG: Final = "bucket-encryption"
PURPOSE_PART: Final = "part"      # which backend part a client's part ETag is (FORMAT.md §14)
PURPOSE_REWRAP: Final = "rewrap"  # an older version's data key wrapped again (FORMAT.md §14)
PURPOSE_FACTS: Final = "facts"    # a listing's facts of an object, in a name (FORMAT.md §17)
PURPOSES: Final = (PURPOSE_UPLOAD, PURPOSE_HELD, PURPOSE_BUCKET_CONFIG, PURPOSE_PART,
                   PURPOSE_REWRAP, PURPOSE_FACTS)

EXTRACT_SALT: Final = b"encproxy/1 records"
LABEL_PREFIX: Final = b"encproxy/1 record "
MAC_LABEL: Final = b"encproxy/1 record mac\x00"
MAGIC: Final = b"encproxy-record/2 "
ROOT_ID_LABEL: Final = b"encproxy/1 records root id\x00"
ROOT_ID_SIZE: Final = 16   # bytes; 32 hex digits

_U32 = struct.Struct(">I")


def purpose_key(root: bytes, purpose: str) -> bytes:
    """The MAC key of one purpose, derived from the records root key."""
    if len(root) != ROOT_KEY_SIZE:
        raise ValueError("the records root key is 32 bytes")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown record purpose {purpose!r}")
    return hkdf_expand(hkdf_extract(EXTRACT_SALT, root), LABEL_PREFIX + purpose.encode(), 32)


def _field(raw: bytes) -> bytes:
    return _U32.pack(len(raw)) + raw


def _text(value: str) -> bytes:
    return _field(value.encode("utf-8", "surrogatepass"))


def mac_input(purpose: str, bucket: str, key: str, upload_id: str | None, body: bytes) -> bytes:
    """The bytes a record's tag authenticates (FORMAT.md §14.2)."""
    upload = b"\x00" if upload_id is None else b"\x01" + _text(upload_id)
    return b"".join((MAC_LABEL, bytes([RECORD_VERSION]), _text(purpose), _text(bucket),
                     _text(key), upload, _field(body)))


def record_tag(mac_key: bytes, purpose: str, bucket: str, key: str, upload_id: str | None,
               body: bytes) -> bytes:
    return hmac.digest(mac_key, mac_input(purpose, bucket, key, upload_id, body), "sha256")


def root_id(blob: bytes) -> str:
    """The name of a records root key: 32 hex digits of SHA-256 over its wrapped blob."""
    return hashlib.sha256(ROOT_ID_LABEL + blob).digest()[:ROOT_ID_SIZE].hex()


def seal_record(mac_key: bytes, root: str, purpose: str, bucket: str, key: str,
                upload_id: str | None, body: bytes) -> bytes:
    """The stored form of ``body``, bound to (purpose, bucket, key, upload id), naming the
    root key ``root`` (its id) whose derived key ``mac_key`` is."""
    if len(body) > MAX_RECORD_BODY:
        raise ValueError("record body too large")
    if len(root) != 2 * ROOT_ID_SIZE:
        raise ValueError("bad root id")
    tag = record_tag(mac_key, purpose, bucket, key, upload_id, body)
    return MAGIC + root.encode() + b" " + tag.hex().encode() + b"\n" + body


def split_record(stored: bytes) -> tuple[str, bytes, bytes]:
    """(root id, tag, body) of a stored record; RecordMalformed if it is not one (such as
    a v1 JSON record)."""
    start = len(MAGIC)
    space = start + 2 * ROOT_ID_SIZE
    head = space + 1 + 2 * TAG_SIZE
    if len(stored) < head + 1 or not stored.startswith(MAGIC) \
            or stored[space:space + 1] != b" " or stored[head:head + 1] != b"\n" \
            or len(stored) - head - 1 > MAX_RECORD_BODY:
        raise RecordMalformed()
    try:
        root = stored[start:space].decode("ascii")
        tag = bytes.fromhex(stored[space + 1:head].decode("ascii"))
        if bytes.fromhex(root).hex() != root:
            raise ValueError("root id not lowercase hex")
    except (UnicodeDecodeError, ValueError):
        raise RecordMalformed() from None
    return root, tag, stored[head + 1:]


def open_record(mac_key: bytes, purpose: str, bucket: str, key: str, upload_id: str | None,
                stored: bytes) -> bytes:
    """The body of a stored record, verified with ``mac_key`` (the key of the root the
    record names); RecordMalformed or RecordAuthenticationFailed."""
    _, tag, body = split_record(stored)
    expected = record_tag(mac_key, purpose, bucket, key, upload_id, body)
    if not hmac.compare_digest(tag, expected):
        raise RecordAuthenticationFailed()
    return body


def root_wrap_context(internal_bucket: str) -> dict[str, str]:
    """The context the records root key is wrapped under (names its purpose and home)."""
    return {"encproxy-format": "1", "purpose": "records-root",
            "internal-bucket": internal_bucket}
