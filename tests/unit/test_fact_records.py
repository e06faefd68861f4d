"""Facts records (FORMAT.md §17): a listing's facts of each object, kept in the internal
bucket in key names (or, for a PutObject into the embedded store, in the object's index
row), so that the first listing after a restart, or on another worker or replica, looks
nothing up; names keep S3's order, verify only for what they name, and the listing
falls back to a lookup whenever a record is missing, stale or forged.

The pure naming (``encproxy.crypto.fact_names``) and the layer in-process
(``encryption_testkit``: the real middleware over the real file store).  The ``records``
stack's store ignores ``environ.LISTING_FACTS``, as an S3 backend app does, so that every
write goes through the records in the internal bucket.
"""
from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode
from xml.etree import ElementTree

import pytest
from encryption_testkit import (
    BUCKET,
    INTERNAL_BUCKET,
    NONE,
    PART,
    SSE_C,
    SSE_KMS,
    SSE_S3,
    Mode,
    Stack,
    build_stack,
    md5_etag,
    multipart_upload,
    parse_xml,
    path,
    payload,
    put,
)
from hypothesis import given
from hypothesis import strategies as st

from encproxy.crypto import fact_names
from encproxy.crypto.fact_names import Facts
from encproxy.filestore.index import INDEX_FILE
from encproxy.s3 import continuation
from encproxy.wsgi import environ as env

FACTS_KEY = bytes(range(32))
SEALER = fact_names.Sealer(FACTS_KEY)
OTHER_SEALER = fact_names.Sealer(bytes(32))
ROOT = "0123456789abcdef" * 2
KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
SEALED = "A" * 64    # well-formed, opens under no key


def facts_of(name: str, **changed: object) -> Facts:
    fields: dict[str, object] = {"key": name, "mode": "AES256", "stored_size": 4200,
                                 "backend_etag": "a" * 32, "plaintext_size": 4096,
                                 "client_etag": "b" * 32}
    fields.update(changed)
    return Facts(**fields)  # type: ignore[arg-type]


def name_of(facts: Facts, sealer: fact_names.Sealer = SEALER, bucket: str = BUCKET) -> str:
    return fact_names.name_of(sealer, ROOT, bucket, facts)


# -- names (pure) --------------------------------------------------------------------------

@given(KEYS)
def test_a_key_escapes_and_unescapes_to_itself(key: str) -> None:
    escaped = fact_names.escape_key(key)
    assert "!" not in escaped
    assert all(c > "!" for c in escaped)
    assert fact_names.unescape_key(escaped) == key


# Short keys, and keys whose last segment leaves no room for the fields (``!/``).
EITHER_FORM = st.one_of(KEYS, KEYS.map(lambda key: key + "x" * 220))


@given(EITHER_FORM, EITHER_FORM, st.integers(0, 10**12), st.integers(0, 10**12))
def test_names_sort_as_their_keys_whatever_follows(a: str, b: str, size_a: int,
                                                   size_b: int) -> None:
    """S3 lists keys in UTF-8 byte order; the records of a page's keys must be one range
    of names, whatever their payloads."""
    name_a = name_of(facts_of(a, plaintext_size=size_a))
    name_b = name_of(facts_of(b, plaintext_size=size_b))
    bytes_a, bytes_b = a.encode(), b.encode()
    if bytes_a < bytes_b:
        assert name_a.encode() < name_b.encode()
    elif bytes_a > bytes_b:
        assert name_a.encode() > name_b.encode()


@given(KEYS, st.sampled_from(["b" * 32, "c" * 32 + "-3"]))
def test_a_name_parses_back_and_opens_only_where_it_was_made(key: str, etag: str) -> None:
    facts = facts_of(key, mode="aws:kms", backend_etag="c" * 32 + "-3", client_etag=etag)
    parsed = fact_names.parse_name(BUCKET, name_of(facts))
    assert (parsed.key, parsed.root) == (key, ROOT)
    assert SEALER.open(BUCKET, parsed) == facts
    assert OTHER_SEALER.open(BUCKET, parsed) is None
    assert SEALER.open("other-bucket", parsed) is None


