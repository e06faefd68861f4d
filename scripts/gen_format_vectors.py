"""Generate the known-answer vectors of the object format (tests/vectors/format/).

Run once per format version (scripts/gen-format-vectors); the files are committed
and tests/format/test_format_vectors.py recomputes every output from the inputs.
Regenerating must not change a committed file: if it does, the format changed.

All inputs are fixed: data keys, object ids and segment salts are given, never
drawn.  Plaintexts are ``pattern(n)``: byte ``i`` is ``(7 * i + 3) % 256``.  A
segment's salt is ``salt(seed, part number)``; the trailer's is
``salt(seed, last part number + 1)``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encproxy import checksums  # noqa: E402
from encproxy.crypto.keys import ObjectKeys, hkdf_expand, hkdf_extract  # noqa: E402
from encproxy.crypto.multipart import (  # noqa: E402
    CompletionKeys,
    PartEncryptor,
    build_trailer,
    completion_key,
    describe,
)
from encproxy.crypto.records import (  # noqa: E402
    PURPOSE_BUCKET_CONFIG,
    PURPOSE_HELD,
    PURPOSE_UPLOAD,
    RECORD_VERSION,
    mac_input,
    purpose_key,
    record_tag,
    root_id,
    root_wrap_context,
    seal_record,
)
from encproxy.crypto.single import ObjectEncryptor  # noqa: E402
from encproxy.crypto.suites import record_cipher  # noqa: E402
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum  # noqa: E402
from encproxy.format.constants import (  # noqa: E402
    FORMAT_VERSION,
    INDEX_RECORD_INDEX,
    SEGMENT_HEADER_SIZE,
    Domain,
    Kind,
    MiB,
    Protection,
    Suite,
)
from encproxy.format.envelope import BucketKeyRef, bucket_key_context  # noqa: E402
from encproxy.format.layout import Trailer, plan_completion  # noqa: E402
from encproxy.format.records import (  # noqa: E402
    aad,
    body_label,
    ctr_initial_block,
    envelope_label,
    gcm_nonce,
    segment_label,
)
from encproxy.keys.blob import Algorithm, ProviderKind, WrappedKey  # noqa: E402
from encproxy.keys.bucket_keys import BucketKey, wrap_aad, wrap_key  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "format"
FULL_HEX_LIMIT = 300        # ciphertexts up to this size are stored whole
BUCKET, KEY = "vectors", "dir/object \u00e9.bin"
KEY_ID = "test:master/1"
WRAPPED = bytes(range(40))  # opaque to the format: any provider blob


def pattern(n: int) -> bytes:
    table = bytes((7 * i + 3) % 256 for i in range(256))
    return (table * (n // 256 + 1))[:n]


def data_key(seed: int) -> bytes:
    return hashlib.sha256(b"encproxy vector data key %d" % seed).digest()


def object_id(seed: int) -> bytes:
    return hashlib.sha256(b"encproxy vector object id %d" % seed).digest()[:16]


def salt(seed: int, part: int) -> bytes:
    return hashlib.sha256(b"encproxy vector salt %d %d" % (seed, part)).digest()[:16]


def blob(data: bytes) -> dict[str, Any]:
    """Whole hex for short byte strings, else size, SHA-256 and both ends."""
    if len(data) <= FULL_HEX_LIMIT:
        return {"hex": data.hex()}
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "head_hex": data[:64].hex(), "tail_hex": data[-64:].hex()}


def joined(views: Any) -> bytes:
    return b"".join(bytes(v) for v in views)


def derived(keys: ObjectKeys) -> dict[str, str]:
    prk = hkdf_extract(keys.object_id, keys.data_key)
    out = {"prk": prk.hex(), "envelope_key": hkdf_expand(prk, envelope_label(), 32).hex()}
    if keys.kind is Kind.SINGLE:
        out["body_key"] = hkdf_expand(prk, body_label(keys.suite), keys.suite.key_size).hex()
    return out


def single_vector(seed: int, suite: Suite, size: int,
                  checksum: str | None = None) -> dict[str, Any]:
    """With ``checksum`` (an algorithm), envelope version 2: the seal also carries the
    plaintext's FULL_OBJECT checksum (FORMAT.md §15)."""
    version = 1 if checksum is None else 2
    keys = ObjectKeys(Kind.SINGLE, suite, object_id(seed), data_key(seed), version)
    envelope = keys.envelope(KEY_ID, WRAPPED, BUCKET, KEY)
    plaintext = pattern(size)
    extra: dict[str, Any] = {}
    if checksum is None:
        body = joined(ObjectEncryptor(keys, size).encrypt([plaintext]))
    else:
        hasher = checksums.new_hasher(checksum)
        hasher.update(plaintext)
        stored = StoredChecksum(checksum, FULL_OBJECT, hasher.digest())
        body = joined(ObjectEncryptor(keys, size).encrypt([plaintext],
                                                          checksum=lambda: stored))
        extra = {"envelope_version": 2, "checksum_algorithm": checksum,
                 "checksum_digest": stored.digest.hex()}
    return {
        "name": f"single-{suite.name.lower()}-{size}"
                + ("" if checksum is None else f"-checksum-{checksum}"),
        "inputs": {"kind": "single", "suite": int(suite), "data_key": keys.data_key.hex(),
                   "object_id": keys.object_id.hex(), "bucket": BUCKET, "key": KEY,
                   "key_id": KEY_ID, "wrapped_key": WRAPPED.hex(),
                   "plaintext_size": size, **extra},
        "outputs": {"derived": derived(keys), "envelope_tag": envelope.tag.hex(),
                    "metadata_value": envelope.encode(),
                    "plaintext_md5": hashlib.md5(plaintext).hexdigest(),
                    "body": blob(body)},
    }


