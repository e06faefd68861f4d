"""The embedded store's listing page, handed up unrendered (``encproxy/wsgi/listing_page.py``),
gives the client byte for byte the listing that the XML path gives: the store's XML,
parsed, corrected and rendered again by the encryption layer, as for an S3 backend.

One store, written through the real layers (``encryption_testkit``); every listing
asked of a stack whose store leaves its page in the slot and of one whose store answers
XML (the slot taken away before it, as an S3 backend app never sees one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from encryption_testkit import (
    BUCKET,
    NONE,
    PART,
    SSE_C,
    SSE_KMS,
    SSE_S3,
    build_stack,
    md5_etag,
    multipart_upload,
    parse_xml,
    path,
    payload,
    put,
)

from encproxy.wsgi import environ as env


def _of_the_bucket(environ: dict[str, Any]) -> bool:
    """A request for the client's bucket (encproxy lists its internal bucket too)."""
    return str(environ.get("PATH_INFO", "")).split("/")[1] == BUCKET


class AnswersXml:
    """The file store app without the listing slot: its listings are XML."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.slots_seen = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.pop(env.LISTING_PAGE, None) is not None and _of_the_bucket(environ):
            self.slots_seen += 1
        return self.app(environ, start_response)


class LeavesPage:
    """Notes whether the file store app left its page in the slot (it answered no XML)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pages_left = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        slot = environ.get(env.LISTING_PAGE)
        body = self.app(environ, start_response)
        if slot is not None and slot.page is not None and _of_the_bucket(environ):
            self.pages_left += 1
        return body


KEYS = ["plain", "a b", "a&b<c>", "dir/one", "dir/two", "dir/sub/three", "ünïcode/ключ",
        "sp ace/x", "z" * 300]