def test_the_client_etag_is_not_in_the_name() -> None:
    """An encrypted object's client ETag is its plaintext MD5: never stored in the clear."""
    md5 = "9e107d9d372bb6826bd81d3542a419d6"
    name = name_of(facts_of("k", client_etag=md5))
    assert md5 not in name and md5.upper() not in name
    assert bytes.fromhex(md5) not in name.encode()
    # Deterministic: the same facts make the same name (a record is written once).
    assert name == name_of(facts_of("k", client_etag=md5))


@pytest.mark.parametrize("field, value", [
    ("plaintext_size", 4095), ("mode", "none"), ("stored_size", 4201),
    ("backend_etag", "d" * 32), ("key", "another key")])
def test_a_changed_field_does_not_open(field: str, value: object) -> None:
    """The attacker rewrites a clear field and keeps the sealed ETag: it no longer opens."""
    genuine = fact_names.parse_name(BUCKET, name_of(facts_of("some key")))
    changed = fact_names.parse_name(BUCKET, name_of(facts_of("some key", **{field: value})))
    forged = fact_names.ParsedName(changed.key, changed.clear_fields, genuine.sealed, ROOT)
    assert SEALER.open(BUCKET, changed) is not None     # the change is well formed
    assert SEALER.open(BUCKET, forged) is None


@pytest.mark.parametrize("name", [
    "facts/data/key",                                                # no separator
    "facts/data/key!f1.s.1.aa.1." + SEALED + "." + ROOT,           # another version
    "facts/data/key!f2.x.1.aa.1." + SEALED + "." + ROOT,           # unknown mode
    "facts/data/key!f2.s.01.aa.1." + SEALED + "." + ROOT,          # not a canonical size
    "facts/data/key!f2.s.1.a\"a.1." + SEALED + "." + ROOT,         # not an ETag
    "facts/data/key!f2.s.1.aa.1." + SEALED[:20] + "." + ROOT,      # short seal
    "facts/data/key!f2.s.1.aa.1." + SEALED + "." + ROOT[:-1],      # short root
    "facts/data/k y!f2.s.1.aa.1." + SEALED + "." + ROOT,           # unescaped space
    'facts/data/k"z!f2.s.1.aa.1.' + SEALED + "." + ROOT,           # bad escape
    "facts/other/key!f2.s.1.aa.1." + SEALED + "." + ROOT,          # another bucket
    "facts/data/key!f2.s.1.aa.01." + SEALED + "." + ROOT,          # plaintext size
    "facts/data/key!f2.s.1.aa." + SEALED + "." + ROOT,             # a field missing
    "facts/data/key!f2.s.1.aa.1." + SEALED + "." + ROOT + ".x",    # one too many
    "facts/data/key!f2.s.1..1." + SEALED + "." + ROOT,             # an empty ETag
    "facts/data/key!f2.s.1.aa.1." + SEALED + "." + ROOT.upper(),   # not lower-case hex
    "facts/data/key!f2.s.1.aa.1." + SEALED + "=." + ROOT,          # padded seal
    "facts/data/key!f2.s.1.aa.1." + SEALED + "." + ROOT + "\n",    # a trailing newline
])
def test_what_is_not_a_record_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        fact_names.parse_name(BUCKET, name)


def test_the_well_formed_name_those_are_made_from_parses() -> None:
    parsed = fact_names.parse_name(BUCKET, 'facts/data/k"Pz!f2.s.1.aa.1.' + SEALED + "."
                                   + ROOT)
    assert (parsed.key, parsed.clear_fields, parsed.sealed) == ("k z", "f2.s.1.aa.1", SEALED)
    assert SEALER.open(BUCKET, parsed) is None


@pytest.mark.parametrize("key, own_segment", [
    ("short", False), ("dir/" + "s" * 60, False), ("s" * 200 + "/short", False),
    ("s" * 200, True), ("dir/" + "s" * 200, True)])
def test_the_fields_are_a_segment_of_their_own_only_past_255_bytes(key: str,
                                                                   own_segment: bool) -> None:
    name = name_of(facts_of(key))
    assert ("!/" in name) is own_segment
    assert all(len(segment.encode()) <= 255 for segment in name.split("/"))
    assert SEALER.open(BUCKET, fact_names.parse_name(BUCKET, name)) == facts_of(key)


