"""The encryption layer in-process: every operation ``EncryptionMiddleware`` handles, in every
mode (stored as sent, SSE-S3, SSE-KMS under the local keyring, SSE-C), over a real file store
in a temporary directory and a real keyring (tests/unit/encryption_testkit.py).

What is checked is what a client and an attacker with the backend's disk would see: the
bytes on disk are not the plaintext; reads return exact bytes (whole, ranged, by part number,
across multipart part boundaries); sizes and ETags are the plaintext ones in HEAD, GET,
listings and GetObjectAttributes; SSE response headers; S3 XML errors and their statuses;
and a flipped byte on disk is never returned as data.
"""
from __future__ import annotations

import base64
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from encryption_testkit import (
    ALL_MODES,
    BUCKET,
    ENCRYPTED_MODES,
    ENVELOPE_METADATA,
    INTERNAL_BUCKET,
    KEY_ID,
    KMS_KEY_ID,
    NONE,
    OTHER_CUSTOMER_KEY,
    PART,
    SSE,
    SSE_C,
    SSE_KMS,
    SSE_S3,
    Mode,
    Stack,
    assert_error,
    assert_not_plaintext,
    build_stack,
    complete,
    create_upload,
    customer_headers,
    error_of,
    get,
    head,
    md5_etag,
    multipart_upload,
    parse_xml,
    path,
    payload,
    put,
    random_key,
    read_body,
    sse_headers,
    upload_part,
)
from werkzeug.test import TestResponse

from encproxy.filestore.records import ObjectMeta
from encproxy.format.constants import Kind, Protection
from encproxy.format.envelope import Envelope
from encproxy.format.layout import segment_size
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi.encryption.middleware import EncryptionPolicy

MODES = [pytest.param(m, id=m.name) for m in ALL_MODES]
ENCRYPTED = [pytest.param(m, id=m.name) for m in ENCRYPTED_MODES]
# SSE-C under another customer key: a copy between the two must re-encrypt.
SSE_C_OTHER = Mode("sse-c-other-key", customer_headers(OTHER_CUSTOMER_KEY), {
    SSE + "-customer-algorithm": "AES256",
    SSE + "-customer-key-md5": customer_headers(OTHER_CUSTOMER_KEY)[SSE + "-customer-key-md5"]},
    OTHER_CUSTOMER_KEY)
SIZE = 200_000                  # the single-part object most tests read
MP_BUCKET = "multipart"
MP_LAST = 100_000               # the last part of the shared multipart objects
MULTIPART_ETAG = re.compile(r'^"[0-9a-f]{32}-[0-9]+"$')
KMS_DEFAULT = {SSE: "aws:kms", SSE + "-aws-kms-key-id": KEY_ID}
ALL_ATTRIBUTES = {"x-amz-object-attributes": "ETag,ObjectSize,StorageClass,ObjectParts"}

# Every operation the layer implements is exercised below (test_every_operation_is_covered).
COVERED = {
    "PutObject", "PostObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
    "AbortMultipartUpload", "ListParts", "CopyObject", "UploadPartCopy", "GetObjectAttributes",
    "GetObject", "HeadObject", "ListObjects", "ListObjectsV2", "ListObjectVersions",
}


@dataclass(frozen=True)
class Stored:
    """An object written through the shared stack: its key, plaintext and client ETag."""

    key: str
    data: bytes
    etag: str
    mode: Mode
    parts: tuple[tuple[int, bytes], ...] = ()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """One stack for the tests that only add objects under their own keys."""
    return build_stack(tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="module")
def singles(shared: Stack) -> dict[str, Stored]:
    """A 200 kB single-part object per mode (mode name -> object)."""
    out = {}
    for seed, mode in enumerate(ALL_MODES):
        data = payload(SIZE, seed=100 + seed)
        key = f"single/{mode.name}"
        resp = put(shared.client, key, data, mode.write)
        assert resp.status_code == 200, resp.get_data()
        out[mode.name] = Stored(key, data, resp.headers["ETag"], mode)
    return out


@pytest.fixture(scope="module")
def multiparts(shared: Stack) -> dict[str, Stored]:
    """A multipart object per mode in bucket ``multipart``: parts of 5 MiB and 100 kB."""
    shared.store.create_bucket(MP_BUCKET)
    out = {}
    for seed, mode in enumerate(ALL_MODES):
        parts = ((1, payload(PART, seed=200 + seed)), (2, payload(MP_LAST, seed=300 + seed)))
        key = f"mp/{mode.name}"
        resp = multipart_upload(shared.client, key, dict(parts), mode, bucket=MP_BUCKET)
        etag = parse_xml(resp.get_data()).findtext("ETag")
        assert etag is not None
        out[mode.name] = Stored(key, b"".join(p for _, p in parts), etag, mode, parts)
    return out


def internal_records(stack: Stack) -> list[str]:
    """What encproxy keeps for uploads in progress (records, held copies)."""
    return [r.key for r in stack.store.list_objects(INTERNAL_BUCKET, prefix="uploads/").contents]


def copy_headers(src_bucket: str, src_key: str, **extra: str) -> dict[str, str]:
    return {"x-amz-copy-source": path(src_bucket, src_key), **extra}


def assert_same_response(resp: TestResponse, direct: TestResponse) -> None:
    """The layer passed the backend's answer on: same status, code and message."""
    assert resp.status_code == direct.status_code
    mine, theirs = parse_xml(resp.get_data()), parse_xml(direct.get_data())
    assert (mine.findtext("Code"), mine.findtext("Message")) == \
        (theirs.findtext("Code"), theirs.findtext("Message"))


# Operations with an in-process test module of their own.
COVERED_ELSEWHERE = {"UpdateObjectEncryption": "test_update_object_encryption_layer.py",
                     "DeleteObject": "test_rewrap_records.py"}


def test_every_operation_is_covered(tmp_path: Path) -> None:
    handled = set(build_stack(tmp_path).middleware.handlers)
    assert "PutObject" in handled and "GetObject" in handled
    uncovered = handled - COVERED - set(COVERED_ELSEWHERE)
    assert not uncovered, f"operations without an in-process test: {uncovered}"
    here = Path(__file__).parent
    assert all((here / module).exists() for module in COVERED_ELSEWHERE.values())


# -- EncryptionPolicy ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    pytest.param("none", id="none"),
    pytest.param("AES256", id="AES256"),
    pytest.param("aws:kms", id="aws-kms"),
])
def test_policy_accepts_the_server_defaults(value: str) -> None:
    assert EncryptionPolicy(default=value).default == value


@pytest.mark.parametrize("value", [
    pytest.param("aes256", id="lower-case-AES256"),
    pytest.param("AWS:KMS", id="upper-case-aws-kms"),
    pytest.param("AES-256", id="unknown"),
    pytest.param("sse-c", id="sse-c-cannot-be-a-default"),
    pytest.param("", id="empty"),
])
def test_policy_refuses_an_unknown_default(value: str) -> None:
    # Unvalidated, such a value makes every write "store as sent": plaintext in the backend.
    with pytest.raises(ValueError):
        EncryptionPolicy(default=value)


