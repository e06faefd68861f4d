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
XML_NAME = {name.lower(): name for name in ALGORITHMS}


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


def test_a_plain_copy_keeps_or_recomputes(client: Any, bucket: str, quirks: Any) -> None:
    """CopyObject of an unencrypted object keeps the source's checksum, or computes the
    one x-amz-checksum-algorithm names; CopyObjectResult shows it, as S3 does."""
    data = os.urandom(100_000)
    client.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="SHA256")
    kept = client.copy_object(Bucket=bucket, Key="kept",
                              CopySource={"Bucket": bucket, "Key": "src"})
    redone = client.copy_object(Bucket=bucket, Key="redone", ChecksumAlgorithm="CRC32",
                                CopySource={"Bucket": bucket, "Key": "src"})
    assert client.get_object(Bucket=bucket, Key="redone")["Body"].read() == data
    kept_head = client.head_object(Bucket=bucket, Key="kept", ChecksumMode="ENABLED")
    redone_head = client.head_object(Bucket=bucket, Key="redone", ChecksumMode="ENABLED")
    with quirks.breaks("checksums-not-kept"), quirks.breaks("copy-checksums"):
        assert kept["CopyObjectResult"].get("ChecksumSHA256") == b64(digest("SHA256", data))
        assert kept_head.get("ChecksumSHA256") == b64(digest("SHA256", data))
        assert redone["CopyObjectResult"].get("ChecksumCRC32") == b64(digest("CRC32", data))
        assert redone_head.get("ChecksumCRC32") == b64(digest("CRC32", data))
        assert "ChecksumSHA256" not in redone_head


def test_a_plain_copy_computes_crc32c(client: Any, server: Any, bucket: str,
                                      quirks: Any) -> None:
    """x-amz-checksum-algorithm CRC32C on a plain copy: the CRC-32C of the bytes."""
    data = os.urandom(100_000)
    client.put_object(Bucket=bucket, Key="src", Body=data)
    redone = client.copy_object(Bucket=bucket, Key="redone", ChecksumAlgorithm="CRC32C",
                                CopySource={"Bucket": bucket, "Key": "src"})
    # Read without botocore's own check: the test compares the value itself.
    reader = make_client(server.endpoint, response_checksum_validation="when_required")
    head = reader.head_object(Bucket=bucket, Key="redone", ChecksumMode="ENABLED")
    assert reader.get_object(Bucket=bucket, Key="redone")["Body"].read() == data
    with quirks.breaks("checksums-not-kept"), quirks.breaks("copy-checksums"):
        assert redone["CopyObjectResult"].get("ChecksumCRC32C") == b64(digest("CRC32C", data))
        assert head.get("ChecksumCRC32C") == b64(digest("CRC32C", data))


# The file store's own: what an S3 backend keeps of a multipart object's copy is its own.
@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_a_plain_copy_of_a_multipart_object_gets_a_full_object_checksum(
        client: Any, bucket: str) -> None:
    """A copy is a single-part object: a COMPOSITE checksum cannot describe it, so it
    gets S3's default, CRC64NVME of its bytes."""
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload = _multipart(client, bucket, "mp", "SHA1", "COMPOSITE", parts)
    client.complete_multipart_upload(Bucket=bucket, Key="mp", **upload)
    copied = client.copy_object(Bucket=bucket, Key="copy",
                                CopySource={"Bucket": bucket, "Key": "mp"})
    whole = b64(digest("CRC64NVME", b"".join(parts)))
    assert copied["CopyObjectResult"]["ChecksumCRC64NVME"] == whole
    head = client.head_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == whole and head["ChecksumType"] == "FULL_OBJECT"
    assert "ChecksumSHA1" not in head


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


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unencrypted_objects_keep_their_checksums(client: Any, bucket: str, quirks: Any,
                                                  algorithm: str) -> None:
    """Objects stored as sent keep the client's checksum: the file store in its index;
    toward an S3 backend encproxy forwards it and relays the backend's answer."""
    data = os.urandom(50_000)
    value = b64(digest(algorithm, data))
    field = "Checksum" + algorithm
    assert client.put_object(Bucket=bucket, Key="plain", Body=data,
                             ChecksumAlgorithm=algorithm)[field] == value
    got = client.get_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    attrs = client.get_object_attributes(Bucket=bucket, Key="plain",
                                         ObjectAttributes=["Checksum", "ObjectParts",
                                                           "ObjectSize"])
    assert attrs["ObjectSize"] == len(data) and "ObjectParts" not in attrs
    with quirks.breaks("checksums-not-kept"):
        assert got.get(field) == value and got.get("ChecksumType") == "FULL_OBJECT"
        assert head.get(field) == value and head.get("ChecksumType") == "FULL_OBJECT"
        assert attrs.get("Checksum") == {field: value, "ChecksumType": "FULL_OBJECT"}
    assert field not in client.head_object(Bucket=bucket, Key="plain")
    ranged = client.get_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED",
                               Range="bytes=10-99")
    assert field not in ranged and ranged["Body"].read() == data[10:100]