def test_what_does_not_fit_a_name_is_not_recorded() -> None:
    assert fact_names.recordable(facts_of("k" * fact_names.MAX_KEY_BYTES), BUCKET)
    assert not fact_names.recordable(facts_of("k" * (fact_names.MAX_KEY_BYTES + 1)), BUCKET)
    assert not fact_names.recordable(facts_of("k", backend_etag="a/b"), BUCKET)
    with pytest.raises(ValueError):
        name_of(facts_of("k", client_etag=""))


# -- the layer --------------------------------------------------------------------------------

class IgnoresListingFacts:
    """The file store app as an S3 backend app: it keeps no facts of its own, and answers
    listings in XML (it leaves no page in the listing slot, listing_page.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop(env.LISTING_FACTS, None)
        environ.pop(env.LISTING_PAGE, None)
        return self.app(environ, start_response)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """Writes keep their facts in records only."""
    stack = build_stack(tmp_path)
    stack.recorder.app = IgnoresListingFacts(stack.recorder.app)
    return stack


@pytest.fixture
def embedded(tmp_path: Path) -> Stack:
    """The embedded store as it runs: PutObject's facts are kept in its index."""
    return build_stack(tmp_path)


def listed(stack: Stack, query: str = "list-type=2") -> dict[str, tuple[int, str]]:
    resp = stack.client.get(path(BUCKET), query_string=query)
    assert resp.status_code == 200, resp.get_data()
    root = parse_xml(resp.get_data())
    ns = root.tag[:-len("ListBucketResult")] if root.tag.endswith("ListBucketResult") else ""
    entry = "Contents" if "versions" not in query else "Version"
    return {e.findtext(ns + "Key") or "": (int(e.findtext(ns + "Size") or "-1"),
                                          e.findtext(ns + "ETag") or "")
            for e in root.iter(ns + entry)}


def object_lookups(stack: Stack) -> list[str]:
    """The requests for objects of the data bucket that reached the file store (a listing
    that looks an object up sends a HEAD and reads)."""
    return [f"{r.method} {r.path}" for r in stack.recorder.requests
            if r.path.startswith(f"/{BUCKET}/")]


def record_names(stack: Stack) -> list[str]:
    page = stack.store.list_objects(INTERNAL_BUCKET, prefix=fact_names.bucket_prefix(BUCKET))
    assert not page.is_truncated
    return [record.key for record in page.contents]


KEY_NAMES = ["plain", "a b", "a!b", 'a"b', "a/b", "a-b", "ünïcode/ключ", "z" * 40]


def write_objects(stack: Stack) -> dict[str, tuple[int, str]]:
    """One object per mode and awkward key, and an encrypted multipart object; what a
    listing must report for each."""
    expected: dict[str, tuple[int, str]] = {}
    modes: list[Mode] = [NONE, SSE_S3, SSE_KMS, SSE_C]
    for i, key in enumerate(KEY_NAMES):
        data = payload(1000 + 37 * i, seed=i)
        mode = modes[i % len(modes)]
        resp = put(stack.client, key, data, mode.write)
        assert resp.status_code == 200, resp.get_data()
        expected[key] = (len(data), resp.headers["ETag"])
        if not mode.sse_c:
            assert resp.headers["ETag"] == md5_etag(data)
    parts = {1: payload(PART, seed=50), 2: payload(1234, seed=51)}
    done = multipart_upload(stack.client, "multi", parts, SSE_S3)
    assert done.status_code == 200, done.get_data()
    etag = parse_xml(done.get_data()).findtext("ETag") or ""
    expected["multi"] = (PART + 1234, etag)
    return expected


