"""Checksums end to end under encryption (issue 16), through the real server with boto3
(awscrt installed, ``request_checksum_calculation="when_supported"``): what a client sends
with an upload comes back with ``ChecksumMode=ENABLED`` on GET and HEAD, in
GetObjectAttributes, UploadPart, ListParts and CompleteMultipartUpload, single-part and
multipart (COMPOSITE and FULL_OBJECT); the backend holds no plaintext digest."""
from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
import requests
from awscrt import checksums as crt
from botocore.exceptions import ClientError
from support.clients import make_client
from support.raw_s3 import Signed

MiB = 1 << 20
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


def digest(algorithm: str, data: bytes) -> bytes:
    if algorithm == "CRC32":
        return crt.crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return crt.crc32c(data).to_bytes(4, "big")
    if algorithm == "CRC64NVME":
        return crt.crc64nvme(data).to_bytes(8, "big")
    return hashlib.new(algorithm.lower(), data).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture
def client(server: Any) -> Any:
    return make_client(server.endpoint, request_checksum_calculation="when_supported",
                       response_checksum_validation="when_supported")


@pytest.fixture
def encrypted(s3: Any, bucket: str) -> str:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    return bucket


def assert_no_plaintext_digest(stored: Any, bucket: str, key: str, values: list[str]) -> None:
    """The backend's copy carries none of the checksums, raw or base64, in body or
    metadata."""
    held = stored.read(bucket, key)
    blob = held.body + repr(held.user_metadata).encode()
    for value in values:
        assert value.encode() not in blob
        raw = base64.b64decode(value.split("-")[0])
        if len(raw) >= 8:   # 4 bytes occur by chance in megabytes of ciphertext
            assert raw not in held.body


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_single_part_checksum_round_trips(client: Any, encrypted: str, stored: Any,
                                          algorithm: str) -> None:
    data = os.urandom(300_000)
    value = b64(digest(algorithm, data))
    field = "Checksum" + algorithm
    put = client.put_object(Bucket=encrypted, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert put[field] == value
    head = client.head_object(Bucket=encrypted, Key="k", ChecksumMode="ENABLED")
    assert head[field] == value and head["ChecksumType"] == "FULL_OBJECT"
    assert field not in client.head_object(Bucket=encrypted, Key="k")
    got = client.get_object(Bucket=encrypted, Key="k", ChecksumMode="ENABLED")
    assert got[field] == value and got["Body"].read() == data
    ranged = client.get_object(Bucket=encrypted, Key="k", ChecksumMode="ENABLED",
                               Range="bytes=10-99")
    assert field not in ranged and ranged["Body"].read() == data[10:100]
    attrs = client.get_object_attributes(Bucket=encrypted, Key="k",
                                         ObjectAttributes=["Checksum", "ObjectSize"])
    assert attrs["Checksum"][field] == value
    assert attrs["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert_no_plaintext_digest(stored, encrypted, "k", [value])


def test_an_upload_without_a_checksum_gets_s3s_default(client: Any, encrypted: str) -> None:
    data = os.urandom(70_000)
    plain = make_client(client.meta.endpoint_url,
                        request_checksum_calculation="when_required")
    plain.put_object(Bucket=encrypted, Key="k", Body=data)
    head = client.head_object(Bucket=encrypted, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64(digest("CRC64NVME", data))
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_copy_keeps_or_recomputes(client: Any, encrypted: str) -> None:
    data = os.urandom(100_000)
    client.put_object(Bucket=encrypted, Key="src", Body=data, ChecksumAlgorithm="SHA256")
    kept = client.copy_object(Bucket=encrypted, Key="kept",
                              CopySource={"Bucket": encrypted, "Key": "src"})
    assert kept["CopyObjectResult"]["ChecksumSHA256"] == b64(digest("SHA256", data))
    head = client.head_object(Bucket=encrypted, Key="kept", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == b64(digest("SHA256", data))
    redone = client.copy_object(Bucket=encrypted, Key="redone", ChecksumAlgorithm="CRC32C",
                                CopySource={"Bucket": encrypted, "Key": "src"})
    assert redone["CopyObjectResult"]["ChecksumCRC32C"] == b64(digest("CRC32C", data))
    head = client.head_object(Bucket=encrypted, Key="redone", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == b64(digest("CRC32C", data))
    assert "ChecksumSHA256" not in head


def _multipart(client: Any, bucket: str, key: str, algorithm: str, checksum_type: str | None,
               parts: list[bytes], name_part_sums: bool = True) -> dict[str, Any]:
    extra = {"ChecksumType": checksum_type} if checksum_type else {}
    created = client.create_multipart_upload(Bucket=bucket, Key=key,
                                             ChecksumAlgorithm=algorithm, **extra)
    assert created["ChecksumAlgorithm"] == algorithm
    upload_id = created["UploadId"]
    field = "Checksum" + algorithm
    done = []
    for number, part in enumerate(parts, 1):
        answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                    PartNumber=number, Body=part, ChecksumAlgorithm=algorithm)
        assert answer[field] == b64(digest(algorithm, part))
        entry = {"PartNumber": number, "ETag": answer["ETag"]}
        if name_part_sums:
            entry[field] = answer[field]
        done.append(entry)
    listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert listed["ChecksumAlgorithm"] == algorithm
    assert [p[field] for p in listed["Parts"]] == [b64(digest(algorithm, p)) for p in parts]
    return {"UploadId": upload_id, "MultipartUpload": {"Parts": done}}


@pytest.mark.parametrize(("algorithm", "checksum_type"), [
    ("CRC32", "COMPOSITE"), ("CRC32C", "FULL_OBJECT"), ("CRC64NVME", "FULL_OBJECT"),
    ("SHA1", "COMPOSITE"), ("SHA256", "COMPOSITE"), ("CRC32", "FULL_OBJECT")])
def test_multipart_checksum_round_trips(client: Any, encrypted: str, stored: Any,
                                        algorithm: str, checksum_type: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(123_457)]
    field = "Checksum" + algorithm
    sums = [digest(algorithm, p) for p in parts]
    if checksum_type == "COMPOSITE":
        expected = b64(hashlib.new(algorithm.lower(), b"".join(sums)).digest()
                       if algorithm.startswith("SHA") else digest(algorithm, b"".join(sums)))
        expected += "-3"
    else:
        expected = b64(digest(algorithm, b"".join(parts)))
    upload = _multipart(client, encrypted, "mp", algorithm, checksum_type, parts)
    done = client.complete_multipart_upload(Bucket=encrypted, Key="mp", **upload)
    assert done[field] == expected and done["ChecksumType"] == checksum_type
    head = client.head_object(Bucket=encrypted, Key="mp", ChecksumMode="ENABLED")
    assert head[field] == expected and head["ChecksumType"] == checksum_type
    got = client.get_object(Bucket=encrypted, Key="mp", ChecksumMode="ENABLED")
    assert got[field] == expected and got["Body"].read() == b"".join(parts)
    for number, part in enumerate(parts, 1):
        one = client.get_object(Bucket=encrypted, Key="mp", PartNumber=number,
                                ChecksumMode="ENABLED")
        assert one[field] == b64(sums[number - 1]) and one["Body"].read() == part
    attrs = client.get_object_attributes(Bucket=encrypted, Key="mp",
                                         ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"][field] == expected
    assert [p[field] for p in attrs["ObjectParts"]["Parts"]] == [b64(s) for s in sums]
    assert_no_plaintext_digest(stored, encrypted, "mp", [expected] + [b64(s) for s in sums])


def test_complete_checks_part_and_object_checksums(client: Any, encrypted: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload = _multipart(client, encrypted, "mp", "SHA256", None, parts)
    wrong = [dict(p) for p in upload["MultipartUpload"]["Parts"]]
    wrong[1]["ChecksumSHA256"] = b64(digest("SHA256", b"other"))
    with pytest.raises(ClientError) as err:
        client.complete_multipart_upload(Bucket=encrypted, Key="mp",
                                         UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": wrong})
    assert err.value.response["Error"]["Code"] == "InvalidPart"
    with pytest.raises(ClientError) as err:
        client.complete_multipart_upload(Bucket=encrypted, Key="mp", ChecksumSHA256="bad",
                                         **upload)
    assert err.value.response["Error"]["Code"] == "BadDigest"
    composite = b64(hashlib.sha256(b"".join(digest("SHA256", p) for p in parts)).digest())
    with pytest.raises(ClientError) as err:
        client.complete_multipart_upload(Bucket=encrypted, Key="mp",
                                         ChecksumSHA256=b64(bytes(32)) + "-2", **upload)
    assert err.value.response["Error"]["Code"] == "BadDigest"
    # The whole object's checksum (AWS: not of the request body) is accepted, and so is
    # a list that names no part checksum.
    upload["MultipartUpload"]["Parts"] = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                          for p in upload["MultipartUpload"]["Parts"]]
    done = client.complete_multipart_upload(Bucket=encrypted, Key="mp",
                                            ChecksumSHA256=composite + "-2", **upload)
    assert done["ChecksumSHA256"] == composite + "-2"
    # Retried after it succeeded: the same answer.
    again = client.complete_multipart_upload(Bucket=encrypted, Key="mp", **upload)
    assert again["ChecksumSHA256"] == done["ChecksumSHA256"] and again["ETag"] == done["ETag"]


def test_a_part_without_the_declared_checksum_is_refused(client: Any, encrypted: str) -> None:
    created = client.create_multipart_upload(Bucket=encrypted, Key="mp",
                                             ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as err:
        client.upload_part(Bucket=encrypted, Key="mp", UploadId=created["UploadId"],
                           PartNumber=1, Body=b"x" * 1000, ChecksumAlgorithm="CRC32")
    assert err.value.response["Error"]["Code"] == "InvalidRequest"
    client.abort_multipart_upload(Bucket=encrypted, Key="mp", UploadId=created["UploadId"])


@pytest.mark.parametrize(("algorithm", "checksum_type"), [
    ("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")])
def test_checksum_types_s3_does_not_have_are_refused(client: Any, encrypted: str,
                                                     algorithm: str, checksum_type: str) -> None:
    with pytest.raises(ClientError) as err:
        client.create_multipart_upload(Bucket=encrypted, Key="mp", ChecksumAlgorithm=algorithm,
                                       ChecksumType=checksum_type)
    assert err.value.response["Error"]["Code"] == "InvalidRequest"


def test_multipart_without_declared_algorithm_gets_full_object_crc64nvme(
        client: Any, encrypted: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(777)]
    upload_id = client.create_multipart_upload(Bucket=encrypted, Key="mp")["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        answer = client.upload_part(Bucket=encrypted, Key="mp", UploadId=upload_id,
                                    PartNumber=number, Body=part)
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    client.complete_multipart_upload(Bucket=encrypted, Key="mp", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    head = client.head_object(Bucket=encrypted, Key="mp", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64(digest("CRC64NVME", b"".join(parts)))
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_unencrypted_objects_checksums_are_not_kept_yet(client: Any, bucket: str,
                                                        request: pytest.FixtureRequest) -> None:
    """Objects stored as sent keep no checksum yet, on any backend: the embedded file store
    stores none, and encproxy's S3 forwarding (encproxy/s3backend/forwarding.py) neither
    sends the client's checksums to the backend nor relays the backend's. What S3 does is
    asserted; strict xfail, so that the test fails once it is no longer true."""
    request.applymarker(pytest.mark.xfail(strict=True, reason=(
        "issue 16 remainder: plain objects' checksums (file store; S3 forwarding strips "
        "x-amz-checksum-* both ways)")))
    data = os.urandom(50_000)
    value = b64(digest("SHA256", data))
    assert client.put_object(Bucket=bucket, Key="plain", Body=data,
                             ChecksumAlgorithm="SHA256")["ChecksumSHA256"] == value
    got = client.get_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == value


def test_a_trailing_checksum_is_the_one_kept(server: Any, client: Any, encrypted: str) -> None:
    """An aws-chunked body with its checksum in the trailer (what SDKs stream over
    HTTPS): the value known only at the body's end is sealed with the object."""
    data = os.urandom(150_000)
    value = b64(digest("CRC32C", data))
    framed = bytearray()
    for start in range(0, len(data), 64 * 1024):
        piece = data[start:start + 64 * 1024]
        framed += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    framed += f"0\r\nx-amz-checksum-crc32c:{value}\r\n\r\n".encode()
    url = f"{server.endpoint}/{encrypted}/trailed"
    signed = Signed("PUT", url, {"content-length": str(len(framed)),
                                 "content-encoding": "aws-chunked",
                                 "x-amz-decoded-content-length": str(len(data)),
                                 "x-amz-trailer": "x-amz-checksum-crc32c",
                                 "x-amz-sdk-checksum-algorithm": "CRC32C"},
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    resp = requests.put(url, data=bytes(framed), headers=signed.headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-amz-checksum-crc32c"] == value
    head = client.head_object(Bucket=encrypted, Key="trailed", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == value and head["ChecksumType"] == "FULL_OBJECT"
    assert "ChecksumCRC64NVME" not in head


def test_upload_part_copy_computes_the_part_checksum(client: Any, encrypted: str) -> None:
    source = os.urandom(5 * MiB + 10)
    client.put_object(Bucket=encrypted, Key="src", Body=source)
    upload_id = client.create_multipart_upload(Bucket=encrypted, Key="mp",
                                               ChecksumAlgorithm="SHA256")["UploadId"]
    copied = client.upload_part_copy(Bucket=encrypted, Key="mp", UploadId=upload_id,
                                     PartNumber=1,
                                     CopySource={"Bucket": encrypted, "Key": "src"})
    part = copied["CopyPartResult"]
    assert part["ChecksumSHA256"] == b64(digest("SHA256", source))
    tail = b"tail bytes"
    last = client.upload_part(Bucket=encrypted, Key="mp", UploadId=upload_id, PartNumber=2,
                              Body=tail, ChecksumAlgorithm="SHA256")
    done = client.complete_multipart_upload(
        Bucket=encrypted, Key="mp", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]},
                                   {"PartNumber": 2, "ETag": last["ETag"]}]})
    composite = hashlib.sha256(digest("SHA256", source) + digest("SHA256", tail)).digest()
    assert done["ChecksumSHA256"] == b64(composite) + "-2"
    assert client.get_object(Bucket=encrypted, Key="mp")["Body"].read() == source + tail


def test_a_whole_object_checksum_on_an_unencrypted_complete_is_refused(client: Any,
                                                                       bucket: str) -> None:
    """encproxy would check it against nothing (no backend gets it, the file store keeps
    no checksums of unencrypted objects): refused, never ignored; the upload stays."""
    part = os.urandom(5 * MiB)
    uid = client.create_multipart_upload(Bucket=bucket, Key="plain-mp")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="plain-mp", UploadId=uid, PartNumber=1,
                              Body=part)["ETag"]
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(
            Bucket=bucket, Key="plain-mp", UploadId=uid, ChecksumSHA256=b64(b"\0" * 32),
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert exc.value.response["Error"]["Code"] == "NotImplemented"
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="plain-mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["ETag"]
    assert client.get_object(Bucket=bucket, Key="plain-mp")["Body"].read() == part