def multipart_vector(seed: int, suite: Suite, sizes: list[int],
                     numbers: list[int] | None = None, *, upload_id: str | None = None,
                     completion: bool = False, checksum: tuple[str, str] | None = None
                     ) -> dict[str, Any]:
    """Parts ``numbers`` (1..m by default) of these sizes, completed with exactly them;
    with ``upload_id``, as the server completes SSE-S3 and SSE-KMS uploads (always
    indexed, the index described: FORMAT.md §7.8); with ``completion``, the trailer
    sealed under the completion key (an SSE-C Complete without the key, §7.9)."""
    keys = ObjectKeys(Kind.MULTIPART, suite, object_id(seed), data_key(seed))
    envelope = keys.envelope(KEY_ID, WRAPPED, BUCKET, KEY)
    numbers = numbers or list(range(1, len(sizes) + 1))
    segments = []
    for number, size in zip(numbers, sizes, strict=True):
        enc = PartEncryptor(keys, number, size, fixed_salt_for_vectors=salt(seed, number))
        seg = joined(enc.encrypt([pattern(size)]))
        prk = hkdf_extract(keys.object_id, keys.data_key)
        segments.append({
            "part_number": number, "plaintext_size": size, "salt": salt(seed, number).hex(),
            "segment_key": hkdf_expand(prk, segment_label(suite, number, salt(seed, number)),
                                       suite.key_size).hex(),
            "header_hex": seg[:52].hex(), "segment": blob(seg)})
    summed: tuple[StoredChecksum | None, list[bytes]] = (None, [])
    if checksum is not None:   # (algorithm, type): the checksummed index (FORMAT.md §15)
        algorithm, checksum_type = checksum
        part_sums = []
        for size in sizes:
            hasher = checksums.new_hasher(algorithm)
            hasher.update(pattern(size))
            part_sums.append(hasher.digest())
        whole = (checksums.composite(algorithm, part_sums) if checksum_type == COMPOSITE
                 else checksums.combine_crc(algorithm, list(zip(part_sums, sizes,
                                                                strict=True))))
        summed = (StoredChecksum(algorithm, checksum_type, whole), part_sums)
    description = None if upload_id is None else describe(
        [hashlib.md5(pattern(size)).digest() for size in sizes], upload_id, *summed)
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True,
                           always_index=upload_id is not None, description=description)
    trailer_number = numbers[-1] + 1
    trailer_salt = salt(seed, trailer_number)
    sealer = CompletionKeys.of(keys) if completion else keys
    trailer = build_trailer(sealer, plan, fixed_salt_for_vectors=trailer_salt)
    trailer_out: dict[str, Any] = {
        "kind": plan.trailer.value, "number": plan.trailer_number,
        "held_tail": plan.held_tail, "backend_parts": plan.backend_parts,
        "backend_part_numbers": list(plan.backend_part_numbers),
        "index_pad": plan.index_pad, "bytes": blob(trailer)}
    if plan.trailer is Trailer.INDEXED:   # the index plaintext, opened from the trailer
        trailer_ikm = completion_key(keys) if completion else keys.data_key
        cipher = record_cipher(suite, hkdf_expand(
            hkdf_extract(keys.object_id, trailer_ikm),
            segment_label(suite, trailer_number, trailer_salt), suite.key_size))
        index = cipher.open(INDEX_RECORD_INDEX, aad(suite, Domain.INDEX, trailer_number,
                                                    INDEX_RECORD_INDEX, final=True),
                            trailer[SEGMENT_HEADER_SIZE:-16])
        trailer_out["index"] = blob(index)
    contiguous = numbers == list(range(1, len(sizes) + 1))
    parts = "" if contiguous else "parts-" + ".".join(map(str, numbers)) + "-"
    extra: dict[str, Any] = {}
    kind = ""
    if upload_id is not None:
        extra["upload_id"] = upload_id
        kind += "described-"
    if completion:
        extra["completion_keyed"] = True
        kind += "completion-"
    if checksum is not None and summed[0] is not None:
        extra["checksum_algorithm"], extra["checksum_type"] = checksum
        extra["checksum_digest"] = summed[0].digest.hex()
        extra["part_checksums"] = [d.hex() for d in summed[1]]
        kind += f"checksum-{checksum[0]}-"
    return {
        "name": f"multipart-{suite.name.lower()}-{kind}{parts}{'-'.join(map(str, sizes))}",
        "inputs": {"kind": "multipart", "suite": int(suite), "data_key": keys.data_key.hex(),
                   "object_id": keys.object_id.hex(), "bucket": BUCKET, "key": KEY,
                   "key_id": KEY_ID, "wrapped_key": WRAPPED.hex(), "part_numbers": numbers,
                   "part_sizes": sizes,
                   "salts": [salt(seed, n).hex() for n in numbers + [trailer_number]],
                   **extra},
        "outputs": {"derived": derived(keys), "envelope_tag": envelope.tag.hex(),
                    "metadata_value": envelope.encode(), "segments": segments,
                    "trailer": trailer_out,
                    "ciphertext_size": plan.layout.ciphertext_size},
    }


