"""CopyObject and UploadPartCopy between every kind of source and destination.

Sources and destinations are plain, SSE-S3, SSE-KMS or SSE-C; sources are
single-part or multipart.  The copy gets the encryption its destination calls
for, reads back as the source's plaintext, and reports one ETag everywhere.
Copies that can keep the body (same suite, no SSE-C change) rebind the data key
and leave the ciphertext as it was; the others re-encrypt as they stream.
"""
from __future__ import annotations

import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from test_buckets import code
from test_encrypted_multipart import (
    INTERNAL_BUCKET,
    SSE_S3_CONFIG,
    assert_no_plaintext,
    listings,
    stored_object,
    upload,
    versions_quirk,
)
from test_encryption import marked

MiB = 1024 * 1024
KINDS = ["plain", "sse-s3", "sse-kms", "sse-c"]


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


class Side:
    """The encryption of one side of a copy: what writing it takes, what reading it
    takes, and what the copy request says about it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.key = os.urandom(32) if kind == "sse-c" else None

    @property
    def write(self) -> dict[str, object]:
        if self.kind == "sse-s3":
            return {"ServerSideEncryption": "AES256"}
        if self.kind == "sse-kms":
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "test-key"}
        return self.read

    @property
    def read(self) -> dict[str, object]:
        if self.key is None:
            return {}
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.key}

    @property
    def as_source(self) -> dict[str, object]:
        if self.key is None:
            return {}
        return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": self.key}

    def check(self, resp: dict) -> None:
        if self.kind == "plain":
            assert "ServerSideEncryption" not in resp and "SSECustomerKeyMD5" not in resp
        elif self.kind == "sse-c":
            assert resp["SSECustomerKeyMD5"] == base64.b64encode(
                hashlib.md5(self.key).digest()).decode()   # type: ignore[arg-type]
        elif self.kind == "sse-kms":
            assert (resp["ServerSideEncryption"], resp["SSEKMSKeyId"]) == ("aws:kms", "test-key")
        else:
            assert resp["ServerSideEncryption"] == "AES256"


def rebinds(source: Side, dest: Side) -> bool:
    """Whether the copy keeps the ciphertext (FORMAT.md §3.4 and the SSE-C rule)."""
    return "plain" not in (source.kind, dest.kind) and (source.kind == "sse-c") == (
        dest.kind == "sse-c") and source.key == dest.key


def put_source(s3, bucket: str, key: str, side: Side, multipart: bool) -> bytes:
    if multipart:
        parts = {1: marked(5 * MiB), 2: marked(5 * MiB)}
        uid = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"from": "source"},
                                         ContentType="text/x-source", **side.write)["UploadId"]
        etags = {n: s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n,
                                   Body=body, **side.read)["ETag"] for n, body in parts.items()}
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, **side.read,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": n, "ETag": e} for n, e in etags.items()]})
        return parts[1] + parts[2]
    data = marked(200_001)
    s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"from": "source"},
                  ContentType="text/x-source", **side.write)
    return data


COMBINATIONS = [pytest.param(multipart, s, d, id=f"{'multipart' if multipart else 'single'}-{s}-{d}")
                for multipart in (False, True) for s in KINDS for d in KINDS
                # a plain multipart object copied plain is the backend's business
                if not (multipart and s == d == "plain")]


@pytest.mark.parametrize("multipart,source_kind,dest_kind", COMBINATIONS)
def test_copy_every_combination(server, backend_client, s3, bucket, source_kind, dest_kind,
                                multipart):
    source, dest = Side(source_kind), Side(dest_kind)
    data = put_source(s3, bucket, "src", source, multipart)
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                            **source.as_source, **dest.write)
    dest.check(copied)
    etag = copied["CopyObjectResult"]["ETag"]
    got = s3.get_object(Bucket=bucket, Key="dst", **dest.read)
    assert got["Body"].read() == data
    assert (got["ETag"], got["ContentLength"]) == (etag, len(data))
    assert (got["Metadata"], got["ContentType"]) == ({"from": "source"}, "text/x-source")
    dest.check(got)
    head = s3.head_object(Bucket=bucket, Key="dst", **dest.read)
    assert (head["ETag"], head["ContentLength"]) == (etag, len(data))
    listed = {o["Key"]: (o["Size"], o["ETag"]) for o in s3.list_objects_v2(
        Bucket=bucket)["Contents"]}
    assert listed["dst"] == (len(data), etag)
    if dest_kind != "sse-c" and (not multipart or not rebinds(source, dest)):
        assert etag == md5_etag(data)   # a single-part copy: the plaintext MD5
    if multipart and rebinds(source, dest):
        if "sse-c" in (source_kind, dest_kind):
            assert etag.endswith('-3"')   # parts kept: two data parts and the trailer part
        else:   # parts and index kept: S3's ETag of the two parts (FORMAT.md §7.8)
            half = len(data) // 2
            joined = hashlib.md5(data[:half]).digest() + hashlib.md5(data[half:]).digest()
            assert etag == f'"{hashlib.md5(joined).hexdigest()}-2"'
    rng = s3.get_object(Bucket=bucket, Key="dst", Range="bytes=65530-5242890", **dest.read)
    assert rng["Body"].read() == data[65530:5242891]
    _, source_body = stored_object(server, backend_client, bucket, "src")
    _, dest_body = stored_object(server, backend_client, bucket, "dst")
    assert (source_body == dest_body) == (rebinds(source, dest) or source_kind == dest_kind
                                          == "plain")
    assert s3.get_object(Bucket=bucket, Key="src", **source.read)["Body"].read() == data
    if "plain" not in (source_kind, dest_kind):
        assert_no_plaintext(server, backend_client)


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_metadata_directives_keep_the_destination_encryption(server, backend_client, s3, bucket,
                                                            multipart):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    data = put_source(s3, bucket, "src", Side("sse-kms"), multipart)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/src")
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert head["ServerSideEncryption"] == "AES256"   # the bucket's default, not the source's
    assert (head["Metadata"], head["ContentType"]) == ({"from": "source"}, "text/x-source")
    s3.copy_object(Bucket=bucket, Key="replace", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="x/y")
    head = s3.head_object(Bucket=bucket, Key="replace")
    assert head["ServerSideEncryption"] == "AES256"
    assert (head["Metadata"], head["ContentType"]) == ({"new": "1"}, "x/y")
    assert s3.get_object(Bucket=bucket, Key="replace")["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="bad", CopySource=f"{bucket}/src",
                       MetadataDirective="REPLACE", Metadata={"encproxy": "forged"})
    assert code(exc) == "InvalidArgument"
    assert_no_plaintext(server, backend_client)


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_copy_onto_itself(server, backend_client, s3, bucket, multipart):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    data = put_source(s3, bucket, "self", Side("sse-s3"), multipart)
    before = s3.head_object(Bucket=bucket, Key="self")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert code(exc) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == data and got["Metadata"] == {"v": "2"}
    assert got["ETag"] == before["ETag"]
    # Changing the encryption is a change too (COPY keeps the metadata).
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   ServerSideEncryption="aws:kms", SSEKMSKeyId="test-key")
    head = s3.head_object(Bucket=bucket, Key="self")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["Metadata"]) == (
        "aws:kms", "test-key", {"v": "2"})
    assert s3.get_object(Bucket=bucket, Key="self")["Body"].read() == data
    assert_no_plaintext(server, backend_client)


def test_copy_conditions_use_the_client_etag(server, backend_client, s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    data = b"conditional copy"
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    s3.copy_object(Bucket=bucket, Key="ok", CopySource=f"{bucket}/src",
                   CopySourceIfMatch=md5_etag(data))
    assert s3.get_object(Bucket=bucket, Key="ok")["Body"].read() == data
    _, stored = stored_object(server, backend_client, bucket, "src")
    for kwargs in ({"CopySourceIfNoneMatch": md5_etag(data)},
                   {"CopySourceIfMatch": md5_etag(stored)}):   # the ciphertext's MD5
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="no", CopySource=f"{bucket}/src", **kwargs)
        assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="no", CopySource=f"{bucket}/missing")
    assert code(exc) == "NoSuchKey"


def test_copy_source_rules(server, s3, bucket):
    c = Side("sse-c")
    s3.put_object(Bucket=bucket, Key="c", Body=b"customer", **c.write)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/c")
    assert code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/c",
                       **Side("sse-c").as_source)
    assert code(exc) == "AccessDenied"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/plain", **c.as_source)
    assert code(exc) == "InvalidRequest"
    # encproxy's own bucket is not a copy source.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d",
                       CopySource=f"{INTERNAL_BUCKET}/bucket-encryption/{bucket}")
    assert code(exc) == "AccessDenied"


UPLOADS = ["plain", "bucket-default", "sse-c"]


@pytest.mark.parametrize("upload_kind", UPLOADS)
def test_upload_part_copy_with_ranges(server, backend_client, s3, bucket, upload_kind):
    single = put_source_single = marked(6 * MiB + 11)
    s3.put_object(Bucket=bucket, Key="single", Body=put_source_single,
                  ServerSideEncryption="AES256")
    multi = put_source(s3, bucket, "multi", Side("sse-kms"), multipart=True)
    s3.put_object(Bucket=bucket, Key="plainsrc", Body=b"p" * (5 * MiB))
    dest = Side("sse-c" if upload_kind == "sse-c" else "plain")
    if upload_kind == "bucket-default":
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pc", **dest.write)["UploadId"]
    pieces = [  # (source key, range), each a part
        ("multi", (5 * MiB - 1000, 10 * MiB - 1001)),   # across the source's part boundary
        ("single", (65_000, 65_000 + 5 * MiB)),
        ("plainsrc", None),
        ("multi", (0, 5 * MiB - 1)),
        ("single", (6 * MiB, 6 * MiB + 10)),             # the last, short part
    ]
    sources = {"multi": multi, "single": single, "plainsrc": b"p" * (5 * MiB)}
    etags = []
    for n, (key, byte_range) in enumerate(pieces, start=1):
        kwargs = {} if byte_range is None else {
            "CopySourceRange": f"bytes={byte_range[0]}-{byte_range[1]}"}
        resp = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=n,
                                   CopySource={"Bucket": bucket, "Key": key}, **kwargs,
                                   **dest.read)
        etags.append(resp["CopyPartResult"]["ETag"])
    listed = s3.list_parts(Bucket=bucket, Key="pc", UploadId=uid)["Parts"]
    expected = [sources[k] if r is None else sources[k][r[0]:r[1] + 1] for k, r in pieces]
    assert [p["Size"] for p in listed] == [len(e) for e in expected]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=9,
                            CopySource={"Bucket": bucket, "Key": "single"},
                            CopySourceRange=f"bytes=0-{len(single)}", **dest.read)
    assert code(exc) == "InvalidArgument"   # AWS: out of the source is 400 InvalidArgument
    s3.complete_multipart_upload(Bucket=bucket, Key="pc", UploadId=uid, **dest.read,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": n, "ETag": e}
                                     for n, e in enumerate(etags, start=1)]})
    got = s3.get_object(Bucket=bucket, Key="pc", **dest.read)
    assert got["Body"].read() == b"".join(expected)
    if upload_kind != "plain":
        stored_meta, _ = stored_object(server, backend_client, bucket, "pc")
        assert "encproxy" in stored_meta
    else:
        _, stored = stored_object(server, backend_client, bucket, "pc")
        assert stored == b"".join(expected)   # a plain upload receives plaintext
    for name in ("multi", "single"):
        s3.delete_object(Bucket=bucket, Key=name)
    if upload_kind != "plain":
        assert_no_plaintext(server, backend_client)


def test_copy_listing_sizes(server, backend_client, s3, bucket, quirks):
    """Copies appear in listings with plaintext sizes and their own ETags."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    data = put_source(s3, bucket, "a", Side("sse-s3"), multipart=True)
    s3.copy_object(Bucket=bucket, Key="b", CopySource=f"{bucket}/a")
    done, _ = upload(s3, bucket, "c", {1: data[:5 * MiB + 3], 2: data[5 * MiB + 3:]})
    s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/c",
                   ServerSideEncryption="aws:kms")
    for listing, breaks in zip(listings(s3, bucket), versions_quirk(quirks), strict=False):
        with breaks:
            assert {o["Key"]: o["Size"] for o in listing} == {k: len(data) for k in "abcd"}


