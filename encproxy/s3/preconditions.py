"""Conditional requests (If-Match and friends) as S3 evaluates them (pure).

The order is RFC 7232's: If-Match, else If-Unmodified-Since; then
If-None-Match, else If-Modified-Since.  A failed If-Match or
If-Unmodified-Since is 412; a matching If-None-Match or an unmodified
If-Modified-Since is 304 for reads.
"""
from __future__ import annotations

from collections.abc import Mapping

from encproxy.errors import NotModified, PreconditionFailed
from encproxy.s3.dates import parse_http_date


def _etag_list(value: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()]


def etag_matches(header: str, etag: str) -> bool:
    tags = _etag_list(header)
    return "*" in tags or etag.strip('"') in tags


def any_condition(headers: Mapping[str, str], prefix: str = "if-") -> bool:
    """Whether ``headers`` hold any condition ``check`` evaluates (most requests have
    none, and need no Last-Modified parsed for them)."""
    return any(prefix + name in headers
               for name in ("match", "none-match", "modified-since", "unmodified-since"))


def check(headers: Mapping[str, str], etag: str, last_modified: float,
          prefix: str = "if-") -> None:
    """Raise PreconditionFailed or NotModified; ``prefix`` selects copy-source variants.

    ``headers`` maps lower-case header names to values.  For CopyObject the
    prefix is ``x-amz-copy-source-if-`` and a "not modified" outcome is a 412,
    as S3 answers it.
    """
    copy = prefix != "if-"
    lm = int(last_modified)  # HTTP dates have second resolution
    if_match = headers.get(prefix + "match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise PreconditionFailed(Condition=_name(prefix, "Match"))
    else:
        ius = headers.get(prefix + "unmodified-since")
        when = parse_http_date(ius) if ius else None
        if when is not None and lm > when:
            raise PreconditionFailed(Condition=_name(prefix, "Unmodified-Since"))
    if_none_match = headers.get(prefix + "none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            if copy:
                raise PreconditionFailed(Condition=_name(prefix, "None-Match"))
            raise NotModified()
    else:
        ims = headers.get(prefix + "modified-since")
        when = parse_http_date(ims) if ims else None
        if when is not None and lm <= when:
            if copy:
                raise PreconditionFailed(Condition=_name(prefix, "Modified-Since"))
            raise NotModified()


def _name(prefix: str, what: str) -> str:
    return ("x-amz-copy-source-If-" if prefix != "if-" else "If-") + what
