"""Validation of SSE request headers (pure)."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest

from encproxy import errors
from encproxy.s3.sse import CustomerKey, parse_customer_key, parse_request, refuse_on_read

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
SSE_C = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
         "x-amz-server-side-encryption-customer-key": KEY_B64,
         "x-amz-server-side-encryption-customer-key-md5": KEY_MD5}
CONTEXT = base64.b64encode(json.dumps({"project": "x"}).encode()).decode()


def test_nothing():
    assert not parse_request({}).says_anything


def test_valid_forms():
    assert parse_request({"x-amz-server-side-encryption": "AES256"}).algorithm == "AES256"
    kms = parse_request({"x-amz-server-side-encryption": "aws:kms",
                         "x-amz-server-side-encryption-aws-kms-key-id": "alias/k",
                         "x-amz-server-side-encryption-context": CONTEXT,
                         "x-amz-server-side-encryption-bucket-key-enabled": "true"})
    assert (kms.algorithm, kms.kms_key_id, kms.context, kms.bucket_key_enabled) == (
        "aws:kms", "alias/k", {"project": "x"}, True)
    customer = parse_request(SSE_C).customer
    assert customer == CustomerKey(KEY, KEY_MD5)
    assert KEY_B64 not in repr(customer) and str(list(KEY)) not in repr(customer)


def test_copy_source_customer_key():
    # S3's names: x-amz-copy-source-server-side-encryption-customer-algorithm, ...
    headers = {k.replace("x-amz-", "x-amz-copy-source-", 1): v for k, v in SSE_C.items()}
    assert "x-amz-copy-source-server-side-encryption-customer-key" in headers
    assert parse_customer_key(headers, copy_source=True) == CustomerKey(KEY, KEY_MD5)
    assert parse_customer_key(headers) is None
    assert parse_customer_key(SSE_C, copy_source=True) is None


@pytest.mark.parametrize("headers,error,argument", [
    pytest.param({"x-amz-server-side-encryption": "AES128"}, errors.InvalidArgument,
                 "x-amz-server-side-encryption", id="bad-algorithm"),
    pytest.param({"x-amz-server-side-encryption": "aws:kms:dsse"}, errors.NotImplementedError_,
                 None, id="dsse"),
    pytest.param({"x-amz-server-side-encryption": "AES256",
                  "x-amz-server-side-encryption-aws-kms-key-id": "k"}, errors.InvalidArgument,
                 "x-amz-server-side-encryption-aws-kms-key-id", id="key-id-without-kms"),
    pytest.param({"x-amz-server-side-encryption-context": CONTEXT}, errors.InvalidArgument,
                 "x-amz-server-side-encryption-context", id="context-without-kms"),
    pytest.param({"x-amz-server-side-encryption": "aws:kms",
                  "x-amz-server-side-encryption-context": "not base64!"}, errors.InvalidArgument,
                 "x-amz-server-side-encryption-context", id="context-not-base64"),
    pytest.param({"x-amz-server-side-encryption": "aws:kms",
                  "x-amz-server-side-encryption-context": base64.b64encode(b"[1]").decode()},
                 errors.InvalidArgument, "x-amz-server-side-encryption-context",
                 id="context-not-object"),
    pytest.param({**SSE_C, "x-amz-server-side-encryption": "AES256"}, errors.InvalidArgument,
                 "x-amz-server-side-encryption", id="sse-c-with-sse"),
    pytest.param({**SSE_C, "x-amz-server-side-encryption-customer-algorithm": "AES128"},
                 errors.InvalidEncryptionAlgorithmError, None, id="sse-c-algorithm"),
    pytest.param({**SSE_C, "x-amz-server-side-encryption-customer-key":
                  base64.b64encode(b"short").decode()}, errors.InvalidArgument,
                 "x-amz-server-side-encryption-customer-key", id="sse-c-short-key"),
    pytest.param({**SSE_C, "x-amz-server-side-encryption-customer-key-md5":
                  base64.b64encode(hashlib.md5(b"x").digest()).decode()}, errors.InvalidArgument,
                 "x-amz-server-side-encryption-customer-key-md5", id="sse-c-md5-mismatch"),
    pytest.param({k: v for k, v in SSE_C.items() if not k.endswith("md5")},
                 errors.InvalidArgument, "x-amz-server-side-encryption-customer-key-md5",
                 id="sse-c-missing-md5"),
    pytest.param({"x-amz-server-side-encryption": "aws:kms",
                  "x-amz-server-side-encryption-bucket-key-enabled": "maybe"},
                 errors.InvalidArgument, "x-amz-server-side-encryption-bucket-key-enabled",
                 id="bucket-key-not-boolean"),
])
def test_invalid(headers, error, argument):
    with pytest.raises(error) as exc:
        parse_request(headers)
    if argument:
        assert exc.value.fields["ArgumentName"] == argument
    assert KEY_B64 not in str(exc.value) and KEY_B64 not in str(exc.value.fields)


@pytest.mark.parametrize("value", ["AES256", "aws:kms", "aws:kms:dsse", ""])
def test_reads_refuse_the_sse_header(value):
    # AWS: x-amz-server-side-encryption on GET/HEAD is 400 (InvalidArgument).
    with pytest.raises(errors.InvalidArgument) as exc:
        refuse_on_read({"x-amz-server-side-encryption": value})
    assert exc.value.status == 400
    assert exc.value.fields == {"ArgumentName": "x-amz-server-side-encryption",
                                "ArgumentValue": value}


def test_reads_take_the_customer_key_and_nothing_else():
    refuse_on_read({})
    refuse_on_read(SSE_C)   # an SSE-C object is read with its key
