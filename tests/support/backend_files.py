"""Direct access to what the file store holds: the attacker's (and auditor's) view.

Tests use it to check that the backend never holds plaintext, and to tamper
with stored objects the way someone with write access to the backend could.
"""
from __future__ import annotations

import io
from pathlib import Path

from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.filestore.store import FileStore


def all_stored_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def read_stored(root: Path, bucket: str, key: str) -> tuple[ObjectRecord, bytes]:
    record, reader = FileStore(root).open_object(bucket, key)
    with reader:
        return record, reader.read()


def write_stored(root: Path, bucket: str, key: str, body: bytes,
                 user_metadata: dict[str, str]) -> None:
    FileStore(root).put_object(bucket, key, io.BytesIO(body), len(body),
                               ObjectMeta(user_metadata=user_metadata))
