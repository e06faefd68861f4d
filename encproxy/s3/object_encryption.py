"""The body of UpdateObjectEncryption (``PUT /b/k?encryption``), parsed (pure).

::

    <ObjectEncryption xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
      <SSE-KMS>
        <KMSKeyArn>arn:aws:kms:...:key/...</KMSKeyArn>
        <BucketKeyEnabled>true</BucketKeyEnabled>       (optional)
      </SSE-KMS>
    </ObjectEncryption>

``ObjectEncryption`` is a union with one member today, ``SSE-KMS``: AWS refuses any
other new encryption type (SSE-S3, DSSE-KMS, SSE-C) and a missing or empty key ARN
with InvalidRequest, and a ``BucketKeyEnabled`` that is neither ``true`` nor
``false`` likewise; a body that is not this document is MalformedXML.

The key is what encproxy's key provider names it by: an ARN for AWS KMS, a key id
or alias for the others (AWS's ARN pattern would refuse every local keyring key).
The caller normalises it, and an unknown key is KMS.NotFoundException, as for
PutObject.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

from encproxy import errors
from encproxy.s3 import xml

#: AWS caps the ARN at 2,048 characters; the document is small.
MAX_BODY = 8 * 1024
MAX_KEY_ARN = 2048

INVALID_TYPE = ("Requests that modify an object encryption configuration require a valid new "
                "encryption type. Valid values are SSEKMS. Modify the request to specify "
                "SSE-KMS for the updated encryption type, and then try again.")
MISSING_KEY = ("Requests that modify an object's encryption type to SSE-KMS require an AWS "
               "KMS key Amazon Resource Name (ARN). Modify the request to specify a KMS key "
               "ARN, and then try again.")
INVALID_KEY = ("Requests that modify an object's encryption type to SSE-KMS require a valid "
               "AWS KMS key Amazon Resource Name (ARN). Confirm that you have a correctly "
               "formatted KMS key ARN in your request, and then try again.")
INVALID_BUCKET_KEY = ("The BucketKeyEnabled value isn't valid. Valid values are true or false. "
                      "Modify the request to specify a valid value, and then try again.")


@dataclass(frozen=True)
class ObjectEncryption:
    """What an UpdateObjectEncryption request asks for: SSE-KMS under ``kms_key``."""

    kms_key: str                 # as sent; not yet normalised by the key provider
    bucket_key_enabled: bool = False


def parse_object_encryption(body: bytes) -> ObjectEncryption:
    """The request body, or the S3 error AWS gives for it."""
    if len(body) > MAX_BODY:
        raise errors.MalformedXML()
    root = xml.parse(body, max_size=MAX_BODY)
    if root.tag != "ObjectEncryption":
        raise errors.MalformedXML()
    members = list(root)
    if len(members) != 1 or members[0].tag != "SSE-KMS":
        # SSE-S3, DSSE-KMS, SSE-C, anything else, none, or more than one member.
        raise errors.InvalidRequest(INVALID_TYPE)
    kms = members[0]
    if any(child.tag not in ("KMSKeyArn", "BucketKeyEnabled") for child in kms):
        raise errors.MalformedXML()
    key_el = _only(kms, "KMSKeyArn")
    if key_el is None or not (key_el.text or "").strip():
        raise errors.InvalidRequest(MISSING_KEY)
    key = (key_el.text or "").strip()
    if len(key) > MAX_KEY_ARN or not key.isprintable():
        raise errors.InvalidRequest(INVALID_KEY)
    enabled_el = _only(kms, "BucketKeyEnabled")
    enabled = False
    if enabled_el is not None:
        text = (enabled_el.text or "").strip()
        if text not in ("true", "false"):
            raise errors.InvalidRequest(INVALID_BUCKET_KEY)
        enabled = text == "true"
    return ObjectEncryption(key, enabled)


def _only(parent: Element, tag: str) -> Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise errors.MalformedXML()
    return found[0] if found else None


__all__ = ["MAX_BODY", "ObjectEncryption", "parse_object_encryption"]
