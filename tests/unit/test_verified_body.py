"""encproxy.wsgi.auth.body.VerifiedBody, and the AuthenticationMiddleware that installs it.

The property that matters most: a consumer streaming a bad body never gets
its final bytes -- the read that would deliver them raises instead.

The middleware is driven through werkzeug's test Client with a tiny inner
app that echoes what it read (a harness around the thing under test), and
with requests produced by boto3 itself (captured before they hit the
network), so that what is verified is what real clients send.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client
from werkzeug.wrappers import Response

from encproxy import checksums, errors, sigv4
from encproxy.wsgi import environ as env
from encproxy.wsgi.auth.middleware import AuthenticationMiddleware, strip_aws_chunked
from encproxy.wsgi.auth.body import BodySpec, VerifiedBody, verify_empty_body
from encproxy.wsgi.responses import s3_error_boundary
from test_awschunked import (DOC_CHUNK_SIGNATURES, DOC_SECRET, DOC_TRAILER,
                             DOC_TRAILER_CHUNK_SIGNATURES, DOC_TRAILER_SIGNATURE, SIGNED,
                             SIGNED_TRAILER, UNSIGNED_TRAILER, checksum_b64, doc_body,
                             doc_signing, encode)

MiB = 1024 * 1024


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def reader(data: bytes, max_piece: int | None = None,
           log: list[int] | None = None) -> Callable[[int], bytes]:
    stream = io.BytesIO(data)

    def read(size: int) -> bytes:
        if log is not None:
            log.append(size)
        return stream.read(size if max_piece is None else min(size, max_piece))
    return read


def identity_spec(data: bytes, *, sha256: bool = True, md5: bool = False,
                  checksum: str | None = None, length: int | None = -1) -> BodySpec:
    claim = None
    if checksum:
        claim = checksums.ChecksumClaim(checksum, bytes.fromhex(
            _hex_digest(checksum, data)))
    return BodySpec(
        content_length=len(data) if length == -1 else length,
        payload_hash=hashlib.sha256(data).hexdigest() if sha256 else sigv4.UNSIGNED_PAYLOAD,
        decoded_length=len(data) if length == -1 else length,
        content_md5=hashlib.md5(data).digest() if md5 else None,
        checksum=claim)


def _hex_digest(algorithm: str, data: bytes) -> str:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return hasher.digest().hex()


def drain(body: VerifiedBody, size: int) -> tuple[bytes, errors.S3Error | None]:
    """Read until EOF or error; return what was delivered and the error, if any."""
    out = bytearray()
    try:
        while piece := body.read(size):
            out += piece
    except errors.S3Error as err:
        return bytes(out), err
    return bytes(out), None


# -- good bodies ----------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=3000), read_size=st.integers(1, 5000),
       io_size=st.integers(1, 4000), max_piece=st.integers(1, 5000),
       md5=st.booleans(), sha256=st.booleans(),
       checksum=st.sampled_from([None, *checksums.ALGORITHMS]))
def test_identity_roundtrip(data: bytes, read_size: int, io_size: int, max_piece: int,
                            md5: bool, sha256: bool, checksum: str | None) -> None:
    verified: list[dict[str, str]] = []
    body = VerifiedBody(reader(data, max_piece),
                        identity_spec(data, sha256=sha256, md5=md5, checksum=checksum),
                        io_size=io_size, on_verified=verified.append)
    out, err = drain(body, read_size)
    assert err is None and out == data
    assert body.verified and body.read(10) == b""
    expected = {checksum: checksum_b64(checksum, data)} if checksum else {}
    assert body.checksums == expected and verified == [expected]


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(st.binary(min_size=1, max_size=400), max_size=5),
       mode=st.sampled_from([(SIGNED, None), (SIGNED_TRAILER, "crc32c"),
                             (UNSIGNED_TRAILER, "sha256")]),
       read_size=st.integers(1, 3000), io_size=st.integers(1, 3000))
def test_aws_chunked_roundtrip(chunks: list[bytes], mode: tuple[str, str | None],
                               read_size: int, io_size: int) -> None:
    payload, trailer = mode
    signing = doc_signing() if payload != UNSIGNED_TRAILER else None
    raw = encode(chunks, payload, signing, trailer)
    data = b"".join(chunks)
    spec = BodySpec(content_length=len(raw), payload_hash=payload, decoded_length=len(data),
                    trailer=trailer)
    body = VerifiedBody(reader(raw), spec, signing=signing, io_size=io_size)
    out, err = drain(body, read_size)
    assert err is None and out == data
    assert body.checksums == ({trailer: checksum_b64(trailer, data)} if trailer else {})


def test_read_all_readinto_and_extra_digests() -> None:
    data = b"0123456789" * 1000
    body = VerifiedBody(reader(data), identity_spec(data), extra_digests=("md5",))
    assert body.read(0) == b""
    buffer = bytearray(7)
    assert body.readinto(buffer) == 7 and bytes(buffer) == data[:7]
    assert body.read() == data[7:]
    assert body.digests["md5"] == hashlib.md5(data).digest()
    assert body.digests["sha256"] == hashlib.sha256(data).digest()
    assert body.readable() and body.length == len(data)


def test_large_reads_are_capped_not_buffered_without_bound() -> None:
    data = b"x" * (3 * MiB)
    body = VerifiedBody(reader(data), identity_spec(data), max_read=MiB)
    assert len(body.read(10 * MiB)) == MiB


# -- THE property: no final bytes of a bad body ---------------------------------------

def _corrupt_identity(kind: str, data: bytes) -> tuple[bytes, BodySpec]:
    spec = identity_spec(data, md5=kind == "md5", sha256=kind == "sha256",
                         checksum="crc32" if kind == "checksum" else None)
    # A flipped bit, never a fixed byte: the data may hold that byte already (at size
    # 578 the middle byte of ``range(256)`` repeated is "!", and nothing was corrupted).
    middle = len(data) // 2
    bad = data[:-1] + bytes([data[-1] ^ 1]) if kind != "middle" else \
        data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]
    if kind == "middle":
        spec = identity_spec(data)
    return bad, spec


def _corrupt_chunked(kind: str, data: bytes) -> tuple[bytes, BodySpec, Any]:
    chunks = [data[i:i + 700] for i in range(0, len(data), 700)]
    if kind == "chunk-signature":
        raw = encode(chunks, SIGNED, doc_signing())
        at = raw.rindex(b"chunk-signature=", 0, raw.rindex(b"0;chunk")) + 20
        raw = raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:]
        return raw, BodySpec(len(raw), SIGNED, len(data)), doc_signing()
    if kind == "trailer-signature":
        raw = encode(chunks, SIGNED_TRAILER, doc_signing(), "crc32")
        at = raw.index(b"x-amz-trailer-signature:") + 30
        raw = raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:]
        return raw, BodySpec(len(raw), SIGNED_TRAILER, len(data), trailer="crc32"), doc_signing()
    if kind == "trailer-checksum":
        wrong = checksum_b64("crc32", data + b"!")
        raw = encode(chunks, UNSIGNED_TRAILER, trailers=[("x-amz-checksum-crc32", wrong)])
        return raw, BodySpec(len(raw), UNSIGNED_TRAILER, len(data), trailer="crc32"), None
    if kind == "chunked-md5":
        raw = encode(chunks, UNSIGNED_TRAILER)
        return raw, BodySpec(len(raw), UNSIGNED_TRAILER, len(data),
                             content_md5=hashlib.md5(data + b"!").digest()), None
    if kind == "truncated-final-chunk":
        raw = encode(chunks, UNSIGNED_TRAILER)[:-3]
        return raw, BodySpec(len(raw), UNSIGNED_TRAILER, len(data)), None
    raise AssertionError(kind)


EXPECTED_ERROR = {
    "sha256": errors.XAmzContentSHA256Mismatch, "md5": errors.BadDigest,
    "checksum": errors.BadDigest, "middle": errors.XAmzContentSHA256Mismatch,
    "chunk-signature": errors.SignatureDoesNotMatch,
    "trailer-signature": errors.SignatureDoesNotMatch, "trailer-checksum": errors.BadDigest,
    "chunked-md5": errors.BadDigest, "truncated-final-chunk": errors.IncompleteBody,
}


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(EXPECTED_ERROR)), size=st.integers(2, 5000),
       read_size=st.integers(1, 6000), io_size=st.integers(1, 6000),
       max_piece=st.integers(1, 6000))
def test_bad_body_never_delivers_its_final_bytes(kind: str, size: int, read_size: int,
                                                 io_size: int, max_piece: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    signing = None
    if kind in ("sha256", "md5", "checksum", "middle"):
        raw, spec = _corrupt_identity(kind, data)
        delivered_ref = raw
    else:
        raw, spec, signing = _corrupt_chunked(kind, data)
        delivered_ref = data
    body = VerifiedBody(reader(raw, max_piece), spec, signing=signing, io_size=io_size)
    out, err = drain(body, read_size)
    assert isinstance(err, EXPECTED_ERROR[kind])
    assert len(out) < len(delivered_ref), "the complete body was delivered"
    assert delivered_ref.startswith(out) or kind == "middle"
    with pytest.raises(EXPECTED_ERROR[kind]):  # and the error is sticky
        body.read(1)


@pytest.mark.parametrize("read_size", [7, 1000, MiB, 4 * MiB, -1])
def test_bad_last_byte_of_a_large_body(read_size: int) -> None:
    """Explicitly: a multi-MiB body whose very last byte is wrong."""
    data = b"z" * (3 * MiB + 5)
    bad = data[:-1] + b"Z"
    body = VerifiedBody(reader(bad), identity_spec(data, checksum="crc32c", sha256=False))
    out, err = drain(body, read_size) if read_size > 0 else (b"", None)
    if read_size < 0:
        with pytest.raises(errors.BadDigest):
            body.read(-1)
    else:
        assert isinstance(err, errors.BadDigest)
        assert len(out) < len(data)


def test_input_ending_before_content_length_is_incomplete_body() -> None:
    data = b"abc" * 1000
    spec = identity_spec(data)
    body = VerifiedBody(reader(data[:-10]), spec, io_size=512)
    out, err = drain(body, 100)
    assert isinstance(err, errors.IncompleteBody) and len(out) < len(data)


@pytest.mark.parametrize(("failure", "error"), [
    pytest.param(TimeoutError("timed out"), errors.RequestTimeout, id="stalled-client"),
    pytest.param(ConnectionResetError(), errors.IncompleteBody, id="connection-reset"),
    pytest.param(OSError("server framing error"), errors.IncompleteBody, id="io-error"),
])
def test_connection_failures_become_s3_errors(failure: OSError,
                                              error: type[errors.S3Error]) -> None:
    data = b"d" * 5000
    source = io.BytesIO(data[:3000])

    def read(size: int) -> bytes:
        piece = source.read(min(size, 1000))
        if not piece:
            raise failure
        return piece
    out, err = drain(VerifiedBody(read, identity_spec(data), io_size=1000), 500)
    assert isinstance(err, error) and len(out) < len(data)


def test_unknown_length_body_reads_to_end_of_input() -> None:
    data = b"q" * 5000
    spec = BodySpec(content_length=None, payload_hash=hashlib.sha256(data).hexdigest(),
                    decoded_length=None)
    out, err = drain(VerifiedBody(reader(data, 333), spec, io_size=1000), 700)
    assert err is None and out == data


# -- I/O shape: large raw reads, constant memory --------------------------------------

def test_raw_input_is_read_in_large_pieces() -> None:
    data = b"r" * (3 * MiB + 12345)
    log: list[int] = []
    body = VerifiedBody(reader(data, log=log), identity_spec(data))
    out, err = drain(body, 64 * 1024)
    assert err is None and out == data
    remaining = len(data)
    for size in log:
        assert size == min(MiB, remaining)
        remaining -= size
    assert remaining == 0 and len(log) == 4


def test_memory_stays_bounded_while_streaming() -> None:
    size = 40 * MiB
    block = b"m" * MiB

    def read(n: int, _state: list[int] = [0]) -> bytes:
        if _state[0] >= size:
            return b""
        _state[0] += n
        return block[:n]
    spec = BodySpec(content_length=size, payload_hash=sigv4.UNSIGNED_PAYLOAD,
                    decoded_length=size,
                    checksum=checksums.ChecksumClaim("crc32", zlib.crc32(b"m" * size)
                                                     .to_bytes(4, "big")))
    body = VerifiedBody(read, spec)
    total = 0
    tracemalloc.start()
    try:
        while piece := body.read(256 * 1024):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 4 * MiB


# -- BodySpec: what the headers promise -----------------------------------------------

def test_spec_for_plain_and_chunked_bodies() -> None:
    spec = BodySpec.from_headers({"content-length": "11"}, sigv4.UNSIGNED_PAYLOAD)
    assert (spec.content_length, spec.decoded_length, spec.aws_chunked) == (11, 11, False)
    spec = BodySpec.from_headers(
        {"x-amz-decoded-content-length": "11", "content-encoding": "aws-chunked",
         "x-amz-trailer": "x-amz-checksum-crc32"},
        UNSIGNED_TRAILER, chunked_transfer=True)
    assert (spec.content_length, spec.decoded_length, spec.trailer) == (None, 11, "crc32")
    assert spec.aws_chunked and spec.has_body
    assert not BodySpec.from_headers({}, sigv4.EMPTY_SHA256, method="GET").has_body
    post = BodySpec.from_headers({}, sigv4.UNSIGNED_PAYLOAD, method="POST",
                                 chunked_transfer=True)
    assert post.content_length is None and post.has_body


@pytest.mark.parametrize(("headers", "payload", "method", "chunked", "error"), [
    pytest.param({"content-encoding": "aws-chunked"}, SIGNED, "PUT", True,
                 errors.MissingContentLength, id="aws-chunked-without-decoded-length"),
    pytest.param({}, sigv4.UNSIGNED_PAYLOAD, "PUT", True, errors.NotImplementedError_,
                 id="put-chunked-without-length"),
    pytest.param({"content-length": "abc"}, sigv4.UNSIGNED_PAYLOAD, "PUT", False,
                 errors.InvalidArgument, id="bad-content-length"),
    pytest.param({"x-amz-decoded-content-length": "-1"}, SIGNED, "PUT", True,
                 errors.InvalidArgument, id="bad-decoded-length"),
    pytest.param({"content-length": "1", "content-md5": "nope"}, sigv4.UNSIGNED_PAYLOAD, "PUT",
                 False, errors.InvalidDigest, id="bad-content-md5"),
    pytest.param({"content-length": "1", "x-amz-checksum-crc32": "AAAAAA==",
                  "x-amz-checksum-crc32c": "AAAAAA=="}, sigv4.UNSIGNED_PAYLOAD, "PUT", False,
                 errors.InvalidRequest, id="two-checksum-headers"),
    pytest.param({"content-length": "1", "x-amz-checksum-sha1": "AAAAAA=="},
                 sigv4.UNSIGNED_PAYLOAD, "PUT", False, errors.InvalidRequest,
                 id="bad-checksum-value"),
    pytest.param({"content-length": "1", "x-amz-checksum-xxhash3": "AAAAAAAAAAA="},
                 sigv4.UNSIGNED_PAYLOAD, "PUT", False, errors.NotImplementedError_,
                 id="xxhash3"),
    pytest.param({"x-amz-decoded-content-length": "1", "x-amz-trailer": "x-amz-checksum-crc32",
                  "x-amz-checksum-crc32": "AAAAAA=="}, UNSIGNED_TRAILER, "PUT", True,
                 errors.InvalidRequest, id="trailer-and-checksum-header"),
    pytest.param({"content-length": "1", "x-amz-trailer": "x-amz-checksum-crc32"},
                 sigv4.UNSIGNED_PAYLOAD, "PUT", False, errors.InvalidRequest,
                 id="trailer-without-streaming-payload"),
    pytest.param({"x-amz-decoded-content-length": "1", "x-amz-trailer": "x-amz-meta-a"},
                 UNSIGNED_TRAILER, "PUT", True, errors.InvalidRequest, id="trailer-not-checksum"),
    pytest.param({"content-length": "5", "content-encoding": "aws-chunked"},
                 sigv4.UNSIGNED_PAYLOAD, "PUT", False, errors.InvalidArgument,
                 id="aws-chunked-coding-with-unsigned-payload"),
])
def test_spec_errors(headers: dict[str, str], payload: str, method: str, chunked: bool,
                     error: type[errors.S3Error]) -> None:
    with pytest.raises(error):
        BodySpec.from_headers(headers, payload, method=method, chunked_transfer=chunked)


def test_empty_body_claims() -> None:
    good = BodySpec.from_headers(
        {"content-md5": b64(hashlib.md5(b"").digest()), "x-amz-checksum-crc32": "AAAAAA=="},
        sigv4.EMPTY_SHA256)
    assert verify_empty_body(good) == {"crc32": "AAAAAA=="}
    with pytest.raises(errors.XAmzContentSHA256Mismatch):
        verify_empty_body(BodySpec.from_headers({}, hashlib.sha256(b"x").hexdigest()))
    with pytest.raises(errors.BadDigest):
        verify_empty_body(BodySpec.from_headers({"x-amz-checksum-crc32": "AAAAAQ=="},
                                                sigv4.UNSIGNED_PAYLOAD))


@pytest.mark.parametrize(("before", "after"), [
    pytest.param("aws-chunked", None, id="only"),
    pytest.param("gzip,aws-chunked", "gzip", id="after-gzip"),
    pytest.param("aws-chunked, gzip", "gzip", id="before-gzip"),
    pytest.param("AWS-CHUNKED", None, id="case"),
])
def test_strip_aws_chunked(before: str, after: str | None) -> None:
    environ = {"HTTP_CONTENT_ENCODING": before}
    strip_aws_chunked(environ)
    assert environ.get("HTTP_CONTENT_ENCODING") == after


# == the middleware ===================================================================

ACCESS_KEY = "AKIDENCPROXYTEST"
SECRET = "s3cr3t/with+odd=chars"
KEYS = {ACCESS_KEY: SECRET, "AKIAIOSFODNN7EXAMPLE": DOC_SECRET}


def echo_app(read_size: int = 64 * 1024, delivered: list[bytes] | None = None) -> Any:
    """The inner app: reads wsgi.input to the end and reports what it saw."""
    def handler(environ: dict[str, Any]) -> Response:
        stream = environ["wsgi.input"]
        data = bytearray()
        while True:
            piece = stream.read(read_size)
            if not piece:
                break
            data += piece
            if delivered is not None:
                delivered.append(piece)
        seen = {
            "body": data.decode("latin-1"),
            "access_key": environ.get(env.ACCESS_KEY),
            "checksums": environ.get(env.BODY_CHECKSUMS),
            "content_length": environ.get("CONTENT_LENGTH"),
            "content_encoding": environ.get("HTTP_CONTENT_ENCODING"),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
            "verified_body": isinstance(stream, VerifiedBody),
        }
        return Response(json.dumps(seen), content_type="application/json",
                        headers={"X-Seen-Access-Key": str(seen["access_key"])})
    return s3_error_boundary(handler)


def middleware(app: Any = None, region: str | None = "us-east-1",
               now: datetime | None = None) -> AuthenticationMiddleware:
    """The middleware under test; the real clock unless ``now`` freezes it.

    boto3 signs with whichever signer is installed (botocore's, or awscrt's when
    present, which reads its own clock), so boto3-driven tests use real time.
    """
    return AuthenticationMiddleware(app or echo_app(), KEYS.get, region=region,
                                    clock=(lambda: now) if now else _utc_now)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def error_code(response: Any) -> str:
    text = response.get_data(as_text=True)
    return text.split("<Code>")[1].split("</Code>")[0]


class _Raw:
    def __init__(self) -> None:
        self._done = False

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""

    def read(self, *_: Any, **__: Any) -> bytes:
        return b""


def boto_client(endpoint: str, **config: Any) -> tuple[Any, list[AWSPreparedRequest]]:
    """A real boto3 S3 client whose requests are captured instead of sent."""
    captured: list[AWSPreparedRequest] = []

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0},
                      **config))
    client.meta.events.register("before-send.s3", before_send)
    return client, captured


def replay(client: Client, request: AWSPreparedRequest, *,
           body: bytes | None = None) -> Any:
    """Send a captured boto3 request through the middleware, target and bytes as boto3 sent them."""
    url = urlsplit(request.url)
    headers = {name: (value.decode() if isinstance(value, bytes) else value)
               for name, value in request.headers.items() if name.lower() != "host"}
    headers["Host"] = url.netloc  # the CRT signer sets it itself, botocore's leaves it to http
    if body is None:
        raw = request.body
        body = raw.read() if hasattr(raw, "read") else (raw or b"")
        if isinstance(body, str):
            body = body.encode()
    overrides = {env.RAW_PATH: url.path, env.RAW_QUERY: url.query}
    if "Content-Length" not in headers:
        overrides["CONTENT_LENGTH"] = ""  # HTTP chunked transfer: no length
    return client.open(url.path, method=request.method, query_string=url.query,
                       headers=headers, data=body, base_url=f"{url.scheme}://{url.netloc}",
                       environ_overrides=overrides)


ODD_KEYS = ["plain.txt", "a b/c d", "ünïcødé/ключ/鍵", "a+b=c&d", "tilde~x", "100%",
            "../up/../x", "a//b/", "./dot", "semi;colon,comma", "emoji-😀", "q?x#y"]


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "https://127.0.0.1:9"])
def test_boto3_put_object(endpoint: str, key: str) -> None:
    boto, captured = boto_client(endpoint)
    data = b"hello world " * 1000
    boto.put_object(Bucket="bucket", Key=key, Body=data, Metadata={"k": "v w"})
    response = replay(Client(middleware()), captured[-1])
    assert response.status_code == 200, response.get_data(as_text=True)
    seen = response.get_json()
    assert seen["body"].encode("latin-1") == data
    assert seen["access_key"] == ACCESS_KEY and seen["verified_body"]
    assert seen["checksums"] == {"crc32": checksum_b64("crc32", data)}
    assert seen["content_length"] == str(len(data))
    assert seen["content_encoding"] is None and seen["transfer_encoding"] is None


def test_boto3_https_aws_chunked_keeps_other_content_encodings() -> None:
    boto, captured = boto_client("https://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"\x1f\x8b zipped", ContentEncoding="gzip")
    assert captured[-1].headers["Content-Encoding"] in (b"gzip,aws-chunked", "gzip,aws-chunked")
    seen = replay(Client(middleware()), captured[-1]).get_json()
    assert seen["content_encoding"] == "gzip" and seen["body"] == "\x1f\x8b zipped"


def test_plain_signed_body_keeps_its_aws_chunked_coding() -> None:
    # Over http boto3 signs the payload hash: the body is not aws-chunked framing, so it
    # reaches the inner app as sent, with the Content-Encoding the client gave (as AWS).
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"1\r\nx\r\n0\r\n\r\n",
                    ContentEncoding="gzip, aws-chunked")
    seen = replay(Client(middleware()), captured[-1]).get_json()
    assert seen["content_encoding"] == "gzip, aws-chunked"
    assert seen["body"] == "1\r\nx\r\n0\r\n\r\n" and seen["verified_body"]


@pytest.mark.parametrize("call", [
    pytest.param(lambda c: c.list_objects_v2(Bucket="b", Prefix="", Delimiter="/"),
                 id="list-empty-prefix"),
    pytest.param(lambda c: c.list_objects_v2(Bucket="b", Prefix="a b+c/ü", StartAfter="~"),
                 id="list-odd-prefix"),
    pytest.param(lambda c: c.get_object(Bucket="b", Key="x y/ü", Range="bytes=0-9"),
                 id="get-range"),
    pytest.param(lambda c: c.get_bucket_acl(Bucket="b"), id="empty-query-value"),
    pytest.param(lambda c: c.head_object(Bucket="b", Key="k", VersionId="v+/="), id="head"),
    pytest.param(lambda c: c.delete_objects(
        Bucket="b", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]}), id="delete-objects"),
    pytest.param(lambda c: c.upload_part(Bucket="b", Key="k", PartNumber=3, UploadId="u/+=",
                                         Body=b"part data"), id="upload-part"),
    pytest.param(lambda c: c.copy_object(Bucket="b", Key="k", CopySource="src/a b%"),
                 id="copy-source-header"),
])
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "https://127.0.0.1:9"])
def test_boto3_operations(endpoint: str, call: Any) -> None:
    boto, captured = boto_client(endpoint)
    try:
        call(boto)
    except Exception:  # the fake response may not parse; the request was captured
        pass
    response = replay(Client(middleware()), captured[-1])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Seen-Access-Key"] == ACCESS_KEY


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "https://127.0.0.1:9"])
def test_boto3_presigned_get_and_put(endpoint: str) -> None:
    boto, _ = boto_client(endpoint, signature_version="s3v4")
    client = Client(middleware())
    url = urlsplit(boto.generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "a b/ü+"}, ExpiresIn=600))
    response = client.get(url.path, query_string=url.query, base_url=f"{url.scheme}://{url.netloc}",
                          environ_overrides={env.RAW_PATH: url.path, env.RAW_QUERY: url.query})
    assert response.status_code == 200, response.get_data(as_text=True)

    url = urlsplit(boto.generate_presigned_url(
        "put_object", Params={"Bucket": "b", "Key": "up"}, ExpiresIn=600))
    response = client.put(url.path, query_string=url.query, data=b"presigned body",
                          base_url=f"{url.scheme}://{url.netloc}",
                          environ_overrides={env.RAW_PATH: url.path, env.RAW_QUERY: url.query})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["body"] == "presigned body"

    later = Client(middleware(now=_utc_now() + timedelta(seconds=602)))
    response = later.put(url.path, query_string=url.query, data=b"x",
                         base_url=f"{url.scheme}://{url.netloc}",
                         environ_overrides={env.RAW_PATH: url.path, env.RAW_QUERY: url.query})
    assert response.status_code == 403 and "Request has expired" in response.get_data(as_text=True)


def test_sigv2_presigned_url_is_refused_when_sigv2_is_off() -> None:
    boto, _ = boto_client("http://127.0.0.1:9", signature_version="s3")
    url = urlsplit(boto.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}))
    assert "AWSAccessKeyId=" in url.query
    sigv4_only = AuthenticationMiddleware(echo_app(), KEYS.get, allow_sigv2=False)
    response = Client(sigv4_only).get(url.path, query_string=url.query,
                                      base_url="http://127.0.0.1:9")
    assert response.status_code == 400 and error_code(response) == "InvalidRequest"
    response = Client(middleware()).get(url.path, query_string=url.query,
                                        base_url="http://127.0.0.1:9")
    assert response.status_code == 200 and response.get_json()["access_key"] == ACCESS_KEY


def test_anonymous_request_is_access_denied() -> None:
    response = Client(middleware()).get("/bucket/key", base_url="http://127.0.0.1:9")
    assert response.status_code == 403 and error_code(response) == "AccessDenied"
    assert "<Resource>/bucket/key</Resource>" in response.get_data(as_text=True)


def test_wrong_secret_is_signature_does_not_match() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"data")
    mw = AuthenticationMiddleware(echo_app(), {ACCESS_KEY: "other"}.get)
    response = replay(Client(mw), captured[-1])
    assert response.status_code == 403 and error_code(response) == "SignatureDoesNotMatch"
    assert SECRET not in response.get_data(as_text=True)


def test_wrong_region_names_the_expected_one() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.list_buckets()
    response = replay(Client(middleware(region="eu-west-3")), captured[-1])
    assert response.status_code == 400 and error_code(response) == "AuthorizationHeaderMalformed"
    assert "<Region>eu-west-3</Region>" in response.get_data(as_text=True)
    assert replay(Client(middleware(region=None)), captured[-1]).status_code == 200


def test_skewed_clock_is_refused() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.list_buckets()
    late = middleware(now=_utc_now() + timedelta(minutes=16))
    assert error_code(replay(Client(late), captured[-1])) == "RequestTimeTooSkewed"


def test_tampered_body_fails_before_the_app_sees_its_end() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    data = b"A" * (3 * MiB)
    boto.put_object(Bucket="b", Key="k", Body=data)
    delivered: list[bytes] = []
    client = Client(middleware(echo_app(read_size=MiB, delivered=delivered)))
    response = replay(client, captured[-1], body=data[:-1] + b"B")
    assert response.status_code == 400 and error_code(response) == "XAmzContentSHA256Mismatch"
    assert sum(map(len, delivered)) < len(data)


def test_tampered_aws_chunked_trailer_is_bad_digest() -> None:
    boto, captured = boto_client("https://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"hello world")
    raw = captured[-1].body.read()
    bad = raw.replace(b"hello world", b"hello World")
    response = replay(Client(middleware()), captured[-1], body=bad)
    assert response.status_code == 400 and error_code(response) == "BadDigest"
    assert "The CRC32 you specified did not match" in response.get_data(as_text=True)


def test_truncated_input_is_incomplete_body() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"x" * 1000)
    request = captured[-1]
    url = urlsplit(request.url)
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
               if k.lower() != "host"}
    environ_input = io.BytesIO(b"x" * 600)  # the connection ends early
    response = Client(middleware()).open(
        url.path, method="PUT", headers={**headers, "Host": url.netloc},
        base_url="http://127.0.0.1:9", input_stream=environ_input,
        environ_overrides={env.RAW_PATH: url.path, env.RAW_QUERY: url.query,
                           "CONTENT_LENGTH": "1000"})
    assert response.status_code == 400 and error_code(response) == "IncompleteBody"


def test_put_with_chunked_transfer_and_no_length_is_not_implemented() -> None:
    # AWS: 501 NotImplemented naming Transfer-Encoding for a PUT body that is chunked
    # but not aws-chunked (s3-tests' test_object_write_with_chunked_transfer_encoding
    # expects RGW's 200).
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"abc")
    request = captured[-1]
    request.headers["Transfer-Encoding"] = "chunked"
    del request.headers["Content-Length"]
    response = replay(Client(middleware()), request, body=b"abc")
    assert response.status_code == 501 and error_code(response) == "NotImplemented"
    assert b"<Header>Transfer-Encoding</Header>" in response.get_data()


def test_put_without_length_or_chunked_transfer_is_still_an_empty_body() -> None:
    spec = BodySpec.from_headers({}, sigv4.EMPTY_SHA256)
    assert spec.content_length == 0 and not spec.has_body


@pytest.mark.parametrize("coding", ["aws-chunked", "gzip, aws-chunked", "aws-chunked, gzip"])
def test_aws_chunked_coding_on_a_signed_plain_body_is_data(coding: str) -> None:
    # AWS decodes only STREAMING-* bodies; a plain body with a signed hash is stored as
    # sent, "aws-chunked" kept in its Content-Encoding.
    spec = BodySpec.from_headers({"content-length": "3", "content-encoding": coding},
                                 hashlib.sha256(b"abc").hexdigest())
    assert not spec.aws_chunked and spec.decoded_length == 3


DOC_HEADERS = {
    "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY", "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
}
DOC_NOW = datetime(2013, 5, 24, 0, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("trailer", [False, True], ids=["signed", "signed-trailer"])
def test_aws_documentation_chunked_upload_end_to_end(trailer: bool) -> None:
    """The S3 documentation's chunked PUT, verbatim, through the middleware."""
    if trailer:
        body = doc_body(DOC_TRAILER_CHUNK_SIGNATURES, (
            f"{DOC_TRAILER}\r\nx-amz-trailer-signature:{DOC_TRAILER_SIGNATURE}\r\n").encode())
        headers = {**DOC_HEADERS, "x-amz-content-sha256": SIGNED_TRAILER,
                   "x-amz-trailer": "x-amz-checksum-crc32c", "Authorization": (
                       "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                       "aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;"
                       "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;"
                       "x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413"
                       "f02d3b74544bfeb8e")}
    else:
        body = doc_body(DOC_CHUNK_SIGNATURES)
        headers = {**DOC_HEADERS, "x-amz-content-sha256": SIGNED, "Authorization": (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=content-encoding;content-length;host;"
            "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
            "x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea"
            "153f7db9fa80a0a9")}
    client = Client(middleware(now=DOC_NOW))
    path = "/examplebucket/chunkObject.txt"
    response = client.put(path, headers=headers, data=body, base_url="http://s3.amazonaws.com",
                          environ_overrides={env.RAW_PATH: path, env.RAW_QUERY: ""})
    assert response.status_code == 200, response.get_data(as_text=True)
    seen = response.get_json()
    assert seen["body"] == "a" * 66560 and seen["content_length"] == "66560"
    assert seen["content_encoding"] is None
    assert seen["checksums"] == ({"crc32c": "sOO8/Q=="} if trailer else {})

    # One flipped data byte in the second chunk: the chain breaks, the end never comes.
    at = body.index(b"400;chunk-signature=") + 90
    bad = body[:at] + b"b" + body[at + 1:]
    response = client.put(path, headers=headers, data=bad, base_url="http://s3.amazonaws.com",
                          environ_overrides={env.RAW_PATH: path, env.RAW_QUERY: ""})
    assert response.status_code == 403 and error_code(response) == "SignatureDoesNotMatch"