VERSIONING = (b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
              b"<Status>Enabled</Status></VersioningConfiguration>")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A versioned bucket: every mode, awkward keys, a multipart object, overwritten
    and deleted keys (older versions and delete markers)."""
    root = tmp_path_factory.mktemp("listing-page")
    stack = build_stack(root)
    assert stack.client.put(path(BUCKET), query_string="versioning",
                            data=VERSIONING).status_code == 200
    modes = [NONE, SSE_S3, SSE_KMS, SSE_C]
    for i, key in enumerate(KEYS):
        for round_ in range(2 if i % 3 == 0 else 1):
            data = payload(100 + 37 * i + round_, seed=i * 10 + round_)
            resp = put(stack.client, key, data, modes[(i + round_) % len(modes)].write)
            assert resp.status_code == 200, resp.get_data()
    assert stack.client.delete(path(BUCKET, "dir/two")).status_code == 204
    done = multipart_upload(stack.client, "multi", {1: payload(PART, seed=99),
                                                    2: payload(10, seed=98)}, SSE_S3)
    assert done.status_code == 200, done.get_data()
    return root


QUERIES = [
    "list-type=2", "list-type=2&fetch-owner=true", "list-type=2&encoding-type=url",
    "list-type=2&delimiter=/", "list-type=2&prefix=dir/&delimiter=/",
    "list-type=2&max-keys=3", "list-type=2&start-after=dir/", "list-type=2&max-keys=0",
    "", "delimiter=/", "marker=a&max-keys=2", "encoding-type=url&prefix=%C3%BC",
    "versions", "versions&max-keys=3", "versions&key-marker=dir/", "versions&delimiter=/",
    "versions&encoding-type=url",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_unrendered_page_lists_as_the_xml_does(written: Path, query: str) -> None:
    paged = build_stack(written)
    leaves_page = LeavesPage(paged.recorder.app)
    paged.recorder.app = leaves_page
    xml_stack = build_stack(written)
    answers_xml = AnswersXml(xml_stack.recorder.app)
    xml_stack.recorder.app = answers_xml
    via_page = paged.client.get(path(BUCKET), query_string=query)
    via_xml = xml_stack.client.get(path(BUCKET), query_string=query)
    assert via_page.status_code == via_xml.status_code == 200, via_page.get_data()
    assert answers_xml.slots_seen == 1   # the layer offered its slot; this store refused it
    assert leaves_page.pages_left == 1
    assert via_page.get_data() == via_xml.get_data()
    assert via_page.headers["Content-Type"] == via_xml.headers["Content-Type"]


def test_the_page_shows_what_the_client_wrote(written: Path) -> None:
    """Not only the same bytes both ways: the right ones (plaintext sizes and ETags)."""
    stack = build_stack(written)
    root = parse_xml(stack.client.get(path(BUCKET), query_string="list-type=2").get_data())
    ns = root.tag[:-len("ListBucketResult")]
    listed = {e.findtext(ns + "Key"): (int(e.findtext(ns + "Size") or "-1"),
                                       e.findtext(ns + "ETag"))
              for e in root.iter(ns + "Contents")}
    assert listed["plain"] == (101, md5_etag(payload(101, seed=1)))   # overwritten: SSE-S3
    assert listed["a b"] == (137, md5_etag(payload(137, seed=10)))    # SSE-S3
    assert listed["a&b<c>"] == (174, md5_etag(payload(174, seed=20)))  # SSE-KMS
    assert listed["multi"][0] == PART + 10
    assert "dir/two" not in listed                                    # a delete marker


def test_a_store_error_is_relayed(written: Path) -> None:
    stack = build_stack(written)
    resp = stack.client.get(path("no-such-bucket"), query_string="list-type=2")
    assert resp.status_code == 404 and b"<Code>NoSuchBucket</Code>" in resp.get_data()


def test_an_entry_without_an_etag_or_size_is_listed_but_not_complete() -> None:
    """The layer corrects only entries with an ETag and a Size (the others stay as
    listed); encproxy's own internal listings (upload_store.list_internal) still see every
    entry, as they did when they parsed the XML themselves."""
    from encproxy.s3 import xml
    from encproxy.wsgi.listing_page import parsed_page
    body = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<IsTruncated>false</IsTruncated>"
            b"<Contents><Key>whole</Key><ETag>&quot;e&quot;</ETag><Size>5</Size></Contents>"
            b"<Contents><Key>no-etag</Key><Size>7</Size></Contents>"
            b"<Contents><Key>no-size</Key><ETag>&quot;f&quot;</ETag></Contents>"
            b"</ListBucketResult>")
    page = parsed_page(xml.parse(body), "Contents")
    assert [(e.key, e.etag, e.size, e.complete) for e in page.entries] == [
        ("whole", '"e"', 5, True), ("no-etag", "", 7, False), ("no-size", '"f"', 0, False)]
    assert page.next_token is None
    for entry in page.entries:
        entry.etag, entry.size = '"client"', 1
    rendered = parse_xml(page.render())
    listed = [(c.findtext("Key"), c.findtext("ETag"), c.findtext("Size"))
              for c in rendered.iter("Contents")]
    assert listed == [("whole", '"client"', "1"), ("no-etag", None, "7"),
                      ("no-size", '"f"', None)]


def test_a_listobjects_entry_is_its_keys_current_version() -> None:
    """A version field a backend puts in a ListObjects entry is not read as one; a
    ListObjectVersions entry's are."""
    from encproxy.s3 import xml
    from encproxy.wsgi.listing_page import parsed_page
    fields = (b"<Key>k</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest>"
              b"<ETag>&quot;e&quot;</ETag><Size>5</Size>")
    objects = parsed_page(xml.parse(
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Contents>" + fields + b"</Contents></ListBucketResult>"), "Contents")
    versions = parsed_page(xml.parse(
        b'<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Version>" + fields + b"</Version></ListVersionsResult>"), "Version")
    assert [(e.key, e.is_latest, e.version_id) for e in objects.entries] == [("k", True, None)]
    assert [(e.key, e.is_latest, e.version_id) for e in versions.entries] == [
        ("k", False, "v1")]
