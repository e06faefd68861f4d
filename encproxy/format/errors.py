"""The closed list of decode errors of the encproxy object format (docs/FORMAT.md §9).

Every way a stored object can fail to decode raises exactly one of these.  They
are all :class:`encproxy.errors.IntegrityError` leaves, so a client sees a 500
InternalError; the class names the precise reason for the server log.  Messages
never contain key material, plaintext or ciphertext.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

from typing import ClassVar

from encproxy.errors import IntegrityError


class FormatError(IntegrityError):
    """Root of the decode errors; never raised itself."""

    reason: ClassVar[str] = "format"


class EnvelopeMissing(FormatError):
    """An object that must be encrypted carries no envelope metadata."""

    reason = "envelope-missing"
    default_message = "The object has no encryption envelope."


class EnvelopeMalformed(FormatError):
    """The envelope metadata is too long, not base64url, or its fields are out of range."""

    reason = "envelope-malformed"
    default_message = "The object's encryption envelope is malformed."


class UnsupportedVersion(FormatError):
    """The envelope or a segment header names an unknown format version."""

    reason = "unsupported-version"
    default_message = "The object was written in a format version this server does not support."


class UnsupportedSuite(FormatError):
    """The envelope or a segment header names an unknown cipher suite."""

    reason = "unsupported-suite"
    default_message = "The object uses a cipher suite this server does not support."


class EnvelopeAuthenticationFailed(FormatError):
    """The envelope tag does not verify: wrong data key, envelope moved from another object, or
    a field (suite, kind, object id) changed."""

    reason = "envelope-authentication"
    default_message = "The object's encryption envelope failed authentication."


class CiphertextSizeInvalid(FormatError):
    """No plaintext size maps to the stored size (or the layout does not add up to it)."""

    reason = "ciphertext-size"
    default_message = "The stored size of the object is not a valid encrypted size."


class SegmentHeaderMalformed(FormatError):
    """A segment header has the wrong magic, reserved bits set or fields out of range."""

    reason = "segment-header-malformed"
    default_message = "A part header of the object is malformed."


class SegmentHeaderAuthenticationFailed(FormatError):
    """A segment header's tag does not verify: altered, or from another upload."""

    reason = "segment-header-authentication"
    default_message = "A part header of the object failed authentication."


class SegmentOutOfOrder(FormatError):
    """A segment's part number is not the next one: a part dropped, duplicated or moved."""

    reason = "segment-order"
    default_message = "The parts of the object are not in their original order."


class SegmentLayoutMismatch(FormatError):
    """A segment header disagrees with the layout (index or prediction) used to find it."""

    reason = "segment-layout"
    default_message = "A part of the object does not have its recorded size."


class FinalSegmentMissing(FormatError):
    """The last segment is not terminal: trailing parts or the trailer were removed."""

    reason = "final-segment-missing"
    default_message = "The object ends before its last part."


class FinalSegmentUnexpected(FormatError):
    """A terminal segment is followed by more data."""

    reason = "final-segment-unexpected"
    default_message = "The object continues after its last part."


class ChunkAuthenticationFailed(FormatError):
    """A chunk's tag does not verify: altered, moved, reordered, duplicated, or the stream was
    cut so that the final-chunk flag is wrong."""

    reason = "chunk-authentication"
    default_message = "A chunk of the object failed authentication."


class EtagSealAuthenticationFailed(FormatError):
    """The sealed plaintext MD5 at the end of a single-part body does not verify."""

    reason = "etag-seal-authentication"
    default_message = "The sealed checksum of the object failed authentication."


class IndexMalformed(FormatError):
    """The footer or the index of an indexed trailer is out of range."""

    reason = "index-malformed"
    default_message = "The part index of the object is malformed."


class IndexAuthenticationFailed(FormatError):
    """The index record of an indexed trailer does not verify."""

    reason = "index-authentication"
    default_message = "The part index of the object failed authentication."


class CiphertextTruncated(FormatError):
    """The ciphertext stream ended before the size its layout requires."""

    reason = "truncated"
    default_message = "The object's data ended early."


class CiphertextTrailingData(FormatError):
    """The ciphertext stream has bytes after the last record."""

    reason = "trailing-data"
    default_message = "The object's data continued past its end."


#: The closed list, in the order of docs/FORMAT.md §9.
DECODE_ERRORS: tuple[type[FormatError], ...] = (
    EnvelopeMissing, EnvelopeMalformed, UnsupportedVersion, UnsupportedSuite,
    EnvelopeAuthenticationFailed, CiphertextSizeInvalid, SegmentHeaderMalformed,
    SegmentHeaderAuthenticationFailed, SegmentOutOfOrder, SegmentLayoutMismatch,
    FinalSegmentMissing, FinalSegmentUnexpected, ChunkAuthenticationFailed,
    EtagSealAuthenticationFailed, IndexMalformed, IndexAuthenticationFailed,
    CiphertextTruncated, CiphertextTrailingData,
)


# -- encproxy's own records in the internal bucket (FORMAT.md §14) -----------------------------

class RecordMalformed(FormatError):
    """A record encproxy keeps in the backend (upload record, held-copy reference, bucket
    configuration) is not an authenticated record of this version: unreadable, or an old
    unauthenticated (v1) record."""

    reason = "record-malformed"
    default_message = "A record encproxy keeps in the backend is malformed or unauthenticated."


class RecordAuthenticationFailed(FormatError):
    """A record's MAC does not verify for what it describes: altered, forged, or moved to
    another bucket, key, upload or purpose."""

    reason = "record-authentication"
    default_message = "A record encproxy keeps in the backend failed authentication."


class RecordsRootInvalid(FormatError):
    """The stored records root key is wrapped under another master key than the configured
    one, or does not unwrap."""

    reason = "records-root"
    default_message = "The records root key in the backend is not valid."
