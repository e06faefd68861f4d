"""Issue 15's additions to the multipart format (FORMAT.md §7.8, §7.9), pure.

* a **described** index (header flag 0x08) carries the object's S3-style ETag and the
  digest of its upload id, authenticated with the index;
* a **completion-keyed** trailer (flag 0x10) is sealed under the upload's completion
  key, which a reader derives from the data key; the flag is covered by the header tag;
* **part records** name and seal a part's plaintext MD5 under keys of the upload.
"""
from __future__ import annotations

import hashlib
import os

import pytest

from encproxy.crypto.keys import ObjectKeys
from encproxy.crypto.multipart import (
    CompletionKeys,
    MultipartDecryptor,
    PartEncryptor,
    build_trailer,
    completion_key,
    describe,
    open_part_md5,
    open_segment_header,
    part_etag_name,
    read_index,
    seal_part_md5,
    upload_digest,
)
from encproxy.format.constants import Kind, MiB, SegmentFlag, Suite
from encproxy.format.errors import (
    IndexMalformed,
    RecordAuthenticationFailed,
    SegmentHeaderAuthenticationFailed,
    SegmentHeaderMalformed,
)
from encproxy.format.layout import index_tail_hint, plan_completion
from encproxy.format.segment import SegmentHeader, decode_index, encode_index

SUITES = list(Suite)


def keys_for(suite: Suite) -> ObjectKeys:
    return ObjectKeys.generate(Kind.MULTIPART, suite)


def join(views) -> bytes:
    return b"".join(bytes(v) for v in views)


def stored_object(keys: ObjectKeys, sizes: list[int], *, upload_id: str | None = "u-1",
                  completion: bool = False) -> tuple[bytes, list[bytes], object]:
    parts = [os.urandom(size) for size in sizes]
    numbers = list(range(1, len(sizes) + 1))
    segments = [join(PartEncryptor(keys, n, len(p)).encrypt([p]))
                for n, p in zip(numbers, parts, strict=True)]
    description = None if upload_id is None else describe(
        [hashlib.md5(p).digest() for p in parts], upload_id)
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True, always_index=True,
                           description=description)
    trailer = build_trailer(CompletionKeys.of(keys) if completion else keys, plan)
    if plan.held_tail:
        segments[-1] += trailer
    else:
        segments.append(trailer)
    return b"".join(segments), parts, plan


@pytest.mark.parametrize("suite", SUITES)
def test_a_described_index_gives_s3s_etag_and_the_upload(suite):
    keys = keys_for(suite)
    body, parts, plan = stored_object(keys, [5 * MiB, 1000])
    layout = read_index(keys, body[-index_tail_hint(plan.backend_parts):], len(body),
                        plan.backend_parts)
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    assert layout.etag == f'"{hashlib.md5(joined).hexdigest()}-2"'
    assert layout.description is not None
    assert layout.description.upload_digest == upload_digest("u-1") != upload_digest("u-2")
    dec = MultipartDecryptor(keys, len(body), layout=layout)
    assert join(dec.decrypt([body])) == b"".join(parts)


def test_an_index_without_description_reads_as_before():
    keys = keys_for(Suite.AES256_GCM)
    body, _, plan = stored_object(keys, [5 * MiB, 1000], upload_id=None)
    layout = read_index(keys, body[-index_tail_hint(plan.backend_parts):], len(body),
                        plan.backend_parts)
    assert layout.description is None and layout.etag is None


def test_the_description_round_trips_and_needs_its_flag():
    description = describe([b"\x01" * 16, b"\x02" * 16], "upload")
    raw = encode_index([1, 2], [5 * MiB, 3], 5, description)
    assert decode_index(raw, described=True).description == description
    with pytest.raises(IndexMalformed):   # read as undescribed, its length is wrong
        decode_index(raw, described=False)


@pytest.mark.parametrize("flags", [SegmentFlag.DESCRIBED | SegmentFlag.TERMINAL,
                                   SegmentFlag.COMPLETION | SegmentFlag.TERMINAL])
