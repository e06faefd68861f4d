"""The file store's listing entries, rendered as strings for speed
(``encproxy.wsgi.apps.filestore.buckets._contents``), are byte for byte what the
``xml.Node`` trees they replaced render to; with the entries as the layer above corrected
them (listing_page.py) too.  Neither carries the facts the store keeps for that layer."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.s3 import xml
from encproxy.s3.dates import iso8601
from encproxy.wsgi.apps.filestore.buckets import _contents
from encproxy.wsgi.apps.filestore.common import owner_nodes, quoted
from encproxy.wsgi.listing_page import ListedEntry

KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
               max_size=30)


def reference(records: list[ObjectRecord], encode, owner: bool,
              entries: list[ListedEntry] | None = None) -> list[xml.Node]:
    """The Node trees ``_contents`` built before."""
    out = []
    for i, r in enumerate(records):
        node = xml.Node("Contents")
        node.add("Key", encode(r.key))
        node.add("LastModified", iso8601(r.last_modified))
        node.add("ETag", entries[i].etag if entries else quoted(r.etag))
        node.add("Size", entries[i].size if entries else r.size)
        if owner:
            node.add("Owner", owner_nodes())
        node.add("StorageClass", r.meta.storage_class)
        out.append(node)
    return out


def rendered(nodes: list[xml.Node]) -> bytes:
    return xml.render(xml.Node("ListBucketResult", nodes))


@given(st.lists(st.tuples(KEYS, st.integers(0, 10**12), st.floats(0, 4e9),
                          st.one_of(st.none(), st.text(max_size=20)),
                          st.sampled_from(["STANDARD", "GLACIER", "STANDARD_IA"])), max_size=5),
       st.booleans(), st.booleans(), st.booleans())
def test_entries_render_as_their_nodes_did(entries, owner: bool, url: bool,
                                           corrected: bool) -> None:
    records = [ObjectRecord(key=key, size=size, etag="0" * 32, last_modified=mtime,
                            meta=ObjectMeta(storage_class=storage_class),
                            listing_facts=facts)
               for key, size, mtime, facts, storage_class in entries]
    shown = [ListedEntry(r.key, f'"{i:032x}"', r.size // 2 + 1) for i, r in enumerate(records)]
    encode = (lambda k: quote(k, safe="/")) if url else (lambda k: k)
    body = rendered(_contents(records, encode, owner, shown if corrected else None))
    assert body == rendered(reference(records, encode, owner, shown if corrected else None))
    assert b"EncproxyListingFacts" not in body


@pytest.mark.parametrize("key", ["a&b", "<x>", "ünï/ключ", 'q"uote', "sp ace"])
def test_awkward_keys(key: str) -> None:
    records = [ObjectRecord(key=key, size=1, etag="ab" * 16, last_modified=1.5,
                            meta=ObjectMeta(), listing_facts="f1.s.1")]
    assert rendered(_contents(records, str, True)) == rendered(reference(records, str, True))