# -- PutObject, GetObject, HeadObject --------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [
    pytest.param(0, id="empty"),
    pytest.param(1, id="1B"),
    pytest.param(65_536, id="one-chunk"),
    pytest.param(65_537, id="chunk+1"),
    pytest.param(3 * 1024 * 1024 + 5, id="3MiB"),  # read ahead; the seal fetched by a range
])
def test_put_get_head_round_trip(shared: Stack, mode: Mode, size: int) -> None:
    data = payload(size, seed=size)
    key = random_key()
    resp = put(shared.client, key, data, mode.write)
    assert resp.status_code == 200, resp.get_data()
    assert sse_headers(resp) == mode.response
    etag = resp.headers["ETag"]
    if not mode.sse_c:
        assert etag == md5_etag(data)

    record, stored = shared.stored(BUCKET, key)
    if mode.encrypted:
        assert ENVELOPE_METADATA in record.meta.user_metadata
        assert len(stored) > size
        assert_not_plaintext(stored, data)
    else:
        assert stored == data and ENVELOPE_METADATA not in record.meta.user_metadata

    # This stack learnt the object's facts from the PUT; a replica has to read them.
    for client in (shared.client, shared.replica().client):
        got = get(client, key, mode.read)
        assert got.status_code == 200
        assert got.get_data() == data
        assert got.headers["Content-Length"] == str(size)
        assert got.headers["ETag"] == etag
        assert sse_headers(got) == mode.response
        assert not any(k.lower().startswith("x-amz-meta-encproxy") for k, _ in got.headers.items())
        h = head(client, key, mode.read)
        assert h.status_code == 200 and h.get_data() == b""
        assert h.headers["Content-Length"] == str(size)
        assert h.headers["ETag"] == etag
        assert sse_headers(h) == mode.response


