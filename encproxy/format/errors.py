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


def _error(name: str, reason: str, message: str, doc: str) -> type[FormatError]:
    return type(name, (FormatError,), {
        "reason": reason, "default_message": message, "__doc__": doc,
        "__module__": __name__,
    })


EnvelopeMissing = _error(
    "EnvelopeMissing", "envelope-missing",
    "The object has no encryption envelope.",
    "An object that must be encrypted carries no envelope metadata.")
EnvelopeMalformed = _error(
    "EnvelopeMalformed", "envelope-malformed",
    "The object's encryption envelope is malformed.",
    "The envelope metadata is too long, not base64url, or its fields are out of range.")
UnsupportedVersion = _error(
    "UnsupportedVersion", "unsupported-version",
    "The object was written in a format version this server does not support.",
    "The envelope or a segment header names an unknown format version.")
UnsupportedSuite = _error(
    "UnsupportedSuite", "unsupported-suite",
    "The object uses a cipher suite this server does not support.",
    "The envelope or a segment header names an unknown cipher suite.")
EnvelopeAuthenticationFailed = _error(
    "EnvelopeAuthenticationFailed", "envelope-authentication",
    "The object's encryption envelope failed authentication.",
    "The envelope tag does not verify: wrong data key, envelope moved from another "
    "object, or a field (suite, kind, object id) changed.")
CiphertextSizeInvalid = _error(
    "CiphertextSizeInvalid", "ciphertext-size",
    "The stored size of the object is not a valid encrypted size.",
    "No plaintext size maps to the stored size (or the layout does not add up to it).")
SegmentHeaderMalformed = _error(
    "SegmentHeaderMalformed", "segment-header-malformed",
    "A part header of the object is malformed.",
    "A segment header has the wrong magic, reserved bits set or fields out of range.")
SegmentHeaderAuthenticationFailed = _error(
    "SegmentHeaderAuthenticationFailed", "segment-header-authentication",
    "A part header of the object failed authentication.",
    "A segment header's tag does not verify: altered, or from another upload.")
SegmentOutOfOrder = _error(
    "SegmentOutOfOrder", "segment-order",
    "The parts of the object are not in their original order.",
    "A segment's part number is not the next one: a part dropped, duplicated or moved.")
SegmentLayoutMismatch = _error(
    "SegmentLayoutMismatch", "segment-layout",
    "A part of the object does not have its recorded size.",
    "A segment header disagrees with the layout (index or prediction) used to find it.")
FinalSegmentMissing = _error(
    "FinalSegmentMissing", "final-segment-missing",
    "The object ends before its last part.",
    "The last segment is not terminal: trailing parts or the trailer were removed.")
FinalSegmentUnexpected = _error(
    "FinalSegmentUnexpected", "final-segment-unexpected",
    "The object continues after its last part.",
    "A terminal segment is followed by more data.")
ChunkAuthenticationFailed = _error(
    "ChunkAuthenticationFailed", "chunk-authentication",
    "A chunk of the object failed authentication.",
    "A chunk's tag does not verify: altered, moved, reordered, duplicated, or the "
    "stream was cut so that the final-chunk flag is wrong.")
EtagSealAuthenticationFailed = _error(
    "EtagSealAuthenticationFailed", "etag-seal-authentication",
    "The sealed checksum of the object failed authentication.",
    "The sealed plaintext MD5 at the end of a single-part body does not verify.")
IndexMalformed = _error(
    "IndexMalformed", "index-malformed",
    "The part index of the object is malformed.",
    "The footer or the index of an indexed trailer is out of range.")
IndexAuthenticationFailed = _error(
    "IndexAuthenticationFailed", "index-authentication",
    "The part index of the object failed authentication.",
    "The index record of an indexed trailer does not verify.")
CiphertextTruncated = _error(
    "CiphertextTruncated", "truncated",
    "The object's data ended early.",
    "The ciphertext stream ended before the size its layout requires.")
CiphertextTrailingData = _error(
    "CiphertextTrailingData", "trailing-data",
    "The object's data continued past its end.",
    "The ciphertext stream has bytes after the last record.")

#: The closed list, in the order of docs/FORMAT.md §9.
DECODE_ERRORS: tuple[type[FormatError], ...] = (
    EnvelopeMissing, EnvelopeMalformed, UnsupportedVersion, UnsupportedSuite,
    EnvelopeAuthenticationFailed, CiphertextSizeInvalid, SegmentHeaderMalformed,
    SegmentHeaderAuthenticationFailed, SegmentOutOfOrder, SegmentLayoutMismatch,
    FinalSegmentMissing, FinalSegmentUnexpected, ChunkAuthenticationFailed,
    EtagSealAuthenticationFailed, IndexMalformed, IndexAuthenticationFailed,
    CiphertextTruncated, CiphertextTrailingData,
)