def test_new_flags_only_where_they_belong(flags):
    """0x08 only on an indexed trailer, 0x10 only on a trailer: never on a data segment."""
    keys = keys_for(Suite.AES256_GCM)
    raw = bytearray(join(PartEncryptor(keys, 1, 10).encrypt([b"x" * 10]))[:52])
    raw[5] = int(flags)
    with pytest.raises(SegmentHeaderMalformed):
        SegmentHeader.decode(bytes(raw))


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("sizes", [[5 * MiB, 5 * MiB], [5 * MiB, 5 * MiB + 1]],
                         ids=["header-only", "indexed"])
def test_a_completion_keyed_trailer_reads_with_the_data_key(suite, sizes):
    keys = keys_for(suite)
    body, parts, plan = stored_object(keys, sizes, upload_id=None, completion=True)
    assert not plan.held_tail
    trailer_at = len(body) - plan.layout.trailer_size
    header, _ = open_segment_header(keys, body[trailer_at:trailer_at + 52])
    assert header.completion_keyed and header.trailer
    layout = None
    if header.indexed:
        layout = read_index(keys, body[-index_tail_hint(plan.backend_parts):], len(body),
                            plan.backend_parts)
    dec = MultipartDecryptor(keys, len(body), layout=layout)
    assert join(dec.decrypt([body])) == b"".join(parts)


def test_the_completion_flag_cannot_be_flipped():
    """Either way, the header tag covers the flag and the key derivation follows it."""
    keys = keys_for(Suite.AES256_GCM)
    for completion in (True, False):
        body, _, plan = stored_object(keys, [5 * MiB, 5 * MiB], upload_id=None,
                                      completion=completion)
        trailer_at = len(body) - plan.layout.trailer_size
        raw = bytearray(body[trailer_at:trailer_at + 52])
        raw[5] ^= int(SegmentFlag.COMPLETION)
        with pytest.raises(SegmentHeaderAuthenticationFailed):
            open_segment_header(keys, bytes(raw))


def test_the_completion_key_is_not_a_data_key_and_seals_no_part():
    keys = keys_for(Suite.AES256_GCM)
    k = completion_key(keys)
    assert k != keys.data_key and len(k) == 32
    sealer = CompletionKeys.of(keys)
    salt = os.urandom(16)
    assert sealer.segment_cipher(1, salt).seal(0, b"a", b"p") != \
        keys.segment_cipher(1, salt).seal(0, b"a", b"p")
    # A data segment sealed under it is not a part of this upload.
    other = ObjectKeys(Kind.MULTIPART, keys.suite, keys.object_id, k)
    raw = join(PartEncryptor(other, 1, 10).encrypt([b"y" * 10]))[:52]
    with pytest.raises(SegmentHeaderAuthenticationFailed):
        open_segment_header(keys, raw)


def test_part_md5s_are_named_and_sealed_under_the_uploads_keys():
    keys, other = keys_for(Suite.AES256_GCM), keys_for(Suite.AES256_GCM)
    md5 = hashlib.md5(b"part").digest()
    name, sealed = seal_part_md5(keys, 3, md5)
    assert name == part_etag_name(keys, 3, md5) != part_etag_name(other, 3, md5)
    assert name != part_etag_name(keys, 4, md5)
    assert md5.hex() not in sealed and hashlib.sha256(md5.hex().encode()).hexdigest()[:32] \
        != name
    assert open_part_md5(keys, 3, name, sealed) == md5
    with pytest.raises(RecordAuthenticationFailed):   # under another name, or part
        open_part_md5(keys, 3, part_etag_name(keys, 3, b"\0" * 16), sealed)
    with pytest.raises(RecordAuthenticationFailed):
        open_part_md5(keys, 4, name, sealed)
    with pytest.raises(RecordAuthenticationFailed):   # another upload's keys
        open_part_md5(other, 3, name, sealed)
