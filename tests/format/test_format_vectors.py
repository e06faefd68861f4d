"""Known-answer vectors (tests/vectors/format/, made by scripts/gen-format-vectors).

Every output is recomputed from the inputs and compared.  Beside the engine, the
first chunk, the seal and the key schedule are recomputed from the spec with
``cryptography`` primitives directly, so the vectors pin docs/FORMAT.md and not
merely this implementation.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import (
    CompletionKeys,
    MultipartDecryptor,
    PartEncryptor,
    build_trailer,
    read_index,
)
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.format.checksum import StoredChecksum
from encproxy.format.constants import CHUNK_SIZE, Domain, Kind, Suite
from encproxy.format.envelope import Envelope
from encproxy.format.layout import (
    IndexDescription,
    Trailer,
    index_tail_hint,
    is_indexed,
    multipart_plaintext_size,
    plan_completion,
)
from encproxy.format.records import aad, ctr_initial_block, gcm_nonce

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "format"


def load(name: str) -> list[dict[str, Any]]:
    content = json.loads((VECTORS / name).read_text())
    assert content["format_version"] == 1
    vectors: list[dict[str, Any]] = content["vectors"]
    return vectors


def pattern(n: int) -> bytes:
    table = bytes((7 * i + 3) % 256 for i in range(256))
    return (table * (n // 256 + 1))[:n]


def matches(data: bytes, expected: dict[str, Any]) -> bool:
    if "hex" in expected:
        return bool(data.hex() == expected["hex"])
    return bool(len(data) == expected["size"]
            and hashlib.sha256(data).hexdigest() == expected["sha256"]
            and data[:64].hex() == expected["head_hex"]
            and data[-64:].hex() == expected["tail_hex"])


def keys_of(inputs: dict[str, Any]) -> ObjectKeys:
    kind = Kind.SINGLE if inputs["kind"] == "single" else Kind.MULTIPART
    return ObjectKeys(kind, Suite(inputs["suite"]), bytes.fromhex(inputs["object_id"]),
                      bytes.fromhex(inputs["data_key"]), inputs.get("envelope_version", 1))


# FORMAT.md §15: algorithm codes of the checksum block, and the digests from the primitives.
CHECKSUM_CODES = {"crc32": 1, "crc32c": 2, "crc64nvme": 3, "sha1": 4, "sha256": 5}


def reference_digest(algorithm: str, data: bytes) -> bytes:
    if algorithm == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "crc32c":
        return crt.crc32c(data).to_bytes(4, "big")
    if algorithm == "crc64nvme":
        return crt.crc64nvme(data).to_bytes(8, "big")
    return hashlib.new(algorithm, data).digest()


def checksum_block(algorithm: str, checksum_type: str, digest: bytes) -> bytes:
    kind = {"FULL_OBJECT": 1, "COMPOSITE": 2}[checksum_type]
    return bytes([CHECKSUM_CODES[algorithm], kind, 0, 0]) + digest + bytes(32 - len(digest))


def join(views: Any) -> bytes:
    return b"".join(bytes(v) for v in views)


def hkdf_reference(inputs: dict[str, Any], info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, bytes.fromhex(inputs["object_id"]), info).derive(
        bytes.fromhex(inputs["data_key"]))


def check_envelope(v: dict[str, Any]) -> ObjectKeys:
    inputs, outputs = v["inputs"], v["outputs"]
    keys = keys_of(inputs)
    prk = hmac.digest(bytes.fromhex(inputs["object_id"]), bytes.fromhex(inputs["data_key"]),
                      "sha256")
    assert prk.hex() == outputs["derived"]["prk"]
    env_key = HKDFExpand(hashes.SHA256(), 32, b"encproxy/1 envelope").derive(prk)
    assert env_key.hex() == outputs["derived"]["envelope_key"]
    assert hkdf_reference(inputs, b"encproxy/1 envelope", 32) == env_key
    b, k = inputs["bucket"].encode(), inputs["key"].encode()
    version = inputs.get("envelope_version", 1)
    tag_input = (b"encproxy/1 envelope tag\x00" + bytes([version, keys.kind, keys.suite, 0])
                 + keys.object_id + struct.pack(">H", len(b)) + b + struct.pack(">H", len(k)) + k)
    tag = hmac.digest(env_key, tag_input, "sha256")
    assert tag.hex() == outputs["envelope_tag"] == keys.envelope_tag(
        inputs["bucket"], inputs["key"], version).hex()
    env = keys.envelope(inputs["key_id"], bytes.fromhex(inputs["wrapped_key"]), inputs["bucket"],
                        inputs["key"])
    assert env.encode() == outputs["metadata_value"]
    keys.verify(Envelope.decode(outputs["metadata_value"]), inputs["bucket"], inputs["key"])
    return keys


def reference_record(suite: Suite, key: bytes, index: int, aad_: bytes, pt: bytes) -> bytes:
    """One record sealed straight from the spec (FORMAT.md §4)."""
    if suite is Suite.AES256_GCM:
        return AESGCM(key).encrypt(struct.pack(">4xQ", index), pt, aad_)
    ct = Cipher(algorithms.AES(key[:32]),
                modes.CTR((index << 12).to_bytes(16, "big"))).encryptor().update(pt)
    tag = hmac.digest(key[32:], struct.pack(">Q", len(aad_)) + aad_ + ct, "sha256")[:16]
    return ct + tag


@pytest.mark.parametrize("v", load("single.json"), ids=lambda v: v["name"])
def test_single_vector(v: dict[str, Any]) -> None:
    inputs, outputs = v["inputs"], v["outputs"]
    keys = check_envelope(v)
    suite, size = keys.suite, inputs["plaintext_size"]
    body_key = hkdf_reference(inputs, b"encproxy/1 body" + bytes([suite]), suite.key_size)
    assert body_key.hex() == outputs["derived"]["body_key"]
    plaintext = pattern(size)
    algorithm = inputs.get("checksum_algorithm")
    stored = None
    if algorithm is not None:   # envelope version 2: the seal carries the checksum (§15)
        digest = reference_digest(algorithm, plaintext)
        assert digest.hex() == inputs["checksum_digest"]
        stored = StoredChecksum(algorithm, "FULL_OBJECT", digest)
    body = join(ObjectEncryptor(keys, size).encrypt(
        [plaintext], **({} if stored is None else {"checksum": lambda: stored})))
    assert matches(body, outputs["body"])

    # First chunk and the seal, from the spec alone.
    last = max(1, -(-size // CHUNK_SIZE)) - 1
    first_pt = plaintext[:CHUNK_SIZE]
    first = reference_record(suite, body_key, 0, aad(suite, Domain.CHUNK, 0, 0, final=last == 0),
                             first_pt)
    assert body.startswith(first)
    md5 = hashlib.md5(plaintext).digest()
    assert md5.hex() == outputs["plaintext_md5"]
    sealed = md5 if stored is None else md5 + checksum_block(stored.algorithm, "FULL_OBJECT",
                                                             stored.digest)
    seal = reference_record(suite, body_key, 2**64 - 1,
                            aad(suite, Domain.ETAG_SEAL, 0, 2**64 - 1, final=True)
                            + struct.pack(">Q", size), sealed)
    assert body.endswith(seal) and len(seal) == (32 if stored is None else 68)

    dec = ObjectDecryptor(keys, len(body))
    assert join(dec.decrypt([body])) == plaintext and dec.etag_md5 == md5
    assert dec.checksum == stored


def reference_trailer(inputs: dict[str, Any], suite: Suite, number: int, salt: bytes,
                      index: bytes | None, *, described: bool = False,
                      completion: bool = False, checksummed: bool = False) -> bytes:
    """A trailer built from the spec alone (FORMAT.md §7.1, §7.3, §7.4, §7.8, §7.9)."""
    label = b"encproxy/1 segment" + bytes([suite]) + number.to_bytes(4, "big") + salt
    if completion:   # §7.9: the same derivation from the completion key
        prk = hmac.digest(bytes.fromhex(inputs["object_id"]), bytes.fromhex(inputs["data_key"]),
                          "sha256")
        completion_key = HKDFExpand(hashes.SHA256(), 32, b"encproxy/1 completion").derive(prk)
        key = HKDF(hashes.SHA256(), suite.key_size, bytes.fromhex(inputs["object_id"]),
                   label).derive(completion_key)
    else:
        key = hkdf_reference(inputs, label, suite.key_size)
    flags = 0x03 if index is None else 0x07              # terminal | trailer [| indexed]
    flags |= (0x08 if described else 0) | (0x10 if completion else 0) \
        | (0x20 if checksummed else 0)
    head = (b"EPS" + bytes([1, suite, flags, 0, 0]) + struct.pack(">IQ", number,
                                                                  len(index or b""))
            + salt)
    tag = reference_record(suite, key, 2**64 - 2, aad(suite, Domain.SEGMENT_HEADER, number,
                                                      2**64 - 2, final=False) + head, b"")
    if index is None:
        return head + tag
    record = reference_record(suite, key, 2**64 - 3,
                              aad(suite, Domain.INDEX, number, 2**64 - 3, final=True), index)
    body = head + tag + record
    return body + b"EPF" + bytes([1]) + struct.pack(">IQ", 0, len(body))


@pytest.mark.parametrize("v", load("multipart.json"), ids=lambda v: v["name"])
def test_multipart_vector(v: dict[str, Any]) -> None:
    inputs, outputs = v["inputs"], v["outputs"]
    keys = check_envelope(v)
    suite, sizes, numbers = keys.suite, inputs["part_sizes"], inputs["part_numbers"]
    salts = [bytes.fromhex(s) for s in inputs["salts"]]
    segments = []
    for i, (n, size, expected) in enumerate(zip(numbers, sizes, outputs["segments"],
                                                strict=True)):
        assert expected["part_number"] == n
        seg_key = hkdf_reference(
            inputs, b"encproxy/1 segment" + bytes([suite]) + n.to_bytes(4, "big") + salts[i],
            suite.key_size)
        assert seg_key.hex() == expected["segment_key"]
        enc = PartEncryptor(keys, n, size, fixed_salt_for_vectors=salts[i])
        segment = join(enc.encrypt([pattern(size)]))
        assert segment[:52].hex() == expected["header_hex"]
        assert segment[8:12] == n.to_bytes(4, "big")
        assert matches(segment, expected["segment"])
        header_tag = reference_record(
            suite, seg_key, 2**64 - 2,
            aad(suite, Domain.SEGMENT_HEADER, n, 2**64 - 2, final=False) + segment[:36], b"")
        assert segment[36:52] == header_tag
        chunk0 = reference_record(
            suite, seg_key, 0,
            aad(suite, Domain.SEGMENT_CHUNK, n, 0, final=size <= CHUNK_SIZE),
            pattern(size)[:CHUNK_SIZE])
        assert segment[52:].startswith(chunk0)
        segments.append(segment)
    upload_id, completion = inputs.get("upload_id"), inputs.get("completion_keyed", False)
    description = b""
    if upload_id is not None:   # §7.8: MD5 of the part MD5s, then the upload id's digest
        description = (hashlib.md5(b"".join(hashlib.md5(pattern(s)).digest()
                                            for s in sizes)).digest()
                       + hashlib.sha256(b"encproxy/1 upload id\x00"
                                        + upload_id.encode()).digest())
    algorithm = inputs.get("checksum_algorithm")
    summed: tuple[StoredChecksum | None, tuple[bytes, ...]] = (None, ())
    if algorithm is not None:   # §15: the block and the part digests follow the description
        checksum_type = inputs["checksum_type"]
        part_sums = tuple(reference_digest(algorithm, pattern(s)) for s in sizes)
        whole = (reference_digest(algorithm, b"".join(part_sums))
                 if checksum_type == "COMPOSITE"
                 else reference_digest(algorithm, b"".join(pattern(s) for s in sizes)))
        assert whole.hex() == inputs["checksum_digest"]
        assert [d.hex() for d in part_sums] == inputs["part_checksums"]
        summed = (StoredChecksum(algorithm, checksum_type, whole), part_sums)
        description_checksum = checksum_block(algorithm, checksum_type, whole) \
            + b"".join(part_sums)
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True,
                           always_index=upload_id is not None,
                           description=None if upload_id is None else IndexDescription(
                               description[:16], description[16:], *summed))
    if algorithm is not None:
        description += description_checksum
    sealer = CompletionKeys.of(keys) if completion else keys
    trailer = build_trailer(sealer, plan, fixed_salt_for_vectors=salts[len(sizes)])
    expected_trailer = outputs["trailer"]
    assert (plan.trailer.value, plan.trailer_number, plan.held_tail, plan.backend_parts,
            list(plan.backend_part_numbers), plan.index_pad) == (
        expected_trailer["kind"], expected_trailer["number"], expected_trailer["held_tail"],
        expected_trailer["backend_parts"], expected_trailer["backend_part_numbers"],
        expected_trailer["index_pad"])
    if plan.trailer is Trailer.NONE:
        assert trailer == b"" and expected_trailer["bytes"] == {"hex": ""}
    else:
        # The index, from the spec: u32 m, u32 pad, (u32 number, u64 size) per part, zeros.
        index = None
        if plan.trailer is Trailer.INDEXED:
            index = (struct.pack(">II", len(sizes), plan.index_pad)
                     + b"".join(struct.pack(">IQ", n, s) for n, s in zip(numbers, sizes,
                                                                         strict=True))
                     + description + bytes(plan.index_pad))
            assert matches(index, expected_trailer["index"])
        assert plan.trailer_number == numbers[-1] + 1
        assert trailer == reference_trailer(inputs, suite, numbers[-1] + 1, salts[len(sizes)],
                                            index, described=bool(description),
                                            completion=completion,
                                            checksummed=algorithm is not None)
        assert matches(trailer, expected_trailer["bytes"])
    body = b"".join(segments) + trailer
    assert len(body) == outputs["ciphertext_size"] == plan.layout.ciphertext_size
    n_parts = plan.backend_parts
    assert is_indexed(len(body), n_parts) == (plan.trailer is Trailer.INDEXED)
    layout = None
    if plan.trailer is Trailer.INDEXED:
        layout = read_index(keys, body[-index_tail_hint(n_parts):], len(body), n_parts)
        assert layout.part_numbers == tuple(numbers) and layout.part_sizes == tuple(sizes)
        assert layout.etag == (f'"{description[:16].hex()}-{len(sizes)}"' if description
                               else None)
        if algorithm is not None:
            assert layout.description is not None
            assert (layout.description.checksum, layout.description.part_checksums) == summed
    else:
        assert multipart_plaintext_size(len(body), n_parts) == sum(sizes)
    dec = MultipartDecryptor(keys, len(body), layout=layout)
    assert join(dec.decrypt([body])) == b"".join(pattern(s) for s in sizes)
    assert dec.part_numbers == tuple(numbers)


@pytest.mark.parametrize("row", load("records.json"), ids=lambda r: f"{r['domain']}-{r['index']}")
def test_record_layouts(row: dict[str, Any]) -> None:
    index = int(row["index"])
    suite, domain = Suite(row["suite"]), Domain(row["domain"])
    assert aad(suite, domain, row["part_number"], index, final=row["final"]).hex() == row["aad"]
    assert gcm_nonce(index).hex() == row["gcm_nonce"]
    assert ctr_initial_block(index).hex() == row["ctr_initial_block"]


def test_vector_files_are_what_the_generator_writes() -> None:
    """Regenerating must reproduce the committed files byte for byte."""
    import importlib.util
    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_format_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_format_vectors", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, content in module.build().items():
        assert (VECTORS / name).read_text() == json.dumps(content, indent=1,
                                                          ensure_ascii=True) + "\n"