def record_vectors() -> list[dict[str, Any]]:
    """AAD, nonce and counter-block layouts, so other implementations can check theirs."""
    rows = []
    for suite in Suite:
        for domain, part, index, final in ((Domain.CHUNK, 0, 0, True),
                                           (Domain.SEGMENT_CHUNK, 7, 41, False),
                                           (Domain.SEGMENT_HEADER, 10000, 2**64 - 2, False),
                                           (Domain.INDEX, 10001, 2**64 - 3, True)):
            rows.append({"suite": int(suite), "domain": int(domain), "part_number": part,
                         "index": str(index), "final": final,
                         "aad": aad(suite, domain, part, index, final=final).hex(),
                         "gcm_nonce": gcm_nonce(index).hex(),
                         "ctr_initial_block": ctr_initial_block(index).hex()})
    return rows


def authenticated_record_vectors() -> dict[str, Any]:
    """Records encproxy keeps in the internal bucket (FORMAT.md §14): root key -> purpose
    keys -> MAC input, tag and stored form."""
    root = hashlib.sha256(b"encproxy vector records root").digest()
    blob = bytes(range(1, 61))   # a provider's wrapped blob of the root: opaque here
    root_name = root_id(blob)
    cases = [
        (PURPOSE_UPLOAD, "bkt", "dir/object \u00e9.bin", "upload-id-1",
         b'{"context": null, "envelope": "AQID", "key_id": "default", "mode": "AES256"}'),
        (PURPOSE_HELD, "bkt", "k", "2~x", b'{"etag": "abc", "part": 9, "salt": "00", "size": 1}'),
        (PURPOSE_BUCKET_CONFIG, "my-bucket", "", None,
         b'{"algorithm": "aws:kms", "bucket_key_enabled": false, "kms_key_id": "test-key", '
         b'"version": 1}'),
        (PURPOSE_UPLOAD, "", "", "", b""),
    ]
    rows = []
    for purpose, bucket, key, upload_id, body in cases:
        mac_key = purpose_key(root, purpose)
        rows.append({"purpose": purpose, "bucket": bucket, "key": key, "upload_id": upload_id,
                     "body_hex": body.hex(), "purpose_key": mac_key.hex(),
                     "mac_input": mac_input(purpose, bucket, key, upload_id, body).hex(),
                     "tag": record_tag(mac_key, purpose, bucket, key, upload_id, body).hex(),
                     "stored_hex": seal_record(mac_key, root_name, purpose, bucket, key,
                                               upload_id, body).hex()})
    return {"record_version": RECORD_VERSION, "root_key": root.hex(),
            "root_blob": blob.hex(), "root_id": root_name,
            "root_wrap_context": root_wrap_context("encproxy-internal"), "vectors": rows}