def test_a_restarted_listing_reads_records_and_looks_nothing_up(stack: Stack) -> None:
    expected = write_objects(stack)
    # Every encrypted object; an unencrypted or SSE-C PutObject through an S3 backend (a
    # write that needs no key provider, and so does not wait on one for its record) is
    # recorded by the first listing that meets it (below).
    assert len(record_names(stack)) == len(expected) - 4
    first = stack.replica()
    assert listed(first) == expected
    assert sorted(r for r in object_lookups(first) if r.startswith("HEAD")) == sorted(
        f"HEAD /{BUCKET}/{quote(key)}" for key in ("plain", "a/b", 'a"b', "z" * 40))
    assert len(record_names(stack)) == len(expected)
    replica = stack.replica()
    assert listed(replica) == expected
    assert object_lookups(replica) == []
    # The records are the only source: without them the replica must look each up.
    for name in record_names(stack):
        stack.store.delete_object(INTERNAL_BUCKET, name)
    cold = stack.replica()
    assert listed(cold) == expected
    assert len([r for r in object_lookups(cold) if r.startswith("HEAD")]) == len(expected)
    # ... and records what it learnt, for the next one.
    assert len(record_names(stack)) == len(expected)
    again = stack.replica()
    assert listed(again) == expected
    assert object_lookups(again) == []


def records_lists(stack: Stack) -> list[str]:
    """The ``start-after`` of each listing of the bucket's facts records."""
    prefix = quote(fact_names.bucket_prefix(BUCKET), safe="-_.~")
    return [parse_qs(r.query)["start-after"][0] for r in stack.recorder.requests
            if r.method == "GET" and r.path == f"/{INTERNAL_BUCKET}"
            and f"prefix={prefix}" in r.query]


def test_a_first_listing_reads_its_records_ahead(stack: Stack) -> None:
    """Over an S3 backend, the records of a page's range are listed from its lower bound
    while the objects are (fact_records.py): one records LIST, no second one after."""
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected      # records what PutObject did not
    first = stack.replica(read_ahead_records=True)
    assert listed(first) == expected
    assert object_lookups(first) == []
    assert records_lists(first) == [fact_names.key_start(BUCKET, "")]
    assert listed(first, "list-type=2&prefix=a") == {
        k: v for k, v in expected.items() if k.startswith("a")}
    assert len(records_lists(first)) == 1    # known from the caches: nothing read ahead
    other = stack.replica(read_ahead_records=True)
    assert listed(other, "list-type=2&start-after=a!b&prefix=a") == {
        k: v for k, v in expected.items() if k.startswith("a") and k > "a!b"}
    assert records_lists(other) == [fact_names.key_start(BUCKET, "a!b")]
    assert object_lookups(other) == []


