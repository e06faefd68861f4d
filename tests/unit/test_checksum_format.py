"""The stored checksum of encrypted objects (FORMAT.md §15): the checksum block, the
version 2 single-part seal, the checksummed index, and the S3 arithmetic around them
(composite and combined CRCs, Create's settings, Complete's whole-object claim)."""
from __future__ import annotations

import base64
import hashlib
import os

import pytest

from encproxy import checksums, errors
from encproxy.crypto.keys import ObjectKeys, open_object
from encproxy.crypto.multipart import (
    build_trailer,
    describe,
    open_part_checksum,
    part_etag_name,
    read_index,
    seal_part_checksum,
)
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum
from encproxy.format.constants import CHECKSUMMED_ENVELOPE_VERSION, Kind, Suite
from encproxy.format.envelope import Envelope
from encproxy.format.errors import (
    EnvelopeAuthenticationFailed,
    EtagSealAuthenticationFailed,
    IndexMalformed,
    RecordAuthenticationFailed,
)
from encproxy.format.layout import (
    ciphertext_size,
    index_tail_hint,
    plaintext_size,
    plan_completion,
)
from encproxy.format.segment import decode_index, encode_index
from encproxy.s3 import checksum_headers
from encproxy.wsgi.encryption.upload_store import UploadRecord
from encproxy.wsgi.encryption.uploads import object_checksum_claim

MiB = 1 << 20


class Wrapper:
    """A key provider that keeps data keys as they are (the format tests' own)."""

    def wrap(self, key_id: str, data_key: bytes, context: object) -> bytes:  # noqa: ARG002
        return data_key

    def unwrap(self, blob: bytes, context: object) -> bytes:  # noqa: ARG002
        return blob


def sha256(data: bytes) -> StoredChecksum:
    return StoredChecksum("sha256", FULL_OBJECT, hashlib.sha256(data).digest())


# -- the checksum block --------------------------------------------------------------------

@pytest.mark.parametrize("checksum", [
    StoredChecksum("crc32", FULL_OBJECT, b"\x01\x02\x03\x04"),
    StoredChecksum("crc32c", COMPOSITE, b"\xff" * 4),
    StoredChecksum("crc64nvme", FULL_OBJECT, bytes(range(8))),
    StoredChecksum("sha1", COMPOSITE, bytes(range(20))),
    StoredChecksum("sha256", FULL_OBJECT, bytes(range(32)))])
def test_checksum_block_round_trips(checksum: StoredChecksum) -> None:
    block = checksum.encode()
    assert len(block) == 36
    assert StoredChecksum.decode(block) == checksum


@pytest.mark.parametrize("block", [
    bytes(36),                                               # algorithm 0
    b"\x06\x01\x00\x00" + bytes(32),                         # algorithm 6
    b"\x01\x03\x00\x00" + bytes(32),                         # type 3
    b"\x01\x01\x00\x01" + bytes(32),                         # reserved set
    b"\x01\x01\x00\x00" + bytes(4) + b"\x01" + bytes(27),    # padding not zero
    b"\x03\x02\x00\x00" + bytes(32),                         # COMPOSITE CRC64NVME
    b"\x01\x01\x00\x00" + bytes(31)])                        # short
def test_bad_checksum_blocks_are_refused(block: bytes) -> None:
    with pytest.raises(IndexMalformed):
        StoredChecksum.decode(block)


def test_value_shows_the_part_count_of_composite_checksums_only() -> None:
    digest = bytes(range(32))
    assert StoredChecksum("sha256", COMPOSITE, digest).value(3) == \
        base64.b64encode(digest).decode() + "-3"
    assert StoredChecksum("sha256", FULL_OBJECT, digest).value(3) == \
        base64.b64encode(digest).decode()


# -- single-part objects: the version 2 seal -------------------------------------------------

def _single(data: bytes, checksum: StoredChecksum) -> tuple[ObjectKeys, bytes, Envelope]:
    keys = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM, CHECKSUMMED_ENVELOPE_VERSION)
    envelope = keys.envelope("k1", keys.data_key, "b", "k")
    body = b"".join(bytes(v) for v in ObjectEncryptor(keys, len(data)).encrypt(
        [data], checksum=lambda: checksum))
    return keys, body, envelope


@pytest.mark.parametrize("size", [0, 1, 65_536, 200_000])
def test_version_2_seal_carries_the_checksum(size: int) -> None:
    data = os.urandom(size)
    keys, body, envelope = _single(data, sha256(data))
    assert envelope.version == 2
    assert len(body) == ciphertext_size(size, checksummed=True) == ciphertext_size(size) + 36
    assert plaintext_size(len(body), checksummed=True) == size
    opened = open_object(Wrapper(), Envelope.decode(envelope.encode()), "b", "k")
    decryptor = ObjectDecryptor(opened, len(body))
    assert b"".join(bytes(v) for v in decryptor.decrypt([body])) == data
    assert decryptor.checksum == sha256(data)
    start, stop = decryptor.etag_seal_range
    assert decryptor.open_seal(body[start:stop]) == (hashlib.md5(data).digest(), sha256(data))


