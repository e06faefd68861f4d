"""Conditional writes: ``If-Match`` / ``If-None-Match`` on PutObject, CopyObject and
CompleteMultipartUpload, as AWS S3 evaluates them (pure).

AWS (2024 for ``If-None-Match``, 2025 for ``If-Match``) evaluates them against the
current object *when the write commits*, not when it starts:

* ``If-None-Match: *``: the write succeeds only if the key has no object; otherwise
  412 PreconditionFailed.  Any other value is refused (501 NotImplemented): AWS takes
  only ``*`` there, and a write must never be made unconditionally because a condition
  was not understood.
* ``If-Match: <etag>``: the write succeeds only if the current object's ETag is one of
  those named (``*``: any object); 412 PreconditionFailed if it is not, 404 NoSuchKey
  if there is no object.

The ``*-since`` conditions are not part of S3's conditional writes (S3 ignores them on
writes), so they are not evaluated here either.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from encproxy.errors import NoSuchKey, NotImplementedError_, PreconditionFailed

IF_MATCH = "if-match"
IF_NONE_MATCH = "if-none-match"
# The operations that carry write conditions (S3's names).
CONDITIONAL_WRITE_OPERATIONS = ("PutObject", "CopyObject", "CompleteMultipartUpload")


@dataclass(frozen=True)
class WriteConditions:
    """The conditions of one write; ``if_match`` holds unquoted ETags (or ``*``)."""

    if_match: tuple[str, ...] | None = None
    if_none_match: bool = False

    def __bool__(self) -> bool:
        return self.if_match is not None or self.if_none_match

    def check(self, current_etag: str | None, key: str) -> None:
        """Raise the S3 error if the conditions do not hold for the current object
        (``current_etag``, with or without quotes; None: there is no object)."""
        if self.if_none_match and current_etag is not None:
            raise PreconditionFailed(Condition="If-None-Match")
        if self.if_match is not None:
            if current_etag is None:
                raise NoSuchKey(Key=key)
            if "*" not in self.if_match and current_etag.strip('"') not in self.if_match:
                raise PreconditionFailed(Condition="If-Match")


def parse(headers: Mapping[str, str]) -> WriteConditions:
    """The write conditions in ``headers`` (lower-case names); NotImplemented for an
    ``If-None-Match`` other than ``*``, InvalidArgument-free: an empty ``If-Match``
    names no ETag and so never matches."""
    none_match = headers.get(IF_NONE_MATCH)
    if none_match is not None and none_match.strip() != "*":
        raise NotImplementedError_(
            "A header you provided implies functionality that is not implemented: "
            "If-None-Match on a write accepts only '*'.", Header="If-None-Match")
    match = headers.get(IF_MATCH)
    tags = None if match is None else tuple(
        t.strip().removeprefix("W/").strip('"') for t in match.split(",") if t.strip())
    return WriteConditions(if_match=tags, if_none_match=none_match is not None)


def precondition(headers: Mapping[str, str], key: str) -> Callable[[str | None], None] | None:
    """The check a store makes, under its commit lock, against the ETag of the object it
    is about to replace; None if the write is unconditional.  Parsing happens here, so
    a condition that is refused is refused before any body is read."""
    conditions = parse(headers)
    if not conditions:
        return None
    return lambda current_etag: conditions.check(current_etag, key)