def test_unencrypted_object_without_a_checksum_gets_crc64nvme(server: Any, bucket: str,
                                                              quirks: Any) -> None:
    """A plain PutObject that names no checksum gets CRC64NVME, S3's default since 2025."""
    s3 = make_client(server.endpoint, request_checksum_calculation="when_required")
    data = os.urandom(20_000)
    put = s3.put_object(Bucket=bucket, Key="plain", Body=data)
    assert "ChecksumCRC32" not in put   # the client sent none
    head = s3.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    with quirks.breaks("checksums-partial"), quirks.breaks("checksums-not-kept"), \
            quirks.breaks("no-default-checksum"):
        assert head.get("ChecksumCRC64NVME") == b64(digest("CRC64NVME", data))


@pytest.mark.parametrize("checksum_type", ["COMPOSITE", "FULL_OBJECT"])
def test_unencrypted_multipart_upload_keeps_part_checksums(client: Any, bucket: str,
                                                           server: Any, quirks: Any,
                                                           checksum_type: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    algorithm = "CRC32C"
    field = "Checksum" + algorithm
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="mp", ChecksumAlgorithm=algorithm,
        ChecksumType=checksum_type)["UploadId"]
    done_parts = []
    for number, body in enumerate(parts, 1):
        answer = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id,
                                    PartNumber=number, Body=body, ChecksumAlgorithm=algorithm)
        assert answer[field] == b64(digest(algorithm, body))
        done_parts.append({"PartNumber": number, "ETag": answer["ETag"],
                           field: answer[field]})
    listed = client.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)
    done = client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                            MultipartUpload={"Parts": done_parts})
    if checksum_type == "COMPOSITE":
        expected = b64(digest(algorithm, b"".join(digest(algorithm, p) for p in parts))) + "-2"
    else:
        expected = b64(digest(algorithm, b"".join(parts)))
    # Read without botocore's own check: moto's checksum of a FULL_OBJECT upload is wrong.
    reader = make_client(server.endpoint, response_checksum_validation="when_required")
    assert reader.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    head = client.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    with quirks.breaks("checksums-partial"), quirks.breaks("checksums-not-kept"), \
            quirks.breaks("part-checksums-hidden"):
        assert done.get(field) == expected
        assert head.get(field) == expected and head.get("ChecksumType") == checksum_type
        assert listed.get("ChecksumAlgorithm") == algorithm
        assert listed.get("ChecksumType") == checksum_type
        assert [p.get(field) for p in listed["Parts"]] == [p[field] for p in done_parts]


