"""Integrity failures: what encproxy does when stored bytes do not verify.

Every such failure is counted and logged with the object and the reason (the
error's class, from the closed list of docs/FORMAT.md §9), then propagates: as
an S3 error if no response header has been sent yet, else as an exception that
makes the server abort the connection, so that a client never mistakes a short
body for a whole one.

Also here, the checks of what the backend could forge outside the envelope tag's
cover: the envelope's key-id field (``authenticated_key_id``) and an object that
has no envelope at all when encryption is required (``envelope_missing``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from encproxy import errors, metrics
from encproxy.format.constants import Protection
from encproxy.format.envelope import Envelope
from encproxy.format.errors import EnvelopeAuthenticationFailed, EnvelopeMissing
from encproxy.keys.blob import ProviderKind, WrappedKey
from encproxy.keys.keyid import parse_key_id

log = logging.getLogger("encproxy.encryption")


def report(bucket: str, key: str, exc: errors.IntegrityError) -> None:
    metrics.integrity_failure(type(exc).__name__)
    log.error("integrity failure on %s/%s: %s (%s)", bucket, key, type(exc).__name__,
              exc.default_message)


@contextmanager
def reported(bucket: str, key: str) -> Iterator[None]:
    """Report an integrity failure raised inside the block, and let it propagate."""
    try:
        yield
    except errors.IntegrityError as exc:
        report(bucket, key, exc)
        raise


def envelope_missing(bucket: str, key: str) -> EnvelopeMissing:
    """Report, and return to raise, a stored object without an envelope read while
    ``[encryption] require = true`` (docs/ENCRYPTION.md, Objects without an envelope)."""
    exc = EnvelopeMissing()
    report(bucket, key, exc)
    return exc


def _kms_names_blob_key(envelope_id: str, blob_id: str) -> bool:
    """True if an AWS KMS key id as the write named it may be the key ``blob_id``
    (the key ARN KMS returned).  A bare id or key ARN must name that very key; an
    alias cannot be checked without KMS (the id reported is then the blob's)."""
    try:
        ref, blob = parse_key_id(envelope_id), parse_key_id(blob_id)
    except errors.S3Error:
        return False
    if ref.is_alias:
        return True
    return blob.arn_resource == "key" and ref.name == blob.name and (
        ref.form == "id" or ref.text == blob.text)


def authenticated_key_id(envelope: Envelope) -> str:
    """The master key id of an object, from authenticated data only (FORMAT.md §2).

    The envelope tag does not cover the key-id field (rotation rewrites it), but the
    wrapped key names its master key too, and ``unwrap`` authenticates that name
    (AES-GCM AAD for the keyring and KMIP, the key itself for PKCS#11 key wrap, the
    KeyId KMS answers for AWS KMS); with a bucket key, its blob names the master key,
    and the envelope tag covers the id of that blob (FORMAT.md §16).  Call this only
    after the data key was unwrapped.
    An envelope whose key id disagrees with its wrapped key is EnvelopeAuthenticationFailed.
    SSE-C objects name no master key: their envelope's marker is returned as stored.
    """
    if envelope.protection is Protection.SSE_C:
        return envelope.key_id
    try:
        blob = WrappedKey.from_bytes(envelope.master_blob)
    except errors.S3Error:
        raise EnvelopeAuthenticationFailed() from None
    if blob.key_id == envelope.key_id:
        return blob.key_id
    if blob.provider is ProviderKind.AWSKMS and _kms_names_blob_key(envelope.key_id,
                                                                   blob.key_id):
        return envelope.key_id if not parse_key_id(envelope.key_id).is_alias else blob.key_id
    raise EnvelopeAuthenticationFailed()
