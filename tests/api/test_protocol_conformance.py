"""S3 protocol details that ceph/s3-tests found, answered as AWS answers them (issue 15).

Where s3-tests expects something else than AWS (RGW's behaviour), these tests pin AWS's:
docs/CONFORMANCE.md lists those tests and the reason for each.
"""
from __future__ import annotations

import base64
import hashlib
import os

import pytest
import requests
from botocore import handlers
from botocore.exceptions import ClientError
from support.clients import make_client
from support.raw_s3 import Signed


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def with_headers(server, operation: str, headers: dict[str, str]):
    """A fresh client (the session's is shared) that adds ``headers`` to ``operation``."""
    client = make_client(server.endpoint)

    def add(params, **_kwargs):
        params["headers"].update(headers)

    client.meta.events.register(f"before-call.s3.{operation}", add)
    return client


def customer_key(key: bytes) -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


# -- Expect: S3 ignores an expectation it does not know -------------------------------

@pytest.mark.parametrize("expect", ["200", ""], ids=["expect-200", "expect-empty"])
def test_an_unknown_expectation_is_ignored(server, s3, bucket, expect):
    put = with_headers(server, "PutObject", {"Expect": expect})
    put.put_object(Bucket=bucket, Key="k", Body=b"bar")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"bar"
    create = with_headers(server, "CreateBucket", {"Expect": expect})
    name = bucket + "-e"
    create.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


# -- x-amz-server-side-encryption on GET/HEAD is 400 ----------------------------------

@pytest.mark.parametrize("put_args", [
    pytest.param({}, id="as-sent"),
    pytest.param({"ServerSideEncryption": "AES256"}, id="sse-s3"),
    pytest.param({"ServerSideEncryption": "aws:kms"}, id="sse-kms"),
])
@pytest.mark.parametrize("value", ["AES256", "aws:kms"])
def test_reads_refuse_the_server_side_encryption_header(server, s3, bucket, put_args, value):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000, **put_args)
    headers = {"x-amz-server-side-encryption": value}
    if value == "aws:kms":
        headers["x-amz-server-side-encryption-aws-kms-key-id"] = "whatever"
    with pytest.raises(ClientError) as exc:
        with_headers(server, "GetObject", headers).get_object(Bucket=bucket, Key="k")
    assert error_of(exc) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        with_headers(server, "HeadObject", headers).head_object(Bucket=bucket, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 1000


# -- partNumber beyond the object's parts: 416 InvalidPartNumber (AWS) ----------------

def test_part_number_beyond_a_single_part_object_is_416(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"body", ServerSideEncryption="AES256")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=2)
    assert error_of(exc) == (416, "InvalidPartNumber")
    assert s3.get_object(Bucket=bucket, Key="k", PartNumber=1)["Body"].read() == b"body"


# -- SSE-C: a part with another key or none is 400; a read with another key is 403 -----

def test_sse_c_upload_parts_need_the_uploads_key(s3, bucket):
    right, wrong = customer_key(os.urandom(32)), customer_key(os.urandom(32))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k", **right)["UploadId"]
    common = {"Bucket": bucket, "Key": "k", "UploadId": upload, "PartNumber": 1}
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Body=b"p" * 100, **common, **wrong)
    assert error_of(exc) == (400, "InvalidRequest")
    assert "did not match the ones used originally" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Body=b"p" * 100, **common)
    assert error_of(exc) == (400, "InvalidRequest")
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * 100)
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(CopySource={"Bucket": bucket, "Key": "src"}, **common, **wrong)
    assert error_of(exc) == (400, "InvalidRequest")
    etag = s3.upload_part(Body=b"p" * 100, **common, **right)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, **right,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    with pytest.raises(ClientError) as exc:    # a read with another key stays 403 (AWS)
        s3.get_object(Bucket=bucket, Key="k", **wrong)
    assert error_of(exc) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="k", **right)["Body"].read() == b"p" * 100


# -- UploadPartCopy: a range outside the source is 400 InvalidArgument (AWS) -----------

@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_part_copy_range_outside_the_source_is_invalid_argument(s3, bucket, encrypted):
    extra = {"ServerSideEncryption": "AES256"} if encrypted else {}
    s3.put_object(Bucket=bucket, Key="src", Body=b"12345", **extra)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst", **extra)["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange="bytes=0-21")
    assert error_of(exc) == (400, "InvalidArgument")
    assert exc.value.response["Error"]["Message"] == (
        "Range specified is not valid for source object of size: 5")
    part = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": "src"},
                               CopySourceRange="bytes=1-3")
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"234"


