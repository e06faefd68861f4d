"""A listing page handed up unrendered: the backend app to the encryption layer.

The encryption layer reports every listed object as the client sees it (its plaintext
size and client ETag), so it rewrites each entry of a page.  The backend app is in the
same process: rendering XML only for the layer above to parse it and render it again was
most of a listing's cost (docs/PERFORMANCE.md).  So the encryption layer puts a
``ListingSlot`` in the environ of a listing it relays (``environ.LISTING_PAGE``); an app
that can leaves its page in it, with the entries the layer may correct and a ``render``
that renders them as they then are: the embedded store its own page, the S3 backend app
the backend's XML it has parsed anyway (``parsed_page``).  An app that does not answers
XML, which the layer parses into a page the same way.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from encproxy.s3 import xml


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
    # False: listed without an ETag or a Size (etag "" and size 0 here), which the
    # encryption layer leaves as listed; encproxy's own internal listings still see it.
    complete: bool = True


@dataclass(frozen=True, slots=True)
class ListingPage:
    entries: list[ListedEntry]
    render: Callable[[], bytes]   # the page's XML, with the entries as they are then
    # A truncated ListObjectsV2 page's NextContinuationToken (None: the last page, or
    # another listing), for encproxy's own listings of its internal bucket.
    next_token: str | None = None


class ListingSlot:
    """Where the app below leaves its page (None: it answered XML, or an error)."""

    __slots__ = ("page",)

    def __init__(self) -> None:
        self.page: ListingPage | None = None


# The elements whose texts encproxy changes in a backend's listing page: the entries'
# ETags and sizes, and ListObjectsV2's continuation tokens (s3/continuation.py).
EDITED_IN_LISTINGS = ("ETag", "Size", "ContinuationToken", "NextContinuationToken")


def parsed_page(root: ET.Element, entry_tag: str, source: bytes | None = None) -> ListingPage:
    """The page of a parsed (namespace-stripped) listing: its ``entry_tag`` entries
    (``Contents`` or ``Version``; not delete markers), their keys decoded, those without
    an ETag or a Size not ``complete``; ``render`` writes the complete entries' ETags and
    sizes back and renders the whole document.  ``source``: the body ``root`` was parsed
    from, if nothing but the texts of EDITED_IN_LISTINGS elements changed in it since;
    ``render`` then edits it rather than render 7,000 elements (xml.render_edited)."""
    url_encoded = (xml.child_text(root, "EncodingType") or "") == "url"
    versions = entry_tag != "Contents"     # a ListObjects entry is its key's current version
    parsed = []
    for element in root.iterfind(entry_tag):
        etag, size = element.find("ETag"), element.find("Size")
        parsed.append((etag, size, _listed(element, etag, size, url_encoded, versions)))

    def render() -> bytes:
        for etag, size, entry in parsed:
            if etag is not None and size is not None:
                etag.text, size.text = entry.etag, str(entry.size)
        return xml.render_edited(root, source, EDITED_IN_LISTINGS)
    truncated = (xml.child_text(root, "IsTruncated") or "") == "true"
    return ListingPage([entry for _, _, entry in parsed], render,
                       xml.child_text(root, "NextContinuationToken") if truncated else None)


def _listed(element: ET.Element, etag: ET.Element | None, size: ET.Element | None,
            url_encoded: bool, versions: bool) -> ListedEntry:
    key = element.find("Key")
    name = "" if key is None else key.text or ""
    complete = etag is not None and size is not None
    entry = ListedEntry(unquote_plus(name) if url_encoded else name,
                        "" if etag is None else etag.text or "",
                        0 if size is None else int(size.text or "0"), complete=complete)
    if versions:
        entry.is_latest = (xml.child_text(element, "IsLatest") or "true").lower() == "true"
        entry.version_id = xml.child_text(element, "VersionId")
    return entry
