"""Facts records: what a listing needs to know of an object, kept in a key *name*
(FORMAT.md §17).

A listing reports an encrypted object's plaintext size and client-visible ETag, which
the backend's listing does not carry.  Learning them costs a HEAD and a read per object;
a facts record keeps them in the internal bucket, entirely in its name, so that one
LIST of the internal bucket returns the facts of up to 1,000 objects::

    facts/<bucket>/<escaped key>!f1.<mode>.<stored size>.<backend ETag>
                                .<plaintext size>.<client ETag>.<root id>.<tag>

* ``escaped key`` keeps S3's order (UTF-8 byte order, which is code-point order): a
  character at or below ``"`` (U+0022) is written as ``"`` and one character
  ``chr(0x30 + code)``; every other character is itself.  So the escaped key never
  contains ``!`` (U+0021), every escaped character starts above it, and the names of
  keys ``a < b`` sort as ``a < b`` whatever follows ``!``: the facts of the objects of a
  listing page are one range of names.  Backends that store keys as file paths
  (SeaweedFS) take at most 255 bytes a segment: when the key's last segment and the
  fields would not fit one, the fields are a segment of their own (``!/f1...``).  Either
  form sorts the same way, as only what precedes ``!`` orders the keys (and a record per
  key in a directory of its own would make SeaweedFS list directories).
* ``mode`` is ``n`` (not encrypted), ``s`` (SSE-S3), ``k`` (SSE-KMS) or ``c`` (SSE-C);
  sizes are decimal; ETags are bare (no quotes), of letters, digits and ``-``.
* ``tag`` is the first 16 bytes, in hex, of the records MAC (FORMAT.md §14, purpose
  ``facts``) under the records root ``root id``, over the bucket, the key and the
  fields from ``f1`` to the client ETag: a name verifies only for the object it names.

The facts are those of the stored body whose backend ETag and stored size they name; a
listing entry with another ETag or size is another body, and the record says nothing
about it.  Pure module: no I/O.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Final

from encproxy.crypto.records import PURPOSE_FACTS, ROOT_ID_SIZE, record_tag

PREFIX: Final = "facts/"
FACTS_VERSION: Final = "f1"
SEPARATOR: Final = "!"
SEGMENT_BYTES: Final = 255
ESCAPE: Final = '"'
TAG_SIZE: Final = 16
# What a name may hold besides the bucket and key: names stay well under S3's 1,024
# bytes for keys up to this many bytes (longer keys are looked up, not recorded).
MAX_KEY_BYTES: Final = 700

MODES: Final = {"none": "n", "AES256": "s", "aws:kms": "k", "sse-c": "c"}
_MODE_NAMES: Final = {letter: mode for mode, letter in MODES.items()}
_ETAG = re.compile(r"[0-9A-Za-z-]{1,80}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX_ROOT = re.compile(f"[0-9a-f]{{{2 * ROOT_ID_SIZE}}}")
_HEX_TAG = re.compile(f"[0-9a-f]{{{2 * TAG_SIZE}}}")


@dataclass(frozen=True)
class Facts:
    """One object's facts, as a record keeps them."""

    key: str
    mode: str              # none, AES256, aws:kms, sse-c
    stored_size: int
    backend_etag: str      # bare
    plaintext_size: int
    client_etag: str       # bare

    @property
    def encrypted(self) -> bool:
        return self.mode != "none"

    def body(self) -> str:
        """The authenticated fields, as the name carries them."""
        return ".".join((FACTS_VERSION, MODES[self.mode], str(self.stored_size),
                         self.backend_etag, str(self.plaintext_size), self.client_etag))


def escape_key(key: str) -> str:
    """``key`` with every character up to U+0022 escaped, order kept (module docstring)."""
    if all(c > ESCAPE for c in key):
        return key
    return "".join(ESCAPE + chr(0x30 + ord(c)) if c <= ESCAPE else c for c in key)


