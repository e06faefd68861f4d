"""Time formats S3 uses (pure)."""
from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def http_date(epoch: float) -> str:
    """RFC 7231 date, as in Last-Modified: ``Wed, 21 Oct 2015 07:28:00 GMT``."""
    return email.utils.formatdate(int(epoch), usegmt=True)


def iso8601(epoch: float) -> str:
    """The XML timestamp form: ``2009-10-12T17:50:30.000Z``."""
    # isoformat truncates to milliseconds as S3 does, and is faster than strftime (a
    # listing formats 1,000 of these).
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def parse_http_date(text: str) -> float | None:
    """An HTTP date as epoch seconds, or None when unparsable (S3 then ignores the header)."""
    try:
        dt = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
