"""Tampering with real ciphertext: every case raises its documented error, and what a
consumer received before the error is an authentic prefix of the plaintext that
stops before the first tampered chunk (no unauthenticated plaintext is yielded)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidTag
from format_testkit import (
    BlindWrapper,
    ContextWrapper,
    Stored,
    collect,
    join,
    rand_bytes,
    store_multipart,
    store_single,
)

from encproxy.crypto.keys import new_object, open_object
from encproxy.crypto.multipart import MultipartDecryptor, read_index
from encproxy.crypto.single import ObjectDecryptor
from encproxy.crypto.stream import BATCH_CHUNKS
from encproxy.format.constants import (
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    ETAG_SEAL_SIZE,
    FOOTER_SIZE,
    MIN_PART_SIZE,
    SEGMENT_HEADER_SIZE,
    Kind,
    Protection,
    Suite,
)
from encproxy.format.envelope import Envelope
from encproxy.format.errors import (
    ChunkAuthenticationFailed,
    CiphertextSizeInvalid,
    CiphertextTrailingData,
    CiphertextTruncated,
    EnvelopeAuthenticationFailed,
    EnvelopeMalformed,
    EtagSealAuthenticationFailed,
    FinalSegmentMissing,
    FinalSegmentUnexpected,
    FormatError,
    IndexAuthenticationFailed,
    IndexMalformed,
    SegmentHeaderAuthenticationFailed,
    SegmentHeaderMalformed,
    SegmentLayoutMismatch,
    SegmentOutOfOrder,
    UnsupportedSuite,
    UnsupportedVersion,
)
from encproxy.format.layout import MultipartLayout, Trailer, index_tail_hint, is_indexed

C, CC, H = CHUNK_SIZE, CHUNK_CIPHERTEXT_SIZE, SEGMENT_HEADER_SIZE
BATCH = BATCH_CHUNKS * C
SUITES = pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)


def set_byte(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1:]


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    raw = bytearray(data)
    raw[offset] ^= 1 << bit
    return bytes(raw)


def chunk(body: bytes, i: int, base: int = 0) -> bytes:
    return body[base + i * CC:base + (i + 1) * CC]


def check(received: bytes, error: FormatError | None, expected: type[FormatError],
          plaintext: bytes, tampered_at: int) -> None:
    """``tampered_at``: plaintext offset of the first chunk the tampering touches."""
    assert isinstance(error, expected), \
        f"{type(error).__name__} raised, {expected.__name__} expected"
    assert plaintext.startswith(received), "received bytes that are not the plaintext"
    assert len(received) <= tampered_at, "received plaintext at or past the tampered chunk"


# -- single-part ----------------------------------------------------------------------------

SINGLE_CHUNKS = 41   # three batches: 16 + 16 + 9 chunks
SINGLE_SIZE = (SINGLE_CHUNKS - 1) * C + 123


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def single(request: pytest.FixtureRequest) -> Stored:
    return store_single(rand_bytes(SINGLE_SIZE, 11), request.param)


@dataclass(frozen=True)
class Edit:
    change: Callable[[bytes], bytes]
    error: type[FormatError]
    tampered_at: int           # plaintext offset of the first affected chunk


LAST = SINGLE_CHUNKS - 1
SEAL_AT = CC * LAST + 123 + 16
SINGLE_EDITS = {
    "flip in chunk 0 body": Edit(lambda b: flip(b, 100), ChunkAuthenticationFailed, 0),
    "flip in chunk 20 tag": Edit(lambda b: flip(b, 21 * CC - 3, 7), ChunkAuthenticationFailed,
                                 20 * C),
    "flip in the final chunk": Edit(lambda b: flip(b, LAST * CC + 5), ChunkAuthenticationFailed,
                                    LAST * C),
    "flip in the sealed MD5": Edit(lambda b: flip(b, SEAL_AT + 3), EtagSealAuthenticationFailed,
                                   LAST * C),
    "flip in the seal tag": Edit(lambda b: flip(b, len(b) - 1), EtagSealAuthenticationFailed,
                                 LAST * C),
    "dropped chunk 5": Edit(lambda b: b[:5 * CC] + b[6 * CC:], ChunkAuthenticationFailed, 5 * C),
    "duplicated chunk 5": Edit(lambda b: b[:6 * CC] + chunk(b, 5) + b[6 * CC:],
                               ChunkAuthenticationFailed, 6 * C),
    "swapped chunks 3 and 4": Edit(lambda b: b[:3 * CC] + chunk(b, 4) + chunk(b, 3) + b[5 * CC:],
                                   ChunkAuthenticationFailed, 3 * C),
    "chunk from batch 2 moved into batch 1": Edit(
        lambda b: b[:2 * CC] + chunk(b, 20) + b[3 * CC:], ChunkAuthenticationFailed, 2 * C),
    "final chunk dropped (stripped final flag)": Edit(
        lambda b: b[:LAST * CC] + b[-ETAG_SEAL_SIZE:], ChunkAuthenticationFailed, (LAST - 1) * C),
    "truncated at a chunk boundary": Edit(lambda b: b[:LAST * CC], ChunkAuthenticationFailed,
                                          (LAST - 1) * C),
    "truncated at a batch boundary": Edit(lambda b: b[:32 * CC], ChunkAuthenticationFailed,
                                          31 * C),
    "truncated inside the final chunk": Edit(lambda b: b[:LAST * CC + 60] + b[-ETAG_SEAL_SIZE:],
                                             ChunkAuthenticationFailed, LAST * C),
    "seal stripped": Edit(lambda b: b[:-ETAG_SEAL_SIZE], ChunkAuthenticationFailed, LAST * C),
    "one byte cut from the end": Edit(lambda b: b[:-1], ChunkAuthenticationFailed, LAST * C),
    "size made invalid": Edit(lambda b: b[:LAST * CC + 5] + b[-ETAG_SEAL_SIZE:],
                              CiphertextSizeInvalid, 0),
    "one byte appended": Edit(lambda b: b + b"\0", ChunkAuthenticationFailed, LAST * C),
}


@pytest.mark.parametrize("name", list(SINGLE_EDITS))
def test_single_body_tampering(single: Stored, name: str) -> None:
    edit = SINGLE_EDITS[name]
    body = edit.change(single.body)
    try:
        dec = ObjectDecryptor(single.keys, len(body))
    except FormatError as exc:
        check(b"", exc, edit.error, single.plaintext, edit.tampered_at)
        return
    received, error = collect(dec.decrypt([body]))
    check(received, error, edit.error, single.plaintext, edit.tampered_at)


def test_single_stream_shorter_or_longer_than_its_size(single: Stored) -> None:
    """The backend announced the right size but sent fewer / more bytes."""
    body = single.body
    for cut, expected in ((len(body) - 1, CiphertextTruncated), (20 * CC + 7, CiphertextTruncated),
                          (len(body) + 3, CiphertextTrailingData)):
        source = (body + b"xyz")[:cut]
        received, error = collect(ObjectDecryptor(single.keys, len(body)).decrypt([source]))
        check(received, error, expected, single.plaintext, min(cut // CC, LAST) * C)


def test_single_range_tampering(single: Stored) -> None:
    from encproxy.format.layout import plan_range
    plan = plan_range(SINGLE_SIZE, 3 * C + 10, 7 * C)
    source = single.body[plan.ciphertext_start:plan.ciphertext_stop]
    dec = ObjectDecryptor(single.keys, len(single.body))
    for tampered in (flip(source, 2 * CC + 1), source[CC:] + source[:CC],
                     single.body[:CC] + source[CC:]):
        received, error = collect(dec.decrypt_range(plan, [tampered]))
        assert isinstance(error, ChunkAuthenticationFailed) and received == b""
    received, error = collect(dec.decrypt_range(plan, [source[:-1]]))
    assert isinstance(error, CiphertextTruncated) and received == b""


# -- envelopes ------------------------------------------------------------------------------

def reencode(env: Envelope, **fields: object) -> Envelope:
    values = dict(kind=env.kind, suite=env.suite, object_id=env.object_id, tag=env.tag,
                  key_id=env.key_id, wrapped_key=env.wrapped_key)
    values.update(fields)
    return Envelope(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapper_cls", [ContextWrapper, BlindWrapper],
                         ids=["provider binds context", "provider ignores context"])
def test_envelope_moved_or_altered(wrapper_cls: type[ContextWrapper]) -> None:
    wrapper = wrapper_cls()
    a = store_single(rand_bytes(3 * C, 1), wrapper=wrapper, bucket="b", key="a")
    b = store_single(rand_bytes(3 * C, 2), wrapper=wrapper, bucket="b", key="b")
    # What the provider does not catch, the envelope tag must.
    rejected = (EnvelopeAuthenticationFailed,) if wrapper_cls is BlindWrapper else \
        (EnvelopeAuthenticationFailed, InvalidTag)
    cases = {
        "envelope moved to another key": (a.envelope, "b", "b"),
        "envelope moved to another bucket": (a.envelope, "c", "a"),
        "wrapped key moved to another object": (
            b.envelope.replace_wrapping(a.envelope.key_id, a.envelope.wrapped_key), "b", "b"),
        "suite downgraded to CTR-HMAC": (
            reencode(a.envelope, suite=Suite.AES256_CTR_HMAC_SHA256), "b", "a"),
        "kind changed to multipart": (reencode(a.envelope, kind=Kind.MULTIPART), "b", "a"),
        "object id changed": (reencode(a.envelope, object_id=b.envelope.object_id), "b", "a"),
        "tag flipped": (reencode(a.envelope, tag=flip(a.envelope.tag, 31)), "b", "a"),
    }
    for name, (env, bucket, key) in cases.items():
        with pytest.raises(rejected):
            open_object(wrapper, Envelope.decode(env.encode()), bucket, key)
        if name == "wrapped key moved to another object":
            continue   # the tag does not cover the wrapped key: its data key is what fails
        # The tag alone rejects the change, whatever the provider does.
        with pytest.raises(EnvelopeAuthenticationFailed):
            open_object(wrapper, a.envelope, "b", "a").verify(env, bucket, key)
    # The body of one object under the envelope of another.
    keys_b = open_object(wrapper, b.envelope, "b", "b")
    received, error = collect(ObjectDecryptor(keys_b, len(a.body)).decrypt([a.body]))
    check(received, error, ChunkAuthenticationFailed, a.plaintext, 0)


@pytest.mark.parametrize("stored,claimed", [
    pytest.param(Protection.SSE_KMS, Protection.SSE_S3, id="kms-reported-as-s3"),
    pytest.param(Protection.SSE_C, Protection.SSE_KMS, id="sse-c-reported-as-kms"),
    pytest.param(Protection.SSE_S3, Protection.SSE_C, id="s3-reported-as-sse-c"),
])
def test_protection_change_fails_the_tag(stored: Protection, claimed: Protection) -> None:
    """What S3 reports about a key's custody (byte 3) is authenticated like the rest."""
    wrapper = ContextWrapper()
    keys, env = new_object(wrapper, "k", "b", "o", kind=Kind.SINGLE, protection=stored)
    assert Envelope.decode(env.encode()).protection is stored
    forged = Envelope(env.kind, env.suite, env.object_id, env.tag, env.key_id, env.wrapped_key,
                      env.version, claimed)
    with pytest.raises(EnvelopeAuthenticationFailed):
        open_object(wrapper, Envelope.decode(forged.encode()), "b", "o")
    assert open_object(wrapper, env, "b", "o").object_id == env.object_id