def test_sse_c_copy_with_the_same_key_rebinds(server, backend_client, s3, bucket):
    c = Side("sse-c")
    data = put_source(s3, bucket, "c", c, multipart=True)
    s3.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/c", MetadataDirective="REPLACE",
                   Metadata={"v": "2"}, **c.as_source, **c.write)
    got = s3.get_object(Bucket=bucket, Key="c", **c.read)
    assert got["Body"].read() == data and got["Metadata"] == {"v": "2"}
    s3.copy_object(Bucket=bucket, Key="same", CopySource=f"{bucket}/c", **c.as_source, **c.write)
    assert stored_object(server, backend_client, bucket, "same")[1] == \
        stored_object(server, backend_client, bucket, "c")[1]
    other = Side("sse-c")   # a new customer key: re-encrypted, the old key opens nothing
    s3.copy_object(Bucket=bucket, Key="rekeyed", CopySource=f"{bucket}/c", **c.as_source,
                   **other.write)
    assert s3.get_object(Bucket=bucket, Key="rekeyed", **other.read)["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="rekeyed", **c.read)
    assert code(exc) == "AccessDenied"
    assert_no_plaintext(server, backend_client)


def test_a_corrupt_source_is_not_copied(server, backend_client, s3, bucket):
    from test_encrypted_multipart import store_multipart
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3_CONFIG)
    data = put_source(s3, bucket, "src", Side("sse-s3"), multipart=True)
    meta, body = stored_object(server, backend_client, bucket, "src")
    flipped = bytearray(body)
    flipped[6 * MiB] ^= 1   # inside part 2
    half = 52 + 5 * MiB + 16 * 80
    store_multipart(server, backend_client, bucket, "src", meta,
                    [bytes(flipped[:half]), bytes(flipped[half:2 * half]),
                     bytes(flipped[2 * half:])])
    # Re-encrypting reads the source through: the fault stops the copy.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src",
                       **Side("sse-c").write)
    assert exc.value.response["Error"]["Code"] == "InternalError"
    assert f"integrity failure on {bucket}/src" in server.log_text()
    # Rebinding copies the stored bytes as they are: reading the copy finds the fault.
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src",
                   ServerSideEncryption="aws:kms")
    # Either refused before the headers (InternalError), or the body is cut short (the
    # server aborts the connection; botocore raises ResponseStreamingError or
    # IncompleteReadError). A body read back whole is a failure, right or wrong bytes.
    try:
        got = s3.get_object(Bucket=bucket, Key="dst")["Body"].read()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InternalError"
    except (ResponseStreamingError, IncompleteReadError):
        pass
    else:
        pytest.fail(f"a corrupt object was read back whole ({len(got)} bytes, "
                    f"{'equal to' if got == data else 'different from'} the source)")
