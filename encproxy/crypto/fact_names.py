"""Facts records: what a listing needs to know of an object, kept in a key *name*
(FORMAT.md §17).

A listing reports an encrypted object's plaintext size and client-visible ETag, which
the backend's listing does not carry.  Learning them costs a HEAD and a read per object;
a facts record keeps them in the internal bucket, entirely in its name, so that one
LIST of the internal bucket returns the facts of up to 1,000 objects::

    facts/<bucket>/<escaped key>!f2.<mode>.<stored size>.<backend ETag>
                                .<plaintext size>.<sealed client ETag>.<root id>

* ``escaped key`` keeps S3's order (UTF-8 byte order, which is code-point order): a
  character at or below ``"`` (U+0022) is written as ``"`` and one character
  ``chr(0x30 + code)``; every other character is itself.  So the escaped key never
  contains ``!`` (U+0021), every escaped character starts above it, and the names of
  keys ``a < b`` sort as ``a < b`` whatever follows ``!``: the facts of the objects of a
  listing page are one range of names.  Backends that store keys as file paths
  (SeaweedFS) take at most 255 bytes a segment: when the key's last segment and the
  fields would not fit one, the fields are a segment of their own (``!/f2...``).  Either
  form sorts the same way, as only what precedes ``!`` orders the keys (and a record per
  key in a directory of its own would make SeaweedFS list directories).
* ``mode`` is ``n`` (not encrypted), ``s`` (SSE-S3), ``k`` (SSE-KMS) or ``c`` (SSE-C);
  sizes are decimal; the backend ETag is bare (no quotes), of letters, digits and ``-``.
* ``sealed client ETag`` is AES-256-SIV (RFC 5297) of the client-visible ETag (bare,
  ASCII), under a key derived from the records key of purpose ``facts`` (FORMAT.md §14)
  of the records root ``root id``, with associated data the label, the bucket, the key
  and the fields from ``f2`` to the plaintext size; unpadded base64url.  The client ETag
  of an encrypted object is its plaintext MD5 (or the MD5 of its parts' MD5s), which
  encproxy never stores in the clear; SIV keeps it secret and authenticates every field,
  and being deterministic, the same facts always make the same name.

The facts are those of the stored body whose backend ETag and stored size they name; a
listing entry with another ETag or size is another body, and the record says nothing
about it.  Pure module: no I/O.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from encproxy.crypto.keys import hkdf_expand
from encproxy.crypto.records import ROOT_ID_SIZE

PREFIX: Final = "facts/"
FACTS_VERSION: Final = "f2"
SEPARATOR: Final = "!"
SEGMENT_BYTES: Final = 255
ESCAPE: Final = '"'
SIV_LABEL: Final = b"encproxy/1 facts siv"
AD_LABEL: Final = b"encproxy/1 facts"
# What a name may hold besides the bucket and key: names stay well under S3's 1,024
# bytes for keys up to this many bytes (longer keys are looked up, not recorded).
MAX_KEY_BYTES: Final = 700

MODES: Final = {"none": "n", "AES256": "s", "aws:kms": "k", "sse-c": "c"}
_MODE_NAMES: Final = {letter: mode for mode, letter in MODES.items()}
_ETAG = re.compile(r"[0-9A-Za-z-]{1,80}")
_SIZE = r"0|[1-9][0-9]{0,18}"
# fields_of's string: no field can hold a '.', so one match splits and checks them all.
_FIELDS = re.compile(
    re.escape(FACTS_VERSION) + "[.][" + "".join(_MODE_NAMES) + f"][.](?:{_SIZE})"
    r"[.][0-9A-Za-z-]{1,80}" f"[.](?P<plaintext>{_SIZE})"
    r"[.](?P<sealed>[0-9A-Za-z_-]{23,150})" f"[.](?P<root>[0-9a-f]{{{2 * ROOT_ID_SIZE}}})")


class Facts(NamedTuple):
    """One object's facts, as a record keeps them.  A tuple: a listing opens a thousand
    records, and a frozen dataclass costs several times as much to make."""

    key: str
    mode: str              # none, AES256, aws:kms, sse-c
    stored_size: int
    backend_etag: str      # bare
    plaintext_size: int
    client_etag: str       # bare

    @property
    def encrypted(self) -> bool:
        return self.mode != "none"

    def clear_fields(self) -> str:
        """The fields a name carries in the clear (all but the client ETag)."""
        return ".".join((FACTS_VERSION, MODES[self.mode], str(self.stored_size),
                         self.backend_etag, str(self.plaintext_size)))


class Sealer:
    """Seals and opens the client ETags of one records key (of purpose ``facts``)."""

    def __init__(self, facts_key: bytes) -> None:
        self._siv = AESSIV(hkdf_expand(facts_key, SIV_LABEL, 64))

    def seal(self, bucket: str, facts: Facts) -> str:
        blob = self._siv.encrypt(facts.client_etag.encode("ascii"),
                                 _associated(bucket, facts.key, facts.clear_fields()))
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def open(self, bucket: str, parsed: ParsedName) -> Facts | None:
        """The facts of ``parsed``, or None if its sealed ETag does not open for the
        bucket, key and fields it is under (forged, moved, or another root's)."""
        try:
            blob = base64.urlsafe_b64decode(parsed.sealed + "=" * (-len(parsed.sealed) % 4))
            client_etag = self._siv.decrypt(blob, _associated(bucket, parsed.key,
                                                               parsed.clear_fields)).decode("ascii")
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
            return None
        if not _ETAG.fullmatch(client_etag):
            return None
        mode, stored, backend_etag, plaintext = parsed.clear_fields.split(".")[1:]
        return Facts(parsed.key, _MODE_NAMES[mode], int(stored), backend_etag, int(plaintext),
                     client_etag)


def _associated(bucket: str, key: str, clear_fields: str) -> list[bytes]:
    return [AD_LABEL, bucket.encode("utf-8", "surrogatepass"),
            key.encode("utf-8", "surrogatepass"), clear_fields.encode("ascii")]


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


def fields_of(sealer: Sealer, root: str, bucket: str, facts: Facts) -> str:
    """What follows the separator in the record's name: ``facts`` sealed by ``sealer``
    (of root ``root``).  The embedded store keeps this string in the object's index row
    instead of a record (environ.LISTING_FACTS)."""
    if not recordable(facts, bucket):
        raise ValueError("facts do not fit a record name")
    return facts.clear_fields() + "." + sealer.seal(bucket, facts) + "." + root


def name_of(sealer: Sealer, root: str, bucket: str, facts: Facts) -> str:
    """The record's name."""
    start = key_start(bucket, facts.key)
    fields = fields_of(sealer, root, bucket, facts)
    segment = start.rsplit("/", 1)[-1] + SEPARATOR + fields
    if len(segment.encode("utf-8", "surrogatepass")) > SEGMENT_BYTES:
        fields = "/" + fields
    return start + SEPARATOR + fields


class ParsedName(NamedTuple):
    """A record name split into its parts, not yet opened."""

    key: str
    clear_fields: str
    sealed: str
    root: str


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
    fields = _FIELDS.fullmatch(payload)
    if fields is None:
        raise ValueError("not a well-formed version 2 facts record")
    return ParsedName(key, payload[:fields.end("plaintext")], fields["sealed"], fields["root"])
