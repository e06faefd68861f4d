"""S3 listing semantics over a sorted sequence of entries (pure).

One function serves ListObjects (v1 and v2) and ListMultipartUploads:

- **Order.** S3 lists keys in the lexicographic order of their UTF-8 bytes.
  For valid Unicode strings (no lone surrogates, which the store refuses) that
  is exactly Python's ``str`` order, because UTF-8 preserves code-point order;
  callers sort by ``str`` and compare markers as ``str``.
- **Prefix and delimiter.** Only keys starting with ``prefix`` are listed.
  With a delimiter, a key whose remainder after the prefix contains it is
  rolled up into the common prefix ``prefix + remainder[:first delimiter end]``;
  each distinct common prefix is one entry, placed at its own position in the
  order, and counts once toward ``max_entries``.
- **Marker** (v1 ``marker``, v2 ``start-after`` or the decoded continuation
  token, ``key-marker``): entries whose key sorts after it.  If the marker
  itself falls under a common prefix (it contains the delimiter after the
  prefix), every key under that common prefix is skipped too: that prefix
  sorts at or before the marker, so it was already listed.  This is what makes
  a page that ends in a common prefix continue *after everything under it*,
  as S3 (and Ceph RGW) do.
- **Truncation.** ``is_truncated`` is true exactly when at least one further
  entry exists; ``max_entries == 0`` lists nothing and is not truncated (as
  AWS answers ``max-keys=0``).  ``next_marker`` is the key of the last entry
  (a key or a common prefix) when truncated, else None.
- **Ties** (ListMultipartUploads): several entries may share a key.  With a
  ``tie_after`` predicate, entries whose key equals the marker are kept when
  it returns true (the upload id sorts after ``upload-id-marker``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None
    # The last entry when truncated and that entry is an item (not a common prefix).
    last_item: T | None


def common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    """The common prefix ``key`` rolls up into, or None if it is listed itself."""
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


def paginate(items: Iterable[T], key: Callable[[T], str], *, prefix: str = "",
             delimiter: str | None = None, marker: str | None = None,
             max_entries: int = 1000,
             tie_after: Callable[[T], bool] | None = None) -> Page[T]:
    """One page of ``items``, which must already be sorted by ``key`` (then by tie order)."""
    if max_entries < 0:
        raise ValueError("max_entries must not be negative")
    skip_under = None
    if marker is not None and marker.startswith(prefix):
        skip_under = common_prefix(marker, prefix, delimiter)
    out_items: list[T] = []
    out_prefixes: list[str] = []
    count = 0
    last_prefix: str | None = None
    last_key: str | None = None
    last_item: T | None = None
    truncated = False
    for item in items:
        k = key(item)
        if not k.startswith(prefix):
            continue
        if marker is not None:
            if k < marker or (k == marker and (tie_after is None or not tie_after(item))):
                continue
            if skip_under is not None and k.startswith(skip_under):
                continue
        cp = common_prefix(k, prefix, delimiter)
        if cp is not None and cp == last_prefix:
            continue  # already counted
        if count == max_entries:
            truncated = max_entries > 0
            break
        count += 1
        if cp is not None:
            last_prefix = cp
            out_prefixes.append(cp)
            last_key, last_item = cp, None
        else:
            out_items.append(item)
            last_key, last_item = k, item
    if not truncated:
        last_key = last_item = None
    return Page(out_items, out_prefixes, truncated, last_key, last_item)
