"""encproxy.awschunked: decoding, every signature, hostile framing, bounded memory.

The encoder below is a test harness: it writes the three framings from the
AWS documentation so that the decoder can be driven with bodies we can then
flip, truncate and reorder.  It is checked against the published AWS example
signatures before anything relies on it.
"""
from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encproxy import checksums, errors, sigv4
from encproxy.awschunked import AwsChunkedDecoder

SIGNED = sigv4.STREAMING_SIGNED
SIGNED_TRAILER = sigv4.STREAMING_SIGNED_TRAILER
UNSIGNED_TRAILER = sigv4.STREAMING_UNSIGNED_TRAILER

# The example of the S3 documentation ("Signature Calculations ... Chunked Upload").
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIMESTAMP = "20130524T000000Z"
DOC_SCOPE = "20130524/us-east-1/s3/aws4_request"
DOC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_CHUNK_SIGNATURES = ("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
DOC_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
DOC_TRAILER_CHUNK_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992")
DOC_TRAILER = "x-amz-checksum-crc32c:sOO8/Q=="
DOC_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


@dataclass(frozen=True)
class Signing:
    """The chunk-signing context (what sigv4.VerifiedRequest carries)."""

    signing_key: bytes
    timestamp: str
    scope: str
    seed_signature: str


def doc_signing(seed: str = DOC_SEED) -> Signing:
    return Signing(sigv4.signing_key(DOC_SECRET, "20130524", "us-east-1"), DOC_TIMESTAMP,
                   DOC_SCOPE, seed)


# -- the test encoder -----------------------------------------------------------------

def checksum_b64(algorithm: str, data: bytes) -> str:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return checksums.to_base64(hasher.digest())


def encode(chunks: list[bytes], payload: str, signing: Signing | None = None,
           trailer: str | None = None, trailers: list[tuple[str, str]] | None = None) -> bytes:
    """Frame ``chunks`` (without the final empty one) as an aws-chunked body.

    ``trailer`` names a checksum algorithm whose value is computed and sent;
    ``trailers`` overrides the trailing header lines verbatim.
    """
    signed = payload != UNSIGNED_TRAILER
    previous = signing.seed_signature if signing else ""
    out = bytearray()
    for data in [*chunks, b""]:
        if signed:
            assert signing is not None
            previous = sigv4.signature(signing.signing_key, sigv4.chunk_string_to_sign(
                signing.timestamp, signing.scope, previous, hashlib.sha256(data).hexdigest()))
            out += b"%x;chunk-signature=%s\r\n" % (len(data), previous.encode())
        else:
            out += b"%x\r\n" % len(data)
        if data:
            out += data + b"\r\n"
    if payload == SIGNED:
        return bytes(out + b"\r\n")
    if trailers is None:
        trailers = ([(f"x-amz-checksum-{trailer}", checksum_b64(trailer, b"".join(chunks)))]
                    if trailer else [])
    for name, value in trailers:
        out += f"{name}:{value}\r\n".encode()
    if payload == SIGNED_TRAILER:
        assert signing is not None
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        trailer_signature = sigv4.signature(signing.signing_key, sigv4.trailer_string_to_sign(
            signing.timestamp, signing.scope, previous,
            hashlib.sha256(canonical.encode()).hexdigest()))
        out += f"x-amz-trailer-signature:{trailer_signature}\r\n".encode()
    return bytes(out + b"\r\n")


def reader(data: bytes, max_piece: int | None = None) -> Callable[[int], bytes]:
    """``read(n)`` over ``data`` that may return short reads of at most ``max_piece``."""
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        take = size if max_piece is None else min(size, max_piece)
        piece = data[position:position + take]
        position += len(piece)
        return piece
    return read


def decode(body: bytes, payload: str, *, signing: Signing | None = None,
           decoded_length: int | None = None, trailer: str | None = None,
           io_size: int = 1 << 20, max_piece: int | None = None) -> tuple[bytes, AwsChunkedDecoder]:
    decoder = AwsChunkedDecoder(reader(body, max_piece), payload, signing=signing,
                                decoded_length=decoded_length, trailer=trailer, io_size=io_size)
    out = bytearray()
    while piece := decoder.read():
        out += piece
    return bytes(out), decoder


def doc_body(signatures: tuple[str, ...], trailer_lines: bytes = b"") -> bytes:
    """The exact body of the AWS examples, written out from the published signatures."""
    return (b"10000;chunk-signature=%s\r\n" % signatures[0].encode() + b"a" * 65536 + b"\r\n"
            + b"400;chunk-signature=%s\r\n" % signatures[1].encode() + b"a" * 1024 + b"\r\n"
            + b"0;chunk-signature=%s\r\n" % signatures[2].encode()
            + trailer_lines + b"\r\n")


# -- the published AWS examples -------------------------------------------------------

def test_aws_example_signed_chunks() -> None:
    body = doc_body(DOC_CHUNK_SIGNATURES)
    assert len(body) == 66824  # the Content-Length of the documented request
    data, decoder = decode(body, SIGNED, signing=doc_signing(), decoded_length=66560)
    assert data == b"a" * 66560 and decoder.decoded == 66560


def test_aws_example_signed_trailer() -> None:
    body = doc_body(DOC_TRAILER_CHUNK_SIGNATURES,
                    f"{DOC_TRAILER}\r\nx-amz-trailer-signature:{DOC_TRAILER_SIGNATURE}\r\n".encode())
    data, decoder = decode(body, SIGNED_TRAILER, signing=doc_signing(DOC_TRAILER_SEED),
                           decoded_length=66560, trailer="crc32c")
    assert data == b"a" * 66560
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert decoder.checksum == checksums.ChecksumClaim("crc32c", bytes.fromhex("b0e3bcfd"))


def test_encoder_reproduces_aws_examples() -> None:
    chunks = [b"a" * 65536, b"a" * 1024]
    assert encode(chunks, SIGNED, doc_signing()) == doc_body(DOC_CHUNK_SIGNATURES)
    assert encode(chunks, SIGNED_TRAILER, doc_signing(DOC_TRAILER_SEED), trailer="crc32c") == \
        doc_body(DOC_TRAILER_CHUNK_SIGNATURES,
                 f"{DOC_TRAILER}\r\nx-amz-trailer-signature:{DOC_TRAILER_SIGNATURE}\r\n".encode())


def test_botocore_unsigned_trailer_body() -> None:
    # Exactly what botocore's AwsChunkedWrapper sends for b"hello world" over HTTPS.
    body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    data, decoder = decode(body, UNSIGNED_TRAILER, decoded_length=11, trailer="crc32")
    assert data == b"hello world"
    assert decoder.checksum is not None and decoder.checksum.value == "DUoRhQ=="


# -- round trips ----------------------------------------------------------------------

MODES = [
    pytest.param(SIGNED, None, id="signed"),
    pytest.param(SIGNED_TRAILER, "crc32", id="signed-trailer"),
    pytest.param(UNSIGNED_TRAILER, "crc32c", id="unsigned-trailer"),
    pytest.param(SIGNED_TRAILER, None, id="signed-trailer-without-checksum"),
    pytest.param(UNSIGNED_TRAILER, None, id="unsigned-trailer-without-checksum"),
]


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from([(SIGNED, None), (SIGNED_TRAILER, "sha256"),
                             (UNSIGNED_TRAILER, "crc32"), (UNSIGNED_TRAILER, "sha1")]),
       chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=6),
       max_piece=st.integers(1, 400), io_size=st.integers(1, 600))
