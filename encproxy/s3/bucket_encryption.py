"""A bucket's default-encryption configuration: the ``?encryption`` subresource (pure).

Parses PutBucketEncryption bodies as AWS and Yandex Object Storage document
them, renders GetBucketEncryption as AWS does, and serialises the stored form.

Decisions (docs/ENCRYPTION.md, "Bucket default encryption"):

* The namespace is optional, and so is an empty ``xmlns=""`` (as in AWS's own
  examples).
* ``SSEAlgorithm`` is required by AWS's schema, but AWS's own example body for
  SSE-KMS omits it and gives only ``KMSMasterKeyID``: a rule with a key id and
  no algorithm is read as ``aws:kms``, as that page intends.
* ``aws:kms:dsse`` is a valid AWS value for a feature encproxy does not offer:
  501 NotImplemented. Any other unknown value does not validate against the
  schema: MalformedXML, as AWS answers.
* ``BlockedEncryptionTypes`` (2025-11; SSE-C blocked by default on new AWS
  buckets since 2026-04) holds ``EncryptionType`` values ``SSE-C`` (refuse
  writes that ask for SSE-C) and ``NONE`` (block nothing). Any other value is
  outside the schema's enum: MalformedXML. When both are listed, ``SSE-C`` wins:
  the restrictive reading.
* Every member of a rule is optional in AWS's schema: a rule with only
  ``BlockedEncryptionTypes`` and/or ``BucketKeyEnabled`` is a configuration
  without a default algorithm (writes that ask for nothing get the server's
  ``[encryption] default``, the part AWS's built-in SSE-S3 plays). A rule with
  none of them says nothing: MalformedXML.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from encproxy import errors
from encproxy.s3 import xml

ALGORITHMS = ("AES256", "aws:kms")
NOT_OFFERED = ("aws:kms:dsse",)
ENCRYPTION_TYPES = ("NONE", "SSE-C")   # BlockedEncryptionTypes/EncryptionType, AWS's enum
BLOCK_SSE_C = "SSE-C"
MAX_BODY = 16 * 1024  # a valid configuration is a few hundred bytes
# Version 1: algorithm, kms_key_id, bucket_key_enabled. Version 2 adds
# blocked_encryption_types and allows no algorithm; it is written only for a
# configuration version 1 cannot express, so version 1 records stay byte for byte
# what they were, and a replica that knows only version 1 refuses (fails closed on)
# a configuration that blocks SSE-C instead of ignoring the block.
STORED_VERSION = 1
STORED_VERSION_BLOCKED = 2
_V1_FIELDS = frozenset(("version", "algorithm", "kms_key_id", "bucket_key_enabled"))
_V2_FIELDS = _V1_FIELDS | {"blocked_encryption_types"}


@dataclass(frozen=True)
class BucketEncryption:
    algorithm: str | None             # "AES256", "aws:kms", or None: no default in the rule
    kms_key_id: str | None = None     # normalised; only with aws:kms
    bucket_key_enabled: bool = False
    # As given (order kept): None when the rule has no BlockedEncryptionTypes element.
    blocked_encryption_types: tuple[str, ...] | None = None

    @property
    def blocks_sse_c(self) -> bool:
        """Whether writes that ask for SSE-C are refused (403 AccessDenied)."""
        return BLOCK_SSE_C in (self.blocked_encryption_types or ())

    @property
    def _needs_v2(self) -> bool:
        return self.algorithm is None or self.blocked_encryption_types is not None

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"version": STORED_VERSION, "algorithm": self.algorithm,
                               "kms_key_id": self.kms_key_id,
                               "bucket_key_enabled": self.bucket_key_enabled}
        if self._needs_v2:
            blocked = self.blocked_encryption_types
            obj["version"] = STORED_VERSION_BLOCKED
            obj["blocked_encryption_types"] = None if blocked is None else list(blocked)
        return json.dumps(obj, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BucketEncryption:
        """The stored form; anything unexpected is an internal error, never a guess."""
        try:
            obj: Any = json.loads(data)
            version = obj.get("version")
            if version not in (STORED_VERSION, STORED_VERSION_BLOCKED) or \
                    not set(obj) <= (_V1_FIELDS if version == STORED_VERSION else _V2_FIELDS):
                raise ValueError("unknown version or field")
            algorithm = obj["algorithm"]
            if algorithm not in ALGORITHMS and not (
                    version == STORED_VERSION_BLOCKED and algorithm is None):
                raise ValueError("unknown algorithm")
            key_id = obj.get("kms_key_id")
            if key_id is not None and (not isinstance(key_id, str) or algorithm != "aws:kms"):
                raise ValueError("bad key id")
            blocked = obj.get("blocked_encryption_types")
            if blocked is not None:
                if not isinstance(blocked, list) or any(
                        t not in ENCRYPTION_TYPES for t in blocked):
                    raise ValueError("bad blocked encryption types")
                blocked = tuple(blocked)
            config = cls(algorithm, key_id, bool(obj.get("bucket_key_enabled", False)), blocked)
            if version == STORED_VERSION_BLOCKED and not config._needs_v2:
                raise ValueError("a version 2 record of a version 1 configuration")
            return config
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.InternalError() from exc

    def to_xml(self) -> xml.Node:
        """GetBucketEncryption's body, in AWS's element order (ServerSideEncryptionRule:
        ApplyServerSideEncryptionByDefault, BucketKeyEnabled, BlockedEncryptionTypes)."""
        rule = xml.Node("Rule")
        if self.algorithm is not None:
            default = rule.add("ApplyServerSideEncryptionByDefault")
            default.add("SSEAlgorithm", self.algorithm)
            if self.kms_key_id is not None:
                default.add("KMSMasterKeyID", self.kms_key_id)
        rule.add("BucketKeyEnabled", self.bucket_key_enabled)
        if self.blocked_encryption_types is not None:
            blocked = rule.add("BlockedEncryptionTypes")
            for encryption_type in self.blocked_encryption_types:
                blocked.add("EncryptionType", encryption_type)
        return xml.Node("ServerSideEncryptionConfiguration", rule)


def _only_child(parent: Any, tag: str, required: bool) -> Any:
    found = parent.findall(tag)
    if len(found) > 1 or (required and not found):
        raise errors.MalformedXML()
    return found[0] if found else None


def _blocked_types(element: Any) -> tuple[str, ...] | None:
    """``BlockedEncryptionTypes``: its EncryptionType values as given, each one of AWS's enum."""
    if element is None:
        return None
    if any(child.tag != "EncryptionType" for child in element):
        raise errors.MalformedXML()
    types = tuple((child.text or "").strip() for child in element)
    if any(t not in ENCRYPTION_TYPES for t in types):
        raise errors.MalformedXML()
    return types