@pytest.mark.parametrize("checksum_type", ["COMPOSITE", "FULL_OBJECT"])
def test_unencrypted_multipart_object_answers_its_parts(client: Any, bucket: str,
                                                         server: Any, quirks: Any,
                                                         checksum_type: str) -> None:
    """A plain multipart object answers as an encrypted one does: each part's checksum on
    a partNumber read in checksum mode, and in GetObjectAttributes' ObjectParts (sizes,
    pages), the object's in its Checksum."""
    algorithm = "CRC32C"
    field = "Checksum" + algorithm
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    sums = [b64(digest(algorithm, p)) for p in parts]
    upload = _multipart_unchecked(client, bucket, "mp", algorithm, checksum_type, parts)
    client.complete_multipart_upload(Bucket=bucket, Key="mp", **upload)
    if checksum_type == "COMPOSITE":
        expected = b64(digest(algorithm, b"".join(digest(algorithm, p) for p in parts))) + "-3"
    else:
        expected = b64(digest(algorithm, b"".join(parts)))
    # Read without botocore's own check: moto's checksum of a FULL_OBJECT upload is wrong.
    reader = make_client(server.endpoint, response_checksum_validation="when_required")
    one: dict[str, Any] = {}
    if quirks("part-number-ignored") is None:   # else encproxy refuses partNumber reads
        one = reader.head_object(Bucket=bucket, Key="mp", PartNumber=2,
                                 ChecksumMode="ENABLED")
        assert one["ContentLength"] == len(parts[1]) and one["PartsCount"] == 3
        got = reader.get_object(Bucket=bucket, Key="mp", PartNumber=2)
        assert got["Body"].read() == parts[1]
    ranged = reader.get_object(Bucket=bucket, Key="mp", Range="bytes=0-9",
                               ChecksumMode="ENABLED")
    assert field not in ranged and ranged["Body"].read() == parts[0][:10]
    attrs = reader.get_object_attributes(Bucket=bucket, Key="mp",
                                         ObjectAttributes=["Checksum", "ObjectParts"])
    paged = reader.get_object_attributes(Bucket=bucket, Key="mp", MaxParts=1,
                                         PartNumberMarker=1,
                                         ObjectAttributes=["ObjectParts"])
    assert attrs["ObjectParts"]["TotalPartsCount"] == 3
    with quirks.breaks("checksums-partial"), quirks.breaks("checksums-not-kept"), \
            quirks.breaks("part-checksums-hidden"):
        assert one.get(field) == sums[1] and one.get("ChecksumType") == checksum_type
        assert attrs.get("Checksum", {}).get(field) == expected
        assert attrs["Checksum"].get("ChecksumType") == checksum_type
        listed = attrs["ObjectParts"].get("Parts", [])
        assert [(p["PartNumber"], p["Size"], p.get(field)) for p in listed] == \
            [(n, len(p), sums[n - 1]) for n, p in enumerate(parts, 1)]
        assert attrs["ObjectParts"]["IsTruncated"] is False
        page = paged["ObjectParts"]
        assert [p["PartNumber"] for p in page.get("Parts", [])] == [2]
        assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 2


def _multipart_unchecked(client: Any, bucket: str, key: str, algorithm: str,
                         checksum_type: str, parts: list[bytes]) -> dict[str, Any]:
    """An upload with part checksums (what Complete needs), ListParts left unchecked."""
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm,
        ChecksumType=checksum_type)["UploadId"]
    field = "Checksum" + algorithm
    done = []
    for number, part in enumerate(parts, 1):
        answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                    PartNumber=number, Body=part, ChecksumAlgorithm=algorithm)
        done.append({"PartNumber": number, "ETag": answer["ETag"], field: answer[field]})
    return {"UploadId": upload_id, "MultipartUpload": {"Parts": done}}


