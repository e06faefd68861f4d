"""Transparent encryption of single-part objects through the real server.

Every write that is to be encrypted reaches the backend as ciphertext (checked
by reading the backend's files directly), every read is decrypted with sizes,
ETags and ranges as plain S3, and tampering in the backend gives an error,
never wrong bytes.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import uuid

import pytest
import requests
from botocore.exceptions import ClientError
from support.backends import Stored
from support.clients import make_client
from support.server import start_server
from test_buckets import code, status

from encproxy.format.constants import CHECKSUMMED_SEAL_SIZE

MARKER = b"PLAINTEXT-MARKER-7f3a"
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def marked(size: int) -> bytes:
    """A body that is easy to find in the backend if it ever lands there in plaintext."""
    unit = MARKER + os.urandom(64)
    return (unit * (size // len(unit) + 1))[:size]


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def customer_key() -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}


@pytest.fixture
def encrypted_bucket(s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    return bucket


def assert_no_plaintext_in_backend(stored: Stored) -> None:
    assert MARKER not in stored.all_bytes()


# -- writes are encrypted, reads are transparent -------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 1024 * 1024 + 5])
def test_bucket_default_round_trip(stored, s3, encrypted_bucket, size):
    data = marked(size)
    put = s3.put_object(Bucket=encrypted_bucket, Key="obj", Body=data, Metadata={"m": "v"})
    assert put["ETag"] == md5_etag(data)
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=encrypted_bucket, Key="obj")
    assert got["Body"].read() == data
    assert (got["ETag"], got["ContentLength"], got["ServerSideEncryption"]) == (
        md5_etag(data), size, "AES256")
    assert got["Metadata"] == {"m": "v"}  # the envelope is not shown to clients
    head = s3.head_object(Bucket=encrypted_bucket, Key="obj")
    assert (head["ETag"], head["ContentLength"]) == (md5_etag(data), size)
    for listing in (s3.list_objects_v2(Bucket=encrypted_bucket),
                    s3.list_objects(Bucket=encrypted_bucket)):
        entry = listing["Contents"][0]
        assert (entry["Size"], entry["ETag"]) == (size, md5_etag(data))
    held = stored.read(encrypted_bucket, "obj")
    assert len(held.body) > size and "encproxy" in held.user_metadata
    assert held.body[:min(size, 64)] != data[:64] or size == 0
    assert_no_plaintext_in_backend(stored)


def test_backend_etag_names_the_ciphertext_and_is_new_for_every_write(backend, stored, s3,
                                                                      encrypted_bucket):
    """The file store keeps the seal's fingerprint instead of hashing the ciphertext
    (docs/ENCRYPTION.md, "ETags"); S3 backends keep their MD5 of it."""
    data = marked(200_000)
    held = []
    for _ in range(2):
        assert s3.put_object(Bucket=encrypted_bucket, Key="twice", Body=data)["ETag"] == \
            md5_etag(data)
        held.append(stored.read(encrypted_bucket, "twice"))
        # the seal: the MD5 and (envelope version 2) the checksum, FORMAT.md §15
        expected = held[-1].body if backend.is_s3 else held[-1].body[-CHECKSUMMED_SEAL_SIZE:]
        assert held[-1].etag == hashlib.md5(expected).hexdigest()
    assert held[0].etag != held[1].etag
    assert s3.head_object(Bucket=encrypted_bucket, Key="twice")["ETag"] == md5_etag(data)


def test_request_headers_override_bucket_configuration(stored, s3, encrypted_bucket):
    data = marked(1000)
    put = s3.put_object(Bucket=encrypted_bucket, Key="kms", Body=data,
                        ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/test-key")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "test-key")
    head = s3.head_object(Bucket=encrypted_bucket, Key="kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "test-key")
    assert s3.get_object(Bucket=encrypted_bucket, Key="kms")["Body"].read() == data
    assert_no_plaintext_in_backend(stored)


def test_kms_bucket_configuration_and_context(stored, s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": "other-key"}}]})
    data = marked(70_000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "other-key")
    context = base64.b64encode(json.dumps({"project": "apollo"}).encode()).decode()
    put = s3.put_object(Bucket=bucket, Key="ctx", Body=data, ServerSideEncryption="aws:kms",
                        SSEKMSEncryptionContext=context)
    assert put["SSEKMSKeyId"] == "default"
    got = s3.get_object(Bucket=bucket, Key="ctx")
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-server-side-encryption-context"] \
        == context
    assert_no_plaintext_in_backend(stored)


def test_unencrypted_bucket_stores_as_sent_and_header_encrypts(stored, s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"as sent")
    assert stored.read(bucket, "plain").body == b"as sent"
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain")
    data = marked(5000)
    s3.put_object(Bucket=bucket, Key="asked", Body=data, ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="asked")["Body"].read() == data
    assert_no_plaintext_in_backend(stored)


def test_objects_written_before_encryption_are_served_as_they_are(stored, s3, bucket):
    s3.put_object(Bucket=bucket, Key="old", Body=b"old plaintext object")
    stored.write(bucket, "direct", b"written straight to the backend", {})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    assert s3.get_object(Bucket=bucket, Key="old")["Body"].read() == b"old plaintext object"
    got = s3.get_object(Bucket=bucket, Key="direct", Range="bytes=0-5")
    assert got["Body"].read() == b"writte"
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert sizes == {"old": 20, "direct": 31}


# -- reads ---------------------------------------------------------------------------------

BODY = bytes(os.urandom(200_000))


@pytest.mark.parametrize("header,first,last", [
    pytest.param("bytes=0-0", 0, 0, id="first-byte"),
    pytest.param("bytes=65530-65545", 65530, 65545, id="across-chunk-boundary"),
    pytest.param("bytes=65536-131071", 65536, 131071, id="exactly-one-chunk"),
    pytest.param("bytes=150000-", 150000, len(BODY) - 1, id="open-ended"),
    pytest.param("bytes=-7", len(BODY) - 7, len(BODY) - 1, id="suffix"),
    pytest.param("bytes=-999999", 0, len(BODY) - 1, id="suffix-longer-than-object"),
    pytest.param("bytes=199999-300000", 199999, len(BODY) - 1, id="clamped-last-byte"),
])
def test_ranges(s3, encrypted_bucket, header, first, last):
    s3.put_object(Bucket=encrypted_bucket, Key="r", Body=BODY)
    got = s3.get_object(Bucket=encrypted_bucket, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == BODY[first:last + 1]
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(BODY)}"
    assert got["ETag"] == md5_etag(BODY)


def test_unsatisfiable_range_and_part_number(s3, encrypted_bucket):
    s3.put_object(Bucket=encrypted_bucket, Key="r", Body=b"12345")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=encrypted_bucket, Key="r", Range="bytes=5-")
    assert code(exc) == "InvalidRange" and status(exc) == 416
    got = s3.get_object(Bucket=encrypted_bucket, Key="r", PartNumber=1)
    assert got["Body"].read() == b"12345"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=encrypted_bucket, Key="r", PartNumber=2)
    assert code(exc) == "InvalidPartNumber"


def test_conditional_reads_use_the_plaintext_etag(s3, encrypted_bucket):
    data = b"conditional"
    s3.put_object(Bucket=encrypted_bucket, Key="c", Body=data)
    assert s3.get_object(Bucket=encrypted_bucket, Key="c",
                         IfMatch=md5_etag(data))["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=encrypted_bucket, Key="c", IfNoneMatch=md5_etag(data))
    assert status(exc) == 304
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=encrypted_bucket, Key="c", IfMatch='"0123"')
    assert status(exc) == 412
    lm = s3.head_object(Bucket=encrypted_bucket, Key="c")["LastModified"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=encrypted_bucket, Key="c", IfModifiedSince=lm)
    assert status(exc) == 304


def test_presigned_get_and_response_overrides(server, s3, encrypted_bucket):
    s3.put_object(Bucket=encrypted_bucket, Key="p", Body=b"presigned secret",
                  ContentType="text/plain")
    signer = make_client(server.endpoint, signature_version="s3v4")
    url = signer.generate_presigned_url("get_object", Params={
        "Bucket": encrypted_bucket, "Key": "p", "ResponseContentType": "application/x-test",
        "ResponseContentDisposition": "attachment"}, ExpiresIn=60)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"presigned secret"
    assert resp.headers["Content-Type"] == "application/x-test"
    assert resp.headers["Content-Disposition"] == "attachment"
    assert resp.headers["ETag"] == md5_etag(b"presigned secret")


# -- SSE-C -----------------------------------------------------------------------------------

def test_sse_c_round_trip_and_wrong_keys(stored, s3, bucket):
    sse = customer_key()
    data = marked(100_000)
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **sse)
    key_md5 = base64.b64encode(hashlib.md5(sse["SSECustomerKey"]).digest()).decode()
    assert (put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]) == ("AES256", key_md5)
    got = s3.get_object(Bucket=bucket, Key="c", **sse)
    assert got["Body"].read() == data and got["SSECustomerKeyMD5"] == key_md5
    assert got["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", Range="bytes=10-19", **sse)["Body"].read() \
        == data[10:20]
    head = s3.head_object(Bucket=bucket, Key="c", **sse)
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert (listed["Size"], listed["ETag"]) == (len(data), put["ETag"])
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c")
    assert code(exc) == "InvalidRequest" and status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", **customer_key())
    assert code(exc) == "AccessDenied" and status(exc) == 403
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c")
    assert status(exc) == 400
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="plain", **sse)
    assert code(exc) == "InvalidRequest"
    assert_no_plaintext_in_backend(stored)
    # encproxy keeps nothing that reveals the key: not the key, not its MD5.
    held = stored.all_bytes()
    assert sse["SSECustomerKey"] not in held and key_md5.encode() not in held


@pytest.mark.parametrize("kwargs,expected", [
    pytest.param({"ServerSideEncryption": "AES128"}, "InvalidArgument", id="bad-algorithm"),
    pytest.param({"SSEKMSKeyId": "test-key"}, "InvalidArgument", id="key-without-kms"),
    pytest.param({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "no-such-key"},
                 "KMS.NotFoundException", id="unknown-kms-key"),
    pytest.param({"SSECustomerAlgorithm": "AES128", "SSECustomerKey": b"k" * 32},
                 "InvalidEncryptionAlgorithmError", id="sse-c-algorithm"),
    pytest.param({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b"short"},
                 "InvalidArgument", id="sse-c-short-key"),
    pytest.param({"ServerSideEncryption": "aws:kms:dsse"}, "NotImplemented", id="dsse"),
    pytest.param({"Metadata": {"encproxy": "forged"}}, "InvalidArgument", id="reserved-metadata"),
])
def test_bad_sse_headers(s3, bucket, kwargs, expected):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", **kwargs)
    assert code(exc) == expected
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")


def test_metadata_budget_counts_the_envelope(s3, encrypted_bucket):
    big = {"m": "v" * 1900}  # fits S3's 2 KB alone, not beside the ~190-byte envelope
    s3.put_object(Bucket=encrypted_bucket, Key="fits", Body=b"x", Metadata={"m": "v" * 1500})
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=encrypted_bucket, Key="too-big", Body=b"x", Metadata=big)
    assert code(exc) == "MetadataTooLarge"


# -- tampering in the backend ------------------------------------------------------------

def get_raw(server, bucket: str, key: str) -> tuple[int, bytes, bool]:
    """GET with a plain HTTP client: status, body, and whether the body came whole."""
    from support.raw_s3 import Signed
    url = f"{server.endpoint}/{bucket}/{key}"
    signed = Signed("GET", url, {}, hashlib.sha256(b"").hexdigest())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/{bucket}/{key}", headers=signed.headers)
    resp = conn.getresponse()
    try:
        body = resp.read()
        whole = True
    except http.client.IncompleteRead as exc:
        body, whole = exc.partial, False
    conn.close()
    return resp.status, body, whole


# 200 kB: read whole with its seal (WHOLE_BODY_UP_TO); 3 MiB: the seal fetched by a range.
@pytest.mark.parametrize("size", [200_000, 3 * 1024 * 1024])
@pytest.mark.parametrize("where", ["first-chunk", "late-chunk", "seal"])
def test_flipped_byte_is_an_error_never_wrong_bytes(server, stored, s3, encrypted_bucket,
                                                    where, size):
    data = marked(size)
    s3.put_object(Bucket=encrypted_bucket, Key="t", Body=data)
    held = stored.read(encrypted_bucket, "t")
    stored_size = len(held.body)
    offset = {"first-chunk": 100, "late-chunk": stored_size - 70_000,
              "seal": stored_size - 5}[where]
    tampered = bytearray(held.body)
    tampered[offset] ^= 0x01
    stored.write(encrypted_bucket, "t", bytes(tampered), held.user_metadata)
    status_code, body, whole = get_raw(server, encrypted_bucket, "t")
    if status_code == 200:
        # Detected after the headers went out: the connection is cut short.
        assert not whole and len(body) < len(data)
        assert data.startswith(body)
    else:
        assert status_code == 500 and b"<Code>InternalError</Code>" in body
    assert "integrity failure on " + encrypted_bucket + "/t" in server.log_text()


def test_truncated_object_is_an_error(server, stored, s3, encrypted_bucket):
    data = marked(300_000)
    s3.put_object(Bucket=encrypted_bucket, Key="t", Body=data)
    held = stored.read(encrypted_bucket, "t")
    for cut in (16, 32, 65_552):  # tag, seal, a whole chunk record
        stored.write(encrypted_bucket, "t", held.body[:-cut], held.user_metadata)
        status_code, body, whole = get_raw(server, encrypted_bucket, "t")
        assert status_code == 500 or not whole
        assert body != data
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=encrypted_bucket, Key="t")
        assert status(exc) == 500


def test_swapped_metadata_is_an_error(server, stored, s3, encrypted_bucket):
    s3.put_object(Bucket=encrypted_bucket, Key="a", Body=marked(1000))
    s3.put_object(Bucket=encrypted_bucket, Key="b", Body=marked(1000))
    held_a, held_b = stored.read(encrypted_bucket, "a"), stored.read(encrypted_bucket, "b")
    # b's body under a's envelope; then a's whole object moved to b.
    stored.write(encrypted_bucket, "b", held_b.body, held_a.user_metadata)
    status_code, body, _ = get_raw(server, encrypted_bucket, "b")
    assert status_code == 500 and MARKER not in body
    stored.write(encrypted_bucket, "b", held_a.body, held_a.user_metadata)
    status_code, body, _ = get_raw(server, encrypted_bucket, "b")
    assert status_code == 500 and MARKER not in body
    assert f"integrity failure on {encrypted_bucket}/b" in server.log_text()


# -- server-wide policy --------------------------------------------------------------------

@pytest.fixture(scope="module")
def policy_servers(backend, tmp_path_factory):
    default_kms = start_server(tmp_path_factory.mktemp("default"),
                               env={**backend.server_env(),
                                    "ENCPROXY_ENCRYPTION_DEFAULT": "aws:kms"})
    strict = start_server(tmp_path_factory.mktemp("strict"),
                          env={**backend.server_env(), "ENCPROXY_ENCRYPTION_REQUIRE": "true",
                               "ENCPROXY_ENCRYPTION_ALLOW_INSECURE_SSE_C": "false"})
    yield default_kms, strict
    default_kms.stop()
    strict.stop()


def test_server_default_encrypts_buckets_without_configuration(backend, policy_servers):
    server, _ = policy_servers
    s3 = make_client(server.endpoint)
    name = "dflt-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=name)
    data = marked(10_000)
    put = s3.put_object(Bucket=name, Key="x", Body=data)
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "default")
    assert s3.get_object(Bucket=name, Key="x")["Body"].read() == data
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    assert s3.put_object(Bucket=name, Key="y", Body=b"y")["ServerSideEncryption"] == "AES256"
    assert_no_plaintext_in_backend(Stored(backend, server.root))


def test_require_refuses_unencrypted_writes_and_insecure_sse_c(policy_servers):
    _, server = policy_servers
    s3 = make_client(server.endpoint)
    name = "strict-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="x", Body=b"plain")
    assert code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="x", Body=b"plain", **customer_key())
    assert code(exc) == "InvalidRequest" and b"secure" in str(exc.value).encode()
    assert s3.put_object(Bucket=name, Key="x", Body=b"ok",
                         ServerSideEncryption="AES256")["ServerSideEncryption"] == "AES256"
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=SSE_S3)
    assert s3.put_object(Bucket=name, Key="y", Body=b"ok")["ServerSideEncryption"] == "AES256"

