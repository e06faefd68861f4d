"""S3's ETags for multipart uploads under encryption (issue 15; FORMAT.md §7.8, §7.9).

A part's ETag is the MD5 of its plaintext (s3cmd checks it); a completed SSE-S3 or
SSE-KMS object's ETag is S3's ``"<MD5 of the part MD5s>-N"`` in Complete's answer,
HEAD, GET, listings, GetObjectAttributes and conditions; a part re-sent with the same
bytes keeps its ETag; a Complete retried after it succeeded gets the same answer; an
SSE-C Complete needs no key; and part records rewritten in the backend fail closed.
Runs over the file store and moto (and Ceph RGW in the lead's runs).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pytest
from botocore.exceptions import ClientError
from support.backend_files import read_stored
from support.clients import make_client
from support.server import start_server

MiB = 1024 * 1024
INTERNAL = "encproxy-internal"
SSE_S3 = {"ServerSideEncryption": "AES256"}
SSE_KMS = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "test-key"}


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def s3_etag(parts: Sequence[bytes]) -> str:
    """S3's multipart ETag of an object completed from these parts, in order."""
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def customer() -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}


@pytest.fixture(scope="module")
def strict(backend, tmp_path_factory):
    """A client of an encproxy that requires encryption: an upload without a record is
    never handed to the backend (which may answer for a completed or aborted upload as
    it likes: moto completes a completed upload again, and fails on an aborted one)."""
    server = start_server(tmp_path_factory.mktemp("strict"), env={
        **backend.server_env(), "ENCPROXY_ENCRYPTION_REQUIRE": "true",
        "ENCPROXY_ENCRYPTION_DEFAULT": "AES256"})
    yield make_client(server.endpoint)
    server.stop()


@pytest.fixture
def strict_bucket(strict):
    name = "strict-" + os.urandom(6).hex()
    strict.create_bucket(Bucket=name)
    yield name
    for obj in strict.list_objects_v2(Bucket=name).get("Contents", []):
        strict.delete_object(Bucket=name, Key=obj["Key"])
    for up in strict.list_multipart_uploads(Bucket=name).get("Uploads", []):
        strict.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    strict.delete_bucket(Bucket=name)


def put_parts(s3, bucket: str, key: str, uid: str, parts: dict[int, bytes],
              **extra) -> dict[int, str]:
    return {n: s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body,
                              **extra)["ETag"] for n, body in parts.items()}


def complete(s3, bucket: str, key: str, uid: str, etags: dict[int, str], **extra) -> dict:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, **extra,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in sorted(etags.items())]})


@pytest.mark.parametrize("create", [SSE_S3, SSE_KMS, {}], ids=["sse-s3", "sse-kms",
                                                                "bucket-default"])
def test_part_etags_are_plaintext_md5s_and_the_object_etag_is_s3s(s3, bucket, create, quirks):
    if not create:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    parts = {1: os.urandom(5 * MiB), 2: os.urandom(5 * MiB + 7), 3: os.urandom(1000)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp", **create)["UploadId"]
    etags = put_parts(s3, bucket, "mp", uid, parts)
    assert etags == {n: md5_etag(body) for n, body in parts.items()}
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (n, etags[n], len(parts[n])) for n in (1, 2, 3)]
    done = complete(s3, bucket, "mp", uid, etags)
    expected = s3_etag([parts[1], parts[2], parts[3]])
    assert done["ETag"] == expected
    whole = parts[1] + parts[2] + parts[3]
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert (got["ETag"], got["Body"].read()) == (expected, whole)
    assert s3.head_object(Bucket=bucket, Key="mp")["ETag"] == expected
    listing = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listing] == [("mp", expected, len(whole))]
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ETag"])
    assert attrs["ETag"] == expected.strip('"')
    # Conditions name the ETag the client sees.
    assert s3.get_object(Bucket=bucket, Key="mp", IfMatch=expected,
                         Range="bytes=0-9")["Body"].read() == whole[:10]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="mp", IfNoneMatch=expected)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket,
                                                                   "Key": "mp"},
                            CopySourceIfMatch=expected)
    assert copied["CopyObjectResult"]["ETag"] == \
        s3.head_object(Bucket=bucket, Key="copy")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == whole
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "mp"},
                       CopySourceIfMatch=md5_etag(whole))
    assert error_code(exc) == "PreconditionFailed"
    # Last: ListObjectVersions names the object by the same ETag, with its plaintext size.
    with quirks.breaks("versions-multipart-etag"):
        assert [(v["ETag"], v["Size"]) for v in versions] == [(expected, len(whole))]