def test_unencrypted_complete_checks_the_whole_object_checksum(client: Any, bucket: str,
                                                               backend: Any) -> None:
    """A whole-object checksum on an unencrypted Complete is checked against the parts'
    (BadDigest when it is not the object's) on the file store; toward an S3 backend,
    which may not check it, it is refused (501), never left unchecked."""
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32",
        ChecksumType="FULL_OBJECT")["UploadId"]
    done_parts = []
    for number, body in enumerate(parts, 1):
        answer = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id,
                                    PartNumber=number, Body=body, ChecksumAlgorithm="CRC32")
        done_parts.append({"PartNumber": number, "ETag": answer["ETag"],
                           "ChecksumCRC32": answer["ChecksumCRC32"]})
    wrong = b64(digest("CRC32", b"not the object"))
    with pytest.raises(ClientError) as raised:
        client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                         MultipartUpload={"Parts": done_parts},
                                         ChecksumCRC32=wrong, ChecksumType="FULL_OBJECT")
    right = b64(digest("CRC32", b"".join(parts)))
    if backend.is_s3:
        assert raised.value.response["Error"]["Code"] == "NotImplemented"
        return
    assert raised.value.response["Error"]["Code"] == "BadDigest"
    done = client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                            MultipartUpload={"Parts": done_parts},
                                            ChecksumCRC32=right, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == right
    got = client.get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts) and got["ChecksumCRC32"] == right


