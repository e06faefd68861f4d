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
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from encproxy import errors
from encproxy.s3 import xml

ALGORITHMS = ("AES256", "aws:kms")
NOT_OFFERED = ("aws:kms:dsse",)
MAX_BODY = 16 * 1024  # a valid configuration is a few hundred bytes
STORED_VERSION = 1


@dataclass(frozen=True)
class BucketEncryption:
    algorithm: str                    # "AES256" or "aws:kms"
    kms_key_id: str | None = None     # normalised; only with aws:kms
    bucket_key_enabled: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"version": STORED_VERSION, "algorithm": self.algorithm,
                           "kms_key_id": self.kms_key_id,
                           "bucket_key_enabled": self.bucket_key_enabled},
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BucketEncryption:
        """The stored form; anything unexpected is an internal error, never a guess."""
        try:
            obj: Any = json.loads(data)
            if obj.get("version") != STORED_VERSION or obj["algorithm"] not in ALGORITHMS:
                raise ValueError("unknown version or algorithm")
            key_id = obj.get("kms_key_id")
            if key_id is not None and (not isinstance(key_id, str)
                                       or obj["algorithm"] != "aws:kms"):
                raise ValueError("bad key id")
            return cls(obj["algorithm"], key_id, bool(obj.get("bucket_key_enabled", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.InternalError() from exc

    def to_xml(self) -> xml.Node:
        """GetBucketEncryption's body, in AWS's element order."""
        default = xml.Node("ApplyServerSideEncryptionByDefault")
        default.add("SSEAlgorithm", self.algorithm)
        if self.kms_key_id is not None:
            default.add("KMSMasterKeyID", self.kms_key_id)
        rule = xml.Node("Rule", default)
        rule.add("BucketKeyEnabled", self.bucket_key_enabled)
        return xml.Node("ServerSideEncryptionConfiguration", rule)


def _only_child(parent: Any, tag: str, required: bool) -> Any:
    found = parent.findall(tag)
    if len(found) > 1 or (required and not found):
        raise errors.MalformedXML()
    return found[0] if found else None


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
    if any(child.tag not in ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled")
           for child in rule):
        raise errors.MalformedXML()

    enabled_el = _only_child(rule, "BucketKeyEnabled", required=False)
    bucket_key_enabled = False
    if enabled_el is not None:
        text = (enabled_el.text or "").strip()
        if text not in ("true", "false"):
            raise errors.MalformedXML()
        bucket_key_enabled = text == "true"

    default = _only_child(rule, "ApplyServerSideEncryptionByDefault", required=False)
    if default is None:
        # A rule with only BucketKeyEnabled sets no algorithm: AWS refuses it.
        raise errors.MalformedXML()
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
    return BucketEncryption(algorithm, key_id, bucket_key_enabled)
