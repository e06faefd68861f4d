"""UpdateObjectEncryption through the real server, with boto3's ``update_object_encryption``
(botocore has it since 2025), on every backend (issue 15; docs/ENCRYPTION.md).

An SSE-S3 object becomes SSE-KMS, and an SSE-KMS object moves to another KMS key, single-part
and multipart, without its body being rewritten: the ciphertext the backend holds, read
directly from the backend (bypassing encproxy, as tests/api/test_attacker_reads.py reads
it), is the same bytes before and after; the client sees the same ETag and plaintext, and
HEAD and GET report the new mode and key. Unencrypted and SSE-C objects are refused with
AWS's InvalidRequest, and nothing changes.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from email.utils import formatdate

import pytest
import requests
from botocore.exceptions import ClientError
from support.server import ACCESS_KEY, SECRET_KEY

MiB = 1024 * 1024
KMS_KEY = "other-key"       # the test server's keys (tests/support/server.py)
DEFAULT_KEY = "test-key"
CUSTOMER_KEY = os.urandom(32)


def sse_c() -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY}


def arn(name: str) -> str:
    """botocore requires an ARN (20 characters at least); the local keyring reads the key
    name out of one (docs/KEYS.md §3) and reports the bare name."""
    return f"arn:aws:kms:us-east-1:111122223333:key/{name}"


def update(s3, bucket: str, key: str, kms_key: str, **extra):
    return s3.update_object_encryption(
        Bucket=bucket, Key=key,
        ObjectEncryption={"SSEKMS": {"KMSKeyArn": arn(kms_key), "BucketKeyEnabled": False}},
        **extra)


def public_read(s3, bucket: str, key: str) -> bool:
    return any(g["Grantee"].get("URI") == "http://acs.amazonaws.com/groups/global/AllUsers"
               and g["Permission"] == "READ"
               for g in s3.get_object_acl(Bucket=bucket, Key=key)["Grants"])


def write(s3, bucket: str, key: str, data: bytes, multipart: bool, **sse) -> None:
    if not multipart:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="text/x-test",
                      Metadata={"colour": "blue"}, ACL="public-read", **sse)
        return
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/x-test",
                                     Metadata={"colour": "blue"}, ACL="public-read",
                                     **sse)["UploadId"]
    parts = []
    for n, start in enumerate(range(0, len(data), 5 * MiB), start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n,
                              Body=data[start:start + 5 * MiB])["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                 MultipartUpload={"Parts": parts})


START = {
    "sse-s3-to-kms": ({"ServerSideEncryption": "AES256"}, KMS_KEY),
    "kms-to-other-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY},
                         DEFAULT_KEY),
}


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
@pytest.mark.parametrize("change", sorted(START))
def test_update_keeps_the_body(s3, stored, bucket, backend, quirks, change, multipart):
    sse, target = START[change]
    size = 11 * MiB + 12345 if multipart else 1 * MiB + 3
    data = os.urandom(size)
    write(s3, bucket, "o", data, multipart, **sse)
    if quirks("acl-headers-ignored"):   # the write's ACL is lost; PutObjectAcl sets one
        assert not public_read(s3, bucket, "o")
        s3.put_object_acl(Bucket=bucket, Key="o", ACL="public-read")
    before = s3.head_object(Bucket=bucket, Key="o")
    at_rest = stored.read(bucket, "o")
    assert hashlib.sha256(at_rest.body).digest() != hashlib.sha256(data).digest()

    resp = update(s3, bucket, "o", target)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200

    after_rest = stored.read(bucket, "o")
    assert after_rest.body == at_rest.body                      # the ciphertext is untouched
    assert after_rest.user_metadata["encproxy"] != at_rest.user_metadata["encproxy"]
    after = s3.head_object(Bucket=bucket, Key="o")
    assert after["ETag"] == before["ETag"]
    if not backend.is_s3:       # rewritten in place, as AWS does: no new Last-Modified
        assert after["LastModified"] == before["LastModified"]
    assert after["ContentLength"] == size
    assert (after["ServerSideEncryption"], after["SSEKMSKeyId"]) == ("aws:kms", target)
    assert after["Metadata"] == {"colour": "blue"}
    assert after["ContentType"] == "text/x-test"
    got = s3.get_object(Bucket=bucket, Key="o")
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", target)
    assert got["Body"].read() == data
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(e["Key"], e["Size"], e["ETag"]) for e in listed] == [("o", size, before["ETag"])]
    # The re-wrap kept the object's ACL (a multipart object's re-wrap is a new upload,
    # whose x-amz-grant-* SeaweedFS ignores).
    with quirks.breaks("acl-headers-ignored") if multipart else contextlib.nullcontext():
        assert public_read(s3, bucket, "o")


@pytest.mark.parametrize("kind", ["unencrypted", "sse-c", "unknown-key"])
def test_refused_and_nothing_changes(s3, stored, bucket, kind):
    data = os.urandom(100_000)
    read = sse_c() if kind == "sse-c" else {}
    if kind == "unencrypted":
        s3.put_object(Bucket=bucket, Key="r", Body=data)   # the test server stores as sent
    elif kind == "sse-c":
        s3.put_object(Bucket=bucket, Key="r", Body=data, **read)
    else:
        s3.put_object(Bucket=bucket, Key="r", Body=data, ServerSideEncryption="AES256")
    at_rest = stored.read(bucket, "r")
    before = s3.head_object(Bucket=bucket, Key="r", **read)

    with pytest.raises(ClientError) as caught:
        update(s3, bucket, "r", "no-such-key" if kind == "unknown-key" else KMS_KEY)
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    expected = "KMS.NotFoundException" if kind == "unknown-key" else "InvalidRequest"
    assert (status, error["Code"]) == (400, expected)

    assert stored.read(bucket, "r") == at_rest
    after = s3.head_object(Bucket=bucket, Key="r", **read)
    assert after["ETag"] == before["ETag"]
    assert after.get("ServerSideEncryption") == before.get("ServerSideEncryption")
    assert s3.get_object(Bucket=bucket, Key="r", **read)["Body"].read() == data


def test_missing_object(s3, bucket):
    with pytest.raises(ClientError) as caught:
        update(s3, bucket, "absent", KMS_KEY)
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"


def test_a_version_that_does_not_exist(s3, stored, bucket, quirks):
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="v", Body=data, ServerSideEncryption="AES256")
    at_rest = stored.read(bucket, "v")
    with pytest.raises(ClientError) as caught:
        update(s3, bucket, "v", KMS_KEY, VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert stored.read(bucket, "v") == at_rest
    assert s3.head_object(Bucket=bucket, Key="v")["ServerSideEncryption"] == "AES256"
    # S3 answers InvalidArgument for an id it never issued, NoSuchVersion for one now gone.
    with quirks.breaks("unknown-version-nosuchkey"):
        assert caught.value.response["Error"]["Code"] in ("InvalidArgument", "NoSuchVersion")


def sigv2_put(server, bucket: str, key: str, query: str, body: bytes) -> requests.Response:
    """A PUT signed with Signature Version 2 by hand (the subresource signed, as RGW and
    MinIO sign it; botocore's HmacV1Auth leaves ``encryption`` out of what it signs)."""
    date = formatdate(usegmt=True)
    content_type = "application/xml"
    resource = f"/{bucket}/{key}" + (f"?{query}" if query else "")
    to_sign = f"PUT\n\n{content_type}\n{date}\n{resource}"
    signature = base64.b64encode(hmac.new(SECRET_KEY.encode(), to_sign.encode(),
                                          hashlib.sha1).digest()).decode()
    return requests.put(f"{server.endpoint}{resource}", data=body, timeout=30,
                        headers={"Date": date, "Content-Type": content_type,
                                 "Authorization": f"AWS {ACCESS_KEY}:{signature}"})


def test_sigv2_is_refused(server, s3, bucket):
    """AWS requires Signature Version 4 for this operation (InvalidRequest)."""
    s3.put_object(Bucket=bucket, Key="s", Body=b"x", ServerSideEncryption="AES256")
    body = (f"<ObjectEncryption><SSE-KMS><KMSKeyArn>{arn(KMS_KEY)}</KMSKeyArn></SSE-KMS>"
            "</ObjectEncryption>").encode()
    resp = sigv2_put(server, bucket, "s", "encryption", body)
    assert resp.status_code == 400, resp.text
    assert ET.fromstring(resp.content).findtext("Code") == "InvalidRequest"
    assert s3.head_object(Bucket=bucket, Key="s")["ServerSideEncryption"] == "AES256"
    # The control: the same signing gets a PutObject through.
    assert sigv2_put(server, bucket, "s", "", b"y").status_code == 200
    assert s3.get_object(Bucket=bucket, Key="s")["Body"].read() == b"y"
