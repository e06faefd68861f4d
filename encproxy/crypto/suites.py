"""The two cipher suites of the format, behind one small record interface.

A *record* is ``ciphertext || tag(16)`` for a plaintext, an AAD and a record
index under one key.  Both suites:

* ``AES256_GCM``: AES-256-GCM, nonce = ``gcm_nonce(index)``.
* ``AES256_CTR_HMAC_SHA256``: encrypt-then-MAC.  The 64-byte record key is split
  into an AES-256 key and an HMAC-SHA256 key (both HKDF output).  Ciphertext is
  AES-256-CTR from counter block ``index << 12``; the tag is the first 16 bytes of
  ``HMAC-SHA256(mac_key, u64(len(aad)) || aad || ciphertext)``.  Decryption checks
  the tag (constant time) before it decrypts anything.

``open_into`` never leaves unauthenticated plaintext in the caller's buffer: on a
bad tag it zeroes the buffer and raises :class:`RecordRejected`.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

from encproxy.format.constants import CHUNK_SIZE, CTR_CHUNK_SHIFT, TAG_SIZE, Suite
from encproxy.format.records import FLAG_FINAL, NONCE_STRUCT, ctr_initial_block, gcm_nonce, u64

Buffer = bytes | bytearray | memoryview
AadPack = Callable[[int, int, int], bytes]
_nonce = NONCE_STRUCT.pack   # == gcm_nonce, without a Python-level call


class RecordRejected(Exception):
    """A record's tag did not verify (callers map it to the precise FormatError)."""


class RecordCipher(Protocol):
    suite: Suite

    def seal_into(self, index: int, aad: bytes, plaintext: Buffer, out: memoryview) -> None:
        """Write ``ciphertext || tag`` (``len(plaintext) + 16`` bytes) into ``out``."""

    def open_into(self, index: int, aad: bytes, record: Buffer, out: memoryview) -> None:
        """Verify ``record`` and write its plaintext (``len(record) - 16`` bytes) into ``out``."""

    def seal(self, index: int, aad: bytes, plaintext: Buffer) -> bytes: ...

    def open(self, index: int, aad: bytes, record: Buffer) -> bytes: ...

    def seal_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        """Seal ``count`` consecutive chunks from ``index`` (all CHUNK_SIZE but the run's
        last) from ``src`` into ``dst``; ``final`` is the stream's final chunk index and
        ``pack(flags, part, index)`` builds each AAD."""

    def open_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        """Open ``count`` consecutive records from ``index`` from ``src`` into ``dst``;
        on a bad tag the failing chunk's slot is zeroed and RecordRejected raised."""


class Aes256Gcm:
    suite = Suite.AES256_GCM

    __slots__ = ("_aead", "_encrypt_into", "_decrypt_into")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM takes a 32-byte key")
        self._aead = AESGCM(key)
        self._encrypt_into = self._aead.encrypt_into
        self._decrypt_into = self._aead.decrypt_into

    def seal_into(self, index: int, aad: bytes, plaintext: Buffer, out: memoryview) -> None:
        self._encrypt_into(_nonce(index), plaintext, aad, out)

    def open_into(self, index: int, aad: bytes, record: Buffer, out: memoryview) -> None:
        try:
            self._decrypt_into(_nonce(index), record, aad, out)
        except InvalidTag:
            out[:] = bytes(len(out))   # decrypt_into leaves unverified plaintext behind
            raise RecordRejected() from None

    def seal(self, index: int, aad: bytes, plaintext: Buffer) -> bytes:
        return self._aead.encrypt(gcm_nonce(index), plaintext, aad)

    def seal_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        encrypt_into, s, d, end = self._encrypt_into, 0, 0, index + count - 1
        for i in range(index, end + 1):
            n = CHUNK_SIZE if i < end else len(src) - s
            encrypt_into(_nonce(i), src[s:s + n], pack(FLAG_FINAL if i == final else 0, part, i),
                         dst[d:d + n + TAG_SIZE])
            s += n
            d += n + TAG_SIZE

    def open_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        decrypt_into, s, d, end = self._decrypt_into, 0, 0, index + count - 1
        n = CHUNK_SIZE
        try:
            for i in range(index, end + 1):
                n = CHUNK_SIZE if i < end else len(src) - s - TAG_SIZE
                decrypt_into(_nonce(i), src[s:s + n + TAG_SIZE],
                             pack(FLAG_FINAL if i == final else 0, part, i), dst[d:d + n])
                s += n + TAG_SIZE
                d += n
        except InvalidTag:
            dst[d:d + n] = bytes(n)   # decrypt_into leaves unverified plaintext behind
            raise RecordRejected() from None

    def open(self, index: int, aad: bytes, record: Buffer) -> bytes:
        try:
            return self._aead.decrypt(gcm_nonce(index), record, aad)
        except InvalidTag:
            raise RecordRejected() from None


