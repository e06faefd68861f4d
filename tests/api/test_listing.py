"""ListObjects v1 and v2 through the real server with boto3."""
from __future__ import annotations

from contextlib import nullcontext

import pytest

KEYS = ["a", "a-b", "a/b", "a/c/d", "a/c/e", "b", "b/x", "z", "é", "ü/1"]


@pytest.fixture
def filled(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def tree_sorted(keys):
    """The order of a backend that walks keys as paths (`a`, `a/b`, `a/c/d`, `a-b`): the
    `listing-tree-order` quirk shows exactly where this differs from byte order."""
    return sorted(keys, key=lambda k: [part.encode("utf-8") for part in k.split("/")])


def in_tree_order_too(quirks, keys):
    """The quirk's branch where the expected order is not the tree order; else none."""
    return quirks.breaks("listing-tree-order") if tree_sorted(keys) != utf8_sorted(keys) \
        else nullcontext()


def test_order_is_utf8_bytes(s3, filled, quirks):
    v2 = s3.list_objects_v2(Bucket=filled)
    assert v2["KeyCount"] == len(KEYS)
    assert sorted(o["Key"] for o in v2["Contents"]) == sorted(KEYS)
    first = v2["Contents"][0]
    assert first["Size"] == 1 and first["ETag"].startswith('"') and first["StorageClass"]
    assert "Owner" not in first
    v1 = s3.list_objects(Bucket=filled)
    assert "Owner" in v1["Contents"][0]
    with quirks.breaks("listing-tree-order"):
        assert [o["Key"] for o in v2["Contents"]] == utf8_sorted(KEYS)
        assert [o["Key"] for o in v1["Contents"]] == utf8_sorted(KEYS)


@pytest.mark.parametrize("prefix,delimiter,keys,prefixes", [
    pytest.param("", "/", ["a", "a-b", "b", "z", "é"], ["a/", "b/", "ü/"], id="root"),
    pytest.param("a/", "/", ["a/b"], ["a/c/"], id="nested"),
    pytest.param("a", None, ["a", "a-b", "a/b", "a/c/d", "a/c/e"], [], id="prefix-only"),
    pytest.param("a/c/", "/", ["a/c/d", "a/c/e"], [], id="leaf"),
    pytest.param("", "-", ["a", "a/b", "a/c/d", "a/c/e", "b", "b/x", "z", "é", "ü/1"], ["a-"],
                 id="other-delimiter"),
    pytest.param("nothing", "/", [], [], id="no-match"),
])
def test_prefix_and_delimiter(s3, filled, prefix, delimiter, keys, prefixes, quirks):
    kwargs = {"Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
    for call in (s3.list_objects_v2, s3.list_objects):
        got = call(Bucket=filled, **kwargs)
        assert sorted(o["Key"] for o in got.get("Contents", [])) == sorted(keys)
        assert [p["Prefix"] for p in got.get("CommonPrefixes", [])] == utf8_sorted(prefixes)
        with in_tree_order_too(quirks, keys):
            assert [o["Key"] for o in got.get("Contents", [])] == utf8_sorted(keys)


@pytest.mark.parametrize("page_size", [1, 2, 3, 7])
@pytest.mark.parametrize("delimiter", [None, "/"])
def test_pagination_covers_everything(s3, filled, page_size, delimiter, quirks):
    extra = {"Delimiter": delimiter} if delimiter else {}
    # SeaweedFS's pages overflow where a page would end between `a` and `a/` (or `b` and
    # `b/`): at page sizes 1 and 2 with this bucket, not at 3 and 7.
    with quirks.breaks("listing-delimiter-pagination") if delimiter else nullcontext(), \
            quirks.breaks("key-and-prefix-one-entry") if delimiter and page_size < 3 \
            else nullcontext():
        for op in ("list_objects_v2", "list_objects"):
            keys, prefixes, pages = [], [], 0
            for page in s3.get_paginator(op).paginate(Bucket=filled, PaginationConfig={
                    "PageSize": page_size}, **extra):
                pages += 1
                keys += [o["Key"] for o in page.get("Contents", [])]
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                assert len(page.get("Contents", [])) + \
                    len(page.get("CommonPrefixes", [])) <= page_size
            full = s3.list_objects_v2(Bucket=filled, **extra)
            assert keys == [o["Key"] for o in full.get("Contents", [])]
            assert prefixes == [p["Prefix"] for p in full.get("CommonPrefixes", [])]
            assert pages >= (len(keys) + len(prefixes)) // page_size


def test_start_after_and_marker(s3, filled, quirks):
    got = s3.list_objects(Bucket=filled, Marker="b/x")
    assert [o["Key"] for o in got["Contents"]] == ["z", "é", "ü/1"]
    got = s3.list_objects_v2(Bucket=filled, StartAfter="a/c/d")
    assert got["StartAfter"] == "a/c/d"
    with quirks.breaks("listing-tree-order"):   # `a-b` sorts before `a/c/d` as bytes
        assert [o["Key"] for o in got["Contents"]] == utf8_sorted(KEYS)[4:]


def test_empty_continuation_token_is_no_token(s3, filled, quirks):
    """An empty ContinuationToken lists from the start, and is echoed back empty."""
    got = s3.list_objects_v2(Bucket=filled, ContinuationToken="")
    assert got["ContinuationToken"] == ""
    assert got["IsTruncated"] is False
    assert sorted(o["Key"] for o in got["Contents"]) == sorted(KEYS)
    with quirks.breaks("listing-tree-order"):
        assert [o["Key"] for o in got["Contents"]] == utf8_sorted(KEYS)


def test_max_keys_zero_and_truncation(s3, filled, quirks):
    got = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert got["KeyCount"] == 0 and "Contents" not in got
    got = s3.list_objects_v2(Bucket=filled, MaxKeys=2)
    assert got["IsTruncated"] is True and got["NextContinuationToken"]
    with quirks.breaks("listing-delimiter-pagination"), quirks.breaks("listing-tree-order"):
        got = s3.list_objects(Bucket=filled, MaxKeys=2, Delimiter="/")
        assert got["IsTruncated"] is True and got["NextMarker"] == "a-b"


def test_encoding_type_url(s3, bucket):
    from urllib.parse import unquote_plus
    key = "dir with space/ü+x&<y>"
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    # Asked for explicitly, the values come back encoded (botocore decodes only
    # when it set encoding-type itself, as it does by default).
    got = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/")
    assert got["EncodingType"] == "url"
    assert [unquote_plus(p["Prefix"]) for p in got["CommonPrefixes"]] == ["dir with space/"]
    assert " " not in got["CommonPrefixes"][0]["Prefix"]
    got = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Prefix="dir")
    assert [unquote_plus(o["Key"]) for o in got["Contents"]] == [key]
    assert "+" not in got["Contents"][0]["Key"]
    got = s3.list_objects(Bucket=bucket, EncodingType="url")
    assert [unquote_plus(o["Key"]) for o in got["Contents"]] == [key]
    # The default: botocore asks for url encoding and decodes it.
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]


def test_bad_list_arguments(s3, bucket):
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="%%%not-a-token")
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