# The file store's own: an S3 backend checks the part checksums it was sent.
@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_unencrypted_complete_checks_the_part_checksums(client: Any, bucket: str) -> None:
    """A part checksum named in an unencrypted Complete must be the part's (InvalidPart)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp",
                                               ChecksumAlgorithm="SHA256")["UploadId"]
    answer = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                                Body=b"part one", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as raised:
        client.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": answer["ETag"],
                                        "ChecksumSHA256": b64(digest("SHA256", b"other"))}]})
    assert raised.value.response["Error"]["Code"] == "InvalidPart"
    with pytest.raises(ClientError) as raised:
        client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2,
                           Body=b"part two", ChecksumAlgorithm="CRC32")
    assert raised.value.response["Error"]["Code"] == "InvalidRequest"


def test_no_plaintext_digest_reaches_the_backend_with_an_encrypted_put(
        client: Any, encrypted: str, stored: Any, backend_client: Any, server: Any) -> None:
    """An encrypted PutObject's plaintext checksum is sealed, never handed to the backend:
    what the backend keeps as the object's checksum (if anything) is not it."""
    data = os.urandom(100_000)
    value = b64(digest("SHA256", data))
    client.put_object(Bucket=encrypted, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    assert_no_plaintext_digest(stored, encrypted, "k", [value])
    if backend_client is not None:
        held = backend_client.head_object(Bucket=encrypted, Key="k", ChecksumMode="ENABLED")
        assert held.get("ChecksumSHA256") != value
        assert all(held.get(f) != b64(digest(f[8:], data))
                   for f in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME"))
    else:
        assert value not in index_dump(server.root)
        assert b64(digest("CRC64NVME", data)) not in index_dump(server.root)


def _backend_checksum_values(answer: dict[str, Any]) -> set[str]:
    """Every ``Checksum*`` value of a boto3 answer (the type left out), ``-N`` dropped."""
    return {str(v).split("-")[0] for k, v in answer.items()
            if k.startswith("Checksum") and k not in ("ChecksumType", "ChecksumAlgorithm")}


@pytest.mark.parametrize(("algorithm", "checksum_type"), [("SHA256", "COMPOSITE"),
                                                          ("CRC64NVME", "FULL_OBJECT")])
def test_no_plaintext_digest_reaches_the_backend_with_an_encrypted_multipart_upload(
        client: Any, encrypted: str, stored: Any, backend_client: Any, server: Any,
        algorithm: str, checksum_type: str) -> None:
    """An encrypted multipart upload's part and object checksums are sealed: neither the
    backend's parts (while the upload is open) nor its object, whole or by part, carries
    a plaintext digest, and the file store's index holds none."""
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    sums = [b64(digest(algorithm, p)) for p in parts]
    whole = b64(digest(algorithm, b"".join(parts)))
    composite = b64(digest(algorithm, b"".join(digest(algorithm, p) for p in parts)))
    plaintext = set(sums) | {whole, composite}
    upload = _multipart(client, encrypted, "mp", algorithm, checksum_type, parts)
    if backend_client is not None:
        open_uploads = backend_client.list_multipart_uploads(Bucket=encrypted)["Uploads"]
        assert open_uploads   # the backend's own upload of the ciphertext parts
        for held_upload in open_uploads:
            listed = backend_client.list_parts(Bucket=encrypted, Key=held_upload["Key"],
                                               UploadId=held_upload["UploadId"])
            assert listed["Parts"]
            for part in listed["Parts"]:
                assert not _backend_checksum_values(part) & plaintext
    done = client.complete_multipart_upload(Bucket=encrypted, Key="mp", **upload)
    assert done["Checksum" + algorithm].split("-")[0] in plaintext   # what the client sees
    assert_no_plaintext_digest(stored, encrypted, "mp", sorted(plaintext))
    if backend_client is not None:
        held = backend_client.head_object(Bucket=encrypted, Key="mp", ChecksumMode="ENABLED")
        assert not _backend_checksum_values(held) & plaintext
        for number in (1, 2):
            part = backend_client.head_object(Bucket=encrypted, Key="mp", PartNumber=number,
                                              ChecksumMode="ENABLED")
            assert not _backend_checksum_values(part) & plaintext
    else:
        dump = index_dump(server.root)
        assert not [value for value in plaintext if value in dump]


def index_dump(root: str) -> str:
    """Every value of the file store's index, as text."""
    import sqlite3
    conn = sqlite3.connect(os.path.join(root, "index.sqlite3"))
    try:
        return repr(conn.execute("SELECT * FROM versions").fetchall())
    finally:
        conn.close()


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


def _put_trailed(endpoint: str, bucket: str, key: str, data: bytes, algorithm: str,
                 value: str, query: str = "") -> requests.Response:
    """PutObject streamed aws-chunked with its checksum in the trailer (what the AWS
    SDKs send over HTTPS): the checksum is known only at the body's end."""
    framed = bytearray()
    for start in range(0, len(data), 64 * 1024):
        piece = data[start:start + 64 * 1024]
        framed += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    framed += f"0\r\nx-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()
    url = f"{endpoint}/{bucket}/{key}" + (f"?{query}" if query else "")
    signed = Signed("PUT", url, {"content-length": str(len(framed)),
                                 "content-encoding": "aws-chunked",
                                 "x-amz-decoded-content-length": str(len(data)),
                                 "x-amz-trailer": f"x-amz-checksum-{algorithm}",
                                 "x-amz-sdk-checksum-algorithm": algorithm.upper()},
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    return requests.put(url, data=bytes(framed), headers=signed.headers, timeout=60)


@pytest.fixture(scope="module")
def trailing_server(backend: Any, server: Any, tmp_path_factory: Any) -> Any:
    """encproxy with [backend] trailing_checksums = true in front of an S3 backend (the
    file store keeps a trailing checksum itself: the session server)."""
    if not backend.is_s3 or backend.quirk("checksums-not-kept"):
        yield server   # Ceph RGW 16.2 takes no such body: the option stays off there
        return
    from support.server import start_server
    running = start_server(tmp_path_factory.mktemp("trailing"),
                           env=backend.server_env(trailing_checksums="true"))
    yield running
    running.stop()


@pytest.mark.parametrize("algorithm", ["crc32c", "crc64nvme", "sha256"])
def test_a_plain_objects_trailing_checksum_is_kept(trailing_server: Any, client: Any,
                                                   bucket: str, backend_client: Any,
                                                   quirks: Any, algorithm: str) -> None:
    """A plain PutObject's trailing checksum: kept by the file store; sent on to an S3
    backend in a trailer of its own ([backend] trailing_checksums), which keeps it."""
    data = os.urandom(3 * MiB + 7)   # several of encproxy's pieces to the backend
    name = XML_NAME[algorithm]
    value = b64(digest(name, data))
    resp = _put_trailed(trailing_server.endpoint, bucket, "trailed", data, algorithm, value)
    assert resp.status_code == 200, resp.text
    assert resp.headers[f"x-amz-checksum-{algorithm}"] == value
    got = client.get_object(Bucket=bucket, Key="trailed", ChecksumMode="ENABLED")
    assert got["Body"].read() == data   # the framing is the backend's to remove
    if backend_client is not None:   # the backend holds the plaintext, framed right
        held = backend_client.get_object(Bucket=bucket, Key="trailed")
        assert held["ContentLength"] == len(data) and held["Body"].read() == data
    with quirks.breaks("checksums-not-kept"):
        assert got.get("Checksum" + name) == value
        assert got.get("ChecksumType") == "FULL_OBJECT"


def test_a_plain_parts_trailing_checksum_is_kept(trailing_server: Any, bucket: str,
                                                 quirks: Any) -> None:
    """UploadPart streamed with its checksum in the trailer: the part arrives whole
    (re-framed toward an S3 backend) and the object gets its COMPOSITE checksum."""
    # One server for the whole upload (each keeps its own upload records' key).
    client = make_client(trailing_server.endpoint, request_checksum_calculation="when_supported",
                         response_checksum_validation="when_supported")
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    sums = [b64(digest("CRC32C", p)) for p in parts]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp",
                                               ChecksumAlgorithm="CRC32C")["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        resp = _put_trailed(trailing_server.endpoint, bucket, "mp", part, "crc32c",
                            sums[number - 1], f"partNumber={number}&uploadId={upload_id}")
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-amz-checksum-crc32c"] == sums[number - 1]
        done.append({"PartNumber": number, "ETag": resp.headers["ETag"],
                     "ChecksumCRC32C": sums[number - 1]})
    completed = client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                                 MultipartUpload={"Parts": done})
    got = client.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts)
    composite = b64(digest("CRC32C", b"".join(digest("CRC32C", p) for p in parts))) + "-2"
    with quirks.breaks("checksums-partial"), quirks.breaks("checksums-not-kept"):
        assert completed.get("ChecksumCRC32C") == composite