@pytest.mark.parametrize(("offset", "error"), [
    pytest.param(0, UnsupportedVersion, id="version byte"),
    pytest.param(2, UnsupportedSuite, id="suite byte to an unknown suite"),
    pytest.param(3, EnvelopeMalformed, id="protection byte to an unknown value"),
])
def test_envelope_header_bytes(offset: int, error: type[FormatError]) -> None:
    raw = bytearray(store_single(b"x").envelope.to_bytes())
    raw[offset] ^= 0x40
    with pytest.raises(error):
        Envelope.from_bytes(bytes(raw))


# -- multipart ------------------------------------------------------------------------------

P1, P2, P3 = MIN_PART_SIZE, MIN_PART_SIZE, 100 * 1024 + 7


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def multipart(request: pytest.FixtureRequest) -> Stored:
    """Parts 1 and 2 of 5 MiB, a terminal part 3: no trailer."""
    parts = [rand_bytes(P1, 21), rand_bytes(P2, 22), rand_bytes(P3, 23)]
    return store_multipart(parts, request.param)


@pytest.fixture(scope="module")
def other_upload(multipart: Stored) -> Stored:
    """Another upload to the same bucket and key, same part sizes."""
    parts = [rand_bytes(P1, 31), rand_bytes(P2, 32), rand_bytes(P3, 33)]
    return store_multipart(parts, multipart.keys.suite)