def test_roundtrip_any_boundaries(mode: tuple[str, str | None], chunks: list[bytes],
                                  max_piece: int, io_size: int) -> None:
    payload, trailer = mode
    signing = doc_signing() if payload != UNSIGNED_TRAILER else None
    body = encode(chunks, payload, signing, trailer)
    expected = b"".join(chunks)
    data, decoder = decode(body, payload, signing=signing, decoded_length=len(expected),
                           trailer=trailer, io_size=io_size, max_piece=max_piece)
    assert data == expected
    if trailer:
        assert decoder.checksum is not None
        assert decoder.checksum.value == checksum_b64(trailer, expected)


@pytest.mark.parametrize(("payload", "trailer"), MODES)
def test_empty_body(payload: str, trailer: str | None) -> None:
    signing = doc_signing() if payload != UNSIGNED_TRAILER else None
    data, _ = decode(encode([], payload, signing, trailer), payload, signing=signing,
                     decoded_length=0, trailer=trailer)
    assert data == b""


def test_read_after_end_stays_empty() -> None:
    decoder = AwsChunkedDecoder(reader(encode([b"x"], UNSIGNED_TRAILER)), UNSIGNED_TRAILER,
                                decoded_length=1)
    assert decoder.read() == b"x"
    assert decoder.read() == b"" and decoder.read() == b""