def test_the_stored_object_does_not_carry_the_plaintext_md5s(server, backend_client, s3,
                                                             bucket, stored):
    """The part MD5s and the object's ETag are sealed: neither is in the backend, in the
    clear, anywhere (objects, part records, metadata)."""
    parts = {1: os.urandom(5 * MiB), 2: os.urandom(100)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sealed", **SSE_S3)["UploadId"]
    etags = put_parts(s3, bucket, "sealed", uid, parts)
    during = stored.all_bytes()
    done = complete(s3, bucket, "sealed", uid, etags)
    after = stored.all_bytes()
    for body in parts.values():
        digest = hashlib.md5(body)
        for blob in (during, after):
            assert digest.digest() not in blob and digest.hexdigest().encode() not in blob
            assert hashlib.sha256(digest.hexdigest().encode()).hexdigest()[:32].encode() \
                not in blob
    assert done["ETag"].strip('"').split("-")[0].encode() not in after


def test_a_part_resent_with_the_same_bytes_completes_with_its_etag(s3, bucket, quirks):
    """s3-tests test_multipart_upload_resend_part: the re-sent part is the one kept."""
    body, last = os.urandom(5 * MiB), os.urandom(10)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="resend", **SSE_S3)["UploadId"]
    first = put_parts(s3, bucket, "resend", uid, {1: body, 2: last})
    again = put_parts(s3, bucket, "resend", uid, {1: body})
    assert again[1] == first[1]
    listed = s3.list_parts(Bucket=bucket, Key="resend", UploadId=uid)["Parts"]
    done = complete(s3, bucket, "resend", uid, first)
    assert done["ETag"] == s3_etag([body, last])
    assert s3.get_object(Bucket=bucket, Key="resend")["Body"].read() == body + last
    with quirks.breaks("parts-kept-per-upload"):   # last: one part 1, the re-sent one
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, first[1]), (2, first[2])]


def test_a_complete_retried_after_it_succeeded_gets_the_same_answer(strict, strict_bucket):
    """s3-tests test_multipart_upload calls Complete twice; SDKs retry a lost answer."""
    s3, bucket = strict, strict_bucket
    parts = {1: os.urandom(5 * MiB), 2: os.urandom(3)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="twice", **SSE_KMS)["UploadId"]
    etags = put_parts(s3, bucket, "twice", uid, parts)
    first = complete(s3, bucket, "twice", uid, etags)
    second = complete(s3, bucket, "twice", uid, etags)
    fields = ("ETag", "Location", "Bucket", "Key", "ServerSideEncryption", "SSEKMSKeyId")
    assert [first.get(f) for f in fields] == [second.get(f) for f in fields]
    assert second["ETag"] == s3_etag([parts[1], parts[2]])
    # Another part list, or the same list for another upload id: NoSuchUpload.
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "twice", uid, {1: etags[1]})
    assert error_code(exc) == "NoSuchUpload"
    other = s3.create_multipart_upload(Bucket=bucket, Key="twice", **SSE_KMS)["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="twice", UploadId=other)
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "twice", other, etags)
    assert error_code(exc) == "NoSuchUpload"


def test_a_complete_retried_after_the_object_changed_is_nosuchupload(strict, strict_bucket):
    s3, bucket = strict, strict_bucket
    parts = {1: os.urandom(5 * MiB), 2: os.urandom(3)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", **SSE_S3)["UploadId"]
    etags = put_parts(s3, bucket, "k", uid, parts)
    complete(s3, bucket, "k", uid, etags)
    s3.put_object(Bucket=bucket, Key="k", Body=b"overwritten", **SSE_S3)
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "k", uid, etags)
    assert error_code(exc) == "NoSuchUpload"
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "k", uid, etags)
    assert error_code(exc) == "NoSuchUpload"