class SmallRecordPages:
    """A backend that lists the internal bucket two names a page (S3 may page as it
    likes below its 1,000)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == f"/{INTERNAL_BUCKET}" and environ["REQUEST_METHOD"] == "GET":
            for name in ("QUERY_STRING", env.RAW_QUERY):
                environ[name] = environ[name] + "&max-keys=2"
        return self.app(environ, start_response)


def test_records_past_those_read_ahead_are_listed_after(stack: Stack) -> None:
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected
    first = stack.replica(read_ahead_records=True)
    first.recorder.app = SmallRecordPages(first.recorder.app)
    assert listed(first) == expected
    assert object_lookups(first) == []
    ahead, *after = records_lists(first)
    assert ahead == fact_names.key_start(BUCKET, "")
    assert after and all(start > ahead for start in after)   # from the last name read ahead


@pytest.mark.parametrize("query", ["list-type=2&prefix=a", "list-type=2&prefix=a&start-after=a b"])
def test_records_are_listed_only_until_every_entry_is_found(stack: Stack, query: str) -> None:
    """A page of records past the one that completed the listing could only hold stale
    records: it is not asked for."""
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected
    replica = stack.replica()
    replica.recorder.app = SmallRecordPages(replica.recorder.app)
    page = listed(replica, query)
    assert page == {k: v for k, v in expected.items() if k.startswith("a")
                    and k > dict(parse_qs(query)).get("start-after", [""])[0]}
    assert object_lookups(replica) == []
    names = sorted(record_names(stack))
    start = fact_names.key_start(BUCKET, min(page))
    last = max(n for n in names if fact_names.parse_name(BUCKET, n).key in page)
    needed = len([n for n in names if start < n <= last])
    assert len(records_lists(replica)) == -(-needed // 2)    # pages of two, rounded up


class ContinuationTokens:
    """The file store answering ListObjectsV2 of the data bucket as encproxy's S3 backend
    app does: in XML, with encproxy's tokens, which carry the key their page starts
    after (encproxy.s3.continuation); ``after``: a key every token claims instead, as a
    backend listing out of order would make it."""

    def __init__(self, app: Any, after: str | None = None) -> None:
        self.app = app
        self.after = after

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] != f"/{BUCKET}" or "list-type=2" not in environ["QUERY_STRING"]:
            return self.app(environ, start_response)
        environ.pop(env.LISTING_PAGE, None)        # the layer parses the XML
        query = parse_qs(environ["QUERY_STRING"], keep_blank_values=True)
        mine = query.get("continuation-token", [""])[0]
        if mine:
            query["continuation-token"] = [continuation.unwrap(mine)]
            for name in ("QUERY_STRING", env.RAW_QUERY):
                environ[name] = urlencode(query, doseq=True)
            environ.pop(env.REQUEST, None)          # parsed before: parse it again
        captured: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None
        body = b"".join(self.app(environ, start))
        if captured["status"].startswith("200"):
            root = parse_xml(body)
            following = root.find("NextContinuationToken")
            if following is not None:
                keys = [e.findtext("Key") or "" for e in root.iter("Contents")]
                following.text = continuation.wrap(following.text or "",
                                                   self.after or keys[-1])
            echoed = root.find("ContinuationToken")
            if echoed is not None:
                echoed.text = mine
            body = ElementTree.tostring(root)
        start_response(captured["status"], [(k, v) for k, v in captured["headers"]
                                             if k.lower() != "content-length"])
        return [body]


def test_pages_continuing_a_first_listing_read_their_records_ahead(stack: Stack) -> None:
    """Over an S3 backend, each page of a first listing reads its records while the
    backend lists it, from the key its token says it starts after; the next listing,
    whose entries the caches know, reads none."""
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected      # records what PutObject did not
    first = stack.replica(read_ahead_records=True)
    first.recorder.app = ContinuationTokens(first.recorder.app)
    pages, token = [], ""
    while len(pages) < len(expected):
        resp = first.client.get(path(BUCKET), query_string={
            "list-type": "2", "max-keys": "3", **({"continuation-token": token} if token else {})})
        assert resp.status_code == 200, resp.get_data()
        root = parse_xml(resp.get_data())
        pages.append([(e.findtext("Key") or "", int(e.findtext("Size") or "-1"),
                       e.findtext("ETag") or "") for e in root.iter("Contents")])
        token = root.findtext("NextContinuationToken") or ""
        if not token:
            break
    assert {key: (size, etag) for page in pages for key, size, etag in page} == expected
    assert len(pages) > 2
    assert object_lookups(first) == []
    # One records LIST per page, each from where its page starts: none waited for the
    # objects LIST before it began.
    assert records_lists(first) == [fact_names.key_start(BUCKET, "")] + [
        fact_names.key_start(BUCKET, page[-1][0]) for page in pages[:-1]]
    again = len(records_lists(first))
    resp = first.client.get(path(BUCKET), query_string={"list-type": "2", "max-keys": "3"})
    assert resp.status_code == 200
    assert len(records_lists(first)) == again       # known from the caches


def test_a_wrong_start_in_a_token_reads_ahead_in_vain_and_lists_the_truth(
        stack: Stack) -> None:
    """The key in a token is a hint: one past the page's entries (a backend that lists
    out of order) makes the records read ahead useless, never the listing wrong."""
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected
    first = stack.replica(read_ahead_records=True)
    first.recorder.app = ContinuationTokens(first.recorder.app, after="zzzz")
    resp = first.client.get(path(BUCKET), query_string={"list-type": "2", "max-keys": "3"})
    token = parse_xml(resp.get_data()).findtext("NextContinuationToken") or ""
    assert continuation.start_after(token) == "zzzz"
    resp = first.client.get(path(BUCKET), query_string={
        "list-type": "2", "max-keys": "3", "continuation-token": token})
    assert resp.status_code == 200
    root = parse_xml(resp.get_data())
    page = {e.findtext("Key") or "": (int(e.findtext("Size") or "-1"), e.findtext("ETag") or "")
            for e in root.iter("Contents")}
    assert page and page == {k: v for k, v in expected.items() if k in page}
    assert object_lookups(first) == []
    starts = records_lists(first)
    assert starts[1] == fact_names.key_start(BUCKET, "zzzz")    # read ahead, in vain
    assert len(starts) == 3                                     # then read where needed


class FailsFirstRecordsList:
    """A backend whose first listing of the internal bucket fails (503)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failed = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.failed and environ["PATH_INFO"] == f"/{INTERNAL_BUCKET}" \
                and environ["REQUEST_METHOD"] == "GET":
            self.failed = True
            start_response("503 Service Unavailable", [("Content-Type", "application/xml")])
            return [b"<Error><Code>ServiceUnavailable</Code></Error>"]
        return self.app(environ, start_response)