def parse_configuration(body: bytes) -> BucketEncryption:
    """The configuration a PutBucketEncryption body asks for (key id not yet normalised)."""
    if len(body) > MAX_BODY:
        raise errors.MaxMessageLengthExceeded()
    root = xml.parse(body, max_size=MAX_BODY)
    if root.tag != "ServerSideEncryptionConfiguration":
        raise errors.MalformedXML()
    if any(child.tag != "Rule" for child in root):
        raise errors.MalformedXML()
    rule = _only_child(root, "Rule", required=True)
    if any(child.tag not in ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled",
                             "BlockedEncryptionTypes") for child in rule):
        raise errors.MalformedXML()

    enabled_el = _only_child(rule, "BucketKeyEnabled", required=False)
    bucket_key_enabled = False
    if enabled_el is not None:
        text = (enabled_el.text or "").strip()
        if text not in ("true", "false"):
            raise errors.MalformedXML()
        bucket_key_enabled = text == "true"
    blocked = _blocked_types(_only_child(rule, "BlockedEncryptionTypes", required=False))

    default = _only_child(rule, "ApplyServerSideEncryptionByDefault", required=False)
    if default is None:
        if enabled_el is None and blocked is None:
            raise errors.MalformedXML()   # an empty rule says nothing
        return BucketEncryption(None, None, bucket_key_enabled, blocked)
    if any(child.tag not in ("SSEAlgorithm", "KMSMasterKeyID") for child in default):
        raise errors.MalformedXML()
    algorithm_el = _only_child(default, "SSEAlgorithm", required=False)
    key_el = _only_child(default, "KMSMasterKeyID", required=False)
    key_id = None if key_el is None else (key_el.text or "").strip()

    if algorithm_el is None:
        if not key_id:
            raise errors.MalformedXML()
        algorithm = "aws:kms"
    else:
        algorithm = (algorithm_el.text or "").strip()
    if algorithm in NOT_OFFERED:
        raise errors.NotImplementedError_(
            f"The server-side encryption algorithm {algorithm} is not offered by encproxy.")
    if algorithm not in ALGORITHMS:
        raise errors.MalformedXML()
    if key_id is not None and algorithm != "aws:kms":
        raise errors.InvalidArgument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
            ArgumentName="ApplyServerSideEncryptionByDefault")
    if key_id == "":
        raise errors.InvalidArgument("KMSMasterKeyID must not be empty",
                                     ArgumentName="KMSMasterKeyID", ArgumentValue="")
    return BucketEncryption(algorithm, key_id, bucket_key_enabled, blocked)
