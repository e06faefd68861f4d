"""Single-part objects (PutObject, CopyObject): one chunk stream, then the sealed MD5.

    body = chunk_0 || ... || chunk_{K-1} || etag_seal

``chunk_i`` is ``seal(body key, i, AAD(domain 1, part 0, i, final = i == K-1), pt_i)``;
``etag_seal`` is ``seal(body key, 2**64-1, AAD(domain 2, final) || u64 size, md5)``, or,
for an object whose envelope is version 2, of ``md5 || checksum block`` (FORMAT.md §15).

Typical use::

    keys, envelope = new_object(provider, key_id, bucket, key, kind=Kind.SINGLE)
    enc = ObjectEncryptor(keys, content_length)
    backend.put(headers={"Content-Length": enc.ciphertext_size, **meta(envelope)},
                body=enc.encrypt(client_body, md5=lambda: md5_of_client_body))

    dec = ObjectDecryptor(open_object(provider, envelope, bucket, key), stored_size)
    for view in dec.decrypt(backend_body): write(view)          # whole object
    plan = plan_range(dec.plaintext_size, first, last)          # a range
    for view in dec.decrypt_range(plan, backend_body_of(plan.http_range)): write(view)
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.stream import (
    BATCH_CHUNKS,
    READ_SIZE,
    ByteSource,
    Source,
    batch_for,
    decrypt_chunks,
    encrypt_chunks,
    trimmed,
)
from encproxy.crypto.suites import RecordCipher, RecordRejected
from encproxy.errors import IncompleteBody
from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import (
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    ETAG_SEAL_INDEX,
    MD5_SIZE,
    Domain,
    Kind,
)
from encproxy.format.errors import (
    CiphertextTrailingData,
    CiphertextTruncated,
    EtagSealAuthenticationFailed,
)
from encproxy.format.layout import (
    RangePlan,
    check_single_size,
    chunk_count,
    ciphertext_size,
    plaintext_size,
    seal_size,
)
from encproxy.format.records import AadPacker, aad, u64


def _seal_aad(keys: ObjectKeys, size: int) -> bytes:
    return aad(keys.suite, Domain.ETAG_SEAL, 0, ETAG_SEAL_INDEX, final=True, extra=u64(size))


def _require_single(keys: ObjectKeys) -> None:
    if keys.kind is not Kind.SINGLE:
        raise ValueError("these keys belong to a multipart object")


class ObjectEncryptor:
    """Encrypts one single-part object of a known plaintext size.

    One encryptor per object: its keys must come from a fresh data key.
    """

    def __init__(self, keys: ObjectKeys, plaintext_size: int) -> None:
        _require_single(keys)
        check_single_size(plaintext_size, keys.checksummed)
        self.keys = keys
        self.plaintext_size = plaintext_size
        self.ciphertext_size = ciphertext_size(plaintext_size, keys.checksummed)
        self._etag_seal: bytes | None = None

    def encrypt(self, source: Source, md5: Callable[[], bytes] | None = None,
                checksum: Callable[[], StoredChecksum] | None = None
                ) -> Iterator[memoryview]:
        """Yield the body (``ciphertext_size`` bytes) in ~1 MiB views.

        ``md5`` is called once, after the last plaintext byte was read, and must
        return the 16-byte MD5 of the plaintext (the client-visible ETag); the
        caller usually computes it beside the encryption.  Without it the
        encryptor computes it inline (slower).  ``checksum``, required exactly when
        the keys are of a checksummed (version 2) object, is called after it and
        returns the object's checksum, sealed beside the MD5.  Raises IncompleteBody
        if the source holds fewer or more than ``plaintext_size`` bytes.
        """
        if (checksum is None) == self.keys.checksummed:
            raise ValueError("a checksum is sealed exactly in a version 2 object")
        cipher = self.keys.body_cipher()
        src = ByteSource(source, READ_SIZE)
        out = batch_for(chunk_count(self.plaintext_size), CHUNK_CIPHERTEXT_SIZE,
                        slack=seal_size(self.keys.checksummed))
        digest = None
        if md5 is None:
            digest = hashlib.md5(usedforsecurity=False)
            md5 = digest.digest
        yield from encrypt_chunks(cipher, AadPacker(self.keys.suite, Domain.CHUNK, 0),
                                  self.plaintext_size, src, out,
                                  observe=digest.update if digest else None)
        if not src.at_end():
            raise IncompleteBody()
        value = md5()
        if len(value) != MD5_SIZE:
            raise ValueError("md5 must return 16 bytes")
        if checksum is not None:
            value += checksum().encode()
        self._etag_seal = cipher.seal(ETAG_SEAL_INDEX, _seal_aad(self.keys, self.plaintext_size),
                                      value)
        out.put(self._etag_seal)
        yield out.take()

    def fingerprint(self) -> bytes:
        """16 bytes that tell this ciphertext apart from any other, once encrypted.

        The MD5 of the ETag seal, the body's last bytes: the seal is made under a
        fresh data key, so two writes never share it, and it already commits to
        the plaintext MD5.  A store may keep it as the object's own ETag instead
        of hashing the whole ciphertext (docs/ENCRYPTION.md, "ETags").
        """
        if self._etag_seal is None:
            raise ValueError("the object is not completely encrypted yet")
        return hashlib.md5(self._etag_seal, usedforsecurity=False).digest()


class ObjectDecryptor:
    """Decrypts a single-part object whose stored size is ``ciphertext_size``."""

    def __init__(self, keys: ObjectKeys, ciphertext_size: int) -> None:
        _require_single(keys)
        self.keys = keys
        self.ciphertext_size = ciphertext_size
        self.seal_size = seal_size(keys.checksummed)
        self.plaintext_size = plaintext_size(ciphertext_size, keys.checksummed)
        self.etag_md5: bytes | None = None
        self.checksum: StoredChecksum | None = None
        self._cipher: RecordCipher | None = None

    @property
    def cipher(self) -> RecordCipher:
        if self._cipher is None:
            self._cipher = self.keys.body_cipher()
        return self._cipher

    def decrypt(self, source: Source) -> Iterator[memoryview]:
        """Yield the whole plaintext; the last view only after the seal verified.

        Afterwards ``etag_md5`` holds the sealed plaintext MD5.
        """
        src = ByteSource(source, BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE)
        out = batch_for(chunk_count(self.plaintext_size), CHUNK_SIZE)
        last = chunk_count(self.plaintext_size) - 1
        aadp = AadPacker(self.keys.suite, Domain.CHUNK, 0)
        yield from decrypt_chunks(self.cipher, aadp, self.plaintext_size, 0, last, src, out)
        seal = src.take(self.seal_size)
        if len(seal) != self.seal_size:
            raise CiphertextTruncated()
        self.etag_md5, self.checksum = self.open_seal(seal)
        if not src.at_end():
            raise CiphertextTrailingData()
        yield out.take()

    def decrypt_range(self, plan: RangePlan, source: Source) -> Iterator[memoryview]:
        """Yield exactly ``plan.length`` plaintext bytes from the ciphertext bytes
        ``[plan.ciphertext_start, plan.ciphertext_stop)`` given by ``source``."""
        if plan.plaintext_size != self.plaintext_size:
            raise ValueError("the plan is for another object size")
        return trimmed(self._range(plan, source), plan.skip, plan.length)

    def _range(self, plan: RangePlan, source: Source) -> Iterator[memoryview]:
        src = ByteSource(source, BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE)
        out = batch_for(plan.last_chunk - plan.first_chunk + 1, CHUNK_SIZE)
        aadp = AadPacker(self.keys.suite, Domain.CHUNK, 0)
        yield from decrypt_chunks(self.cipher, aadp, self.plaintext_size, plan.first_chunk,
                                  plan.last_chunk, src, out)
        if not src.at_end():
            raise CiphertextTrailingData()
        yield out.take()

    def open_etag_seal(self, seal: bytes | memoryview) -> bytes:
        """The plaintext MD5 from the object's sealed tail (for HEAD)."""
        return self.open_seal(seal)[0]

    def open_seal(self, seal: bytes | memoryview) -> tuple[bytes, StoredChecksum | None]:
        """The plaintext MD5 and (envelope version 2) the checksum from the object's
        sealed tail (``etag_seal_range``)."""
        if len(seal) != self.seal_size:
            raise CiphertextTruncated()
        try:
            opened = self.cipher.open(ETAG_SEAL_INDEX,
                                      _seal_aad(self.keys, self.plaintext_size), seal)
        except RecordRejected:
            raise EtagSealAuthenticationFailed() from None
        if not self.keys.checksummed:
            return bytes(opened), None
        return bytes(opened[:MD5_SIZE]), StoredChecksum.decode(
            opened[MD5_SIZE:], EtagSealAuthenticationFailed)

    @property
    def etag_seal_range(self) -> tuple[int, int]:
        """``[start, stop)`` of the sealed tail (MD5, checksum) in the stored body."""
        return self.ciphertext_size - self.seal_size, self.ciphertext_size