@pytest.mark.parametrize("numbers, sizes", [
    pytest.param((1, 2), (5 * MiB, 5 * MiB), id="header-only-trailer"),
    pytest.param((1, 2), (5 * MiB, 100), id="terminal-last-part"),
    pytest.param((1, 3), (5 * MiB, 5 * MiB + 1), id="gaps-indexed-trailer"),
])
def test_sse_c_complete_needs_no_key(server, backend_client, s3, bucket, numbers, sizes):
    """AWS does not take the customer key on CompleteMultipartUpload: the trailer is
    sealed under the upload's completion key (FORMAT.md §7.9)."""
    key = customer()
    parts = {n: os.urandom(size) for n, size in zip(numbers, sizes, strict=True)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="c", **key)["UploadId"]
    etags = put_parts(s3, bucket, "c", uid, parts, **key)
    # SSE-C part ETags are opaque (not MD5s, as at AWS).
    assert all(etags[n] != md5_etag(body) for n, body in parts.items())
    done = complete(s3, bucket, "c", uid, etags)
    whole = b"".join(parts[n] for n in numbers)
    got = s3.get_object(Bucket=bucket, Key="c", **key)
    assert got["Body"].read() == whole and got["ETag"] == done["ETag"]
    assert s3.head_object(Bucket=bucket, Key="c", **key)["ContentLength"] == len(whole)
    rng = s3.get_object(Bucket=bucket, Key="c", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}",
                        **key)["Body"].read()
    assert rng == whole[5 * MiB - 3:5 * MiB + 3]
    with pytest.raises(ClientError) as exc:   # still the customer's key, and only it
        s3.get_object(Bucket=bucket, Key="c", **customer())
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
    if backend_client is None:
        _, body = read_stored(server.root, bucket, "c")
    else:
        body = backend_client.get_object(Bucket=bucket, Key="c")["Body"].read()
    assert parts[numbers[0]][:4096] not in body


def test_sse_c_complete_that_rewrites_its_last_part_still_needs_the_key(s3, bucket):
    """Gaps and a small last part: the trailer goes into the last part, whose held copy
    only the data key can verify (FORMAT.md §7.9): without the key InvalidRequest; the
    upload stays, and Complete with the key succeeds."""
    key = customer()
    parts = {1: os.urandom(5 * MiB), 3: os.urandom(100)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="c", **key)["UploadId"]
    etags = put_parts(s3, bucket, "c", uid, parts, **key)
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "c", uid, etags)
    assert error_code(exc) == "InvalidRequest"
    complete(s3, bucket, "c", uid, etags, **key)
    assert s3.get_object(Bucket=bucket, Key="c", **key)["Body"].read() == parts[1] + parts[3]



@pytest.mark.parametrize("numbers", [(1, 2), (1, 3)], ids=["contiguous", "gaps"])
def test_a_held_tail_of_almost_5_mib_completes(s3, bucket, numbers):
    """A terminal last part of just under 5 MiB: Complete re-uploads it from its held copy
    with the trailer (FORMAT.md §7.4), reading the copy with If-Match on the ETag the
    backend gave the copy, not the part's ETag: SeaweedFS stores a copy this size in
    chunks and answers UploadPartCopy with an ETag of its own (`…-2`), so If-Match on the
    part's ETag was 412 and Complete failed with InternalError."""
    parts = {numbers[0]: os.urandom(5 * MiB), numbers[1]: os.urandom(5 * MiB - 1)}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="t", **SSE_S3)["UploadId"]
    etags = put_parts(s3, bucket, "t", uid, parts)
    assert etags == {n: md5_etag(body) for n, body in parts.items()}
    done = complete(s3, bucket, "t", uid, etags)
    whole = parts[numbers[0]] + parts[numbers[1]]
    assert done["ETag"] == s3_etag([parts[numbers[0]], parts[numbers[1]]])
    got = s3.get_object(Bucket=bucket, Key="t")
    assert got["Body"].read() == whole and got["ETag"] == done["ETag"]
