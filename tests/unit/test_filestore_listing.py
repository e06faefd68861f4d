"""Listing semantics: the pure pager, then ListObjects on a real store."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.filestore.listing import paginate
from encproxy.filestore.store import FileStore

# Chosen to exercise S3 byte order: '-' (0x2d) < '/' (0x2f) < 'z' < 'é' (C3 A9)
# < U+FFFF (EF BF BF) < '😀' (F0 9F 98 80); a key equal to a common prefix ("b/"); a
# multi-character delimiter; keys that only share a prefix with a common prefix.
KEYS = [
    "a", "a-b", "a/b", "a/c/d", "a/c/e", "a/d", "b/", "b/x", "b/y/z", "ba", "c",
    "photos/2024/feb.jpg", "photos/2024/jan.jpg", "photos/2025/mar.jpg", "photos/readme",
    "x::y::z", "x::w", "z", "é", "é/1", "\uffff", "😀",
]
S3_ORDER = sorted(KEYS, key=lambda k: k.encode("utf-8"))


def listed(page) -> list[str]:
    """Keys and common prefixes of a page, merged in S3 order."""
    return sorted([r.key for r in page.contents] + list(page.common_prefixes),
                  key=lambda k: k.encode("utf-8"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FileStore:
    s = FileStore(tmp_path_factory.mktemp("listing") / "store")
    s.create_bucket("bucket")
    for k in reversed(KEYS):
        s.put_object("bucket", k, io.BytesIO(k.encode()), len(k.encode()))
    s.create_bucket("empty")
    return s


def test_full_listing_is_in_utf8_byte_order(store: FileStore) -> None:
    page = store.list_objects("bucket")
    assert [r.key for r in page.contents] == S3_ORDER
    assert S3_ORDER.index("z") < S3_ORDER.index("é") < S3_ORDER.index("\uffff") \
        < S3_ORDER.index("😀")
    assert S3_ORDER.index("a-b") < S3_ORDER.index("a/b")
    assert (page.common_prefixes, page.is_truncated, page.next_marker) == ([], False, None)
    assert all(r.size == len(r.key.encode()) for r in page.contents)


@pytest.mark.parametrize("kwargs,keys,prefixes,truncated,next_marker", [
    pytest.param(dict(prefix="photos/"), ["photos/2024/feb.jpg", "photos/2024/jan.jpg",
                                          "photos/2025/mar.jpg", "photos/readme"], [],
                 False, None, id="prefix"),
    pytest.param(dict(prefix="nothing"), [], [], False, None, id="prefix-matches-nothing"),
    pytest.param(dict(delimiter="/"), ["a", "a-b", "ba", "c", "x::w", "x::y::z", "z", "é",
                                       "\uffff", "😀"],
                 ["a/", "b/", "photos/", "é/"], False, None, id="delimiter-at-top"),
    pytest.param(dict(prefix="photos/", delimiter="/"), ["photos/readme"],
                 ["photos/2024/", "photos/2025/"], False, None, id="prefix-and-delimiter"),
    pytest.param(dict(prefix="b/", delimiter="/"), ["b/", "b/x"], ["b/y/"], False, None,
                 id="key-equal-to-prefix"),
    pytest.param(dict(prefix="a", delimiter="/"), ["a", "a-b"], ["a/"], False, None,
                 id="prefix-without-delimiter"),
    pytest.param(dict(delimiter="::", prefix="x"), [], ["x::"], False, None,
                 id="multi-char-delimiter"),
    pytest.param(dict(delimiter="::", prefix="x::"), ["x::w"], ["x::y::"], False, None,
                 id="multi-char-delimiter-nested"),
    pytest.param(dict(max_keys=3), ["a", "a-b", "a/b"], [], True, "a/b", id="max-keys"),
    pytest.param(dict(max_keys=2, delimiter="/"), ["a", "a-b"], [], True, "a-b",
                 id="page-ends-in-key"),
    pytest.param(dict(max_keys=3, delimiter="/"), ["a", "a-b"], ["a/"], True, "a/",
                 id="page-ends-in-common-prefix"),
    pytest.param(dict(start_after="a/", delimiter="/", max_keys=2), ["ba"], ["b/"], True, "ba",
                 id="marker-is-common-prefix-skips-everything-under-it"),
    pytest.param(dict(start_after="a/c/d", delimiter="/", max_keys=1), [], ["b/"], True, "b/",
                 id="marker-under-common-prefix"),
    pytest.param(dict(start_after="a/c/d", max_keys=2), ["a/c/e", "a/d"], [], True, "a/d",
                 id="marker-without-delimiter"),
    pytest.param(dict(start_after="é/1"), ["\uffff", "😀"], [], False, None,
                 id="marker-near-the-end"),
    pytest.param(dict(start_after="😀"), [], [], False, None, id="marker-after-everything"),
    pytest.param(dict(start_after="0"), S3_ORDER, [], False, None, id="marker-before-all"),
    pytest.param(dict(max_keys=0), [], [], False, None, id="max-keys-zero"),
    pytest.param(dict(max_keys=len(KEYS)), S3_ORDER, [], False, None,
                 id="max-keys-exactly-all"),
    pytest.param(dict(prefix="photos/2024/", delimiter="/", max_keys=1), ["photos/2024/feb.jpg"],
                 [], True, "photos/2024/feb.jpg", id="prefix-ending-in-delimiter"),
    pytest.param(dict(delimiter=""), S3_ORDER, [], False, None, id="empty-delimiter-is-none"),
])
def test_list_objects(store: FileStore, kwargs: dict, keys: list[str], prefixes: list[str],
                      truncated: bool, next_marker: str | None) -> None:
    page = store.list_objects("bucket", **kwargs)
    assert [r.key for r in page.contents] == keys
    assert page.common_prefixes == prefixes
    assert page.is_truncated is truncated
    assert page.next_marker == next_marker


@pytest.mark.parametrize("prefix", ["", "a", "photos/", "é"])
@pytest.mark.parametrize("delimiter", [None, "/", "::", "o"])
@pytest.mark.parametrize("max_keys", [1, 2, 3, 7])
def test_paging_through_every_page_equals_the_full_listing(
        store: FileStore, prefix: str, delimiter: str | None, max_keys: int) -> None:
    full = store.list_objects("bucket", prefix=prefix, delimiter=delimiter)
    assert not full.is_truncated
    seen: list[str] = []
    marker = None
    for _ in range(len(KEYS) + 2):
        page = store.list_objects("bucket", prefix=prefix, delimiter=delimiter,
                                  start_after=marker, max_keys=max_keys)
        entries = listed(page)
        assert 0 < len(entries) <= max_keys or (not entries and not seen and not listed(full))
        seen.extend(entries)
        if not page.is_truncated:
            assert page.next_marker is None
            break
        assert page.next_marker == entries[-1]
        marker = page.next_marker
    else:
        pytest.fail("pagination did not end")
    assert seen == listed(full)
    assert len(seen) == len(set(seen))


def test_empty_bucket(store: FileStore) -> None:
    page = store.list_objects("empty", delimiter="/")
    assert (page.contents, page.common_prefixes, page.is_truncated, page.next_marker) == \
        ([], [], False, None)


def test_listing_errors(store: FileStore) -> None:
    with pytest.raises(errors.NoSuchBucket):
        store.list_objects("missing")
    with pytest.raises(errors.InvalidArgument):
        store.list_objects("bucket", max_keys=-1)
    with pytest.raises(errors.InvalidArgument):
        store.list_objects("bucket", prefix="bad\udcff")


def test_listing_reports_metadata_from_headers(tmp_path: Path) -> None:
    from encproxy.filestore.records import ObjectMeta
    s = FileStore(tmp_path / "s")
    s.create_bucket("bucket")
    rec = s.put_object("bucket", "k", io.BytesIO(b"abc"), 3,
                       ObjectMeta(user_metadata={"m": "v"}, storage_class="GLACIER"))
    # Listings come from the index: what ListObjects reports, not the user metadata.
    [listed] = s.list_objects("bucket").contents
    assert (listed.key, listed.size, listed.etag, listed.last_modified, listed.storage_class,
            listed.version_id) == (rec.key, 3, rec.etag, rec.last_modified, "GLACIER", "null")


# -- the pure pager ----------------------------------------------------------------------

WORDS = ["a", "a/1", "a/2", "b", "c/x/1", "c/y", "d"]


@pytest.mark.parametrize("kwargs,items,prefixes,truncated,marker", [
    pytest.param({}, WORDS, [], False, None, id="everything"),
    pytest.param(dict(delimiter="/"), ["a", "b", "d"], ["a/", "c/"], False, None, id="rollup"),
    pytest.param(dict(delimiter="/", max_entries=2), ["a"], ["a/"], True, "a/",
                 id="prefix-counts-once"),
    pytest.param(dict(delimiter="/", marker="a/"), ["b", "d"], ["c/"], False, None,
                 id="after-common-prefix"),
    pytest.param(dict(delimiter="/", marker="c/x/0"), ["d"], [], False, None,
                 id="marker-inside-common-prefix"),
    pytest.param(dict(prefix="c/", delimiter="/"), ["c/y"], ["c/x/"], False, None,
                 id="nested-rollup"),
    pytest.param(dict(max_entries=0), [], [], False, None, id="zero"),
    pytest.param(dict(max_entries=len(WORDS)), WORDS, [], False, None, id="exact-fit"),
    pytest.param(dict(max_entries=len(WORDS) - 1), WORDS[:-1], [], True, WORDS[-2],
                 id="one-short"),
])
def test_paginate(kwargs: dict, items: list[str], prefixes: list[str], truncated: bool,
                  marker: str | None) -> None:
    page = paginate(WORDS, lambda s: s, **kwargs)
    assert (page.items, page.common_prefixes, page.is_truncated, page.next_marker) == \
        (items, prefixes, truncated, marker)


def test_paginate_ties_for_upload_markers() -> None:
    uploads = [("a", "1"), ("k", "1"), ("k", "2"), ("k", "3"), ("z", "1")]
    page = paginate(uploads, lambda u: u[0], marker="k", tie_after=lambda u: u[1] > "1",
                    max_entries=2)
    assert page.items == [("k", "2"), ("k", "3")]
    assert page.is_truncated and page.next_marker == "k" and page.last_item == ("k", "3")
    page = paginate(uploads, lambda u: u[0], marker="k")
    assert page.items == [("z", "1")]
