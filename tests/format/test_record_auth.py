"""Authenticated records (FORMAT.md §14): known answers, recomputed independently, and
every binding."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from encproxy.crypto.records import (
    PURPOSES,
    mac_input,
    open_record,
    purpose_key,
    root_id,
    root_wrap_context,
    seal_record,
    split_record,
)
from encproxy.format.errors import RecordAuthenticationFailed, RecordMalformed

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "format"
                      / "authenticated_records.json").read_text())


def independent_purpose_key(root: bytes, purpose: str) -> bytes:
    """RFC 5869 with the standard library only (not encproxy's HKDF)."""
    prk = hmac.new(b"encproxy/1 records", root, hashlib.sha256).digest()
    info = b"encproxy/1 record " + purpose.encode()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def independent_mac_input(row: dict[str, Any]) -> bytes:
    def field(raw: bytes) -> bytes:
        return struct.pack(">I", len(raw)) + raw
    upload = b"\x00" if row["upload_id"] is None else b"\x01" + field(row["upload_id"].encode())
    return (b"encproxy/1 record mac\x00" + bytes([2]) + field(row["purpose"].encode())
            + field(row["bucket"].encode()) + field(row["key"].encode()) + upload
            + field(bytes.fromhex(row["body_hex"])))


@pytest.mark.parametrize("row", VECTORS["vectors"], ids=lambda r: r["purpose"])
def test_known_answers(row: dict[str, Any]) -> None:
    root = bytes.fromhex(VECTORS["root_key"])
    key = purpose_key(root, row["purpose"])
    assert key.hex() == row["purpose_key"] == independent_purpose_key(root, row["purpose"]).hex()
    body = bytes.fromhex(row["body_hex"])
    data = mac_input(row["purpose"], row["bucket"], row["key"], row["upload_id"], body)
    assert data.hex() == row["mac_input"] == independent_mac_input(row).hex()
    tag = hmac.new(key, data, hashlib.sha256).hexdigest()
    assert tag == row["tag"]
    stored = bytes.fromhex(row["stored_hex"])
    root = VECTORS["root_id"]
    assert stored == b"encproxy-record/2 " + root.encode() + b" " + tag.encode() + b"\n" + body
    assert seal_record(key, root, row["purpose"], row["bucket"], row["key"], row["upload_id"],
                       body) == stored
    assert split_record(stored) == (root, bytes.fromhex(tag), body)
    assert open_record(key, row["purpose"], row["bucket"], row["key"], row["upload_id"],
                       stored) == body


def test_root_wrap_context_and_root_id() -> None:
    assert root_wrap_context("encproxy-internal") == VECTORS["root_wrap_context"]
    blob = bytes.fromhex(VECTORS["root_blob"])
    expected = hashlib.sha256(b"encproxy/1 records root id\x00" + blob).hexdigest()[:32]
    assert root_id(blob) == VECTORS["root_id"] == expected


ROOT = bytes(range(32))
RID = "0" * 32
BINDING = ("upload", "bkt", "a/key", "u1")


@pytest.mark.parametrize("changed", [
    ("held", "bkt", "a/key", "u1"), ("upload", "bkt2", "a/key", "u1"),
    ("upload", "bkt", "a/key2", "u1"), ("upload", "bkt", "a/key", "u2"),
    ("upload", "bkt", "a/key", None), ("upload", "bk", "ta/key", "u1"),
    ("upload", "bkt", "a/keyu", "1"),
])
def test_a_record_verifies_only_for_what_it_describes(changed: tuple[Any, ...]) -> None:
    purpose, bucket, key, upload = BINDING
    stored = seal_record(purpose_key(ROOT, purpose), RID, purpose, bucket, key, upload, b"{}")
    p2, b2, k2, u2 = changed
    with pytest.raises(RecordAuthenticationFailed):
        open_record(purpose_key(ROOT, p2), p2, b2, k2, u2, stored)


def test_every_altered_byte_fails() -> None:
    key = purpose_key(ROOT, "upload")
    stored = seal_record(key, RID, "upload", "bkt", "k", "u", b'{"mode": "AES256"}')
    root_ids = range(len("encproxy-record/2 "), len("encproxy-record/2 ") + 32)
    for i in range(len(stored)):
        bad = bytearray(stored)
        bad[i] ^= 0x01
        if i in root_ids:   # names another root: the caller opens it with that root's key
            with contextlib.suppress(RecordMalformed):
                assert split_record(bytes(bad))[0] != RID
            continue
        with pytest.raises((RecordAuthenticationFailed, RecordMalformed)):
            open_record(key, "upload", "bkt", "k", "u", bytes(bad))
    with pytest.raises(RecordAuthenticationFailed):   # another root key
        open_record(purpose_key(bytes(32), "upload"), "upload", "bkt", "k", "u", stored)


@pytest.mark.parametrize("stored", [
    b'{"v": 1, "bucket": "bkt", "key": "k", "mode": "none", "envelope": null}',   # v1
    b"", b"encproxy-record/2 ", b"encproxy-record/2 " + b"0" * 32 + b" " + b"zz" * 32 + b"\n{}",
    b"encproxy-record/2 " + b"0" * 32 + b" " + b"00" * 31 + b"\n{}",
    b"encproxy-record/2 " + b"00" * 32 + b"\n{}",                  # no root id
    b"encproxy-record/2 " + b"A" * 32 + b" " + b"00" * 32 + b"\n{}",  # not lowercase hex
    b"encproxy-record/1 " + b"0" * 32 + b" " + b"00" * 32 + b"\n{}",
])
def test_unauthenticated_or_malformed_records_are_refused(stored: bytes) -> None:
    with pytest.raises(RecordMalformed):
        split_record(stored)


def test_purpose_keys_differ_and_purposes_are_closed() -> None:
    assert len({purpose_key(ROOT, p) for p in PURPOSES}) == len(PURPOSES)
    with pytest.raises(ValueError):
        purpose_key(ROOT, "other")
    with pytest.raises(ValueError):
        purpose_key(ROOT[:16], "upload")