def test_version_1_objects_read_as_before_without_checksum() -> None:
    data = os.urandom(1000)
    keys = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM)
    body = b"".join(bytes(v) for v in ObjectEncryptor(keys, len(data)).encrypt([data]))
    assert len(body) == ciphertext_size(len(data))
    decryptor = ObjectDecryptor(keys, len(body))
    assert b"".join(bytes(v) for v in decryptor.decrypt([body])) == data
    assert decryptor.checksum is None and decryptor.etag_md5 == hashlib.md5(data).digest()


def test_a_flipped_checksum_byte_fails_the_seal() -> None:
    data = os.urandom(1000)
    keys, body, _ = _single(data, sha256(data))
    decryptor = ObjectDecryptor(keys, len(body))
    start, stop = decryptor.etag_seal_range
    seal = bytearray(body[start:stop])
    seal[20] ^= 1
    with pytest.raises(EtagSealAuthenticationFailed):
        decryptor.open_seal(bytes(seal))


def test_the_envelope_version_is_authenticated() -> None:
    """Downgrading a version 2 envelope to 1 (to make readers ignore the checksum, or
    misplace the seal) fails the envelope tag."""
    data = os.urandom(10)
    _, _, envelope = _single(data, sha256(data))
    raw = bytearray(envelope.to_bytes())
    raw[0] = 1
    with pytest.raises(EnvelopeAuthenticationFailed):
        open_object(Wrapper(), Envelope.from_bytes(bytes(raw)), "b", "k")


def test_encryptor_requires_a_checksum_exactly_for_version_2() -> None:
    keys = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM, CHECKSUMMED_ENVELOPE_VERSION)
    with pytest.raises(ValueError, match="version 2"):
        list(ObjectEncryptor(keys, 1).encrypt([b"x"]))
    plain = ObjectKeys.generate(Kind.SINGLE, Suite.AES256_GCM)
    with pytest.raises(ValueError, match="version 2"):
        list(ObjectEncryptor(plain, 1).encrypt([b"x"], checksum=lambda: sha256(b"x")))


# -- multipart objects: the checksummed index ----------------------------------------------------

def test_index_round_trips_the_checksum_and_part_digests() -> None:
    parts = [bytes(range(32)), bytes(32), b"\xff" * 32]
    checksum = StoredChecksum("sha256", COMPOSITE, hashlib.sha256(b"".join(parts)).digest())
    description = describe([bytes(16)] * 3, "upload", checksum, parts)
    raw = encode_index([1, 2, 5], [MiB, MiB, 3], 7, description)
    assert len(raw) == 8 + 36 + 48 + 36 + 96 + 7
    decoded = decode_index(raw, described=True, checksummed=True)
    assert decoded.description == description
    with pytest.raises(IndexMalformed):   # read without the flag: the lengths disagree
        decode_index(raw, described=True)


def test_an_index_needs_one_part_digest_per_part() -> None:
    checksum = StoredChecksum("crc32", FULL_OBJECT, bytes(4))
    with pytest.raises(ValueError, match="per part"):
        encode_index([1, 2], [MiB, 3], 0, describe([bytes(16)] * 2, "u", checksum, [bytes(4)]))


def test_checksummed_trailer_reads_back_from_the_tail() -> None:
    keys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    sizes = [5 * MiB, 1000]
    part_sums = [bytes([1]) * 8, bytes([2]) * 8]
    checksum = StoredChecksum("crc64nvme", FULL_OBJECT, bytes([3]) * 8)
    plan = plan_completion([1, 2], sizes, can_rewrite_last_part=True, always_index=True,
                           description=describe([bytes(16)] * 2, "u", checksum, part_sums))
    trailer = build_trailer(keys, plan)
    total = plan.layout.ciphertext_size
    tail = bytes(total - len(trailer)) + trailer
    hint = min(total, index_tail_hint(plan.backend_parts))
    layout = read_index(keys, tail[-hint:], total, plan.backend_parts)
    assert layout.description is not None
    assert layout.description.checksum == checksum
    assert layout.description.part_checksums == tuple(part_sums)