def unescape_key(escaped: str) -> str:
    """The key ``escaped`` was made from; ValueError if it is not an escaped key."""
    if all(c > ESCAPE for c in escaped):
        return escaped
    out: list[str] = []
    chars = iter(escaped)
    for c in chars:
        if c == ESCAPE:
            code = ord(next(chars, "\uffff")) - 0x30
            if not 0 <= code <= 0x22:
                raise ValueError("bad escape")
            out.append(chr(code))
        elif c <= ESCAPE:
            raise ValueError("unescaped character")
        else:
            out.append(c)
    return "".join(out)


def recordable(facts: Facts, bucket: str) -> bool:
    """Whether ``facts`` fit a name (short enough key, ETags of the expected shape)."""
    return (facts.mode in MODES and len(facts.key.encode("utf-8", "surrogatepass"))
            <= MAX_KEY_BYTES and len(bucket) <= 255
            and bool(_ETAG.fullmatch(facts.backend_etag))
            and bool(_ETAG.fullmatch(facts.client_etag))
            and facts.stored_size >= 0 and facts.plaintext_size >= 0)


def bucket_prefix(bucket: str) -> str:
    return PREFIX + bucket + "/"


def key_start(bucket: str, key: str) -> str:
    """A name that sorts before every record of ``key`` and after every record of a
    key before it (for ``start-after``)."""
    return bucket_prefix(bucket) + escape_key(key)


def tag_of(mac_key: bytes, bucket: str, facts: Facts) -> bytes:
    return record_tag(mac_key, PURPOSE_FACTS, bucket, facts.key, None,
                      facts.body().encode())[:TAG_SIZE]


def fields_of(mac_key: bytes, root: str, bucket: str, facts: Facts) -> str:
    """What follows the separator in the record's name: ``facts`` sealed under
    ``mac_key`` (of root ``root``).  The embedded store keeps this string in the
    object's index row instead of a record (environ.LISTING_FACTS)."""
    if not recordable(facts, bucket):
        raise ValueError("facts do not fit a record name")
    return facts.body() + "." + root + "." + tag_of(mac_key, bucket, facts).hex()


def name_of(mac_key: bytes, root: str, bucket: str, facts: Facts) -> str:
    """The record's name."""
    start = key_start(bucket, facts.key)
    fields = fields_of(mac_key, root, bucket, facts)
    segment = start.rsplit("/", 1)[-1] + SEPARATOR + fields
    if len(segment.encode("utf-8", "surrogatepass")) > SEGMENT_BYTES:
        fields = "/" + fields
    return start + SEPARATOR + fields


@dataclass(frozen=True)
class ParsedName:
    """A record name split into its parts, not yet verified."""

    facts: Facts
    root: str
    tag: bytes

    def verifies(self, mac_key: bytes, bucket: str) -> bool:
        return hmac.compare_digest(self.tag, tag_of(mac_key, bucket, self.facts))


def parse_name(bucket: str, name: str) -> ParsedName:
    """The parts of the record name ``name`` (under ``bucket``'s prefix); ValueError if it
    is not a record name."""
    prefix = bucket_prefix(bucket)
    if not name.startswith(prefix):
        raise ValueError("not a facts record of this bucket")
    escaped, separator, payload = name[len(prefix):].partition(SEPARATOR)
    if not separator:
        raise ValueError("no separator")
    return parse_fields(unescape_key(escaped), payload.removeprefix("/"))


def parse_fields(key: str, payload: str) -> ParsedName:
    """The parts of a record's fields (``fields_of``) for ``key``; ValueError if they are
    not well formed."""
    fields = payload.split(".")
    if len(fields) != 8 or fields[0] != FACTS_VERSION:
        raise ValueError("not a version 1 facts record")
    _, mode, stored, backend_etag, plaintext, client_etag, root, tag = fields
    if (mode not in _MODE_NAMES or not _SIZE.fullmatch(stored)
            or not _SIZE.fullmatch(plaintext) or not _ETAG.fullmatch(backend_etag)
            or not _ETAG.fullmatch(client_etag) or not _HEX_ROOT.fullmatch(root)
            or not _HEX_TAG.fullmatch(tag)):
        raise ValueError("malformed field")
    facts = Facts(key, _MODE_NAMES[mode], int(stored), backend_etag, int(plaintext),
                  client_etag)
    return ParsedName(facts, root, bytes.fromhex(tag))