# -- tampering: every signature and the checksum are checked --------------------------

def _flip(body: bytes, marker: bytes, offset: int = 0) -> bytes:
    """Change one character at ``offset`` after ``marker`` (digit/letter stays valid)."""
    at = body.index(marker) + len(marker) + offset
    old = body[at:at + 1]
    if old.isalpha():
        new = b"c" if old.lower() != b"c" else b"d"
        new = new if old.islower() else new.upper()
    else:
        new = b"1" if old != b"1" else b"2"
    return body[:at] + new + body[at + 1:]


CHUNKS = [b"first chunk " * 100, b"second " * 50, b"third"]


@pytest.mark.parametrize(("payload", "trailer", "tamper", "error"), [
    pytest.param(SIGNED, None, lambda b: _flip(b, b"first chunk first"), errors.SignatureDoesNotMatch,
                 id="signed-data-byte"),
    pytest.param(SIGNED, None, lambda b: _flip(b, b"chunk-signature=", 5),
                 errors.SignatureDoesNotMatch, id="signed-first-chunk-signature"),
    pytest.param(SIGNED, None, lambda b: _flip(b, b"0;chunk-signature=", 63),
                 errors.SignatureDoesNotMatch, id="signed-final-chunk-signature"),
    pytest.param(SIGNED_TRAILER, "crc32", lambda b: _flip(b, b"thi"),
                 errors.SignatureDoesNotMatch, id="signed-trailer-data-in-last-chunk"),
    pytest.param(SIGNED_TRAILER, "crc32", lambda b: _flip(b, b"x-amz-trailer-signature:", 10),
                 errors.SignatureDoesNotMatch, id="signed-trailer-signature"),
    pytest.param(SIGNED_TRAILER, "crc32", lambda b: _flip(b, b"x-amz-checksum-crc32:", 1),
                 errors.SignatureDoesNotMatch, id="signed-trailer-checksum-value"),
    pytest.param(UNSIGNED_TRAILER, "crc32", lambda b: _flip(b, b"second second"),
                 errors.BadDigest, id="unsigned-data-byte"),
    pytest.param(UNSIGNED_TRAILER, "crc32", lambda b: _flip(b, b"x-amz-checksum-crc32:", 1),
                 errors.BadDigest, id="unsigned-trailer-checksum-value"),
    pytest.param(SIGNED_TRAILER, "crc32",
                 lambda b: b.replace(b"x-amz-trailer-signature:", b"x-amz-trailer-signaturf:"),
                 errors.InvalidRequest, id="signed-trailer-signature-renamed"),
])
def test_tampering_is_detected(payload: str, trailer: str | None,
                               tamper: Callable[[bytes], bytes],
                               error: type[errors.S3Error]) -> None:
    signing = doc_signing() if payload != UNSIGNED_TRAILER else None
    body = encode(CHUNKS, payload, signing, trailer)
    bad = tamper(body)
    assert bad != body and len(bad) == len(body)
    with pytest.raises(error):
        decode(bad, payload, signing=signing, decoded_length=len(b"".join(CHUNKS)),
               trailer=trailer)


