"""A listing page handed up unrendered: the embedded store to the encryption layer.

The encryption layer reports every listed object as the client sees it (its plaintext
size and client ETag), so it rewrites each entry of a page.  Through an S3 backend it
must parse the backend's XML and render it again.  The embedded store is in the same
process: rendering XML only for the layer above to parse it and render it again was
most of a listing's cost (docs/PERFORMANCE.md).  So the encryption layer puts a
``ListingSlot`` in the environ of a listing it relays (``environ.LISTING_PAGE``); the
embedded store leaves its page in it, with the entries the layer may correct and a
``render`` that renders them as they then are.  Any other app ignores the slot and
answers XML, which the layer parses as before.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class ListedEntry:
    """One object of a listing (a ``Contents`` or ``Version`` entry; delete markers
    have none): what the encryption layer reads of it, and the ETag and size it may
    set to what the client sees."""
    key: str                      # decoded, whatever the page's EncodingType
    etag: str                     # quoted, as listed
    size: int
    is_latest: bool = True
    version_id: str | None = None
    # The facts the embedded store keeps with the version (FORMAT.md §17), or None.
    carried_facts: str | None = None


@dataclass(frozen=True, slots=True)
class ListingPage:
    entries: list[ListedEntry]
    render: Callable[[], bytes]   # the page's XML, with the entries as they are then


class ListingSlot:
    """Where the embedded store leaves its page (None: it answered XML, or an error)."""

    __slots__ = ("page",)

    def __init__(self) -> None:
        self.page: ListingPage | None = None
