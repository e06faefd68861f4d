"""Scaffolding shared by the format tests: toy key providers and stream helpers.

The providers are test scaffolding, not the thing under test: ``ContextWrapper``
binds the wrap context like KMS or an AES-GCM keyring; ``BlindWrapper`` ignores
it, like RFC 3394 key wrap on a PKCS#11 token, so tests can show that the
format's own binding holds without the provider's help.
"""
from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encproxy.crypto.keys import ObjectKeys, new_object
from encproxy.crypto.multipart import PartEncryptor, build_trailer
from encproxy.crypto.single import ObjectEncryptor
from encproxy.format.constants import Kind, Suite
from encproxy.format.envelope import Envelope
from encproxy.format.errors import FormatError
from encproxy.format.layout import CompletionPlan, plan_completion


class ContextWrapper:
    """AES-256-GCM wrap with the canonical JSON of the context as AAD."""

    def __init__(self) -> None:
        self._aead = AESGCM(os.urandom(32))

    @staticmethod
    def _aad(context: Mapping[str, str]) -> bytes:
        return json.dumps(dict(context), sort_keys=True).encode()

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, self._aad(context))

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], self._aad(context))


class BlindWrapper(ContextWrapper):
    """Wraps without binding the context (what RFC 3394 key wrap gives)."""

    def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        return super().wrap(key_id, data_key, {})

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        return super().unwrap(blob, {})


def rand_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def join(views: Iterable[memoryview]) -> bytes:
    return b"".join(bytes(v) for v in views)


def pieces(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling through them."""
    pos, i = 0, 0
    while pos < len(data):
        n = max(1, sizes[i % len(sizes)])
        yield data[pos:pos + n]
        pos, i = pos + n, i + 1


def collect(views: Iterable[memoryview]) -> tuple[bytes, FormatError | None]:
    """Everything a consumer received before the stream failed, and the failure."""
    got = bytearray()
    try:
        for view in views:
            got += view
    except FormatError as exc:
        return bytes(got), exc
    return bytes(got), None


@dataclass
class Stored:
    """An object as the backend holds it."""

    keys: ObjectKeys
    envelope: Envelope
    body: bytes
    plaintext: bytes
    plan: CompletionPlan | None = None

    @property
    def backend_parts(self) -> int:
        return self.plan.backend_parts if self.plan else 1


def store_single(plaintext: bytes, suite: Suite = Suite.AES256_GCM, *,
                 wrapper: ContextWrapper | None = None, bucket: str = "b",
                 key: str = "k") -> Stored:
    wrapper = wrapper or ContextWrapper()
    keys, envelope = new_object(wrapper, "test:k/1", bucket, key, kind=Kind.SINGLE,
                                suite=suite)
    body = join(ObjectEncryptor(keys, len(plaintext)).encrypt([plaintext]))
    return Stored(keys, envelope, body, plaintext)


def encrypt_parts(keys: ObjectKeys, parts: Sequence[bytes],
                  numbers: Sequence[int] | None = None) -> list[bytes]:
    numbers = numbers or range(1, len(parts) + 1)
    return [join(PartEncryptor(keys, n, len(p)).encrypt([p]))
            for n, p in zip(numbers, parts, strict=True)]


def store_multipart(parts: Sequence[bytes], suite: Suite = Suite.AES256_GCM, *,
                    numbers: Sequence[int] | None = None,
                    wrapper: ContextWrapper | None = None, bucket: str = "b",
                    key: str = "k", can_rewrite_last_part: bool = True,
                    keys: ObjectKeys | None = None, always_index: bool = False) -> Stored:
    """A completed multipart object: ``parts`` uploaded as ``numbers`` (1..m by
    default), completed with exactly those numbers (``always_index``: as the server
    completes them, FORMAT.md §7.3).  ``keys`` reuses an upload."""
    wrapper = wrapper or ContextWrapper()
    numbers = list(numbers or range(1, len(parts) + 1))
    if keys is None:
        keys, envelope = new_object(wrapper, "test:k/1", bucket, key, kind=Kind.MULTIPART,
                                    suite=suite)
    else:
        envelope = keys.envelope("test:k/1", b"w", bucket, key)
    plan = plan_completion(numbers, [len(p) for p in parts],
                           can_rewrite_last_part=can_rewrite_last_part,
                           always_index=always_index)
    body = b"".join(encrypt_parts(keys, parts, numbers)) + build_trailer(keys, plan)
    return Stored(keys, envelope, body, b"".join(parts), plan)
