"""Constants of the encproxy object format, version 1 (docs/FORMAT.md).

Everything here is part of the stored format: changing any value changes the
bytes on disk, so it needs a new format version.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Final

FORMAT_VERSION: Final = 1
# An envelope of version 2 is a single-part object whose sealed tail also carries its
# checksum (FORMAT.md §5, §15); every other field and derivation is version 1's.
CHECKSUMMED_ENVELOPE_VERSION: Final = 2
ENVELOPE_VERSIONS: Final = (FORMAT_VERSION, CHECKSUMMED_ENVELOPE_VERSION)

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
TiB: Final = 1024 * GiB

# -- chunks ---------------------------------------------------------------------------
CHUNK_SIZE: Final = 64 * KiB            # plaintext bytes per chunk (the last may be shorter)
TAG_SIZE: Final = 16                    # per-chunk authentication tag, both suites
CHUNK_CIPHERTEXT_SIZE: Final = CHUNK_SIZE + TAG_SIZE

# -- key material ---------------------------------------------------------------------
DATA_KEY_SIZE: Final = 32
OBJECT_ID_SIZE: Final = 16
SEGMENT_SALT_SIZE: Final = 16
ENVELOPE_TAG_SIZE: Final = 32

# -- single-part objects ----------------------------------------------------------------
MD5_SIZE: Final = 16
ETAG_SEAL_SIZE: Final = MD5_SIZE + TAG_SIZE   # sealed plaintext MD5 at the end of the body
# The checksum block (FORMAT.md §15): u8 algorithm, u8 type, u16 0, 32-byte digest.
CHECKSUM_BLOCK_SIZE: Final = 36
# Envelope version 2: the sealed tail holds the MD5 and the checksum block.
CHECKSUMMED_SEAL_SIZE: Final = MD5_SIZE + CHECKSUM_BLOCK_SIZE + TAG_SIZE

# -- multipart objects ------------------------------------------------------------------
SEGMENT_HEADER_SIZE: Final = 52
SEGMENT_MAGIC: Final = b"EPS"
FOOTER_SIZE: Final = 16
FOOTER_MAGIC: Final = b"EPF"
INDEX_PREFIX_SIZE: Final = 8            # u32 part count, u32 pad length
INDEX_ENTRY_SIZE: Final = 12            # u32 part number, u64 plaintext size, per data segment
# A described index (flag DESCRIBED, FORMAT.md §7.8) carries after its entries the MD5 the
# object's S3-style ETag shows (16 bytes) and the digest of its upload id (32 bytes).
INDEX_DESCRIPTION_SIZE: Final = 48
# Residue of (S - N * SEGMENT_HEADER_SIZE) mod CHUNK_CIPHERTEXT_SIZE that marks an
# object whose layout must be read from its index.  Regular layouts never produce
# a residue in 1..15 (docs/FORMAT.md, "Sizes from a listing").
INDEX_SIGNAL_RESIDUE: Final = 8
MAX_INDEX_PAD: Final = CHUNK_CIPHERTEXT_SIZE - 1

# A part smaller than this can only be the last part of an upload (S3's rule), and
# part MAX_PART_NUMBER can only be the last: both are written as terminal segments.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_NUMBER: Final = 10_000
# A trailer's segment number is the last completed part number + 1: 10001 only when
# it is appended to part 10000 (held tail), never as a backend part number.
MAX_SEGMENT_NUMBER: Final = MAX_PART_NUMBER + 1

# -- backend limits (S3) -------------------------------------------------------------------
BACKEND_MAX_PUT_SIZE: Final = 5 * GiB
BACKEND_MAX_PART_SIZE: Final = 5 * GiB
BACKEND_MAX_OBJECT_SIZE: Final = 5 * TiB

# -- envelope in user metadata -------------------------------------------------------------
METADATA_KEY: Final = "encproxy"                # stored as x-amz-meta-encproxy
METADATA_HEADER: Final = "x-amz-meta-" + METADATA_KEY
MAX_KEY_ID_SIZE: Final = 128
MAX_WRAPPED_KEY_SIZE: Final = 512
ENVELOPE_FIXED_SIZE: Final = 4 + OBJECT_ID_SIZE + ENVELOPE_TAG_SIZE + 1 + 2
# The bucket-key block (FORMAT.md §16) after the wrapped key: u8 type, 16-byte bucket key
# id, u8 + master key version (0..64), u16 + the bucket key's provider blob (1..512).
BUCKET_KEY_BLOCK_TYPE: Final = 1
BUCKET_KEY_ID_SIZE: Final = 16
MAX_BUCKET_KEY_VERSION_SIZE: Final = 64
MAX_BUCKET_KEY_BLOB_SIZE: Final = 512
MAX_BUCKET_KEY_BLOCK_SIZE: Final = (1 + BUCKET_KEY_ID_SIZE + 1 + MAX_BUCKET_KEY_VERSION_SIZE + 2
                                    + MAX_BUCKET_KEY_BLOB_SIZE)
MAX_ENVELOPE_SIZE: Final = (ENVELOPE_FIXED_SIZE + MAX_KEY_ID_SIZE + MAX_WRAPPED_KEY_SIZE
                            + MAX_BUCKET_KEY_BLOCK_SIZE)
MAX_METADATA_VALUE_SIZE: Final = (MAX_ENVELOPE_SIZE * 4 + 2) // 3   # unpadded base64url


class Suite(IntEnum):
    """Cipher suites. Both are authenticated; both use 16-byte tags per chunk."""

    AES256_GCM = 1
    AES256_CTR_HMAC_SHA256 = 2

    @property
    def label(self) -> str:
        return _SUITE_LABELS[self]

    @property
    def key_size(self) -> int:
        """Bytes of key material one record key needs (HKDF output length)."""
        return 32 if self is Suite.AES256_GCM else 64


_SUITE_LABELS = {
    Suite.AES256_GCM: "AES-256-GCM",
    Suite.AES256_CTR_HMAC_SHA256: "AES-256-CTR-HMAC-SHA256",
}


class Kind(IntEnum):
    """How an object's body is framed."""

    SINGLE = 1      # PutObject: one chunk stream, then the sealed plaintext MD5
    MULTIPART = 2   # multipart upload: one segment per part, maybe a trailer segment