class Aes256CtrHmacSha256:
    suite = Suite.AES256_CTR_HMAC_SHA256

    __slots__ = ("_aes", "_mac", "_ctx", "_next_block")

    def __init__(self, key: bytes) -> None:
        if len(key) != 64:
            raise ValueError("AES-256-CTR-HMAC-SHA256 takes 64 bytes of key material")
        self._aes = algorithms.AES(key[:32])
        self._mac = HMAC(key[32:], SHA256())
        self._ctx: CipherContext | None = None
        self._next_block = -1

    def _keystream(self, index: int, length: int) -> CipherContext:
        """A CTR context positioned at record ``index``; reused across consecutive
        full chunks (chunk i+1 starts where chunk i's 4096 blocks end)."""
        block = index << CTR_CHUNK_SHIFT
        if self._ctx is None or block != self._next_block:
            self._ctx = Cipher(self._aes, modes.CTR(ctr_initial_block(index))).encryptor()
        blocks = -(-length // 16)
        # Only a whole number of blocks keeps the context aligned for the next record.
        self._next_block = block + blocks if length % 16 == 0 else -1
        return self._ctx

    def _tag(self, aad: bytes, ciphertext: Buffer) -> bytes:
        mac = self._mac.copy()
        mac.update(u64(len(aad)))
        mac.update(aad)
        mac.update(ciphertext)
        return mac.finalize()[:TAG_SIZE]

    def seal_into(self, index: int, aad: bytes, plaintext: Buffer, out: memoryview) -> None:
        n = len(plaintext)
        if len(out) != n + TAG_SIZE:
            raise ValueError("output buffer must be len(plaintext) + 16 bytes")
        self._keystream(index, n).update_into(plaintext, out)
        out[n:] = self._tag(aad, out[:n])

    def open_into(self, index: int, aad: bytes, record: Buffer, out: memoryview) -> None:
        rec = memoryview(record)
        n = len(rec) - TAG_SIZE
        if n < 0 or len(out) != n:
            raise ValueError("output buffer must be len(record) - 16 bytes")
        if not hmac.compare_digest(self._tag(aad, rec[:n]), rec[n:]):
            raise RecordRejected()
        self._keystream(index, n).update_into(rec[:n], out)

    def seal_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        s, d, end = 0, 0, index + count - 1
        for i in range(index, end + 1):
            n = CHUNK_SIZE if i < end else len(src) - s
            self.seal_into(i, pack(FLAG_FINAL if i == final else 0, part, i), src[s:s + n],
                           dst[d:d + n + TAG_SIZE])
            s += n
            d += n + TAG_SIZE

    def open_run(self, index: int, count: int, final: int, pack: AadPack, part: int,
                 src: memoryview, dst: memoryview) -> None:
        s, d, end = 0, 0, index + count - 1
        for i in range(index, end + 1):
            n = CHUNK_SIZE if i < end else len(src) - s - TAG_SIZE
            self.open_into(i, pack(FLAG_FINAL if i == final else 0, part, i),
                           src[s:s + n + TAG_SIZE], dst[d:d + n])
            s += n + TAG_SIZE
            d += n

    def seal(self, index: int, aad: bytes, plaintext: Buffer) -> bytes:
        out = bytearray(len(plaintext) + TAG_SIZE)
        self.seal_into(index, aad, plaintext, memoryview(out))
        return bytes(out)

    def open(self, index: int, aad: bytes, record: Buffer) -> bytes:
        out = bytearray(max(0, len(record) - TAG_SIZE))
        if len(record) < TAG_SIZE:
            raise RecordRejected()
        self.open_into(index, aad, record, memoryview(out))
        return bytes(out)


def record_cipher(suite: Suite, key: bytes) -> RecordCipher:
    """The record cipher of ``suite`` under ``key`` (``suite.key_size`` bytes)."""
    if suite is Suite.AES256_GCM:
        return Aes256Gcm(key)
    if suite is Suite.AES256_CTR_HMAC_SHA256:
        return Aes256CtrHmacSha256(key)
    raise ValueError("unknown suite")
