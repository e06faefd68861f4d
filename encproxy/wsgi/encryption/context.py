"""What every part of the encryption layer works with, and the operations they share.

``EncryptionContext`` is built once per middleware and handed explicitly to each
helper (single-part reads and writes, listings, uploads, copies, attributes):
the app below, the bucket configurations, the key provider, the policy, and the
caches of what has been learnt about stored objects.  Its methods are the
decisions and key operations that several operations make the same way.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.crypto.customer_keys import KEY_ID as SSE_C_KEY_ID
from encproxy.crypto.customer_keys import CustomerKeyWrapper
from encproxy.crypto.fact_names import Facts
from encproxy.crypto.keys import KeyWrapper, ObjectKeys, new_object, open_object, rebind
from encproxy.format.constants import (
    CHECKSUMMED_ENVELOPE_VERSION,
    FORMAT_VERSION,
    Kind,
    Protection,
)
from encproxy.format.envelope import Envelope
from encproxy.keys.bucket_keys import BucketKey, BucketKeys
from encproxy.keys.provider import KeyProvider
from encproxy.s3 import sse
from encproxy.s3.bucket_encryption import BucketEncryption
from encproxy.wsgi.auth.access import require_kms_key
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.background import BackgroundWrites
from encproxy.wsgi.encryption.fact_records import FactRecords
from encproxy.wsgi.encryption.facts import FactsCache, ObjectFacts
from encproxy.wsgi.encryption.headers import mode_of, protection_of
from encproxy.wsgi.encryption.layouts import LayoutReader
from encproxy.wsgi.encryption.policy import EncryptionPolicy
from encproxy.wsgi.encryption.rewraps import RewrapStore
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.encryption")

CUSTOMER_KEY_HEADERS = (sse.SSE_C_ALGORITHM, sse.SSE_C_KEY, sse.SSE_C_KEY_MD5)
INSECURE_SSE_C = ("Requests specifying Server Side Encryption with Customer provided keys "
                  "must be made over a secure connection.")


@dataclass(frozen=True)
class EncryptionContext:
    app: WSGIApp                    # the S3 app below: file store, S3 backend, any other
    configs: BucketConfigStore
    keys: KeyProvider
    policy: EncryptionPolicy
    facts: FactsCache
    layouts: LayoutReader
    bucket_keys: BucketKeys         # SSE-KMS bucket keys: this process's, and those unwrapped
    # Facts records written after the answer (background.py); None: before it.
    background: BackgroundWrites | None = None

    @property
    def internal_bucket(self) -> str:
        return self.configs.internal_bucket

    def pass_through(self, req: S3Request) -> Response:
        """Hand the request to the app below unchanged."""
        return Response.from_app(self.app, req.environ)

    # -- deciding ---------------------------------------------------------------------
    def refuse_insecure_sse_c(self, req: S3Request) -> None:
        if not self.policy.allow_insecure_sse_c and req.environ.get("wsgi.url_scheme") != "https":
            raise errors.InvalidRequest(INSECURE_SSE_C)

    def plan(self, req: S3Request) -> sse.WritePlan | None:
        """How a write to ``req.bucket`` is stored: None means as sent (plaintext)."""
        assert req.bucket is not None
        config = self.configs.get(req.bucket, parent=req.environ)
        _refuse_if_blocked(req, config, req.headers)   # before the SSE-C headers are validated
        requested = sse.parse_request(req.headers)
        if requested.customer is not None:
            self.refuse_insecure_sse_c(req)
        if requested.kms_key_id is not None:
            require_kms_key(req.environ, self.keys.normalize(requested.kms_key_id))
        plan = sse.decide_write(requested, config.algorithm if config else None,
                                config.kms_key_id if config else None, self.policy.default,
                                self.policy.default_key,
                                config.bucket_key_enabled if config else False)
        if plan is None:
            self.refuse_unencrypted()
        return plan

    def refuse_blocked_sse_c(self, req: S3Request) -> None:
        """AccessDenied if the request asks for SSE-C and ``req.bucket``'s configuration
        blocks it (``BlockedEncryptionTypes``): for writes whose encryption ``plan`` does
        not decide (UploadPart, UploadPartCopy). Only the verified configuration record
        can block."""
        assert req.bucket is not None
        if sse_c_requested(req.headers):
            _refuse_if_blocked(req, self.configs.get(req.bucket, parent=req.environ),
                               req.headers)

    def refuse_unencrypted(self) -> None:
        """AccessDenied if ``[encryption] require``: for every write that would store
        plaintext, decided by the server's policy alone (never by a stored record)."""
        if self.policy.require:
            raise errors.AccessDenied("encproxy is configured to refuse writes that would be "
                                      "stored unencrypted ([encryption] require = true).")

    def key_id(self, plan: sse.WritePlan) -> str:
        """The key id recorded for a write: the master key's, or SSE-C's marker."""
        if plan.mode == sse.MODE_SSE_C:
            return SSE_C_KEY_ID
        return self.keys.normalize(plan.key_id or self.policy.default_key)

    # -- keys -------------------------------------------------------------------------
    def wrapper(self, mode: str, customer: sse.CustomerKey | None) -> KeyWrapper:
        """What wraps data keys of ``mode``: the customer's key for SSE-C, else the provider."""
        if mode == sse.MODE_SSE_C:
            if customer is None:
                raise errors.InvalidRequest(
                    "The object was stored using a form of Server Side Encryption. The correct "
                    "parameters must be provided to retrieve the object.")
            return CustomerKeyWrapper(customer.key)
        return self.keys

    def bucket_key(self, plan: sse.WritePlan, bucket: str) -> BucketKey | None:
        """The bucket key a write of ``plan`` into ``bucket`` wraps its data key under
        (SSE-KMS with a bucket key only; FORMAT.md §16), else None."""
        if plan.mode != sse.MODE_SSE_KMS or not plan.bucket_key:
            return None
        return self.bucket_keys.for_write(self.key_id(plan), bucket)

    def new_keys(self, plan: sse.WritePlan, bucket: str, key: str,
                 kind: Kind) -> tuple[ObjectKeys, Envelope]:
        """A fresh data key for a new object or upload, and its envelope.  Every new
        single-part object seals its checksum (envelope version 2, FORMAT.md §15)."""
        version = CHECKSUMMED_ENVELOPE_VERSION if kind is Kind.SINGLE else FORMAT_VERSION
        wrapper = self.wrapper(plan.mode, plan.customer)
        bucket_key = self.bucket_key(plan, bucket)
        try:
            return new_object(wrapper, self.key_id(plan),
                              bucket, key, kind=kind, protection=protection_of(plan.mode),
                              extra_context=plan.context, version=version,
                              bucket_key=bucket_key)
        except ValueError:
            raise _context_redefined() from None

    def rebound(self, keys: ObjectKeys, plan: sse.WritePlan, bucket: str, key: str) -> Envelope:
        """An envelope binding the data key of ``keys`` to a byte-for-byte copy at bucket/key."""
        wrapper = self.wrapper(plan.mode, plan.customer)
        bucket_key = self.bucket_key(plan, bucket)
        try:
            return rebind(wrapper, keys, self.key_id(plan),
                          bucket, key, protection_of(plan.mode), plan.context, bucket_key)
        except ValueError:
            raise _context_redefined() from None

    def decode_envelope(self, value: str, bucket: str, key: str) -> Envelope:
        with integrity.reported(bucket, key):
            return Envelope.decode(value)

    def open_keys(self, envelope: Envelope, bucket: str, key: str,
                  customer: sse.CustomerKey | None, context: str | None,
                  version_id: str | None = None) -> ObjectKeys:
        """Unwrap and verify the data key of the object stored at bucket/key.

        ``context``: the stored SSE-KMS context header, if any.  ``version_id``: the
        version read, if one was named: when its data key no longer unwraps (its
        master-key version retired, or the key disabled), the version's rewrap record,
        if rotation wrote one (``rewraps``), opens it instead.
        """
        wrapper = self.wrapper(mode_of(envelope.protection), customer)
        extra = sse.parse_context(context) if context else None
        with integrity.reported(bucket, key):
            try:
                return open_object(wrapper, envelope, bucket, key, extra, self.bucket_keys)
            except (errors.KMSNotFound, errors.KMSDisabled, errors.KMSInvalidState):
                if version_id is None or envelope.protection is Protection.SSE_C:
                    raise
                rewrapped = self.rewraps.get(bucket, key, version_id, None)
                if rewrapped is None:
                    raise
            log.info("%s/%s version %s: opened with its rewrap record", bucket, key,
                     version_id)
            return open_object(wrapper, rewrapped.applied_to(envelope), bucket, key, extra,
                               self.bucket_keys)

    @property
    def rewraps(self) -> RewrapStore:
        return RewrapStore(self.app, self.internal_bucket, self.configs.records)

    @property
    def fact_records(self) -> FactRecords:
        return FactRecords(self.app, self.internal_bucket, self.configs.records,
                           self.background)

    def remember(self, bucket: str, key: str, backend_etag: str, stored_size: int,
                 facts: ObjectFacts, parent: dict[str, Any] | None) -> None:
        """Cache the facts of an object encproxy has just written or learnt, and keep
        them in a facts record for every worker and replica's listings (FORMAT.md §17)."""
        self.facts.put(bucket, key, backend_etag, stored_size, facts)
        self.fact_records.record(bucket, Facts(
            key, facts.mode, stored_size, backend_etag.strip('"'), facts.plaintext_size,
            facts.etag.strip('"')), parent)