def test_a_failed_read_ahead_leaves_the_listing_to_read_the_records(stack: Stack) -> None:
    expected = write_objects(stack)
    assert listed(stack.replica()) == expected
    first = stack.replica(read_ahead_records=True)
    failing = FailsFirstRecordsList(first.recorder.app)
    first.recorder.app = failing
    assert listed(first) == expected
    assert failing.failed
    assert object_lookups(first) == []
    assert len(records_lists(first)) == 2


def test_a_forged_record_is_ignored_and_the_object_looked_up(stack: Stack) -> None:
    data = payload(5000, seed=7)
    assert put(stack.client, "victim", data, SSE_S3.write).status_code == 200
    [name] = record_names(stack)
    assert fact_names.parse_name(BUCKET, name).clear_fields.endswith(".5000")
    # The attacker claims another plaintext size, keeping the seal (it cannot make one).
    forged = name.replace(".5000.", ".4.", 1)
    assert forged != name
    stack.store.delete_object(INTERNAL_BUCKET, name)
    stack.store.put_object(INTERNAL_BUCKET, forged, io.BytesIO(b""), 0)
    replica = stack.replica()
    assert listed(replica) == {"victim": (5000, md5_etag(data))}
    assert [r for r in object_lookups(replica) if r.startswith("HEAD")] == ["HEAD /data/victim"]


def test_a_record_of_another_body_says_nothing_of_this_one(stack: Stack) -> None:
    """An overwritten key keeps its old record; the listing matches records by the listed
    ETag and size, so the old one never applies to the new body."""
    first, second = payload(3000, seed=1), payload(3001, seed=2)
    assert put(stack.client, "k", first, SSE_S3.write).status_code == 200
    assert put(stack.client, "k", second, SSE_S3.write).status_code == 200
    assert len(record_names(stack)) == 2
    replica = stack.replica()
    assert listed(replica) == {"k": (3001, md5_etag(second))}
    assert object_lookups(replica) == []
    # The bucket never had versioning: the first body is gone for good, and the listing
    # that read its record past deleted it.
    [kept] = record_names(stack)
    assert fact_names.parse_name(BUCKET, kept).clear_fields.endswith(".3001")


def test_a_record_moved_to_another_key_does_not_verify(stack: Stack) -> None:
    data = payload(2000, seed=3)
    assert put(stack.client, "one", data, SSE_S3.write).status_code == 200
    [name] = record_names(stack)
    # The same body under another key: the backend copies object and record.
    stack.direct.put(path(BUCKET, "two"), headers={"x-amz-copy-source": f"/{BUCKET}/one"})
    two = fact_names.bucket_prefix(BUCKET) + "two" + name[name.index("!"):]
    stack.store.put_object(INTERNAL_BUCKET, two, io.BytesIO(b""), 0)
    replica = stack.replica()
    got = listed(replica)
    assert got["one"] == (2000, md5_etag(data))
    assert [r for r in object_lookups(replica) if r.startswith("HEAD")] == ["HEAD /data/two"]


def test_a_key_too_long_for_a_name_is_looked_up(stack: Stack) -> None:
    key = "k" * (fact_names.MAX_KEY_BYTES + 1)
    data = payload(100, seed=4)
    assert put(stack.client, key, data, SSE_S3.write).status_code == 200
    assert record_names(stack) == []
    replica = stack.replica()
    assert listed(replica) == {key: (100, md5_etag(data))}
    assert len(object_lookups(replica)) >= 1