def bucket_key_vector(seed: int, suite: Suite, version: int, kind: Kind,
                      extra_context: dict[str, str] | None = None) -> dict[str, Any]:
    """An SSE-KMS envelope whose data key is wrapped under a bucket key (FORMAT.md §16).
    The bucket key's provider blob is a fixed local-keyring blob (opaque to the format
    but for the master key version it names)."""
    bucket_key = hashlib.sha256(b"encproxy vector bucket key %d" % seed).digest()
    provider_blob = WrappedKey(ProviderKind.LOCAL, Algorithm.AES256_GCM, KEY_ID, "3",
                               salt(seed, 0)[:12], pattern(48)).to_bytes()
    ref = BucketKeyRef.of(provider_blob, "3")
    nonce = salt(seed, 1)[:12]
    keys = ObjectKeys(kind, suite, object_id(seed), data_key(seed), version)
    context = keys.context(BUCKET, KEY, extra_context)
    wrapped = BucketKey(ref, bucket_key).wrap(keys.data_key, context, nonce=nonce)
    envelope = keys.envelope(KEY_ID, wrapped, BUCKET, KEY, Protection.SSE_KMS, ref)
    return {
        "name": f"bucket-key-{suite.name.lower()}-v{version}-{kind.name.lower()}",
        "inputs": {"suite": int(suite), "kind": int(kind), "envelope_version": version,
                   "bucket": BUCKET, "key": KEY, "key_id": KEY_ID,
                   "object_id": keys.object_id.hex(), "data_key": keys.data_key.hex(),
                   "bucket_key": bucket_key.hex(), "bucket_key_blob": provider_blob.hex(),
                   "master_version": "3", "nonce": nonce.hex(),
                   "extra_context": extra_context or {}},
        "outputs": {"bucket_key_id": ref.id.hex(),
                    "bucket_key_context": bucket_key_context(BUCKET),
                    "wrap_key": wrap_key(bucket_key).hex(),
                    "wrap_aad": wrap_aad(ref.id, context).hex(),
                    "wrapped_data_key": wrapped.hex(),
                    "envelope_tag": envelope.tag.hex(),
                    "envelope": envelope.to_bytes().hex(),
                    "metadata_value": envelope.encode()},
    }