def _chunk_frames(body: bytes) -> list[bytes]:
    frames, rest = [], body
    while not rest.startswith(b"0;"):
        header, _, rest = rest.partition(b"\r\n")
        size = int(header.split(b";")[0], 16)
        frames.append(header + b"\r\n" + rest[:size + 2])
        rest = rest[size + 2:]
    return frames + [rest]


@pytest.mark.parametrize("reorder", [
    pytest.param(lambda f: [f[1], f[0], *f[2:]], id="swap-first-two"),
    pytest.param(lambda f: [f[0], f[0], *f[2:]], id="replay-first-for-second"),
    pytest.param(lambda f: [f[0], *f[2:]], id="drop-second"),
])
def test_reordered_dropped_or_replayed_chunks(
        reorder: Callable[[list[bytes]], list[bytes]]) -> None:
    chunks = [b"A" * 100, b"B" * 100, b"C" * 100]
    frames = _chunk_frames(encode(chunks, SIGNED, doc_signing()))
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(b"".join(reorder(frames)), SIGNED, signing=doc_signing())


def test_wrong_seed_signature() -> None:
    body = encode(CHUNKS, SIGNED, doc_signing())
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(body, SIGNED, signing=doc_signing(DOC_TRAILER_SEED))


def test_data_is_streamed_before_its_signature_but_never_the_end() -> None:
    """A bad chunk signature surfaces before read() could ever report a clean end."""
    body = _flip(encode([b"x" * 100], SIGNED, doc_signing()), b"chunk-signature=", 3)
    decoder = AwsChunkedDecoder(reader(body), SIGNED, signing=doc_signing(), decoded_length=100)
    assert decoder.read() == b"x" * 100
    with pytest.raises(errors.SignatureDoesNotMatch):
        decoder.read()
    with pytest.raises(errors.SignatureDoesNotMatch):  # the error is sticky
        decoder.read()


# -- hostile and malformed framing ----------------------------------------------------

GOOD_SIGNATURE = "0" * 64


