"""Object and bucket tags: S3's rules, the ``Tagging`` XML and ``x-amz-tagging`` (pure).

A tag set is a tuple of ``(key, value)`` pairs in the order given.  S3's limits
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html and
the PutBucketTagging reference): at most 10 tags on an object and 50 on a
bucket, keys of 1 to 128 Unicode characters, values of 0 to 256, of letters,
numbers, spaces and ``_ . : / = + - @`` only, keys unique within a set, and no key
that starts with ``aws:`` (reserved).  A set that breaks
them is ``InvalidTag`` (400), which is what ceph/s3-tests and MinIO expect for
every case, the count included.

The same set comes in three forms: the ``Tagging`` document of Put*Tagging (and
of a POST form's ``tagging`` field), the URL-encoded query string of the
``x-amz-tagging`` header (PutObject, CreateMultipartUpload, CopyObject with
``x-amz-tagging-directive: REPLACE``), and the ``Tagging`` document that
Get*Tagging answers.
"""
from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl

from encproxy import errors
from encproxy.s3 import xml

Tags = tuple[tuple[str, str], ...]

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
MAX_TAGGING_XML = 64 * 1024
DIRECTIVES = ("COPY", "REPLACE")


def invalid(message: str) -> errors.S3Error:
    return errors.InvalidTag(message)


# Besides letters, numbers and spaces, the characters a tag may hold (AWS's pattern
# ``^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$``, the object-tagging documentation).
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _allowed(c: str) -> bool:
    category = unicodedata.category(c)
    return c in _TAG_PUNCTUATION or category[0] in "LN" or category[0] == "Z"


def check(tags: Tags, limit: int = MAX_OBJECT_TAGS) -> Tags:
    """``tags`` if they keep S3's rules; InvalidTag otherwise."""
    if len(tags) > limit:
        raise invalid(f"Object tags cannot be greater than {limit}" if limit == MAX_OBJECT_TAGS
                      else f"Bucket tag count cannot be greater than {limit}")
    seen: set[str] = set()
    for key, value in tags:
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise invalid("The TagKey you have provided is invalid")
        if len(value) > MAX_VALUE_LENGTH:
            raise invalid("The TagValue you have provided is invalid")
        if key.lower().startswith("aws:"):
            raise invalid("Your TagKey cannot be prefixed with aws:")
        if key in seen:
            raise invalid("Cannot provide multiple Tags with the same key")
        seen.add(key)
        for text in (key, value):
            if not all(_allowed(c) for c in text):
                raise invalid("The TagKey or TagValue you have provided is invalid")
    return tags


def parse_tagging(body: bytes, limit: int = MAX_OBJECT_TAGS) -> Tags:
    """The tag set of a ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...`` document."""
    root = xml.parse(body, MAX_TAGGING_XML)
    if root.tag != "Tagging":
        raise errors.MalformedXML()
    tag_sets = root.findall("TagSet")
    if len(tag_sets) != 1:
        raise errors.MalformedXML()
    out: list[tuple[str, str]] = []
    for tag in tag_sets[0]:
        if tag.tag != "Tag":
            raise errors.MalformedXML()
        keys, values = tag.findall("Key"), tag.findall("Value")
        if len(keys) != 1 or len(values) > 1:
            raise errors.MalformedXML()
        out.append((keys[0].text or "", (values[0].text or "") if values else ""))
    return check(tuple(out), limit)


def parse_header(value: str) -> Tags:
    """The tag set of ``x-amz-tagging``: ``k1=v1&k2=v2``, URL-encoded."""
    if not value:
        return ()
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=True,
                          errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise invalid("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded "
                      "URL query parameters without tag name duplicates.") from None
    return check(tuple(pairs))


def tagging_xml(tags: Tags) -> xml.Node:
    """The ``Tagging`` document Get*Tagging answers."""
    root = xml.Node("Tagging")
    tag_set = root.add("TagSet")
    for key, value in tags:
        tag_set.add("Tag", [xml.Node("Key", key), xml.Node("Value", value)])
    return root


def directive(value: str | None) -> str:
    """``x-amz-tagging-directive`` of CopyObject: COPY (default) or REPLACE."""
    if value is None:
        return "COPY"
    if value not in DIRECTIVES:
        raise errors.InvalidArgument("Unknown tagging directive.",
                                     ArgumentName="x-amz-tagging-directive",
                                     ArgumentValue=value)
    return value
