"""Master keys in AWS KMS or a compatible service (tested with moto) (docs/KEYS.md §6.4).

The KMS JSON API over ``requests``, signed with SigV4 (service ``kms``) by the
step functions of :mod:`encproxy.sigv4`:

* ``generate_data_key`` -> ``GenerateDataKey`` (the KMS makes the data key);
* ``wrap``              -> ``Encrypt``;
* ``unwrap``            -> ``Decrypt`` with ``KeyId`` from the blob;
* ``describe``          -> ``DescribeKey``.

Each passes the context as ``EncryptionContext``, which KMS binds to the ciphertext
(and records in CloudTrail). One call per object: ``wrap`` does not describe first;
KMS itself refuses a missing or disabled key. Key versions are KMS's business
(automatic or on-demand rotation keeps every backing key): ``describe`` reports the
placeholder version ``current`` with ``managed_versions=False``.

Errors: ``NotFoundException`` and ``ValidationException`` are
``KMS.NotFoundException``; ``DisabledException`` is ``KMS.DisabledException``;
``KMSInvalidStateException`` and ``InvalidKeyUsageException`` are
``KMS.KMSInvalidStateException``; ``AccessDeniedException`` is ``AccessDenied``
(as S3 answers when it may not use a key); throttling is ``SlowDown``;
``InvalidCiphertextException`` and ``IncorrectKeyException`` on Decrypt are
``KeyUnwrapFailed``; no connection, a timeout, a 5xx, or KMS refusing encproxy's own
credentials is ``KeyProviderUnavailable`` (503).

Layer 3: an HTTP client (the only kind of module that imports ``requests``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from encproxy import errors, sigv4
from encproxy.errors import ConfigError
from encproxy.keys.blob import Algorithm, ProviderKind, WrappedKey, check_context
from encproxy.keys.provider import (
    DATA_KEY_SIZE,
    BaseProvider,
    Context,
    DataKey,
    KeyInfo,
    log,
    unavailable,
)

SERVICE = "kms"
MAX_RESPONSE = 1 << 20
VERSION_PLACEHOLDER = "current"
_CREDENTIAL_ERRORS = {"UnrecognizedClientException", "InvalidSignatureException",
                      "IncompleteSignature", "MissingAuthenticationToken",
                      "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch"}


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, *, access_key: str,
         secret_key: str, region: str, service: str, now: datetime,
         session_token: str = "") -> dict[str, str]:
    """Headers for a SigV4-signed request: ``headers`` plus host, date, token, Authorization.

    Pure: composes :func:`sigv4.canonical_request`, :func:`sigv4.string_to_sign`,
    :func:`sigv4.signing_key` and :func:`sigv4.signature`.
    """
    parts = urlsplit(url)
    timestamp = now.astimezone(UTC).strftime(sigv4.AMZ_DATE_FORMAT)
    lower = {k.lower(): v for k, v in headers.items()}
    lower["host"] = parts.netloc
    lower["x-amz-date"] = timestamp
    if session_token:
        lower["x-amz-security-token"] = session_token
    signed = sorted(lower)
    scope = f"{timestamp[:8]}/{region}/{service}/{sigv4.TERMINATOR}"
    query = sigv4.canonical_query(sigv4.parse_query(parts.query))
    creq = sigv4.canonical_request(method, parts.path or "/", query, lower, signed,
                                   hashlib.sha256(body).hexdigest())
    sts = sigv4.string_to_sign(timestamp, scope, creq)
    signature = sigv4.signature(sigv4.signing_key(secret_key, timestamp[:8], region, service),
                                sts)
    lower["authorization"] = (f"{sigv4.ALGORITHM} Credential={access_key}/{scope}, "
                              f"SignedHeaders={';'.join(signed)}, Signature={signature}")
    return lower


class _KmsError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.message = message


def _b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


class AwsKmsProvider(BaseProvider):
    """The AWS KMS API; see the module docstring."""

    kind = ProviderKind.AWSKMS

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str, *,
                 session_token: str = "", connect_timeout: float = 3.0, timeout: float = 10.0,
                 ca_file: str = "", metadata_ttl: float = 30.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(metadata_ttl)
        if not region:
            raise ConfigError("keys", "region", "is required for provider = awskms")
        endpoint = endpoint or f"https://kms.{region}.amazonaws.com"
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigError("keys", "endpoint", f"{endpoint!r} is not an http(s) URL")
        if not access_key:
            raise ConfigError("keys", "access_key", "is required for provider = awskms")
        if not secret_key:
            raise ConfigError("keys", "secret_key", "is required for provider = awskms")
        if ca_file and not os.path.isfile(ca_file):
            raise ConfigError("keys", "ca_file", f"{ca_file}: no such file")
        self.endpoint = endpoint.rstrip("/") + "/" if not parts.path else endpoint
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._timeouts = (connect_timeout, timeout)
        self._verify: bool | str = ca_file or True
        self._clock = clock or (lambda: datetime.now(UTC))
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"AwsKmsProvider({self.endpoint!r}, region={self.region!r})"

    # -- transport -------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != os.getpid():
            session = requests.Session()
            session.trust_env = False  # no proxies or netrc credentials from the environment
            self._local.session, self._local.pid = session, os.getpid()
        return session

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        self._local.session = None
        if session is not None:
            session.close()

    def _call(self, operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = sign("POST", self.endpoint, {
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": f"TrentService.{operation}"}, body,
            access_key=self._access_key, secret_key=self._secret_key, region=self.region,
            service=SERVICE, now=self._clock(), session_token=self._session_token)
        try:
            response = self._session().post(self.endpoint, data=body, headers=headers,
                                            timeout=self._timeouts, verify=self._verify,
                                            stream=True, allow_redirects=False)
            try:
                raw = response.raw.read(MAX_RESPONSE + 1, decode_content=True)
            finally:
                response.close()
        except requests.RequestException as exc:
            self.close()
            raise unavailable(self.name, f"{operation} at {self.endpoint}", exc) from None
        if len(raw) > MAX_RESPONSE:
            raise unavailable(self.name, f"{operation}: response too large")
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise unavailable(self.name, f"{operation}: HTTP {response.status_code} "
                              f"without a JSON body")
        if response.status_code == 200:
            return doc
        kind = str(doc.get("__type", "")).rpartition("#")[2] or f"HTTP{response.status_code}"
        message = str(doc.get("message") or doc.get("Message") or "")[:256]
        if response.status_code >= 500:
            raise unavailable(self.name, f"{operation}: {kind} (HTTP {response.status_code})")
        raise _KmsError(kind, message)

    def _classify(self, exc: _KmsError, key_id: str, operation: str) -> errors.S3Error:
        kind, message = exc.kind, exc.message
        if kind == "NotFoundException":
            return errors.KMSNotFound(message or f"Key '{key_id}' does not exist")
        if kind == "ValidationException":
            return errors.KMSNotFound(f"Invalid keyId '{key_id}'")
        if kind == "DisabledException":
            return errors.KMSDisabled(message or f"The key '{key_id}' is disabled.")
        if kind in ("KMSInvalidStateException", "InvalidKeyUsageException"):
            return errors.KMSInvalidState(message or None)
        if kind == "AccessDeniedException":
            log.warning("awskms: %s on key %r refused: AccessDeniedException", operation, key_id)
            return errors.AccessDenied()
        if kind in ("ThrottlingException", "LimitExceededException"):
            return errors.SlowDown()
        if kind in _CREDENTIAL_ERRORS:
            return unavailable(self.name, f"{operation}: KMS refused encproxy's credentials "
                               f"({kind})")
        return unavailable(self.name, f"{operation}: KMS answered {kind}")

    # -- the provider interface -----------------------------------------------------------
    def _blob(self, key_arn: Any, ciphertext: Any) -> bytes:
        try:
            return WrappedKey(self.kind, Algorithm.KMS_CIPHERTEXT, str(key_arn), "", b"",
                              _b64decode(ciphertext)).to_bytes()
        except (ValueError, binascii.Error):
            raise unavailable(self.name, "KMS returned a key id or ciphertext blob encproxy "
                              "cannot store") from None

    def generate_data_key(self, key_id: str, context: Context) -> DataKey:
        key_id = self.normalize(key_id)
        check_context(context)
        try:
            doc = self._call("GenerateDataKey", {"KeyId": key_id, "NumberOfBytes": DATA_KEY_SIZE,
                                                 "EncryptionContext": dict(context)})
        except _KmsError as exc:
            raise self._classify(exc, key_id, "GenerateDataKey") from None
        try:
            plaintext = _b64decode(doc.get("Plaintext"))
        except (ValueError, binascii.Error):
            plaintext = b""
        if len(plaintext) != DATA_KEY_SIZE:
            raise unavailable(self.name, "GenerateDataKey returned no 32-byte data key")
        return DataKey(plaintext, self._blob(doc.get("KeyId"), doc.get("CiphertextBlob")))

    def _wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        try:
            doc = self._call("Encrypt", {"KeyId": key_id,
                                         "Plaintext": base64.b64encode(data_key).decode(),
                                         "EncryptionContext": dict(context)})
        except _KmsError as exc:
            raise self._classify(exc, key_id, "Encrypt") from None
        return self._blob(doc.get("KeyId"), doc.get("CiphertextBlob"))

    def _unwrap(self, wrapped: WrappedKey, context: Context) -> bytes:
        if wrapped.algorithm is not Algorithm.KMS_CIPHERTEXT:
            raise errors.KeyUnwrapFailed("malformed-blob")
        try:
            doc = self._call("Decrypt", {
                "CiphertextBlob": base64.b64encode(wrapped.ciphertext).decode(),
                "KeyId": wrapped.key_id, "EncryptionContext": dict(context)})
        except _KmsError as exc:
            if exc.kind in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise errors.KeyUnwrapFailed("authentication") from None
            raise self._classify(exc, wrapped.key_id, "Decrypt") from None
        if doc.get("KeyId") != wrapped.key_id:
            # KMS names the key that decrypted; it must be the one the blob names (moto,
            # for one, resolves an ARN by its key id alone and ignores the rest).
            raise errors.KeyUnwrapFailed("key-mismatch")
        try:
            return _b64decode(doc.get("Plaintext"))
        except (ValueError, binascii.Error):
            raise unavailable(self.name, "Decrypt returned no plaintext") from None

    def _describe(self, key_id: str) -> KeyInfo:
        try:
            doc = self._call("DescribeKey", {"KeyId": key_id})
        except _KmsError as exc:
            raise self._classify(exc, key_id, "DescribeKey") from None
        meta = doc.get("KeyMetadata") or {}
        spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
        if (meta.get("KeyUsage") or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" \
                or spec != "SYMMETRIC_DEFAULT":
            raise errors.KMSInvalidState(f"The key '{key_id}' is not a symmetric encryption key.")
        created = meta.get("CreationDate")
        return KeyInfo(
            key_id=str(meta.get("Arn") or key_id), current_version=VERSION_PLACEHOLDER,
            versions=(VERSION_PLACEHOLDER,),
            enabled=bool(meta.get("Enabled")) and meta.get("KeyState", "Enabled") == "Enabled",
            created=(datetime.fromtimestamp(float(created), UTC)
                     if isinstance(created, (int, float)) else None),
            managed_versions=False)


__all__ = ["AwsKmsProvider", "sign"]