def test_inner_response_passes_through_untouched() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.list_buckets()
    sentinel: list[bytes] = [b"streamed", b" as is"]

    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("299 Custom", [("X-Inner", "yes")])
        return sentinel

    request = captured[-1]
    url = urlsplit(request.url)
    from werkzeug.test import EnvironBuilder
    builder = EnvironBuilder(url.path, method="GET", base_url="http://127.0.0.1:9", headers={
        k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
        if k.lower() != "host"})
    environ = builder.get_environ()
    environ.update({env.RAW_PATH: url.path, env.RAW_QUERY: url.query})
    started: list[Any] = []
    result = middleware(inner)(environ, lambda status, headers, exc=None: started.append(status))
    assert result is sentinel and started == ["299 Custom"]


def test_unexpected_failure_is_a_bare_internal_error() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.list_buckets()

    def broken_lookup(access_key: str) -> str | None:
        raise RuntimeError("credential store down")
    mw = AuthenticationMiddleware(echo_app(), broken_lookup)
    response = replay(Client(mw), captured[-1])
    assert response.status_code == 500 and error_code(response) == "InternalError"
    assert "credential store" not in response.get_data(as_text=True)


def test_empty_put_with_checksum_records_it() -> None:
    boto, captured = boto_client("http://127.0.0.1:9")
    boto.put_object(Bucket="b", Key="k", Body=b"")
    seen = replay(Client(middleware()), captured[-1]).get_json()
    assert seen["body"] == "" and seen["checksums"] == {"crc32": "AAAAAA=="}
    assert not seen["verified_body"]
