"""Bucket-name and object-key rules (pure)."""
from __future__ import annotations

import ipaddress
import re

from encproxy.errors import InvalidBucketName, KeyTooLongError

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_valid_bucket_name(name: str) -> bool:
    """The S3 rules for new general-purpose buckets."""
    if not _BUCKET_RE.match(name) or ".." in name or ".-" in name or "-." in name:
        return False
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False


def check_bucket_name(name: str) -> str:
    if not is_valid_bucket_name(name):
        raise InvalidBucketName(BucketName=name)
    return name


def check_key(key: str) -> str:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise KeyTooLongError(Size=str(len(key.encode("utf-8"))), MaxSizeAllowed=str(MAX_KEY_BYTES))
    return key
