"""Server-side-encryption request headers, validated as AWS validates them (pure).

A write may name its encryption with ``x-amz-server-side-encryption``
(``AES256`` or ``aws:kms``), ``-aws-kms-key-id`` and ``-context``, or bring
its own key (SSE-C: ``x-amz-server-side-encryption-customer-algorithm``,
``-key``, ``-key-MD5``).  Reads of SSE-C objects bring the customer key again;
copies bring the source's with the ``x-amz-copy-source-`` prefix.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from encproxy import errors

SSE = "x-amz-server-side-encryption"
SSE_KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
SSE_CONTEXT = "x-amz-server-side-encryption-context"
SSE_BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
SSE_C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
SSE_C_KEY = "x-amz-server-side-encryption-customer-key"
SSE_C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
COPY_SOURCE_PREFIX = "x-amz-copy-source-"
MAX_CONTEXT_BYTES = 4096


@dataclass(frozen=True)
class CustomerKey:
    """An SSE-C key as the client sent it; never logged (repr hides it)."""

    key: bytes = field(repr=False)
    key_md5: str  # base64, as S3 echoes it

    @property
    def algorithm(self) -> str:
        return "AES256"


@dataclass(frozen=True)
class SseRequest:
    """What a request says about encryption; all None when it says nothing."""

    algorithm: str | None = None          # "AES256" | "aws:kms"
    kms_key_id: str | None = None
    context: Mapping[str, str] | None = None
    bucket_key_enabled: bool | None = None
    customer: CustomerKey | None = None

    @property
    def says_anything(self) -> bool:
        return self.algorithm is not None or self.customer is not None


def parse_customer_key(headers: Mapping[str, str], copy_source: bool = False
                       ) -> CustomerKey | None:
    """The SSE-C triple, or None if absent.

    ``copy_source`` reads the copy source's key instead, which S3 names
    ``x-amz-copy-source-server-side-encryption-customer-*``.
    """
    names = [n.replace("x-amz-", COPY_SOURCE_PREFIX, 1) if copy_source else n
             for n in (SSE_C_ALGORITHM, SSE_C_KEY, SSE_C_KEY_MD5)]
    present = [n in headers for n in names]
    if not any(present):
        return None
    if not all(present):
        raise errors.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key.", ArgumentName=names[present.index(False)])
    algorithm = headers[names[0]].strip()
    if algorithm != "AES256":
        raise errors.InvalidEncryptionAlgorithmError(
            ArgumentName=names[0], ArgumentValue=algorithm)
    try:
        key = base64.b64decode(headers[names[1]].strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise errors.InvalidArgument("The secret key was invalid for the specified algorithm.",
                                     ArgumentName=names[1])
    given_md5 = headers[names[2]].strip()
    actual_md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    if not hmac.compare_digest(given_md5.encode(), actual_md5.encode()):
        raise errors.InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
            ArgumentName=names[2])
    return CustomerKey(key, actual_md5)


def parse_request(headers: Mapping[str, str]) -> SseRequest:
    """Validate a write's SSE headers (lower-case names) and say what they ask for."""
    customer = parse_customer_key(headers)
    algorithm = headers.get(SSE)
    if algorithm is not None:
        algorithm = algorithm.strip()
    if customer is not None and algorithm is not None:
        raise errors.InvalidArgument(
            "Server Side Encryption with Customer provided key is incompatible with the "
            "encryption method specified", ArgumentName=SSE, ArgumentValue=algorithm)
    if algorithm is not None and algorithm not in ("AES256", "aws:kms"):
        if algorithm == "aws:kms:dsse":
            raise errors.NotImplementedError_(
                "The server-side encryption algorithm aws:kms:dsse is not offered by encproxy.",
                Header=SSE)
        raise errors.InvalidArgument("The encryption method specified is not supported",
                                     ArgumentName=SSE, ArgumentValue=algorithm)
    kms_key_id = headers.get(SSE_KMS_KEY_ID)
    context_header = headers.get(SSE_CONTEXT)
    if (kms_key_id is not None or context_header is not None) and algorithm != "aws:kms":
        name = SSE_KMS_KEY_ID if kms_key_id is not None else SSE_CONTEXT
        raise errors.InvalidArgument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header "
            "x-amz-server-side-encryption : aws:kms", ArgumentName=name)
    if kms_key_id is not None and not kms_key_id.strip():
        raise errors.InvalidArgument("KMS key id must not be empty", ArgumentName=SSE_KMS_KEY_ID)
    context = None if context_header is None else parse_context(context_header)
    bucket_key = headers.get(SSE_BUCKET_KEY)
    enabled = None
    if bucket_key is not None:
        if bucket_key.strip().lower() not in ("true", "false"):
            raise errors.InvalidArgument("Bucket key enabled must be true or false",
                                         ArgumentName=SSE_BUCKET_KEY, ArgumentValue=bucket_key)
        enabled = bucket_key.strip().lower() == "true"
    return SseRequest(algorithm, kms_key_id.strip() if kms_key_id else None, context, enabled,
                      customer)