def sse_c_requested(named: Mapping[str, str]) -> bool:
    """Whether a write names a customer key (any of the three headers, valid or not; the
    copy source's ``x-amz-copy-source-*`` key only reads, so it does not count)."""
    return any(name in named for name in CUSTOMER_KEY_HEADERS)


def _refuse_if_blocked(req: S3Request, config: BucketEncryption | None,
                       named: Mapping[str, str]) -> None:
    """AWS answers every write that asks for SSE-C into a bucket that blocks it with a
    plain 403 AccessDenied, before it looks at the key (docs/ENCRYPTION.md)."""
    if config is not None and config.blocks_sse_c and sse_c_requested(named):
        log.info("bucket %s blocks SSE-C (BlockedEncryptionTypes): %s refused", req.bucket,
                 req.operation)
        raise errors.AccessDenied()


def _context_redefined() -> errors.S3Error:
    return errors.InvalidArgument("The encryption context may not redefine encproxy's own "
                                  "fields.", ArgumentName=sse.SSE_CONTEXT)


def check_customer_matches(mode: str, customer: sse.CustomerKey | None) -> None:
    """An SSE-C object needs its key; any other object refuses one."""
    if mode == sse.MODE_SSE_C and customer is None:
        raise errors.InvalidRequest(
            "The object was stored using a form of Server Side Encryption. The correct "
            "parameters must be provided to retrieve the object.")
    if mode != sse.MODE_SSE_C and customer is not None:
        raise errors.InvalidRequest("The encryption parameters are not applicable to this "
                                    "object.")