@pytest.mark.parametrize("mode", MODES)
def test_plaintext_digests_and_sse_headers_stay_with_encproxy(tmp_path: Path,
                                                              mode: Mode) -> None:
    """Content-MD5 and x-amz-checksum-* describe the plaintext: a backend given ciphertext
    must not get them (it would check them); nor the SSE headers, which encproxy answers."""
    stack = build_stack(tmp_path)
    data = payload(1000, seed=7)
    digests = {
        "content-md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
    resp = put(stack.client, "k", data, {**digests, **mode.write})
    assert resp.status_code == 200, resp.get_data()
    (write,) = [r for r in stack.recorder.requests if r.method == "PUT"
                and r.path == path(BUCKET, "k")]
    sent = {name for name in write.headers if name in digests or name.startswith(SSE)}
    assert sent == (set() if mode.encrypted else set(digests))
    assert get(stack.client, "k", mode.read).get_data() == data
    assert get(stack.client, "k", {"Range": "bytes=1-2", **mode.read}).get_data() == data[1:3]
    # Above all, an SSE-C key never goes further than encproxy.
    assert not [(r.method, r.path, name) for r in stack.recorder.requests
                for name in r.headers if name.startswith(SSE)]


@pytest.mark.parametrize("policy, headers, status, code", [
    pytest.param({}, {"x-amz-meta-encproxy": "forged"}, 400, "InvalidArgument",
                 id="reserved-metadata"),
    pytest.param({}, {"x-amz-meta-encproxy": "forged", **SSE_S3.write}, 400, "InvalidArgument",
                 id="reserved-metadata-encrypted"),
    pytest.param({}, {"x-amz-meta-encproxy-context": "e30="}, 400, "InvalidArgument",
                 id="reserved-context-metadata"),
    pytest.param({"require": True}, {}, 403, "AccessDenied", id="require-without-encryption"),
    pytest.param({"allow_insecure_sse_c": False}, SSE_C.write, 400, "InvalidRequest",
                 id="sse-c-over-http"),
    pytest.param({}, {SSE: "aws:kms:dsse"}, 501, "NotImplemented", id="dsse"),
    pytest.param({}, {SSE: "AES128"}, 400, "InvalidArgument", id="unknown-algorithm"),
    pytest.param({}, {**SSE_C.write, SSE + "-customer-key-md5": base64.b64encode(
        hashlib.md5(OTHER_CUSTOMER_KEY).digest()).decode()}, 400, "InvalidArgument",
                 id="sse-c-key-md5-mismatch"),
    pytest.param({}, {SSE + "-customer-algorithm": "AES256"}, 400, "InvalidArgument",
                 id="sse-c-without-key"),
    pytest.param({}, {**SSE_C.write, SSE: "AES256"}, 400, "InvalidArgument",
                 id="sse-c-and-sse-s3"),
    pytest.param({}, {SSE: "aws:kms", SSE + "-aws-kms-key-id": "no-such-key"}, 400,
                 "KMS.NotFoundException", id="unknown-kms-key"),
    pytest.param({}, {SSE + "-aws-kms-key-id": KMS_KEY_ID}, 400, "InvalidArgument",
                 id="kms-key-without-aws-kms"),
])
def test_put_object_refused(tmp_path: Path, policy: dict[str, object], headers: dict[str, str],
                            status: int, code: str) -> None:
    stack = build_stack(tmp_path, **policy)
    resp = put(stack.client, "refused", payload(1000), headers)
    assert_error(resp, status, code)
    assert stack.store.list_objects(BUCKET).contents == []


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_require_admits_encrypted_writes(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path, require=True)
    data = payload(1000, seed=3)
    assert put(stack.client, "k", data, mode.write).status_code == 200
    assert get(stack.client, "k", mode.read).get_data() == data


@pytest.mark.parametrize("policy, config, expected", [
    pytest.param({"default": "AES256"}, None, SSE_S3.response, id="server-AES256"),
    pytest.param({"default": "aws:kms"}, None, KMS_DEFAULT, id="server-aws-kms"),
    pytest.param({}, BucketEncryption("AES256"), SSE_S3.response, id="bucket-AES256"),
    pytest.param({}, BucketEncryption("aws:kms", KMS_KEY_ID), SSE_KMS.response,
                 id="bucket-aws-kms"),
    pytest.param({"default": "AES256"}, BucketEncryption("aws:kms", KMS_KEY_ID),
                 SSE_KMS.response, id="bucket-overrides-server"),
    pytest.param({"require": True}, BucketEncryption("AES256"), SSE_S3.response,
                 id="require-met-by-bucket"),
])
def test_default_encryption(tmp_path: Path, policy: dict[str, object],
                            config: BucketEncryption | None, expected: dict[str, str]) -> None:
    stack = build_stack(tmp_path, **policy)
    if config is not None:
        stack.configs.put(BUCKET, config)
    data = payload(70_000, seed=4)
    resp = put(stack.client, "k", data)
    assert resp.status_code == 200, resp.get_data()
    assert sse_headers(resp) == expected
    assert_not_plaintext(stack.stored(BUCKET, "k")[1], data)
    got = get(stack.client, "k")
    assert (got.get_data(), sse_headers(got)) == (data, expected)
    # Request headers override the defaults.
    assert put(stack.client, "c", data, SSE_C.write).status_code == 200
    assert_error(get(stack.client, "c"), 400, "InvalidRequest")
    assert get(stack.client, "c", SSE_C.read).get_data() == data


# -- reads: ranges, part numbers, conditions, refusals -----------------------------------------

SINGLE_RANGES = [
    pytest.param("bytes=0-0", 0, 0, id="first-byte"),
    pytest.param("bytes=0-99", 0, 99, id="head"),
    pytest.param("bytes=65530-65545", 65530, 65545, id="across-a-chunk"),
    pytest.param("bytes=65536-131071", 65536, 131071, id="one-whole-chunk"),
    pytest.param("bytes=-100", SIZE - 100, SIZE - 1, id="suffix"),
    pytest.param("bytes=199990-", 199990, SIZE - 1, id="open-ended"),
    pytest.param("bytes=150000-999999", 150000, SIZE - 1, id="past-the-end"),
    pytest.param("bytes=-999999", 0, SIZE - 1, id="suffix-longer-than-the-object"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("byte_range, first, last", SINGLE_RANGES)
def test_ranged_get(shared: Stack, singles: dict[str, Stored], mode: Mode, byte_range: str,
                    first: int, last: int) -> None:
    obj = singles[mode.name]
    resp = get(shared.client, obj.key, {"Range": byte_range, **mode.read})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.get_data() == obj.data[first:last + 1]
    assert resp.headers["ETag"] == obj.etag
    assert sse_headers(resp) == mode.response
    h = head(shared.client, obj.key, {"Range": byte_range, **mode.read})
    assert (h.status_code, h.headers["Content-Range"]) == (206, f"bytes {first}-{last}/{SIZE}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("headers, query, status, code", [
    pytest.param({"Range": f"bytes={SIZE}-"}, "", 416, "InvalidRange", id="range-after-the-end"),
    pytest.param({}, "partNumber=2", 416, "InvalidPartNumber", id="part-2-of-1"),
    pytest.param({"Range": "bytes=0-1"}, "partNumber=1", 400, "InvalidRequest",
                 id="range-and-part-number"),
])
def test_unsatisfiable_reads(shared: Stack, singles: dict[str, Stored], mode: Mode,
                             headers: dict[str, str], query: str, status: int,
                             code: str) -> None:
    obj = singles[mode.name]
    assert_error(get(shared.client, obj.key, {**headers, **mode.read}, query=query), status,
                 code)


@pytest.mark.parametrize("mode", MODES)
def test_part_number_1_of_a_single_part_object(shared: Stack, singles: dict[str, Stored],
                                               mode: Mode) -> None:
    obj = singles[mode.name]
    resp = get(shared.client, obj.key, mode.read, query="partNumber=1")
    assert resp.status_code in (200, 206)
    assert resp.get_data() == obj.data
    assert resp.headers["ETag"] == obj.etag


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("header, matches, status", [
    pytest.param("If-Match", True, 200, id="if-match"),
    pytest.param("If-Match", False, 412, id="if-match-other"),
    pytest.param("If-None-Match", True, 304, id="if-none-match"),
    pytest.param("If-None-Match", False, 200, id="if-none-match-other"),
])
def test_conditions_use_the_client_etag(shared: Stack, singles: dict[str, Stored], mode: Mode,
                                        header: str, matches: bool, status: int) -> None:
    obj = singles[mode.name]
    value = obj.etag if matches else '"0123456789abcdef0123456789abcdef"'
    resp = get(shared.client, obj.key, {header: value, **mode.read})
    assert resp.status_code == status
    if status == 200:
        assert resp.get_data() == obj.data
    elif status == 304:
        assert resp.get_data() == b"" and resp.headers["ETag"] == obj.etag
    else:
        assert_error(resp, 412, "PreconditionFailed")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("stored_as, headers, status, code", [
    pytest.param(SSE_C, {}, 400, "InvalidRequest", id="sse-c-object-without-key"),
    pytest.param(SSE_C, customer_headers(OTHER_CUSTOMER_KEY), 403, "AccessDenied",
                 id="sse-c-object-with-another-key"),
    pytest.param(SSE_S3, SSE_C.read, 400, "InvalidRequest", id="key-for-an-sse-s3-object"),
    pytest.param(SSE_KMS, SSE_C.read, 400, "InvalidRequest", id="key-for-an-sse-kms-object"),
    pytest.param(NONE, SSE_C.read, 400, "InvalidRequest", id="key-for-a-plain-object"),
])
def test_read_refused(shared: Stack, singles: dict[str, Stored], method: str, stored_as: Mode,
                      headers: dict[str, str], status: int, code: str) -> None:
    obj = singles[stored_as.name]
    resp = (get if method == "GET" else head)(shared.client, obj.key, headers)
    assert_error(resp, status, code)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_object_passes_through(shared: Stack, method: str) -> None:
    resp = (get if method == "GET" else head)(shared.client, "no/such/key")
    direct = (get if method == "GET" else head)(shared.direct, "no/such/key")
    assert_error(resp, 404, "NoSuchKey")
    if method == "GET":
        assert_same_response(resp, direct)


# -- tampering: a flipped byte on disk is never returned as data ---------------------------------

@pytest.mark.parametrize("mode", ENCRYPTED)
@pytest.mark.parametrize("size", [pytest.param(200_000, id="200kB"),
                                  pytest.param(3 * 1024 * 1024, id="3MiB")])
@pytest.mark.parametrize("where", [
    pytest.param(100, id="first-chunk"),
    pytest.param(-70_000, id="late-chunk"),
    pytest.param(-5, id="etag-seal"),
])
def test_flipped_stored_byte_is_never_returned(tmp_path: Path, mode: Mode, size: int,
                                               where: int) -> None:
    stack = build_stack(tmp_path)
    data = payload(size, seed=9)
    assert put(stack.client, "t", data, mode.write).status_code == 200
    stack.flip_stored_byte(BUCKET, "t", where)
    # This stack knows the object from its PUT; a replica reads everything from the backend.
    for client in (stack.client, stack.replica().client):
        read = read_body(client, "t", mode.read)
        if read.status >= 300:
            assert (read.status, not read.aborted) == (500, True)
            assert parse_xml(read.body).findtext("Code") == "InternalError"
        else:
            # Detected after the headers went out: cut short, and only verified bytes sent.
            assert read.aborted, "a tampered object was read back whole"
            assert len(read.body) < len(data) and data.startswith(read.body)


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_flipped_byte_in_a_ranged_read(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    data = payload(SIZE, seed=10)
    assert put(stack.client, "t", data, mode.write).status_code == 200
    stack.flip_stored_byte(BUCKET, "t", 70_000)   # inside the second chunk
    wanted = data[65536:131072]
    for client in (stack.client, stack.replica().client):
        read = read_body(client, "t", {"Range": "bytes=65536-131071", **mode.read})
        if read.status >= 300:
            assert (read.status, read.aborted) == (500, False)
        else:
            assert read.aborted, "a tampered range was read back whole"
            assert len(read.body) < len(wanted) and wanted.startswith(read.body)


def flip(value: bytes, index: int) -> bytes:
    return value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1:]


def tampered(value: str, change: str) -> str:
    """The envelope metadata value with one field changed (FORMAT.md: the envelope)."""
    if change == "not-an-envelope":
        return "not-an-envelope"
    env = Envelope.decode(value)
    fields = {"kind": env.kind, "suite": env.suite, "object_id": env.object_id,
              "tag": env.tag, "key_id": env.key_id, "wrapped_key": env.wrapped_key,
              "protection": env.protection}
    if change == "tag":
        fields["tag"] = flip(env.tag, 5)
    elif change == "object-id":
        fields["object_id"] = flip(env.object_id, 0)
    elif change == "wrapped-key":
        fields["wrapped_key"] = flip(env.wrapped_key, len(env.wrapped_key) - 3)
    elif change == "kind":
        fields["kind"] = Kind.MULTIPART
    elif change == "protection":
        fields["protection"] = Protection.SSE_KMS if env.protection is Protection.SSE_S3 \
            else Protection.SSE_S3
    return Envelope(**fields).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ENCRYPTED)
@pytest.mark.parametrize("change", ["tag", "object-id", "wrapped-key", "kind", "protection",
                                    "not-an-envelope"])
def test_tampered_envelope_is_an_error(tmp_path: Path, mode: Mode, change: str) -> None:
    stack = build_stack(tmp_path)
    data = payload(1000, seed=11)
    assert put(stack.client, "t", data, mode.write).status_code == 200
    record, body = stack.stored(BUCKET, "t")
    meta = dict(record.meta.user_metadata)
    meta[ENVELOPE_METADATA] = tampered(meta[ENVELOPE_METADATA], change)
    stack.store.put_object(BUCKET, "t", io.BytesIO(body), len(body),
                           ObjectMeta(user_metadata=meta))
    # An envelope that fails authentication is a corrupt object: 500 InternalError, as any
    # integrity failure. A changed protection must not let an SSE-C object be read
    # without its key either (400 InvalidRequest asks for the key and reveals nothing).
    allowed = {(500, "InternalError")}
    if mode.sse_c and change in ("protection",):
        allowed.add((400, "InvalidRequest"))
    if mode.sse_c and change in ("wrapped-key", "object-id"):
        allowed.add((403, "AccessDenied"))   # the customer key's wrap is what fails
    for client in (stack.client, stack.replica().client):
        assert error_of(get(client, "t", mode.read)) in allowed
        assert head(client, "t", mode.read).status_code in {status for status, _ in allowed}


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_flipped_byte_in_a_multipart_object(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    parts = {1: payload(PART, seed=12), 2: payload(MP_LAST, seed=13)}
    data = parts[1] + parts[2]
    multipart_upload(stack.client, "t", parts, mode)
    # Part 2's segment starts after part 1's (FORMAT.md §7): flip a byte of its first chunk.
    stack.flip_stored_byte(BUCKET, "t", segment_size(PART) + 1000)
    for client in (stack.client, stack.replica().client):
        read = read_body(client, "t", mode.read)
        if read.status >= 300:
            assert read.status == 500 and not read.aborted
        else:
            assert read.aborted, "a tampered object was read back whole"
            assert len(read.body) < len(data) and data.startswith(read.body)


# -- PostObject ---------------------------------------------------------------------------------

def form() -> dict[str, object]:
    return {"key": "posted", "file": (io.BytesIO(b"posted bytes"), "posted.txt")}


@pytest.mark.parametrize("policy, config, encrypting", [
    pytest.param({}, None, False, id="plain-bucket"),
    pytest.param({"default": "AES256"}, None, True, id="server-default"),
    pytest.param({}, BucketEncryption("AES256"), True, id="bucket-default"),
    pytest.param({"require": True}, None, True, id="require"),
])
def test_post_object(tmp_path: Path, policy: dict[str, object],
                     config: BucketEncryption | None, encrypting: bool) -> None:
    stack = build_stack(tmp_path, **policy)
    if config is not None:
        stack.configs.put(BUCKET, config)
    resp = stack.client.post(path(BUCKET), data=form())
    # Stored as the PutObject the form describes (tests/unit/test_post_object_layer.py),
    # or refused as that PutObject would be: no encryption asked, none by default.
    if policy.get("require") and config is None:
        assert_error(resp, 403, "AccessDenied")
        assert_error(head(stack.client, "posted"), 404, "NoSuchKey")
        return
    assert resp.status_code == 204, resp.get_data()
    assert resp.headers["ETag"] == md5_etag(b"posted bytes")
    _, held = stack.stored(BUCKET, "posted")
    if encrypting:
        assert_not_plaintext(held, b"posted bytes")
    else:
        assert held == b"posted bytes"
    assert get(stack.client, "posted").get_data() == b"posted bytes"


# -- multipart uploads ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_multipart_round_trip(shared: Stack, multiparts: dict[str, Stored], mode: Mode) -> None:
    obj = multiparts[mode.name]
    assert MULTIPART_ETAG.match(obj.etag)
    _, stored = shared.stored(MP_BUCKET, obj.key)
    if mode.encrypted:
        assert_not_plaintext(stored, obj.data)
    else:
        assert stored == obj.data
    for client in (shared.client, shared.replica().client):
        got = get(client, obj.key, mode.read, bucket=MP_BUCKET)
        assert got.status_code == 200
        assert got.get_data() == obj.data
        assert got.headers["Content-Length"] == str(len(obj.data))
        assert got.headers["ETag"] == obj.etag
        assert sse_headers(got) == mode.response
        h = head(client, obj.key, mode.read, bucket=MP_BUCKET)
        assert (h.headers["Content-Length"], h.headers["ETag"]) == (str(len(obj.data)), obj.etag)
        assert sse_headers(h) == mode.response


MULTIPART_RANGES = [
    pytest.param(PART - 100, PART + 99, id="across-the-part-boundary"),
    pytest.param(PART - 1, PART - 1, id="last-byte-of-part-1"),
    pytest.param(PART, PART, id="first-byte-of-part-2"),
    pytest.param(65530, 65545, id="across-a-chunk-of-part-1"),
    pytest.param(PART + 65530, PART + 65545, id="across-a-chunk-of-part-2"),
    pytest.param(PART - 70_000, PART + MP_LAST - 1, id="to-the-end"),
    pytest.param(0, PART + MP_LAST - 1, id="everything"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first, last", MULTIPART_RANGES)
def test_multipart_ranged_get(shared: Stack, multiparts: dict[str, Stored], mode: Mode,
                              first: int, last: int) -> None:
    obj = multiparts[mode.name]
    resp = get(shared.client, obj.key, {"Range": f"bytes={first}-{last}", **mode.read},
               bucket=MP_BUCKET)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(obj.data)}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.get_data() == obj.data[first:last + 1]
    assert resp.headers["ETag"] == obj.etag


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("number", [1, 2])
def test_multipart_get_by_part_number(shared: Stack, multiparts: dict[str, Stored], mode: Mode,
                                      number: int) -> None:
    obj = multiparts[mode.name]
    part = dict(obj.parts)[number]
    resp = get(shared.client, obj.key, mode.read, bucket=MP_BUCKET, query=f"partNumber={number}")
    assert resp.status_code == 206
    assert resp.get_data() == part
    assert resp.headers["x-amz-mp-parts-count"] == "2"
    assert resp.headers["ETag"] == obj.etag
    start = sum(len(p) for n, p in obj.parts if n < number)
    assert resp.headers["Content-Range"] == \
        f"bytes {start}-{start + len(part) - 1}/{len(obj.data)}"


@pytest.mark.parametrize("layout", [
    pytest.param({1: PART, 3: 70_000}, id="gap-in-part-numbers"),
    pytest.param({1: PART, 2: PART + 7}, id="last-part-of-5MiB-or-more"),
    pytest.param({1: 70_000}, id="one-small-part"),
    pytest.param({4: 0}, id="one-empty-part"),
])
def test_multipart_layouts(tmp_path: Path, layout: dict[int, int]) -> None:
    """Completions that need a trailer (an index, a part of its own, or a held tail)."""
    stack = build_stack(tmp_path)
    parts = {n: payload(size, seed=n) for n, size in layout.items()}
    data = b"".join(parts[n] for n in sorted(parts))
    resp = multipart_upload(stack.client, "m", parts, SSE_S3)
    etag = parse_xml(resp.get_data()).findtext("ETag")
    assert etag and MULTIPART_ETAG.match(etag)
    assert internal_records(stack) == []      # Complete forgets the upload's record
    assert_not_plaintext(stack.stored(BUCKET, "m")[1], data)
    for client in (stack.client, stack.replica().client):
        got = get(client, "m")
        assert (got.get_data(), got.headers["ETag"]) == (data, etag)
        assert head(client, "m").headers["Content-Length"] == str(len(data))
        start, counts = 0, []
        for number in sorted(parts):
            by_number = get(client, "m", query=f"partNumber={number}")
            assert by_number.get_data() == parts[number]
            counts.append(by_number.headers["x-amz-mp-parts-count"])
            if 0 < start < len(data) - 1:     # across the boundary before this part
                ranged = get(client, "m", {"Range": f"bytes={start - 1}-{start}"})
                assert ranged.get_data() == data[start - 1:start + 1]
            start += len(parts[number])
        attributes = parse_xml(get(client, "m", ALL_ATTRIBUTES, query="attributes").get_data())
        assert attributes.findtext("ObjectParts/PartsCount") == str(len(parts))
        assert [(int(p.findtext("PartNumber") or 0), int(p.findtext("Size") or -1))
                for p in attributes.findall("ObjectParts/Part")] == list(layout.items())
        listed = parse_xml(client.get(path(BUCKET), query_string="list-type=2").get_data())
        assert listed.findtext("Contents/Size") == str(len(data))
        assert listed.findtext("Contents/ETag") == etag
        # The client's part count (ARCHITECTURE.md), not the backend's, whatever is cached.
        assert counts == [str(len(parts))] * len(parts)


def test_sse_c_completion_that_needs_a_trailer_needs_the_key(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)
    parts = {1: payload(PART, seed=1), 3: payload(70_000, seed=3)}   # a gap: indexed
    upload_id = create_upload(stack.client, "m", SSE_C.write)
    done = []
    for number, data in parts.items():
        resp = upload_part(stack.client, "m", upload_id, number, data, SSE_C.read)
        done.append((number, resp.headers["ETag"]))
    assert_error(complete(stack.client, "m", upload_id, done), 400, "InvalidRequest")
    resp = complete(stack.client, "m", upload_id, done, SSE_C.read)
    assert resp.status_code == 200, resp.get_data()
    assert sse_headers(resp) == SSE_C.response
    assert get(stack.client, "m", SSE_C.read).get_data() == parts[1] + parts[3]
    assert_error(get(stack.client, "m"), 400, "InvalidRequest")


@pytest.mark.parametrize("mode", MODES)
def test_create_multipart_upload(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    resp = stack.client.post(path(BUCKET, "m"), query_string="uploads", headers=mode.write)
    assert resp.status_code == 200
    assert sse_headers(resp) == mode.response
    upload_id = parse_xml(resp.get_data()).findtext("UploadId")
    (upload,) = list(stack.store.scan_uploads(BUCKET))
    assert upload.upload_id == upload_id
    assert (ENVELOPE_METADATA in upload.meta.user_metadata) == mode.encrypted
    assert len(internal_records(stack)) == 1    # every upload made through encproxy has one


@pytest.mark.parametrize("policy, headers, status, code", [
    pytest.param({}, {"x-amz-meta-encproxy": "forged"}, 400, "InvalidArgument",
                 id="reserved-metadata"),
    pytest.param({}, {"x-amz-meta-encproxy-context": "e30=", **SSE_S3.write}, 400,
                 "InvalidArgument", id="reserved-context-metadata"),
    pytest.param({"require": True}, {}, 403, "AccessDenied", id="require-without-encryption"),
    pytest.param({"allow_insecure_sse_c": False}, SSE_C.write, 400, "InvalidRequest",
                 id="sse-c-over-http"),
    pytest.param({}, {SSE: "aws:kms", SSE + "-aws-kms-key-id": "no-such-key"}, 400,
                 "KMS.NotFoundException", id="unknown-kms-key"),
])
def test_create_multipart_upload_refused(tmp_path: Path, policy: dict[str, object],
                                         headers: dict[str, str], status: int,
                                         code: str) -> None:
    stack = build_stack(tmp_path, **policy)
    resp = stack.client.post(path(BUCKET, "m"), query_string="uploads", headers=headers)
    assert_error(resp, status, code)
    assert list(stack.store.scan_uploads(BUCKET)) == []
    assert internal_records(stack) == []


@pytest.mark.parametrize("mode", MODES)
def test_upload_part_stores_ciphertext(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", mode.write)
    data = payload(PART, seed=5)
    resp = upload_part(stack.client, "m", upload_id, 1, data, mode.read)
    assert resp.status_code == 200, resp.get_data()
    assert sse_headers(resp) == mode.response
    part_file = stack.root / "data" / "buckets" / BUCKET / "uploads" / upload_id / "part-00001"
    stored = part_file.read_bytes()
    if mode.encrypted:
        assert_not_plaintext(stored, data)
    else:
        assert stored.endswith(data)


@pytest.mark.parametrize("upload_mode, headers, status, code", [
    pytest.param(SSE_C, {}, 400, "InvalidRequest", id="sse-c-upload-without-key"),
    pytest.param(SSE_C, customer_headers(OTHER_CUSTOMER_KEY), 400, "InvalidRequest",
                 id="sse-c-upload-with-another-key"),   # AWS: 400, not a read's 403
    pytest.param(SSE_S3, SSE_C.read, 400, "InvalidRequest", id="key-for-an-sse-s3-upload"),
    pytest.param(NONE, SSE_C.read, 400, "InvalidRequest", id="key-for-a-plain-upload"),
    pytest.param(NONE, SSE_S3.write, 400, "InvalidRequest", id="sse-s3-for-a-plain-upload"),
])
def test_upload_part_refused(tmp_path: Path, upload_mode: Mode, headers: dict[str, str],
                             status: int, code: str) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", upload_mode.write)
    resp = upload_part(stack.client, "m", upload_id, 1, payload(1000), headers)
    assert_error(resp, status, code)
    parts = stack.client.get(path(BUCKET, "m"), query_string={"uploadId": upload_id},
                             headers=upload_mode.read)
    assert parse_xml(parts.get_data()).findall("Part") == []


@pytest.mark.parametrize("number", ["0", "10001", "x"])
def test_upload_part_number_out_of_range(tmp_path: Path, number: str) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", SSE_S3.write)
    resp = stack.client.put(path(BUCKET, "m"), query_string={"partNumber": number,
                                                             "uploadId": upload_id},
                            data=b"x")
    assert_error(resp, 400, "InvalidArgument")


def test_upload_part_into_an_upload_encproxy_did_not_make(tmp_path: Path) -> None:
    """No record: encproxy writes no part into it (it might hold an envelope)."""
    stack = build_stack(tmp_path)
    upload_id = stack.store.create_upload(BUCKET, "m")
    assert_error(upload_part(stack.client, "m", upload_id, 1, payload(1000)), 404,
                 "NoSuchUpload")
    assert_error(upload_part(stack.client, "m", "0" * 48, 1, payload(1000)), 404,
                 "NoSuchUpload")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault, status, code", [
    pytest.param("wrong-etag", 400, "InvalidPart", id="wrong-etag"),
    pytest.param("missing-part", 400, "InvalidPart", id="missing-part"),
    pytest.param("small-first-part", 400, "EntityTooSmall", id="small-first-part"),
    pytest.param("unknown-upload", 404, "NoSuchUpload", id="unknown-upload"),
])
def test_complete_refused(tmp_path: Path, mode: Mode, fault: str, status: int,
                          code: str) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", mode.write)
    etags = [upload_part(stack.client, "m", upload_id, n, payload(1000, n), mode.read)
             .headers["ETag"] for n in (1, 2)]
    parts = list(enumerate(etags, start=1))
    if fault == "wrong-etag":
        parts[1] = (2, '"0123456789abcdef0123456789abcdef"')
    elif fault == "missing-part":
        parts.append((3, etags[0]))
    elif fault == "unknown-upload":
        upload_id = "f" * 48
    assert_error(complete(stack.client, "m", upload_id, parts, mode.read), status, code)
    assert_error(head(stack.client, "m", mode.read), 404, "NoSuchKey")


@pytest.mark.parametrize("mode", MODES)
def test_abort_multipart_upload(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", mode.write)
    assert upload_part(stack.client, "m", upload_id, 1, payload(1000), mode.read) \
        .status_code == 200
    assert internal_records(stack) != []         # the record, and the held copy of part 1
    resp = stack.client.delete(path(BUCKET, "m"), query_string={"uploadId": upload_id})
    assert resp.status_code == 204
    assert internal_records(stack) == []
    assert list(stack.store.scan_uploads(BUCKET)) == []
    assert_error(upload_part(stack.client, "m", upload_id, 2, payload(10), mode.read), 404,
                 "NoSuchUpload")
    again = stack.client.delete(path(BUCKET, "m"), query_string={"uploadId": upload_id})
    assert_same_response(again, stack.direct.delete(path(BUCKET, "m"),
                                                    query_string={"uploadId": upload_id}))


@pytest.mark.parametrize("mode", MODES)
def test_list_parts_reports_plaintext_sizes(tmp_path: Path, mode: Mode) -> None:
    stack = build_stack(tmp_path)
    upload_id = create_upload(stack.client, "m", mode.write)
    sizes = {1: 1000, 2: 2345, 3: 0}
    etags = {n: upload_part(stack.client, "m", upload_id, n, payload(size, n), mode.read)
             .headers["ETag"] for n, size in sizes.items()}
    resp = stack.client.get(path(BUCKET, "m"), query_string={"uploadId": upload_id})
    assert resp.status_code == 200, resp.get_data()
    root = parse_xml(resp.get_data())
    listed = {int(p.findtext("PartNumber") or 0): (int(p.findtext("Size") or -1),
                                                   p.findtext("ETag"))
              for p in root.findall("Part")}
    assert listed == {n: (sizes[n], etags[n]) for n in sizes}
    assert not any(c.tag.startswith("Checksum") for p in root.findall("Part") for c in p)
    page = parse_xml(stack.client.get(path(BUCKET, "m"), query_string={
        "uploadId": upload_id, "max-parts": "1"}).get_data())
    assert [p.findtext("Size") for p in page.findall("Part")] == ["1000"]
    assert page.findtext("IsTruncated") == "true"
    assert_error(stack.client.get(path(BUCKET, "m"), query_string={"uploadId": "f" * 48}), 404,
                 "NoSuchUpload")


# -- CopyObject -----------------------------------------------------------------------------------

def rebinds(src: Mode, dst: Mode) -> bool:
    """Whether a copy keeps the stored body (ARCHITECTURE.md, Copies)."""
    return src.encrypted and dst.encrypted and src.customer_key == dst.customer_key


@pytest.mark.parametrize("dst", [*MODES, pytest.param(SSE_C_OTHER, id=SSE_C_OTHER.name)])
@pytest.mark.parametrize("src", MODES)
def test_copy_object(shared: Stack, singles: dict[str, Stored], src: Mode, dst: Mode) -> None:
    obj = singles[src.name]
    key = random_key()
    resp = shared.client.put(path(BUCKET, key), headers={
        **copy_headers(BUCKET, obj.key), **src.copy_source, **dst.write})
    assert resp.status_code == 200, resp.get_data()
    etag = parse_xml(resp.get_data()).findtext("ETag")
    assert sse_headers(resp) == dst.response
    if not dst.sse_c:
        assert etag == md5_etag(obj.data)
    got = get(shared.client, key, dst.read)
    assert got.get_data() == obj.data
    assert (got.headers["ETag"], sse_headers(got)) == (etag, dst.response)
    _, stored = shared.stored(BUCKET, key)
    _, source_stored = shared.stored(BUCKET, obj.key)
    if dst.encrypted:
        assert_not_plaintext(stored, obj.data)
        assert (stored == source_stored) == rebinds(src, dst)
    else:
        assert stored == obj.data
    assert get(shared.client, obj.key, src.read).get_data() == obj.data


@pytest.mark.parametrize("src, dst", [
    pytest.param(SSE_S3, SSE_KMS, id="AES256-to-aws:kms"),
    pytest.param(SSE_S3, NONE, id="AES256-to-none"),
    pytest.param(SSE_KMS, SSE_C, id="aws:kms-to-sse-c"),
    pytest.param(SSE_C, SSE_S3, id="sse-c-to-AES256"),
    pytest.param(NONE, SSE_KMS, id="none-to-aws:kms"),
])
def test_copy_object_of_a_multipart_source(shared: Stack, multiparts: dict[str, Stored],
                                           src: Mode, dst: Mode) -> None:
    obj = multiparts[src.name]
    key = random_key()
    resp = shared.client.put(path(MP_BUCKET, key), headers={
        **copy_headers(MP_BUCKET, obj.key), **src.copy_source, **dst.write})
    assert resp.status_code == 200, resp.get_data()
    etag = parse_xml(resp.get_data()).findtext("ETag")
    got = get(shared.client, key, dst.read, bucket=MP_BUCKET)
    assert got.get_data() == obj.data
    assert got.headers["ETag"] == etag and sse_headers(got) == dst.response
    ranged = get(shared.client, key, {"Range": f"bytes={PART - 10}-{PART + 9}", **dst.read},
                 bucket=MP_BUCKET)
    assert ranged.get_data() == obj.data[PART - 10:PART + 10]
    _, stored = shared.stored(MP_BUCKET, key)
    if dst.encrypted:
        assert_not_plaintext(stored, obj.data)
    else:
        assert stored == obj.data
    if rebinds(src, dst):   # part by backend part: the same bytes and the same -N
        assert stored == shared.stored(MP_BUCKET, obj.key)[1]
        assert etag is not None and MULTIPART_ETAG.match(etag)
        assert etag.split("-")[1] == obj.etag.split("-")[1]


@pytest.mark.parametrize("src, headers, status, code", [
    pytest.param(SSE_C, {}, 400, "InvalidRequest", id="sse-c-source-without-key"),
    pytest.param(SSE_C, customer_headers(OTHER_CUSTOMER_KEY, copy_source=True), 403,
                 "AccessDenied", id="sse-c-source-with-another-key"),
    pytest.param(SSE_S3, SSE_C.copy_source, 400, "InvalidRequest",
                 id="source-key-for-an-sse-s3-source"),
    pytest.param(SSE_S3, {"x-amz-metadata-directive": "REPLACE",
                          "x-amz-meta-encproxy": "forged"}, 400, "InvalidArgument",
                 id="reserved-metadata"),
    pytest.param(SSE_S3, {"x-amz-metadata-directive": "MERGE"}, 400, "InvalidArgument",
                 id="unknown-metadata-directive"),
    pytest.param(SSE_S3, {"x-amz-copy-source-if-match": '"0123456789abcdef0123456789abcdef"'},
                 412, "PreconditionFailed", id="copy-source-if-match-other"),
    pytest.param(SSE_S3, {"x-amz-copy-source-if-none-match": "PLAINTEXT-ETAG"}, 412,
                 "PreconditionFailed", id="copy-source-if-none-match"),
    pytest.param(SSE_S3, {"x-amz-copy-source": f"/{BUCKET}/no-such-key"}, 404, "NoSuchKey",
                 id="missing-source"),
    pytest.param(SSE_S3, {"x-amz-copy-source": f"/{INTERNAL_BUCKET}/bucket-encryption/x"},
                 403, "AccessDenied", id="source-in-the-internal-bucket"),
])
def test_copy_object_refused(shared: Stack, singles: dict[str, Stored], src: Mode,
                             headers: dict[str, str], status: int, code: str) -> None:
    obj = singles[src.name]
    headers = {k: (obj.etag if v == "PLAINTEXT-ETAG" else v) for k, v in headers.items()}
    key = random_key()
    resp = shared.client.put(path(BUCKET, key), headers={**copy_headers(BUCKET, obj.key),
                                                         **headers})
    assert_error(resp, status, code)
    assert_error(head(shared.client, key), 404, "NoSuchKey")


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_copy_source_conditions_use_the_client_etag(shared: Stack, singles: dict[str, Stored],
                                                    mode: Mode) -> None:
    obj = singles[mode.name]
    key = random_key()
    resp = shared.client.put(path(BUCKET, key), headers={
        **copy_headers(BUCKET, obj.key), **mode.copy_source,
        "x-amz-copy-source-if-match": obj.etag})
    assert resp.status_code == 200, resp.get_data()


def test_copy_onto_itself(shared: Stack) -> None:
    data = payload(5000, seed=21)
    key = random_key()
    put(shared.client, key, data, SSE_S3.write)
    refused = shared.client.put(path(BUCKET, key), headers=copy_headers(BUCKET, key))
    assert_error(refused, 400, "InvalidRequest")
    resp = shared.client.put(path(BUCKET, key), headers={
        **copy_headers(BUCKET, key), "x-amz-metadata-directive": "REPLACE",
        "x-amz-meta-v": "2", **SSE_KMS.write})
    assert resp.status_code == 200, resp.get_data()
    got = get(shared.client, key)
    assert got.get_data() == data
    assert (got.headers["x-amz-meta-v"], sse_headers(got)) == ("2", SSE_KMS.response)


# -- UploadPartCopy -------------------------------------------------------------------------------

@pytest.mark.parametrize("dst", MODES)
@pytest.mark.parametrize("src", MODES)
def test_upload_part_copy(shared: Stack, singles: dict[str, Stored], src: Mode,
                          dst: Mode) -> None:
    obj = singles[src.name]
    key = random_key()
    upload_id = create_upload(shared.client, key, dst.write)
    resp = shared.client.put(path(BUCKET, key), query_string={
        "partNumber": 1, "uploadId": upload_id}, headers={
        **copy_headers(BUCKET, obj.key), "x-amz-copy-source-range": "bytes=10-50009",
        **src.copy_source, **dst.read})
    assert resp.status_code == 200, resp.get_data()
    etag = parse_xml(resp.get_data()).findtext("ETag")
    assert etag
    assert sse_headers(resp) == dst.response
    done = complete(shared.client, key, upload_id, [(1, etag)], dst.read)
    assert done.status_code == 200, done.get_data()
    expected = obj.data[10:50010]
    got = get(shared.client, key, dst.read)
    assert got.get_data() == expected
    assert got.headers["Content-Length"] == str(len(expected))
    _, stored = shared.stored(BUCKET, key)
    if dst.encrypted:
        assert_not_plaintext(stored, expected)
    else:
        assert stored == expected


@pytest.mark.parametrize("src, dst", [
    pytest.param(SSE_S3, NONE, id="AES256-to-none"),
    pytest.param(SSE_S3, SSE_S3, id="AES256-to-AES256"),
    pytest.param(SSE_KMS, SSE_C, id="aws:kms-to-sse-c"),
    pytest.param(SSE_C, SSE_KMS, id="sse-c-to-aws:kms"),
    pytest.param(NONE, SSE_S3, id="none-to-AES256"),
])
def test_upload_part_copy_across_source_parts(shared: Stack, multiparts: dict[str, Stored],
                                              src: Mode, dst: Mode) -> None:
    """Parts copied from ranges that cross the multipart source's part boundary."""
    obj = multiparts[src.name]
    key = random_key()
    upload_id = create_upload(shared.client, key, dst.write, bucket=MP_BUCKET)
    ranges = [(100, PART + 99), (PART + 100, len(obj.data) - 1)]
    done = []
    for number, (first, last) in enumerate(ranges, start=1):
        resp = shared.client.put(path(MP_BUCKET, key), query_string={
            "partNumber": number, "uploadId": upload_id}, headers={
            **copy_headers(MP_BUCKET, obj.key), "x-amz-copy-source-range": f"bytes={first}-{last}",
            **src.copy_source, **dst.read})
        assert resp.status_code == 200, resp.get_data()
        done.append((number, parse_xml(resp.get_data()).findtext("ETag") or ""))
    assert complete(shared.client, key, upload_id, done, dst.read, bucket=MP_BUCKET) \
        .status_code == 200
    got = get(shared.client, key, dst.read, bucket=MP_BUCKET)
    assert got.get_data() == obj.data[100:]
    ranged = get(shared.client, key, {"Range": f"bytes={PART - 5}-{PART + 4}", **dst.read},
                 bucket=MP_BUCKET)
    assert ranged.get_data() == obj.data[PART + 95:PART + 105]


@pytest.mark.parametrize("src, headers, status, code", [
    pytest.param(SSE_C, {}, 400, "InvalidRequest", id="sse-c-source-without-key"),
    pytest.param(SSE_S3, {"x-amz-copy-source-range": f"bytes=0-{SIZE}"}, 400,
                 "InvalidArgument", id="range-past-the-source"),
    pytest.param(SSE_S3, {"x-amz-copy-source-range": "0-10"}, 400, "InvalidArgument",
                 id="malformed-range"),
    pytest.param(SSE_S3, {"upload-id": "f" * 48}, 404, "NoSuchUpload", id="unknown-upload"),
    pytest.param(SSE_S3, {"x-amz-copy-source-if-match": '"0123456789abcdef0123456789abcdef"'},
                 412, "PreconditionFailed", id="copy-source-if-match-other"),
])
def test_upload_part_copy_refused(tmp_path: Path, src: Mode, headers: dict[str, str],
                                  status: int, code: str) -> None:
    stack = build_stack(tmp_path)
    data = payload(SIZE, seed=22)
    assert put(stack.client, "src", data, src.write).status_code == 200
    upload_id = create_upload(stack.client, "m", SSE_S3.write)
    headers = dict(headers)
    upload_id = headers.pop("upload-id", upload_id)
    resp = stack.client.put(path(BUCKET, "m"), query_string={
        "partNumber": 1, "uploadId": upload_id}, headers={**copy_headers(BUCKET, "src"),
                                                          **headers})
    assert_error(resp, status, code)


# -- GetObjectAttributes --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_get_object_attributes_of_a_single_part_object(shared: Stack,
                                                       singles: dict[str, Stored],
                                                       mode: Mode) -> None:
    obj = singles[mode.name]
    for client in (shared.client, shared.replica().client):
        resp = get(client, obj.key, {**ALL_ATTRIBUTES, **mode.read}, query="attributes")
        assert resp.status_code == 200, resp.get_data()
        root = parse_xml(resp.get_data())
        assert root.findtext("ETag") == obj.etag.strip('"')
        assert root.findtext("ObjectSize") == str(SIZE)
        assert root.findtext("StorageClass") == "STANDARD"
        assert root.find("ObjectParts") is None
        assert root.find("Checksum") is None
        assert sse_headers(resp) == mode.response


@pytest.mark.parametrize("mode", MODES)
def test_get_object_attributes_of_a_multipart_object(shared: Stack,
                                                     multiparts: dict[str, Stored],
                                                     mode: Mode) -> None:
    obj = multiparts[mode.name]
    resp = get(shared.client, obj.key, {**ALL_ATTRIBUTES, **mode.read}, bucket=MP_BUCKET,
               query="attributes")
    assert resp.status_code == 200, resp.get_data()
    root = parse_xml(resp.get_data())
    assert root.findtext("ETag") == obj.etag.strip('"')
    assert root.findtext("ObjectSize") == str(len(obj.data))
    assert root.findtext("ObjectParts/PartsCount") == "2"
    listed = [(p.findtext("PartNumber"), p.findtext("Size"))
              for p in root.findall("ObjectParts/Part")]
    # A plain object's too: the file store keeps its checksum, and its partNumber HEADs
    # tell each part's size (encryption/attributes.py).
    assert listed == [("1", str(PART)), ("2", str(MP_LAST))]


@pytest.mark.parametrize("headers, stored_as, status, code", [
    pytest.param({}, SSE_S3, 400, "InvalidRequest", id="no-attributes"),
    pytest.param({"x-amz-object-attributes": "ETag,Colour"}, SSE_S3, 400, "InvalidArgument",
                 id="unknown-attribute"),
    pytest.param({"x-amz-object-attributes": "ETag"}, SSE_C, 400, "InvalidRequest",
                 id="sse-c-without-key"),
    pytest.param({"x-amz-object-attributes": "ETag",
                  **customer_headers(OTHER_CUSTOMER_KEY)}, SSE_C, 403, "AccessDenied",
                 id="sse-c-with-another-key"),
])
def test_get_object_attributes_refused(shared: Stack, singles: dict[str, Stored],
                                       headers: dict[str, str], stored_as: Mode, status: int,
                                       code: str) -> None:
    resp = get(shared.client, singles[stored_as.name].key, headers, query="attributes")
    assert_error(resp, status, code)


def test_get_object_attributes_of_a_missing_object(shared: Stack) -> None:
    resp = get(shared.client, "no/such/key", {"x-amz-object-attributes": "ETag"},
               query="attributes")
    assert_error(resp, 404, "NoSuchKey")


# -- listings -------------------------------------------------------------------------------------

LISTINGS = [
    pytest.param("", id="ListObjects"),
    pytest.param("list-type=2", id="ListObjectsV2"),
    pytest.param("encoding-type=url", id="ListObjects-url"),
    pytest.param("list-type=2&encoding-type=url", id="ListObjectsV2-url"),
    pytest.param("list-type=2&max-keys=2&prefix=o", id="ListObjectsV2-page"),
]


def listed(resp: TestResponse) -> dict[str, tuple[int, str]]:
    assert resp.status_code == 200, resp.get_data()
    root = parse_xml(resp.get_data())
    url = root.findtext("EncodingType") == "url"
    return {(unquote(e.findtext("Key") or "") if url else e.findtext("Key") or ""):
            (int(e.findtext("Size") or -1), e.findtext("ETag") or "")
            for e in root.findall("Contents")}


@pytest.mark.parametrize("replica", [pytest.param(False, id="facts-from-the-writes"),
                                     pytest.param(True, id="fresh-replica")])
@pytest.mark.parametrize("query", LISTINGS)
def test_listing_reports_plaintext_sizes_and_etags(tmp_path: Path, query: str,
                                                   replica: bool) -> None:
    stack = build_stack(tmp_path)
    expected = {}
    for i, mode in enumerate((*ALL_MODES, SSE_S3)):
        key = f"o{i}-{mode.name}" if i < len(ALL_MODES) else "odd/a b+c ü"
        data = payload(1000 + 7777 * i, seed=i)
        resp = put(stack.client, key, data, mode.write)
        expected[key] = (len(data), resp.headers["ETag"])
    client = stack.replica().client if replica else stack.client
    got = listed(client.get(path(BUCKET), query_string=query))
    if "max-keys=2" in query:
        assert got == {k: expected[k] for k in sorted(expected)[:2]}
    else:
        assert got == expected


@pytest.mark.parametrize("replica", [pytest.param(False, id="facts-from-the-writes"),
                                     pytest.param(True, id="fresh-replica")])
@pytest.mark.parametrize("query", ["", "list-type=2"])
def test_listing_of_multipart_objects(shared: Stack, multiparts: dict[str, Stored], query: str,
                                      replica: bool) -> None:
    client = shared.replica().client if replica else shared.client
    got = listed(client.get(path(MP_BUCKET), query_string=query + "&prefix=mp/"))
    assert got == {obj.key: (len(obj.data), obj.etag) for obj in multiparts.values()}


@pytest.mark.parametrize("query", [
    pytest.param("versions", id="ListObjectVersions"),
    pytest.param("versions&prefix=single/", id="ListObjectVersions-prefix"),
])
def test_list_object_versions_passes_the_backend_answer_on(shared: Stack,
                                                           singles: dict[str, Stored],
                                                           query: str) -> None:
    resp = shared.client.get(path(BUCKET), query_string=query)
    direct = shared.direct.get(path(BUCKET), query_string=query)
    if direct.status_code != 200:   # the file store keeps no versions (501)
        assert_same_response(resp, direct)
        return
    got = {e.findtext("Key"): (int(e.findtext("Size") or -1), e.findtext("ETag"))
           for e in parse_xml(resp.get_data()).findall("Version")}
    for obj in singles.values():
        assert got[obj.key] == (SIZE, obj.etag)


@pytest.mark.parametrize("query", ["", "list-type=2", "versions"])
def test_listing_errors_pass_through(shared: Stack, query: str) -> None:
    resp = shared.client.get(path("no-such-bucket"), query_string=query)
    assert_same_response(resp, shared.direct.get(path("no-such-bucket"), query_string=query))
    assert resp.status_code in (404, 501)


# -- SSE-C over plain HTTP ------------------------------------------------------------------------

@pytest.mark.parametrize("operation", [
    "PutObject", "CreateMultipartUpload", "UploadPart", "GetObject", "HeadObject",
    "CopyObject-destination", "CopyObject-source", "UploadPartCopy-source",
    "GetObjectAttributes",
])
def test_sse_c_over_plain_http_is_refused(tmp_path: Path, operation: str) -> None:
    """docs/ENCRYPTION.md: SSE-C over plain HTTP is refused (InvalidRequest) unless
    allow_insecure_sse_c is on; the customer key must not cross a network in the clear."""
    stack = build_stack(tmp_path, allow_insecure_sse_c=False)
    https = "https://localhost/"
    data = payload(1000, seed=23)
    assert stack.client.put(path(BUCKET, "c"), data=data, headers=SSE_C.write,
                            base_url=https).status_code == 200
    assert stack.client.put(path(BUCKET, "p"), data=data, base_url=https).status_code == 200
    plain_upload = create_upload(stack.client, "u")
    sse_c_upload = stack.client.post(path(BUCKET, "v"), query_string="uploads",
                                     headers=SSE_C.write, base_url=https)
    sse_c_upload_id = parse_xml(sse_c_upload.get_data()).findtext("UploadId")
    requests = {
        "PutObject": ("PUT", "k", "", SSE_C.write, data),
        "CreateMultipartUpload": ("POST", "k", "uploads", SSE_C.write, None),
        "UploadPart": ("PUT", "v", f"partNumber=1&uploadId={sse_c_upload_id}", SSE_C.read, data),
        "GetObject": ("GET", "c", "", SSE_C.read, None),
        "HeadObject": ("HEAD", "c", "", SSE_C.read, None),
        "CopyObject-destination": ("PUT", "k", "", {**copy_headers(BUCKET, "p"),
                                                    **SSE_C.write}, None),
        "CopyObject-source": ("PUT", "k", "", {**copy_headers(BUCKET, "c"),
                                               **SSE_C.copy_source}, None),
        "UploadPartCopy-source": ("PUT", "u", f"partNumber=1&uploadId={plain_upload}",
                                  {**copy_headers(BUCKET, "c"), **SSE_C.copy_source}, None),
        "GetObjectAttributes": ("GET", "c", "attributes", {
            "x-amz-object-attributes": "ETag,ObjectSize", **SSE_C.read}, None),
    }
    method, key, query, headers, body = requests[operation]
    for base_url, insecure in (("http://localhost/", True), (https, False)):
        resp = stack.client.open(path(BUCKET, key), method=method, query_string=query,
                                 headers=headers, data=body, base_url=base_url)
        if insecure:
            assert_error(resp, 400, "InvalidRequest")
        else:
            assert resp.status_code == 200, resp.get_data()
