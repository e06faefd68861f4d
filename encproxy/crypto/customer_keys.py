"""SSE-C: data keys wrapped under a key derived from the customer's own key.

encproxy never stores the customer's key, nor anything derived from it other
than the wrapped data key itself: a wrong key fails the AES-GCM tag of the wrap,
which is how a read learns that the key is wrong (AccessDenied, as S3 answers).

    KEK  = HKDF-SHA256(salt = "encproxy/1 sse-c", IKM = customer key, info = object id)
    blob = u8 1 || nonce(12) || AES-256-GCM(KEK, nonce, data key, AAD = context)

The context is the object's wrap context (FORMAT.md §3.2), canonically
encoded, so a blob moved to another object fails too.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from encproxy import errors

KEY_ID = "sse-c"           # what the envelope names as the master key
BLOB_VERSION = 1
_SALT = b"encproxy/1 sse-c"
_NONCE_SIZE = 12
BLOB_SIZE = 1 + _NONCE_SIZE + 32 + 16


def _context_bytes(context: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name in sorted(context):
        for part in (name.encode("utf-8"), context[name].encode("utf-8")):
            out += len(part).to_bytes(4, "big") + part
    return bytes(out)


class CustomerKeyWrapper:
    """A key wrapper (``crypto.keys.KeyWrapper``) for one request's SSE-C key."""

    def __init__(self, customer_key: bytes) -> None:
        if len(customer_key) != 32:
            raise ValueError("an SSE-C key is 32 bytes")
        self._key = customer_key

    def __repr__(self) -> str:
        return "CustomerKeyWrapper(<hidden>)"

    def _kek(self, context: Mapping[str, str]) -> AESGCM:
        info = ("object-id:" + context.get("object-id", "")).encode()
        return AESGCM(HKDF(SHA256(), 32, _SALT, info).derive(self._key))

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._kek(context).encrypt(nonce, data_key, _context_bytes(context))
        return bytes([BLOB_VERSION]) + nonce + sealed

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        if len(blob) != BLOB_SIZE or blob[0] != BLOB_VERSION:
            raise errors.AccessDenied()
        nonce, sealed = blob[1:1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE:]
        try:
            return self._kek(context).decrypt(nonce, sealed, _context_bytes(context))
        except InvalidTag:
            # The key does not open this object: as S3 answers a wrong SSE-C key.
            raise errors.AccessDenied() from None