class Protection(IntEnum):
    """How the data key is protected, as S3 reports it (envelope byte 3, in the tag)."""

    SSE_S3 = 0      # x-amz-server-side-encryption: AES256 (the server's default key)
    SSE_KMS = 1     # x-amz-server-side-encryption: aws:kms (a named master key)
    SSE_C = 2       # a customer-provided key (SSE-C); encproxy wraps with a key derived from it


class Domain(IntEnum):
    """What a sealed record is; byte 2 of every AAD."""

    CHUNK = 1            # a chunk of a single-part body
    ETAG_SEAL = 2        # the sealed plaintext MD5 of a single-part body
    SEGMENT_CHUNK = 3    # a chunk of a multipart segment
    SEGMENT_HEADER = 4   # the tag of a segment header (empty plaintext)
    INDEX = 5            # the layout index of an indexed trailer


class SegmentFlag(IntEnum):
    TERMINAL = 0x01   # the last segment of the object
    TRAILER = 0x02    # written at CompleteMultipartUpload; carries no object data
    INDEXED = 0x04    # the trailer carries an index of the part sizes
    DESCRIBED = 0x08  # the index also carries the object's ETag and its upload's digest
    COMPLETION = 0x10  # a trailer sealed under the upload's completion key (FORMAT.md §7.9)
    CHECKSUMMED = 0x20  # the described index also carries the object's checksum (§15)


SEGMENT_FLAGS_MASK: Final = 0x3F

# Record indices outside the chunk range (chunk indices stay below 2**32), so that a
# (key, nonce) pair is never used twice within one key's lifetime.
ETAG_SEAL_INDEX: Final = 2**64 - 1
SEGMENT_HEADER_INDEX: Final = 2**64 - 2
INDEX_RECORD_INDEX: Final = 2**64 - 3

# CTR: chunk i starts at counter block i << CTR_CHUNK_SHIFT (room for CHUNK_SIZE / 16).
CTR_CHUNK_SHIFT: Final = 12
assert CHUNK_SIZE // 16 <= 1 << CTR_CHUNK_SHIFT