# -- listings: encoding-type=url encodes Prefix; without it nothing is encoded ---------

@pytest.mark.parametrize("url_encoded", [False, True], ids=["raw", "encoding-type-url"])
def test_listing_prefix_is_encoded_only_when_asked(server, bucket, backend, backend_client,
                                                   url_encoded):
    def list_prefix(endpoint: str) -> dict:
        client = make_client(endpoint)
        if not url_encoded:   # boto3 asks for encoding-type=url unless told not to
            client.meta.events.unregister("before-parameter-build.s3.ListObjects",
                                          handlers.set_list_objects_encoding_type_url)
        return client.list_objects(Bucket=bucket, Prefix="\n")

    listed = list_prefix(server.endpoint)
    if url_encoded and backend.is_s3:
        # Through an S3 backend the listing is the backend's, relayed: its Prefix is as the
        # backend gives it (moto does not encode it; AWS does, as its documentation says).
        direct = backend_client.list_objects(Bucket=bucket, Prefix="\n")
        assert listed["Prefix"] == direct["Prefix"]
        assert listed.get("EncodingType") == direct.get("EncodingType")
        return
    # botocore decodes no top-level Prefix of ListObjects (v1): it comes back as sent.
    assert listed["Prefix"] == ("%0A" if url_encoded else "\n")
    assert listed.get("EncodingType") == ("url" if url_encoded else None)


# -- bodies: chunked transfer without aws-chunked; aws-chunked on a plain body ---------

def raw_put(server, bucket: str, key: str, headers: dict[str, str], body: bytes,
            payload_hash: str) -> requests.Response:
    url = f"{server.endpoint}/{bucket}/{key}"
    signed = Signed("PUT", url, headers, payload_hash)
    return requests.put(url, headers=signed.headers, data=body, timeout=30)


def test_put_with_chunked_transfer_encoding_is_not_implemented(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/k"
    signed = Signed("PUT", url, {}, hashlib.sha256(b"bar").hexdigest())
    # A generator body: requests sends it with Transfer-Encoding: chunked, no length.
    response = requests.put(url, headers=signed.headers, data=iter([b"bar"]), timeout=30)
    assert response.status_code == 501, response.text
    assert b"<Code>NotImplemented</Code>" in response.content
    assert b"<Header>Transfer-Encoding</Header>" in response.content
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_aws_chunked_coding_with_an_unsigned_payload_is_invalid_argument(server, bucket):
    response = raw_put(server, bucket, "k", {"content-encoding": "aws-chunked"}, b"bar",
                       "UNSIGNED-PAYLOAD")
    assert response.status_code == 400, response.text
    assert b"<Code>InvalidArgument</Code>" in response.content


def test_aws_chunked_coding_on_a_signed_plain_body_is_stored_as_sent(server, s3, bucket,
                                                                    backend):
    body = b"3\r\nbar\r\n0\r\n\r\n"   # looks like chunk framing; it is data
    response = raw_put(server, bucket, "k", {"content-encoding": "gzip, aws-chunked"}, body,
                       hashlib.sha256(body).hexdigest())
    assert response.status_code == 200, response.text
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == body
    if backend.is_s3:
        return  # the stored Content-Encoding is the backend's to keep (moto drops aws-chunked)
    assert got["ContentEncoding"] == "gzip, aws-chunked"


# -- user metadata that is not US-ASCII comes back RFC 2047-encoded (file store) -------

def test_non_ascii_metadata_comes_back_rfc2047_encoded(server, s3, bucket, backend,
                                                      backend_client):
    put = with_headers(server, "PutObject", {"x-amz-meta-meta1": "Hello World\xe9"})
    put.put_object(Bucket=bucket, Key="k", Body=b"bar", ServerSideEncryption="AES256")
    got = s3.head_object(Bucket=bucket, Key="k")["Metadata"]["meta1"]
    if backend.is_s3:
        # Through an S3 backend the metadata headers are the backend's own, relayed.
        assert got == backend_client.head_object(Bucket=bucket, Key="k")["Metadata"]["meta1"]
        return
    # botocore sent the value as UTF-8; AWS encodes the UTF-8 of those bytes' characters.
    assert got == "=?UTF-8?B?" + base64.b64encode(
        "Hello World\xe9".encode().decode("latin-1").encode()).decode() + "?="
    copied = s3.copy_object(Bucket=bucket, Key="k2", CopySource={"Bucket": bucket, "Key": "k"})
    assert copied["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.head_object(Bucket=bucket, Key="k2")["Metadata"]["meta1"] == got