def refuse_on_read(headers: Mapping[str, str]) -> None:
    """GET and HEAD take no ``x-amz-server-side-encryption``: only a write chooses it.

    AWS documents "If you specify x-amz-server-side-encryption:aws:kms, ...:aws:kms:dsse
    or ...:AES256 for GET/HEAD requests, you'll get an HTTP 400 Bad Request error"; the
    code is InvalidArgument, "... header is not supported for this operation."
    """
    value = headers.get(SSE)
    if value is not None:
        raise errors.InvalidArgument(
            "x-amz-server-side-encryption header is not supported for this operation.",
            ArgumentName=SSE, ArgumentValue=value)


def parse_context(value: str) -> dict[str, str]:
    """``x-amz-server-side-encryption-context``: base64 of a JSON object of strings."""
    invalid = errors.InvalidArgument(
        "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 "
        "string holding JSON which represents a string-string map", ArgumentName=SSE_CONTEXT)
    if len(value) > MAX_CONTEXT_BYTES * 2:
        raise invalid
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
        if len(decoded) > MAX_CONTEXT_BYTES:
            raise ValueError("too long")
        obj = json.loads(decoded.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise invalid
    return obj


# -- which encryption a write gets ------------------------------------------------------
MODE_NONE, MODE_SSE_S3, MODE_SSE_KMS, MODE_SSE_C = "none", "AES256", "aws:kms", "sse-c"


@dataclass(frozen=True)
class WritePlan:
    """How one write is to be encrypted.

    ``mode`` is AES256 (SSE-S3), aws:kms (SSE-KMS) or sse-c; ``key_id`` the master
    key as written (the provider normalises it) or None for SSE-C; ``bucket_key``:
    SSE-KMS with an S3 Bucket Key (docs/KEYS.md, Bucket keys).
    """

    mode: str
    key_id: str | None
    customer: CustomerKey | None = None
    context: Mapping[str, str] | None = None
    bucket_key: bool = False


def decide_write(request: SseRequest, bucket_algorithm: str | None,
                 bucket_key_id: str | None, server_default: str,
                 default_key: str, bucket_key_enabled: bool = False) -> WritePlan | None:
    """Request headers override the bucket's configuration, which overrides the
    server-wide ``[encryption] default``; None means the write is stored as sent.

    An SSE-KMS write uses a bucket key if the request's
    ``x-amz-server-side-encryption-bucket-key-enabled`` says true, or says nothing and
    the bucket's configuration has ``BucketKeyEnabled`` (as S3: for every new SSE-KMS
    object in the bucket).  Other modes have no bucket keys, as at S3.
    """
    bucket_key = (request.bucket_key_enabled if request.bucket_key_enabled is not None
                  else bucket_key_enabled)
    if request.customer is not None:
        return WritePlan(MODE_SSE_C, None, request.customer)
    if request.algorithm == "AES256":
        return WritePlan(MODE_SSE_S3, default_key)
    if request.algorithm == "aws:kms":
        return WritePlan(MODE_SSE_KMS, request.kms_key_id or default_key,
                         context=request.context, bucket_key=bucket_key)
    algorithm, key_id = bucket_algorithm, bucket_key_id
    if algorithm is None and server_default != MODE_NONE:
        algorithm, key_id = server_default, None
    if algorithm == "AES256":
        return WritePlan(MODE_SSE_S3, default_key)
    if algorithm == "aws:kms":
        return WritePlan(MODE_SSE_KMS, key_id or default_key, bucket_key=bucket_key)
    return None


def response_headers(mode: str, key_id: str | None, customer_md5: str | None,
                     context_header: str | None = None,
                     bucket_key: bool = False) -> dict[str, str]:
    """The SSE headers PUT, GET and HEAD answer with, as S3 sends them; ``bucket_key``:
    the object's envelope has a bucket key (S3 then answers the header ``true``)."""
    if mode == MODE_SSE_S3:
        return {SSE: "AES256"}
    if mode == MODE_SSE_KMS:
        out = {SSE: "aws:kms"}
        if key_id:
            out[SSE_KMS_KEY_ID] = key_id
        if context_header:
            out[SSE_CONTEXT] = context_header
        if bucket_key:
            out[SSE_BUCKET_KEY] = "true"
        return out
    if mode == MODE_SSE_C and customer_md5:
        return {SSE_C_ALGORITHM: "AES256", SSE_C_KEY_MD5: customer_md5}
    return {}