def test_a_trailing_checksum_not_forwarded_is_never_a_wrong_one(server: Any, client: Any,
                                                                bucket: str,
                                                                backend: Any) -> None:
    """Without [backend] trailing_checksums (the default: Ceph RGW 16.2 takes no
    trailer) a plain object's trailing checksum does not reach an S3 backend: the
    object reads back without it, or with the backend's own of the same bytes."""
    data = os.urandom(200_000)
    value = b64(digest("CRC32C", data))
    resp = _put_trailed(server.endpoint, bucket, "trailed", data, "crc32c", value)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-amz-checksum-crc32c"] == value   # verified, echoed
    got = client.get_object(Bucket=bucket, Key="trailed", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    shown = {k: v for k, v in got.items() if k.startswith("Checksum") and k != "ChecksumType"}
    for field, shown_value in shown.items():
        assert shown_value == b64(digest(field[len("Checksum"):], data))
    if not backend.is_s3:   # the file store keeps it itself
        assert shown == {"ChecksumCRC32C": value}


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


def test_a_whole_object_checksum_on_an_unencrypted_complete_is_never_ignored(
        client: Any, bucket: str, backend: Any) -> None:
    """An upload that declared no algorithm has the FULL_OBJECT CRC64NVME of S3's default:
    another checksum is BadDigest on the file store; toward an S3 backend, which may not
    check it, refused (501). Either way the upload stays."""
    part = os.urandom(5 * MiB)
    uid = client.create_multipart_upload(Bucket=bucket, Key="plain-mp")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="plain-mp", UploadId=uid, PartNumber=1,
                              Body=part)["ETag"]
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(
            Bucket=bucket, Key="plain-mp", UploadId=uid, ChecksumSHA256=b64(b"\0" * 32),
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert exc.value.response["Error"]["Code"] == (
        "NotImplemented" if backend.is_s3 else "BadDigest")
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="plain-mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["ETag"]
    if not backend.is_s3:
        assert done["ChecksumCRC64NVME"] == b64(digest("CRC64NVME", part))
        assert done["ChecksumType"] == "FULL_OBJECT"
    assert client.get_object(Bucket=bucket, Key="plain-mp")["Body"].read() == part
