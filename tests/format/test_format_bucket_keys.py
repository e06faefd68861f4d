"""Envelopes whose data key a bucket key wraps (docs/FORMAT.md §16): the known-answer
vectors recomputed from the text with ``cryptography`` and ``hashlib`` alone, the
codec, and tampering: rewriting the block (its presence, id, master key version or
blob) or the wrapped data key fails with an integrity error, before any plaintext."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from encproxy import errors
from encproxy.crypto.keys import ObjectKeys, new_object, open_object, rebind, rewrap
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.format.constants import MAX_METADATA_VALUE_SIZE, Kind, Protection, Suite
from encproxy.format.envelope import BucketKeyRef, Envelope, bucket_key_context
from encproxy.format.errors import EnvelopeAuthenticationFailed, EnvelopeMalformed
from encproxy.keys.bucket_keys import BucketKeys, new_bucket_key
from encproxy.keys.local import LocalKeyring

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "format"
                      / "bucket_keys.json").read_text())["vectors"]
BUCKET, KEY = "bk-bucket", "dir/object"


# -- the vectors, from the text ---------------------------------------------------------
def _context_bytes(context: Mapping[str, str]) -> bytes:
    items = sorted((k.encode(), v.encode()) for k, v in context.items())
    out = b"encproxy/keys/1 context\x00" + struct.pack(">H", len(items))
    for name, value in items:
        out += struct.pack(">H", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_bucket_key_vectors_recomputed_from_the_text(vector: dict[str, Any]) -> None:
    i, o = vector["inputs"], vector["outputs"]
    blob = bytes.fromhex(i["bucket_key_blob"])
    key_id = hashlib.sha256(b"encproxy/1 bucket key id\x00" + blob).digest()[:16]
    assert key_id.hex() == o["bucket_key_id"]
    assert o["bucket_key_context"] == {"encproxy-format": "1", "purpose": "bucket-key",
                                       "bucket": i["bucket"]}
    bucket_key = bytes.fromhex(i["bucket_key"])
    prk = hmac.new(b"encproxy/1 bucket key", bucket_key, hashlib.sha256).digest()
    wrap_key = HKDFExpand(SHA256(), 32, b"encproxy/1 bucket key wrap").derive(prk)
    assert wrap_key.hex() == o["wrap_key"]
    object_id = bytes.fromhex(i["object_id"])
    context = {**i["extra_context"], "encproxy-format": "1", "bucket": i["bucket"],
               "key": i["key"], "object-id": object_id.hex()}
    aad = b"encproxy/1 bucket key wrap\x00" + key_id + _context_bytes(context)
    assert aad.hex() == o["wrap_aad"]
    nonce = bytes.fromhex(i["nonce"])
    data_key = bytes.fromhex(i["data_key"])
    wrapped = nonce + AESGCM(wrap_key).encrypt(nonce, data_key, aad)
    assert wrapped.hex() == o["wrapped_data_key"]
    # The tag: §3.3's input, then the block's type, id and master key version.
    b, k = i["bucket"].encode(), i["key"].encode()
    version = i["master_version"].encode()
    tag_input = (b"encproxy/1 envelope tag\x00"
                 + bytes([i["envelope_version"], i["kind"], i["suite"], 1]) + object_id
                 + struct.pack(">H", len(b)) + b + struct.pack(">H", len(k)) + k
                 + b"\x01" + key_id + bytes([len(version)]) + version)
    envelope_key = HKDF(SHA256(), 32, object_id, b"encproxy/1 envelope").derive(data_key)
    tag = hmac.new(envelope_key, tag_input, hashlib.sha256).digest()
    assert tag.hex() == o["envelope_tag"]
    kid = i["key_id"].encode()
    raw = (bytes([i["envelope_version"], i["kind"], i["suite"], 1]) + object_id + tag
           + bytes([len(kid)]) + kid + struct.pack(">H", len(wrapped)) + wrapped
           + b"\x01" + key_id + bytes([len(version)]) + version
           + struct.pack(">H", len(blob)) + blob)
    assert raw.hex() == o["envelope"]
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == o["metadata_value"]
    # And the implementation reads it: the data key, under this bucket key only.
    envelope = Envelope.decode(o["metadata_value"])
    assert envelope.bucket_key == BucketKeyRef(key_id, i["master_version"], blob)

    class Fixed:
        def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
            raise AssertionError("nothing is wrapped")

        def unwrap(self, got: bytes, got_context: Mapping[str, str]) -> bytes:
            assert got == blob and dict(got_context) == o["bucket_key_context"]
            return bucket_key

    keys = open_object(Fixed(), envelope, i["bucket"], i["key"], i["extra_context"] or None)
    assert keys.data_key == data_key


# -- with a real provider ---------------------------------------------------------------
@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    ring = LocalKeyring(tmp_path / "keys")
    ring.create_key("master")
    ring.create_key("other")
    return ring


def _stored(keyring: LocalKeyring, bucket_keys: BucketKeys, bucket: str = BUCKET,
            key: str = KEY) -> tuple[Envelope, bytes, bytes]:
    bucket_key = bucket_keys.for_write("master", bucket)
    keys, envelope = new_object(keyring, "master", bucket, key, kind=Kind.SINGLE,
                                protection=Protection.SSE_KMS, bucket_key=bucket_key)
    plaintext = b"bucket key plaintext " * 100
    encryptor = ObjectEncryptor(keys, len(plaintext))
    body = b"".join(bytes(v) for v in encryptor.encrypt([plaintext]))
    return envelope, body, plaintext


def _read(keyring: LocalKeyring, envelope: Envelope, body: bytes,
          bucket: str = BUCKET, key: str = KEY) -> bytes:
    keys = open_object(keyring, envelope, bucket, key)
    return b"".join(bytes(v) for v in ObjectDecryptor(keys, len(body)).decrypt([body]))


def test_a_bucket_key_envelope_round_trips(keyring: LocalKeyring) -> None:
    envelope, body, plaintext = _stored(keyring, BucketKeys(keyring))
    decoded = Envelope.decode(envelope.encode())
    assert decoded == envelope and decoded.bucket_key is not None
    assert decoded.bucket_key.master_version == "1"
    assert decoded.master_blob == decoded.bucket_key.blob
    assert len(envelope.encode()) <= MAX_METADATA_VALUE_SIZE
    assert _read(keyring, decoded, body) == plaintext


def _with(envelope: Envelope, **changes: Any) -> Envelope:
    fields = {"kind": envelope.kind, "suite": envelope.suite, "object_id": envelope.object_id,
              "tag": envelope.tag, "key_id": envelope.key_id,
              "wrapped_key": envelope.wrapped_key, "version": envelope.version,
              "protection": envelope.protection, "bucket_key": envelope.bucket_key}
    fields.update(changes)
    return Envelope(**fields)


def _tampered_cases(keyring: LocalKeyring, envelope: Envelope) -> dict[str, Envelope]:
    ref = envelope.bucket_key
    assert ref is not None
    # Another authentic bucket key of the same bucket and master key (another worker's).
    other = new_bucket_key(keyring, "master", BUCKET).ref
    # An object written without a bucket key.
    _, plain_envelope = new_object(keyring, "master", BUCKET, KEY, kind=Kind.SINGLE,
                                   protection=Protection.SSE_KMS)
    return {
        "id rewritten": _with(envelope, bucket_key=BucketKeyRef(
            bytes(16), ref.master_version, ref.blob)),
        "master version rewritten": _with(envelope, bucket_key=BucketKeyRef(
            ref.id, "2", ref.blob)),
        "blob of another bucket key, id left": _with(envelope, bucket_key=BucketKeyRef(
            ref.id, ref.master_version, other.blob)),
        "another bucket key, id and blob": _with(envelope, bucket_key=other),
        "block stripped": _with(envelope, bucket_key=None),
        "block added to an envelope without one": _with(plain_envelope, bucket_key=ref),
        "wrapped data key of another object": _with(
            envelope, wrapped_key=_stored(keyring, BucketKeys(keyring))[0].wrapped_key),
        "wrapped data key flipped": _with(envelope, wrapped_key=bytes(
            [envelope.wrapped_key[0] ^ 1]) + envelope.wrapped_key[1:]),
    }


@pytest.mark.parametrize("case", [
    "id rewritten", "master version rewritten", "blob of another bucket key, id left",
    "another bucket key, id and blob", "block stripped",
    "block added to an envelope without one", "wrapped data key of another object",
    "wrapped data key flipped"])
def test_rewriting_the_bucket_key_block_fails_closed(keyring: LocalKeyring, case: str) -> None:
    envelope, body, plaintext = _stored(keyring, BucketKeys(keyring))
    tampered = _tampered_cases(keyring, envelope)[case]
    # Through the codec, as the backend would store it.
    stored = Envelope.decode(tampered.encode())
    with pytest.raises(errors.IntegrityError) as raised:
        _read(keyring, stored, body)
    if case != "block stripped":   # the provider refuses a blob that is not its own
        assert isinstance(raised.value, EnvelopeAuthenticationFailed)
    # The cached path fails the same way.
    with pytest.raises(errors.IntegrityError):
        open_object(keyring, stored, BUCKET, KEY, bucket_keys=BucketKeys(keyring))


def test_an_envelope_moved_to_another_key_or_bucket_fails(keyring: LocalKeyring) -> None:
    envelope, body, _ = _stored(keyring, BucketKeys(keyring))
    with pytest.raises(EnvelopeAuthenticationFailed):
        _read(keyring, envelope, body, key="elsewhere")
    # Another bucket: its bucket-key context differs, which the provider refuses.
    with pytest.raises(errors.IntegrityError):
        _read(keyring, envelope, body, bucket="other-bucket")


def test_codec_refuses_malformed_blocks(keyring: LocalKeyring) -> None:
    envelope, _, _ = _stored(keyring, BucketKeys(keyring))
    raw = envelope.to_bytes()
    block = envelope.bucket_key.to_bytes() if envelope.bucket_key else b""
    head = raw[:-len(block)]
    for bad in (head + b"\x02" + block[1:],               # unknown block type
                raw + b"\x00",                             # trailing byte
                raw[:-1],                                  # blob cut short
                head + b"\x01"):                           # block without its fields
        with pytest.raises(EnvelopeMalformed):
            Envelope.from_bytes(bad)
    # A bucket key on anything but SSE-KMS is malformed (the tag covers protection too).
    sse_s3 = bytearray(raw)
    sse_s3[3] = Protection.SSE_S3
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(bytes(sse_s3))
    with pytest.raises(EnvelopeMalformed):
        Envelope.decode("A" * (MAX_METADATA_VALUE_SIZE + 1))


def test_old_envelopes_read_and_copies_and_rotation_keep_working(keyring: LocalKeyring) -> None:
    bucket_keys = BucketKeys(keyring)
    envelope, body, plaintext = _stored(keyring, bucket_keys)
    keys = open_object(keyring, envelope, BUCKET, KEY, bucket_keys=bucket_keys)
    # A rebinding copy to another bucket, under that bucket's key, and without one.
    moved = rebind(keyring, keys, "master", "other-bucket", KEY, Protection.SSE_KMS,
                   bucket_key=bucket_keys.for_write("master", "other-bucket"))
    assert moved.bucket_key is not None and moved.bucket_key != envelope.bucket_key
    assert _read(keyring, moved, body, bucket="other-bucket") == plaintext
    plain = rebind(keyring, keys, "master", BUCKET, "copy", Protection.SSE_KMS)
    assert plain.bucket_key is None
    assert _read(keyring, plain, body, key="copy") == plaintext
    # Rotation: the data key wrapped by the provider under the target; a new tag.
    rotated = rewrap(keyring, envelope, BUCKET, KEY, "other")
    assert rotated.bucket_key is None and rotated.key_id == "other"
    assert _read(keyring, Envelope.decode(rotated.encode()), body) == plaintext
    # An envelope without a bucket key keeps its tag on rotation, as before.
    assert rewrap(keyring, plain, BUCKET, "copy", "other").tag == plain.tag
    # The object keys are the same data key whichever way it was opened.
    assert open_object(keyring, rotated, BUCKET, KEY).data_key == keys.data_key
    assert isinstance(keys, ObjectKeys) and keys.suite is Suite.AES256_GCM


def test_the_bucket_key_context_names_the_bucket_only() -> None:
    assert bucket_key_context("b") == {"encproxy-format": "1", "purpose": "bucket-key",
                                       "bucket": "b"}