def test_versions_are_listed_from_records(stack: Stack) -> None:
    resp = stack.client.put(path(BUCKET), query_string="versioning", data=(
        b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"))
    assert resp.status_code == 200
    bodies = [payload(1500 + n, seed=n) for n in range(3)]
    for body in bodies:
        assert put(stack.client, "v", body, SSE_KMS.write).status_code == 200
    replica = stack.replica()
    resp = replica.client.get(path(BUCKET), query_string="versions")
    root = parse_xml(resp.get_data())
    sizes = sorted(int(e.findtext("Size") or "0") for e in root.iter("Version"))
    etags = {e.findtext("ETag") for e in root.iter("Version")}
    assert sizes == [1500, 1501, 1502]
    assert etags == {md5_etag(b) for b in bodies}
    assert object_lookups(replica) == []
    # A ListObjects page reads the older versions' records past, and keeps them: with
    # versioning they describe versions that still exist.
    assert listed(stack.replica()) == {"v": (1502, md5_etag(bodies[-1]))}
    assert len(record_names(stack)) == 3


# -- the embedded store: facts in the index row -------------------------------------------

def listing_body(stack: Stack, query: str) -> bytes:
    resp = stack.client.get(path(BUCKET), query_string=query)
    assert resp.status_code == 200, resp.get_data()
    return resp.get_data()


def test_the_embedded_store_keeps_putobject_facts_in_its_index(embedded: Stack) -> None:
    expected = write_objects(embedded)
    # Only the multipart object needed a record; every PutObject's facts are in its row,
    # but for the first one: unencrypted, written before this process had its records root
    # (an unencrypted write never waits on the key provider for one).
    assert [n.split("!")[0] for n in record_names(embedded)] == [
        fact_names.bucket_prefix(BUCKET) + "multi"]
    first = embedded.replica()
    assert listed(first) == expected
    assert [r for r in object_lookups(first) if r.startswith("HEAD")] == [
        f"HEAD /{BUCKET}/plain"]
    replica = embedded.replica()    # which the first listing recorded
    assert listed(replica) == expected
    assert object_lookups(replica) == []
    # The facts go up in the page the store leaves unrendered; no XML carries them.
    sealed = [fields for (fields,) in sqlite3.connect(embedded.root / "data" / INDEX_FILE)
              .execute("SELECT listing_facts FROM versions WHERE listing_facts IS NOT NULL")]
    assert len(sealed) == len(KEY_NAMES) - 1
    for query in ("list-type=2", "", "versions"):
        for body in (listing_body(replica, query),
                     embedded.direct.get(path(BUCKET), query_string=query).get_data()):
            assert not any(fields.encode() in body for fields in sealed)
            assert b"EncproxyListingFacts" not in body


def test_forged_facts_in_the_index_are_ignored_and_the_object_looked_up(
        embedded: Stack) -> None:
    data = payload(5000, seed=8)
    assert put(embedded.client, "victim", data, SSE_S3.write).status_code == 200
    index = sqlite3.connect(embedded.root / "data" / INDEX_FILE)
    with index:
        [(fields,)] = index.execute("SELECT listing_facts FROM versions WHERE key = 'victim'")
        assert fact_names.parse_fields("victim", fields).clear_fields.endswith(".5000")
        forged = fields.replace(".5000.", ".4.", 1)
        assert forged != fields
        index.execute("UPDATE versions SET listing_facts = ? WHERE key = 'victim'", (forged,))
    index.close()
    replica = embedded.replica()
    assert listed(replica) == {"victim": (5000, md5_etag(data))}
    assert [r for r in object_lookups(replica) if r.startswith("HEAD")] == ["HEAD /data/victim"]
    assert fields.encode() not in listing_body(replica, "list-type=2")


def test_a_page_larger_than_a_request_body_lists(stack: Stack) -> None:
    """1,000 keys of 900 bytes make a page over 1 MiB, the cap on request bodies; the
    XML listing of an S3 backend is read with the cap of sub-responses."""
    data = b"x"
    for i in range(1000):
        assert put(stack.client, f"{i:04d}" + "k" * 896, data).status_code == 200
    raw = stack.direct.get(path(BUCKET), query_string="list-type=2").get_data()
    assert len(raw) > 1024 * 1024
    got = listed(stack)
    assert len(got) == 1000 and set(got.values()) == {(1, md5_etag(data))}   # a page