def test_part_checksums_are_sealed_in_part_records() -> None:
    keys = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    md5 = hashlib.md5(b"part").digest()
    name = part_etag_name(keys, 3, md5)
    digest = hashlib.sha256(b"part").digest()
    sealed = seal_part_checksum(keys, 3, name, "sha256", digest)
    assert digest.hex() not in sealed
    assert open_part_checksum(keys, 3, name, "sha256", sealed) == digest
    other = ObjectKeys.generate(Kind.MULTIPART, Suite.AES256_GCM)
    assert open_part_checksum(other, 3, name, "sha256", sealed) != digest
    with pytest.raises(RecordAuthenticationFailed):
        open_part_checksum(keys, 3, name, "sha256", sealed[:-2])


# -- S3's arithmetic -------------------------------------------------------------------------

def _parts() -> list[bytes]:
    n = 5 * MiB
    return [b"A" * n, b"B" * n, b"C" * n]


def _digest(algorithm: str, data: bytes) -> bytes:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return hasher.digest()


@pytest.mark.parametrize(("algorithm", "expected"), [
    # ceph/s3-tests' known answers (test_multipart_use_cksum_helper_*)
    ("crc32", "WgDhBQ=="), ("crc32c", "xU+Krw=="), ("crc64nvme", "i+6LR0y3eFo=")])
def test_full_object_crc_is_combined_from_the_parts(algorithm: str, expected: str) -> None:
    parts = _parts()
    combined = checksums.combine_crc(algorithm, [(_digest(algorithm, p), len(p)) for p in parts])
    assert base64.b64encode(combined).decode() == expected
    assert combined == _digest(algorithm, b"".join(parts))


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("sha256", "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4="),
    ("sha1", "sizjvY4eud3MrcHdZM3cQ/ol39o=")])
def test_composite_is_the_hash_of_the_part_digests(algorithm: str, expected: str) -> None:
    composite = checksums.composite(algorithm, [_digest(algorithm, p) for p in _parts()])
    assert base64.b64encode(composite).decode() == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"x-amz-checksum-algorithm": "SHA256"}, ("sha256", "COMPOSITE")),
    ({"x-amz-checksum-algorithm": "crc64nvme"}, ("crc64nvme", "FULL_OBJECT")),
    ({"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "full_object"},
     ("crc32", "FULL_OBJECT"))])
def test_upload_settings(headers: dict[str, str], expected: tuple[str, str] | None) -> None:
    assert checksum_headers.upload_settings(headers) == expected


@pytest.mark.parametrize(("headers", "error"), [
    ({"x-amz-checksum-type": "COMPOSITE"}, errors.InvalidRequest),
    ({"x-amz-checksum-algorithm": "MD5"}, errors.InvalidRequest),
    ({"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "FULL_OBJECT"},
     errors.InvalidRequest),
    ({"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},
     errors.InvalidRequest),
    ({"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "BOTH"},
     errors.InvalidRequest),
    ({"x-amz-checksum-algorithm": "XXHASH64"}, errors.NotImplementedError_)])
def test_upload_settings_refused(headers: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        checksum_headers.upload_settings(headers)


def test_whole_object_claim_on_complete() -> None:
    record = UploadRecord("b", "k", "AES256", checksum_algorithm="sha256",
                          checksum_type="COMPOSITE")
    value = base64.b64encode(bytes(range(32))).decode()
    for sent in (value, value + "-3"):
        claim = object_checksum_claim({"x-amz-checksum-sha256": sent}, record)
        assert claim is not None and claim.digest == bytes(range(32))
    assert object_checksum_claim({}, record) is None
    for bad in ({"x-amz-checksum-sha256": "bad"},
                {"x-amz-checksum-crc32": "AAAAAA=="}):   # not the declared algorithm
        with pytest.raises(errors.BadDigest):
            object_checksum_claim(bad, record)


def test_upload_records_without_checksum_fields_read_as_before() -> None:
    old = UploadRecord("b", "k", "AES256", "env", "key")
    assert b"checksum" not in old.to_json()
    assert UploadRecord.from_json(old.to_json()) == old
    new = UploadRecord("b", "k", "AES256", "env", "key", checksum_algorithm="crc32",
                       checksum_type="FULL_OBJECT")
    assert UploadRecord.from_json(new.to_json()) == new


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
def test_pure_python_combination_agrees_with_awscrt(algorithm: str) -> None:
    """The fallback for an awscrt without combine_* (setup.cfg allows older ones)."""
    pure = checksums._combine_pure(algorithm)
    for a, b in ((b"", b"x"), (b"abc", b""), (os.urandom(1000), os.urandom(65_537)),
                 (os.urandom(5), os.urandom(5 * MiB + 3))):
        first, second = _digest(algorithm, a), _digest(algorithm, b)
        expected = _digest(algorithm, a + b)
        value = pure(int.from_bytes(first, "big"), int.from_bytes(second, "big"), len(b))
        assert value.to_bytes(len(expected), "big") == expected
        assert checksums.combine_crc(algorithm, [(first, len(a)), (second, len(b))]) == expected