def build() -> dict[str, dict[str, Any]]:
    single = [single_vector(seed, suite, size)
              for suite in Suite
              for seed, size in enumerate((0, 1, 17, 65535, 65536, 65537, 200_000))]
    # Issue 16: envelope version 2, the seal carries the checksum (FORMAT.md §15).
    single += [single_vector(500 + seed, suite, size, checksum)
               for suite in Suite
               for seed, (size, checksum) in enumerate(((0, "crc64nvme"), (65537, "sha256"),
                                                        (200_000, "crc32")))]
    multipart = [multipart_vector(100 + seed, suite, sizes)
                 for suite in Suite
                 for seed, sizes in enumerate(([5 * MiB, 100],                 # terminal last
                                               [5 * MiB, 5 * MiB],             # header-only
                                               [5 * MiB + 1, 5 * MiB + 3],     # indexed
                                               [5 * MiB + 1, 9]))]             # held tail
    # Completions with gaps in the part numbers: always an indexed trailer.
    multipart += [multipart_vector(200 + seed, suite, sizes, numbers)
                  for suite in Suite
                  for seed, (numbers, sizes) in enumerate((
                      ([1, 3, 7], [5 * MiB, 5 * MiB, 100]),      # held tail after part 7
                      ([2, 4], [5 * MiB + 1, 5 * MiB]),          # trailer is part 5
                      ([3, 10000], [5 * MiB, 9])))]              # held tail, trailer 10001
    # Issue 15: SSE-S3/KMS completions (always indexed, described: §7.8) and SSE-C
    # completions without the customer's key (completion-keyed trailers: §7.9).
    multipart += [multipart_vector(300 + seed, suite, sizes, upload_id=f"upload-{seed}")
                  for suite in Suite
                  for seed, sizes in enumerate(([5 * MiB, 100],              # held tail
                                                [5 * MiB, 5 * MiB]))]        # own part
    multipart += [multipart_vector(400 + seed, suite, sizes, numbers, completion=True)
                  for suite in Suite
                  for seed, (numbers, sizes) in enumerate((
                      ([1, 2], [5 * MiB, 5 * MiB]),              # header-only
                      ([2, 4], [5 * MiB + 1, 5 * MiB])))]        # indexed, trailer is part 5
    # Issue 16: checksummed described indexes (COMPOSITE and FULL_OBJECT, FORMAT.md §15).
    multipart += [multipart_vector(600 + seed, suite, sizes, upload_id=f"upload-{seed}",
                                   checksum=checksum)
                  for suite in Suite
                  for seed, (sizes, checksum) in enumerate((
                      ([5 * MiB, 100], ("sha256", COMPOSITE)),           # held tail
                      ([5 * MiB, 5 * MiB], ("crc64nvme", FULL_OBJECT))))]   # own part
    header = {"format_version": FORMAT_VERSION,
              "plaintext": "pattern(n): byte i is (7 * i + 3) % 256",
              "blobs": "hex, or size + sha256 + head_hex/tail_hex (64 bytes) when longer "
                       f"than {FULL_HEX_LIMIT} bytes"}
    return {
        "single.json": {**header, "vectors": single},
        "multipart.json": {**header, "vectors": multipart},
        "records.json": {**header, "vectors": record_vectors()},
        "authenticated_records.json": authenticated_record_vectors(),
        # Issue 18: SSE-KMS bucket keys (FORMAT.md §16).
        "bucket_keys.json": {**header, "vectors": [
            bucket_key_vector(700, Suite.AES256_GCM, 2, Kind.SINGLE),
            bucket_key_vector(701, Suite.AES256_CTR_HMAC_SHA256, 1, Kind.MULTIPART),
            bucket_key_vector(702, Suite.AES256_GCM, 2, Kind.SINGLE,
                              {"department": "finance"})]},
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, content in build().items():
        (OUT / name).write_text(json.dumps(content, indent=1, ensure_ascii=True) + "\n")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