def seg(stored: Stored, n: int) -> bytes:
    assert stored.plan is not None
    span = stored.plan.layout.spans[n - 1]
    return stored.body[span.ciphertext_offset:span.ciphertext_offset + span.ciphertext_size]


S1 = H + P1 + 16 * (P1 // C)      # size of segment 1 and 2
MP_EDITS: dict[str, tuple[Callable[[Stored, Stored], bytes], type[FormatError], int]] = {
    "flip in segment 2 part number": (
        lambda s, o: flip(s.body, S1 + 11), SegmentHeaderAuthenticationFailed, P1),
    "flip in segment 2 size": (
        lambda s, o: flip(s.body, S1 + 17, 3), SegmentHeaderAuthenticationFailed, P1),
    "flip in segment 2 salt": (
        lambda s, o: flip(s.body, S1 + 25), SegmentHeaderAuthenticationFailed, P1),
    "flip in segment 2 header tag": (
        lambda s, o: flip(s.body, S1 + 40), SegmentHeaderAuthenticationFailed, P1),
    "segment 2 marked terminal": (
        lambda s, o: flip(s.body, S1 + 5), SegmentHeaderMalformed, P1),
    "segment 2 suite byte changed": (
        lambda s, o: set_byte(s.body, S1 + 4, 3 - s.keys.suite),   # 1 <-> 2
        SegmentHeaderAuthenticationFailed, P1),
    "flip in a chunk of segment 2": (
        lambda s, o: flip(s.body, S1 + H + 40 * CC + 9), ChunkAuthenticationFailed, P1 + 40 * C),
    "flip in the final chunk of the last part": (
        lambda s, o: flip(s.body, len(s.body) - 20), ChunkAuthenticationFailed,
        P1 + P2 + (P3 // C) * C),
    "chunks 3 and 4 of part 2 swapped": (
        lambda s, o: s.body[:S1 + H + 3 * CC] + chunk(s.body, 4, S1 + H)
        + chunk(s.body, 3, S1 + H) + s.body[S1 + H + 5 * CC:],
        ChunkAuthenticationFailed, P1 + 3 * C),
    "chunk 7 of part 2 dropped": (
        lambda s, o: s.body[:S1 + H + 7 * CC] + s.body[S1 + H + 8 * CC:],
        ChunkAuthenticationFailed, P1 + 7 * C),
    "parts 1 and 2 swapped": (
        lambda s, o: seg(s, 2) + seg(s, 1) + seg(s, 3), SegmentOutOfOrder, 0),
    "part 2 dropped": (lambda s, o: seg(s, 1) + seg(s, 3), SegmentOutOfOrder, P1),
    "part 2 duplicated": (lambda s, o: seg(s, 1) + seg(s, 2) + seg(s, 2) + seg(s, 3),
                          SegmentOutOfOrder, P1 + P2),
    "last part dropped": (lambda s, o: seg(s, 1) + seg(s, 2), FinalSegmentMissing, P1 + P2),
    "part 2 from another upload": (lambda s, o: seg(s, 1) + seg(o, 2) + seg(s, 3),
                                   SegmentHeaderAuthenticationFailed, P1),
    "header of part 2 from another upload": (
        lambda s, o: seg(s, 1) + seg(o, 2)[:H] + seg(s, 2)[H:] + seg(s, 3),
        SegmentHeaderAuthenticationFailed, P1),
    "stray bytes after the terminal part": (
        lambda s, o: s.body + b"junk", FinalSegmentUnexpected, P1 + P2),
    "a part appended after the terminal part": (
        lambda s, o: s.body + seg(s, 2), FinalSegmentUnexpected, P1 + P2),
    "truncated at a chunk boundary of part 2": (
        lambda s, o: s.body[:S1 + H + 10 * CC], CiphertextTruncated, P1),
    "part 3 cut to a chunk boundary": (
        lambda s, o: s.body[:2 * S1 + H + CC], CiphertextTruncated, P1 + P2),
    "truncated inside part 2's header": (
        lambda s, o: s.body[:S1 + 10], CiphertextTruncated, P1),
}


@pytest.mark.parametrize("name", list(MP_EDITS))
def test_multipart_tampering(multipart: Stored, other_upload: Stored, name: str) -> None:
    change, expected, tampered_at = MP_EDITS[name]
    body = change(multipart, other_upload)
    received, error = collect(MultipartDecryptor(multipart.keys, len(body)).decrypt([body]))
    check(received, error, expected, multipart.plaintext, tampered_at)


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def with_trailer(request: pytest.FixtureRequest) -> tuple[Stored, Stored]:
    """[5 MiB, 5 MiB] + header-only trailer, and [5 MiB + 1, 5 MiB] + indexed trailer."""
    plain = store_multipart([rand_bytes(P1, 41), rand_bytes(P2, 42)], request.param)
    indexed = store_multipart([rand_bytes(P1 + 1, 43), rand_bytes(P2, 44)], request.param)
    assert plain.plan and plain.plan.trailer is Trailer.HEADER_ONLY
    assert indexed.plan and indexed.plan.trailer is Trailer.INDEXED
    return plain, indexed


def test_trailer_tampering(with_trailer: tuple[Stored, Stored]) -> None:
    plain, indexed = with_trailer
    other = store_multipart([rand_bytes(P1, 45), rand_bytes(P2, 46)], plain.keys.suite)
    full = P1 + P2
    cases = [
        (plain, plain.body[:-H], FinalSegmentMissing, full),                  # trailer stripped
        (plain, plain.body[:-H] + other.body[-H:], SegmentHeaderAuthenticationFailed, full),
        (plain, flip(plain.body, len(plain.body) - 1), SegmentHeaderAuthenticationFailed, full),
        (plain, plain.body + plain.body[-H:], FinalSegmentUnexpected, full),  # two trailers
        (indexed, flip(indexed.body, len(indexed.body) - FOOTER_SIZE - 3),
         IndexAuthenticationFailed, full + 1),
        (indexed, flip(indexed.body, len(indexed.body) - 2), IndexMalformed, full + 1),
    ]
    for stored, body, expected, at in cases:
        received, error = collect(MultipartDecryptor(stored.keys, len(body)).decrypt([body]))
        check(received, error, expected, stored.plaintext, at)


def test_index_tampering(with_trailer: tuple[Stored, Stored]) -> None:
    _, stored = with_trailer
    assert stored.plan is not None
    n = stored.plan.backend_parts
    body = stored.body
    tail = body[-index_tail_hint(n):]
    assert read_index(stored.keys, tail, len(body), n) == stored.plan.layout
    for bad, expected in ((flip(tail, len(tail) - 1), IndexMalformed),
                          (flip(tail, len(tail) - FOOTER_SIZE - 1), IndexAuthenticationFailed),
                          (flip(tail, len(tail) - stored.plan.layout.trailer_size + 25),
                           SegmentHeaderAuthenticationFailed),
                          (tail[:40], IndexMalformed)):
        with pytest.raises(expected):
            read_index(stored.keys, bad, len(body), n)


def test_multipart_range_with_wrong_header_or_layout(multipart: Stored) -> None:
    assert multipart.plan is not None
    layout = multipart.plan.layout
    dec = MultipartDecryptor(multipart.keys, len(multipart.body))
    plan = layout.plan_range(P1 + 2 * C + 100, P1 + 3 * C)
    assert plan.needs_header
    source = multipart.body[plan.ciphertext_start:plan.ciphertext_stop]
    received, error = collect(dec.decrypt_range(plan, [source], seg(multipart, 1)[:H]))
    assert isinstance(error, SegmentOutOfOrder) and received == b""
    # A wrong (predicted) layout: part 1 believed to be 6 MiB.
    wrong = MultipartLayout((P1 + 16 * C, P2 - 16 * C, P3))
    plan = wrong.plan_range(P1 + 100, P1 + 3 * C)   # part 1 believed to end later
    header = multipart.body[plan.header_range[0]:plan.header_range[1]]
    received, error = collect(dec.decrypt_range(
        plan, [multipart.body[plan.ciphertext_start:plan.ciphertext_stop]], header))
    assert isinstance(error, (SegmentHeaderMalformed, SegmentLayoutMismatch)) and received == b""


def test_multipart_envelope_kind_downgrade(multipart: Stored) -> None:
    single_kind = reencode(multipart.envelope, kind=Kind.SINGLE)
    with pytest.raises(EnvelopeAuthenticationFailed):
        multipart.keys.verify(single_kind, "b", "k")


# -- multipart with gaps in the part numbers ---------------------------------------------------

@dataclass(frozen=True)
class Gapped:
    """A completed object with gaps, and what an attacker may have kept of its upload."""

    stored: Stored
    segments: dict[int, bytes]   # part number -> segment, every uploaded part
    other: Stored                # another upload, same part numbers and sizes

    @property
    def trailer(self) -> bytes:
        assert self.stored.plan is not None
        return self.stored.body[-self.stored.plan.layout.trailer_size:]

    def body(self, *numbers: int, trailer: bytes | None = None) -> tuple[bytes, int]:
        """Segments in the order given, then the trailer (this object's by default), and
        the backend part count a listing then reports."""
        assert self.stored.plan is not None
        trailer = self.trailer if trailer is None else trailer
        own = bool(trailer) and self.stored.plan.trailer_in_own_part
        return b"".join(self.segments[n] for n in numbers) + trailer, len(numbers) + own

    def retrailed(self, numbers: list[int], sizes: list[int]) -> bytes:
        """The trailer a Complete of the same upload naming ``numbers`` would write."""
        from encproxy.crypto.multipart import build_trailer
        from encproxy.format.layout import plan_completion
        plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
        return build_trailer(self.stored.keys, plan)


def make_gapped(suite: Suite, uploaded: dict[int, int], completed: list[int]) -> Gapped:
    """Upload parts ``uploaded`` (number -> size), complete with ``completed``."""
    from format_testkit import encrypt_parts
    data = {n: rand_bytes(size, 50 + n) for n, size in uploaded.items()}
    stored = store_multipart([data[n] for n in completed], suite, numbers=completed)
    segs = dict(zip(uploaded, encrypt_parts(stored.keys, list(data.values()), list(uploaded)),
                    strict=True))
    for n in completed:   # the completed object holds the same uploads of these parts
        segs[n] = seg_of(stored, completed.index(n))
    other = store_multipart([rand_bytes(uploaded[n], 70 + n) for n in completed], suite,
                            numbers=completed)
    return Gapped(stored, segs, other)


def seg_of(stored: Stored, position: int) -> bytes:
    assert stored.plan is not None
    span = stored.plan.layout.spans[position]
    return stored.body[span.ciphertext_offset:span.ciphertext_offset + span.ciphertext_size]


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def gapped(request: pytest.FixtureRequest) -> tuple[Gapped, Gapped]:
    """[1, 4, 6] of parts 1..6 with a small part 6 (held tail: the trailer is in part 6),
    and [2, 5] of 5 MiB parts (the trailer is its own part, number 6)."""
    tail = make_gapped(request.param, {1: P1, 2: P1, 4: P2, 5: P2, 6: P3}, [1, 4, 6])
    own = make_gapped(request.param, {2: P1, 3: P1, 5: P2}, [2, 5])
    assert tail.stored.plan and tail.stored.plan.held_tail
    assert tail.stored.plan.backend_part_numbers == (1, 4, 6)
    assert own.stored.plan and own.stored.plan.trailer_in_own_part
    assert own.stored.plan.backend_part_numbers == (2, 5, 6)
    return tail, own


def read_gapped(stored: Stored, tampered: tuple[bytes, int], mode: str
                ) -> tuple[bytes, FormatError | None]:
    """Read ``body`` as a server does.  ``mode``: "index" reads the layout from the
    object itself when its size signals one (else reads without it); "cached" uses the
    layout read earlier from the intact object (the backend now serves other bytes);
    "none" reads without any index."""
    assert stored.plan is not None
    body, n = tampered
    size, layout = len(body), None
    if mode == "cached":
        size, layout = len(stored.body), stored.plan.layout
    elif mode == "index":
        if is_indexed(size, n):
            try:
                layout = read_index(stored.keys, body[-index_tail_hint(n):], size, n)
            except FormatError as exc:
                return b"", exc
    try:
        dec = MultipartDecryptor(stored.keys, size, layout=layout)
    except FormatError as exc:
        return b"", exc
    return collect(dec.decrypt([body]))


T1, T4 = P1, P1 + P2       # plaintext offsets in [1, 4, 6] where parts 4 and 6 start
END_TAIL, END_OWN = P1 + P2 + P3, P1 + P2
Outcome = tuple[type[FormatError], int]   # the error, and where the tampering starts
GAPPED_EDITS: dict[str, tuple[str, Callable[[Gapped], tuple[bytes, int]], Outcome,
                               Outcome]] = {
    # name: (fixture, edit, index read from the object, index cached from the intact object)
    "middle part 4 dropped": (
        "tail", lambda g: g.body(1, 6), (CiphertextSizeInvalid, 0), (SegmentOutOfOrder, T1)),
    "parts 1 and 4 swapped": (
        "tail", lambda g: g.body(4, 1, 6), (SegmentOutOfOrder, 0), (SegmentOutOfOrder, 0)),
    "parts 2 and 5 swapped": (
        "own", lambda g: g.body(5, 2), (SegmentOutOfOrder, 0), (SegmentOutOfOrder, 0)),
    "part 4 duplicated": (
        "tail", lambda g: g.body(1, 4, 4, 6), (CiphertextSizeInvalid, 0),
        (SegmentOutOfOrder, T4)),
    "uploaded part 2 inserted (not completed)": (
        "tail", lambda g: g.body(1, 2, 4, 6), (CiphertextSizeInvalid, 0),
        (SegmentOutOfOrder, T1)),
    "part 4 replaced by uploaded part 5 of the same size": (
        "tail", lambda g: g.body(1, 5, 6), (SegmentOutOfOrder, T1), (SegmentOutOfOrder, T1)),
    "index replaced by another upload's": (
        "tail", lambda g: g.body(1, 4, 6, trailer=g.other.body[-len(g.trailer):]),
        (SegmentHeaderAuthenticationFailed, 0), (SegmentHeaderAuthenticationFailed, END_TAIL)),
    "own-part index replaced by another upload's": (
        "own", lambda g: g.body(2, 5, trailer=g.other.body[-len(g.trailer):]),
        (SegmentHeaderAuthenticationFailed, 0), (SegmentHeaderAuthenticationFailed, END_OWN)),
    "index of [1, 5, 6] (same upload, same sizes) on parts [1, 4, 6]": (
        "tail", lambda g: g.body(1, 4, 6, trailer=g.retrailed([1, 5, 6], [P1, P2, P3])),
        (SegmentOutOfOrder, T1), (SegmentOutOfOrder, END_TAIL)),
    "index of [1, 6] (same upload) on parts [1, 4, 6]": (
        "tail", lambda g: g.body(1, 4, 6, trailer=g.retrailed([1, 6], [P1, P3])),
        (CiphertextSizeInvalid, 0), (SegmentOutOfOrder, END_TAIL)),
    "index of [1, 2, 4, 6] (same upload) on parts [1, 4, 6]": (
        "tail", lambda g: g.body(1, 4, 6, trailer=g.retrailed([1, 2, 4, 6], [P1, P1, P2, P3])),
        (CiphertextSizeInvalid, 0), (SegmentOutOfOrder, END_TAIL)),
    "index of [3, 5] (same upload) on parts [2, 5]": (
        "own", lambda g: g.body(2, 5, trailer=g.retrailed([3, 5], [P1, P2])),
        (SegmentOutOfOrder, 0), (SegmentOutOfOrder, END_OWN)),
    # Without its index the size gives no signal: the reader walks and meets the gap.
    "index stripped (held tail)": (
        "tail", lambda g: g.body(1, 4, 6, trailer=b""), (SegmentOutOfOrder, T1),
        (CiphertextTruncated, END_TAIL)),
    "index stripped (own part)": (
        "own", lambda g: g.body(2, 5, trailer=b""), (SegmentOutOfOrder, 0),
        (CiphertextTruncated, END_OWN)),
    "index flipped": (
        "tail", lambda g: (flip(g.stored.body, len(g.stored.body) - FOOTER_SIZE - 30), 3),
        (IndexAuthenticationFailed, 0), (IndexAuthenticationFailed, END_TAIL)),
}


@pytest.mark.parametrize("mode", ["index", "cached"])
@pytest.mark.parametrize("name", list(GAPPED_EDITS))
def test_gapped_tampering(gapped: tuple[Gapped, Gapped], name: str, mode: str) -> None:
    which, edit, from_object, from_cache = GAPPED_EDITS[name]
    g = gapped[0] if which == "tail" else gapped[1]
    expected, tampered_at = from_object if mode == "index" else from_cache
    received, error = read_gapped(g.stored, edit(g), mode)
    check(received, error, expected, g.stored.plaintext, tampered_at)


def test_gapped_intact(gapped: tuple[Gapped, Gapped]) -> None:
    for g in gapped:
        assert g.stored.plan is not None
        n = g.stored.plan.backend_parts
        assert is_indexed(len(g.stored.body), n), "a listing gets the index signal"
        intact = (g.stored.body, n)
        assert read_gapped(g.stored, intact, "index") == (g.stored.plaintext, None)
        # A reader without the index meets a gap: SegmentOutOfOrder, nothing past it.
        received, error = read_gapped(g.stored, intact, "none")
        first_gap = P1 if g is gapped[0] else 0
        check(received, error, SegmentOutOfOrder, g.stored.plaintext, first_gap)


def test_gapped_range_tampering(gapped: tuple[Gapped, Gapped]) -> None:
    g = gapped[0]
    assert g.stored.plan is not None
    layout = g.stored.plan.layout                    # numbers [1, 4, 6] from the index
    dec = MultipartDecryptor(g.stored.keys, len(g.stored.body), layout=layout)
    swapped, _ = g.body(4, 1, 6)                     # same size: parts 1 and 4 swapped
    for start, end in ((T1 - 100, T1 + 3 * C),       # across the boundary of parts 1 and 4
                       (T1 + 5 * C + 7, T1 + 9 * C),  # inside part 4 (needs its header)
                       (T1, T4 + 10)):               # all of part 4 and into part 6
        plan = layout.plan_range(start, end)
        lo, hi = plan.header_range
        good = join(dec.decrypt_range(plan, [g.stored.body[plan.ciphertext_start:
                                                           plan.ciphertext_stop]],
                                      g.stored.body[lo:hi] if plan.needs_header else None))
        assert good == g.stored.plaintext[start:end + 1]
        received, error = collect(dec.decrypt_range(
            plan, [swapped[plan.ciphertext_start:plan.ciphertext_stop]],
            swapped[lo:hi] if plan.needs_header else None))
        assert isinstance(error, SegmentOutOfOrder) and received == b""
    # A range planned as if the parts were 1..3 (no index) meets part 4 where 2 should be.
    contiguous = MultipartLayout(layout.part_sizes)
    plan = contiguous.plan_range(T1 + 10, T1 + 20)
    lo, hi = plan.header_range
    received, error = collect(dec.decrypt_range(
        plan, [g.stored.body[plan.ciphertext_start:plan.ciphertext_stop]], g.stored.body[lo:hi]))
    assert isinstance(error, SegmentOutOfOrder) and received == b""


def test_gapped_layout_needs_an_index(gapped: tuple[Gapped, Gapped]) -> None:
    g = gapped[0]
    assert g.stored.plan is not None
    layout = g.stored.plan.layout
    unindexed = MultipartLayout(layout.part_sizes, Trailer.NONE, 0,
                                part_numbers=layout.part_numbers)
    with pytest.raises(ValueError):
        MultipartDecryptor(g.stored.keys, unindexed.ciphertext_size, layout=unindexed)
