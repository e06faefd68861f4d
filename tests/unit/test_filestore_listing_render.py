"""The file store's listing entries, rendered as strings for speed
(``encproxy.wsgi.apps.filestore.buckets._contents``), are byte for byte what the
``xml.Node`` trees they replaced render to."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy.filestore.records import ObjectMeta, ObjectRecord
from encproxy.s3 import xml
from encproxy.s3.dates import iso8601
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.filestore.buckets import _contents
from encproxy.wsgi.apps.filestore.common import owner_nodes, quoted

KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
               max_size=30)


def reference(records: list[ObjectRecord], encode, owner: bool) -> list[xml.Node]:
    """The Node trees ``_contents`` built before."""
    out = []
    for r in records:
        node = xml.Node("Contents")
        node.add("Key", encode(r.key))
        node.add("LastModified", iso8601(r.last_modified))
        node.add("ETag", quoted(r.etag))
        node.add("Size", r.size)
        if owner:
            node.add("Owner", owner_nodes())
        node.add("StorageClass", r.meta.storage_class)
        if r.listing_facts is not None:
            node.add(env.LISTING_FACTS_ELEMENT, r.listing_facts)
        out.append(node)
    return out


def rendered(nodes: list[xml.Node]) -> bytes:
    return xml.render(xml.Node("ListBucketResult", nodes))


@given(st.lists(st.tuples(KEYS, st.integers(0, 10**12), st.floats(0, 4e9),
                          st.one_of(st.none(), st.text(max_size=20)),
                          st.sampled_from(["STANDARD", "GLACIER", "STANDARD_IA"])), max_size=5),
       st.booleans(), st.booleans())
def test_entries_render_as_their_nodes_did(entries, owner: bool, url: bool) -> None:
    records = [ObjectRecord(key=key, size=size, etag="0" * 32, last_modified=mtime,
                            meta=ObjectMeta(storage_class=storage_class),
                            listing_facts=facts)
               for key, size, mtime, facts, storage_class in entries]
    encode = (lambda k: quote(k, safe="/")) if url else (lambda k: k)
    assert rendered(_contents(records, encode, owner)) == rendered(
        reference(records, encode, owner))


@pytest.mark.parametrize("key", ["a&b", "<x>", "ünï/ключ", 'q"uote', "sp ace"])
def test_awkward_keys(key: str) -> None:
    records = [ObjectRecord(key=key, size=1, etag="ab" * 16, last_modified=1.5,
                            meta=ObjectMeta(), listing_facts="f1.s.1")]
    assert rendered(_contents(records, str, True)) == rendered(reference(records, str, True))