@pytest.mark.parametrize(("body", "payload", "decoded_length", "error"), [
    pytest.param(b"", UNSIGNED_TRAILER, 0, errors.IncompleteBody, id="empty-input"),
    pytest.param(b"5\r\nhel", UNSIGNED_TRAILER, 5, errors.IncompleteBody, id="truncated-data"),
    pytest.param(b"5\r\nhello", UNSIGNED_TRAILER, 5, errors.IncompleteBody,
                 id="truncated-before-crlf"),
    pytest.param(b"5\r\nhello\r\n", UNSIGNED_TRAILER, 5, errors.IncompleteBody,
                 id="no-final-chunk"),
    pytest.param(b"5\r\nhello\r\n0\r\n", UNSIGNED_TRAILER, 5, errors.IncompleteBody,
                 id="no-final-crlf"),
    pytest.param(b"5", UNSIGNED_TRAILER, 5, errors.IncompleteBody, id="truncated-header"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest,
                 id="missing-crlf-after-data"),
    pytest.param(b"5\nhello\r\n0\r\n\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest,
                 id="bare-lf-header"),
    pytest.param(b"zz\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest, id="not-hex"),
    pytest.param(b"-5\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest, id="negative"),
    pytest.param(b"\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest, id="empty-size"),
    pytest.param(b"1" * 17 + b"\r\n", UNSIGNED_TRAILER, None, errors.InvalidRequest,
                 id="seventeen-hex-digits"),
    pytest.param(b"ffffffffffffffff\r\n", UNSIGNED_TRAILER, None, errors.InvalidRequest,
                 id="huge-chunk"),
    pytest.param(b"140000001\r\n", UNSIGNED_TRAILER, None, errors.InvalidRequest,
                 id="over-5gib-chunk"),
    pytest.param(b"6\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest,
                 id="chunk-beyond-decoded-length"),
    pytest.param(b"5\r\nhello\r\n0\r\n\r\n", UNSIGNED_TRAILER, 6, errors.IncompleteBody,
                 id="shorter-than-decoded-length"),
    pytest.param(b"5\r\nhello\r\n0\r\n\r\nextra", UNSIGNED_TRAILER, 5, errors.InvalidRequest,
                 id="data-after-the-end"),
    pytest.param(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n", UNSIGNED_TRAILER,
                 5, errors.InvalidRequest, id="undeclared-trailer"),
    pytest.param(b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n", UNSIGNED_TRAILER, 5,
                 errors.InvalidRequest, id="trailer-without-colon"),
    pytest.param(b"5\r\nhello\r\n0\r\n" + b"x-amz-meta-a:b\r\n" * 9 + b"\r\n", UNSIGNED_TRAILER,
                 5, errors.InvalidRequest, id="too-many-trailers"),
    pytest.param(b"5\r\nhello\r\n0\r\nx-amz-trailer-signature:" + GOOD_SIGNATURE.encode()
                 + b"\r\n\r\n", UNSIGNED_TRAILER, 5, errors.InvalidRequest,
                 id="trailer-signature-in-unsigned-mode"),
    pytest.param(b"5;chunk-signature=" + GOOD_SIGNATURE.encode() + b"\r\nhello\r\n", SIGNED, 5,
                 errors.SignatureDoesNotMatch, id="signed-wrong-signature"),
    pytest.param(b"5\r\nhello\r\n", SIGNED, 5, errors.InvalidRequest,
                 id="signed-missing-chunk-signature"),
    pytest.param(b"5;chunk-signature=ABC\r\nhello\r\n", SIGNED, 5, errors.InvalidRequest,
                 id="signed-short-signature"),
    pytest.param(b"0;chunk-signature=" + GOOD_SIGNATURE.encode() + b"\r\nx-amz-meta-a:b\r\n\r\n",
                 SIGNED, 0, errors.SignatureDoesNotMatch, id="signed-final-chunk-checked-first"),
])
def test_malformed_framing(body: bytes, payload: str, decoded_length: int | None,
                           error: type[errors.S3Error]) -> None:
    signing = doc_signing() if payload != UNSIGNED_TRAILER else None
    with pytest.raises(error):
        decode(body, payload, signing=signing, decoded_length=decoded_length)


def test_trailers_after_final_chunk_in_signed_mode() -> None:
    body = encode([b"hello"], SIGNED, doc_signing())[:-2] + b"x-amz-meta-a:b\r\n\r\n"
    with pytest.raises(errors.InvalidRequest):
        decode(body, SIGNED, signing=doc_signing(), decoded_length=5)


def test_announced_trailer_missing() -> None:
    body = encode([b"hello"], UNSIGNED_TRAILER)
    with pytest.raises(errors.InvalidRequest, match="x-amz-checksum-crc32"):
        decode(body, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32")


def test_trailer_announced_for_a_payload_without_one() -> None:
    with pytest.raises(errors.InvalidRequest):
        AwsChunkedDecoder(reader(b""), SIGNED, signing=doc_signing(), trailer="crc32")


def test_wrong_trailer_name() -> None:
    body = encode([b"hello"], UNSIGNED_TRAILER,
                  trailers=[("x-amz-checksum-sha1", checksum_b64("sha1", b"hello"))])
    with pytest.raises(errors.InvalidRequest, match="not announced"):
        decode(body, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32")


def test_malformed_trailer_checksum_value() -> None:
    body = encode([b"hello"], UNSIGNED_TRAILER, trailers=[("x-amz-checksum-crc32", "AA")])
    with pytest.raises(errors.InvalidRequest, match="invalid"):
        decode(body, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32")


# -- forms real clients send ----------------------------------------------------------

def test_trailer_lines_with_bare_lf_and_spaces() -> None:
    value = checksum_b64("crc32", b"hello")
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32 : %s \n\r\n" % value.encode()
    data, decoder = decode(body, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32")
    assert data == b"hello" and decoder.checksum is not None


def test_minio_go_unsigned_trailer() -> None:
    """minio-go ends its trailer line in a bare LF, then two CRLFs; AWS accepts it."""
    value = checksum_b64("crc32c", b"hello")
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32c:%s\n\r\n\r\n" % value.encode()
    data, decoder = decode(body, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32c")
    assert data == b"hello" and decoder.checksum is not None
    assert decoder.checksum.value == value
    # One extra blank line, and nothing else: anything more is data after the end.
    for extra in (b"\r\n", b"x-amz-meta-a:b\r\n\r\n", b"junk"):
        with pytest.raises(errors.InvalidRequest):
            decode(body + extra, UNSIGNED_TRAILER, decoded_length=5, trailer="crc32c")


def test_signed_trailer_blank_line_before_signature_and_no_final_crlf() -> None:
    # Forms some SDKs send: "name:value\n\r\n" before the signature; no closing blank line.
    body = encode([b"hello"], SIGNED_TRAILER, doc_signing(), trailer="crc32")
    variant = body.replace(b"\r\nx-amz-trailer-signature:", b"\n\r\nx-amz-trailer-signature:")
    variant = variant[:-2]
    data, _ = decode(variant, SIGNED_TRAILER, signing=doc_signing(), decoded_length=5,
                     trailer="crc32")
    assert data == b"hello"


def test_unsigned_chunk_extensions_are_ignored() -> None:
    body = b"5;ext=1\r\nhello\r\n0\r\n\r\n"
    assert decode(body, UNSIGNED_TRAILER, decoded_length=5)[0] == b"hello"


def test_uppercase_hex_sizes() -> None:
    data = b"z" * 0xAB
    body = b"AB\r\n" + data + b"\r\n0\r\n\r\n"
    assert decode(body, UNSIGNED_TRAILER, decoded_length=0xAB)[0] == data


# -- bounded memory -------------------------------------------------------------------

def counting_reader(source: Iterator[bytes]) -> tuple[Callable[[int], bytes], list[int]]:
    """``read(n)`` over an endless generator; records how many bytes were consumed."""
    consumed = [0]
    pending = bytearray()

    def read(size: int) -> bytes:
        while len(pending) < size:
            try:
                pending.extend(next(source))
            except StopIteration:
                break
        piece = bytes(pending[:size])
        del pending[:size]
        consumed[0] += len(piece)
        return piece
    return read, consumed


def endless(pattern: bytes) -> Iterator[bytes]:
    while True:
        yield pattern * 4096


@pytest.mark.parametrize("pattern", [
    pytest.param(b"f", id="endless-hex-digits"),
    pytest.param(b"5;chunk-signature=", id="endless-header"),
])
def test_endless_header_line_is_refused_early(pattern: bytes) -> None:
    read, consumed = counting_reader(endless(pattern))
    decoder = AwsChunkedDecoder(read, UNSIGNED_TRAILER, io_size=4096)
    with pytest.raises(errors.InvalidRequest):
        decoder.read()
    assert consumed[0] <= 2 * 4096


def test_endless_trailer_line_is_refused_early() -> None:
    def source() -> Iterator[bytes]:
        yield b"0\r\nx-amz-checksum-crc32:"
        yield from endless(b"A")
    read, consumed = counting_reader(source())
    decoder = AwsChunkedDecoder(read, UNSIGNED_TRAILER, trailer="crc32", io_size=4096)
    with pytest.raises(errors.InvalidRequest):
        decoder.read()
    assert consumed[0] <= 3 * 4096


def test_memory_is_bounded_for_a_huge_chunk() -> None:
    """One 48 MiB chunk streams through in io_size pieces; memory stays near io_size."""
    size = 48 * 1024 * 1024
    io_size = 256 * 1024

    def source() -> Iterator[bytes]:
        yield b"%x\r\n" % size
        block = b"q" * 65536
        for _ in range(size // len(block)):
            yield block
        yield b"\r\n0\r\n\r\n"
    read, _ = counting_reader(source())
    decoder = AwsChunkedDecoder(read, UNSIGNED_TRAILER, decoded_length=size, io_size=io_size)
    total = 0
    tracemalloc.start()
    try:
        while piece := decoder.read():
            assert len(piece) <= io_size
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 8 * io_size
