"""HTTP Range requests as S3 answers them (pure).

S3 honours one byte range.  A header it cannot parse, or one with several
ranges, is ignored and the whole object is returned; a syntactically valid
range that starts at or beyond the end is 416 InvalidRange.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from encproxy.errors import InvalidArgument, InvalidRange

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte range [first, last] within an object of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to serve, None for the whole object; InvalidRange when unsatisfiable."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip().replace(" ", ""))
    if not m:
        return None
    start, end = m.groups()
    if start == "" and end == "":
        return None
    if start == "":
        suffix = int(end)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    first = int(start)
    last = int(end) if end else size - 1
    if end and last < first:
        return None  # syntactically invalid: RFC 7233 says ignore
    if first >= size:
        raise _unsatisfiable(header, size)
    return ByteRange(first, min(last, size - 1), size)


def parse_copy_range(header: str, size: int) -> ByteRange:
    """x-amz-copy-source-range: must be ``bytes=first-last`` within the source.

    Both failures are 400 InvalidArgument on AWS: a malformed value, and a range that
    does not lie within the source ("Range specified is not valid for source object of
    size: N"), unlike a GET's unsatisfiable Range (416 InvalidRange).
    """
    m = _RANGE_RE.match(header.strip())
    if not m or not m.group(1) or not m.group(2):
        raise InvalidArgument("The x-amz-copy-source-range value must be of the form "
                              "bytes=first-last where first and last are the zero-based "
                              "offsets of the first and last bytes to copy",
                              ArgumentName="x-amz-copy-source-range", ArgumentValue=header)
    first, last = int(m.group(1)), int(m.group(2))
    if last < first or last >= size:
        raise InvalidArgument(f"Range specified is not valid for source object of size: {size}",
                              ArgumentName="x-amz-copy-source-range", ArgumentValue=header)
    return ByteRange(first, last, size)


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    return InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
