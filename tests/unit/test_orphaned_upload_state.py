"""What encproxy keeps for uploads in its internal bucket, after Abort, DeleteBucket and
``encproxy uploads orphans`` (docs/OPERATIONS.md, "Orphaned upload state").

In-process: the bucket layer over the encryption layer over a real file store; the
internal bucket is read directly through the file store app (the operator's view).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from encryption_testkit import (
    BUCKET,
    INTERNAL_BUCKET,
    KEY_ID,
    SSE_C,
    SSE_S3,
    Stack,
    build_stack,
    create_upload,
    parse_xml,
    path,
    payload,
    upload_part,
)
from werkzeug.test import Client

from encproxy import orphans
from encproxy.wsgi.buckets.middleware import BucketEncryptionMiddleware
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.encryption.upload_store import open_uploads, upload_location

OTHER = "other-bucket"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


@pytest.fixture
def client(stack: Stack) -> Client:
    """The bucket layer (DeleteBucket, bucket configurations) over the encryption layer."""
    return Client(Gateway(BucketEncryptionMiddleware(stack.middleware, stack.configs,
                                                     stack.keys), ()))


def internal(stack: Stack, prefix: str = "") -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token:
            query["continuation-token"] = token
        resp = stack.direct.get(path(INTERNAL_BUCKET), query_string=query)
        assert resp.status_code == 200, resp.get_data()
        root = parse_xml(resp.get_data())
        names += [c.findtext("Key") or "" for c in root.findall("Contents")]
        token = root.findtext("NextContinuationToken") or ""
        if root.findtext("IsTruncated") != "true":
            return names


def open_upload_with_held_copies(client: Client, key: str, bucket: str = BUCKET,
                                 twice: bool = True, mode=SSE_S3) -> str:
    """An upload whose part 1 is terminal (under 5 MiB), so it has a held copy; uploaded
    twice, it has two held copies and two held references, and (not SSE-C) two part
    records (the two attempts have different bytes)."""
    upload_id = create_upload(client, key, mode.write, bucket)
    for attempt in range(2 if twice else 1):
        resp = upload_part(client, key, upload_id, 1, payload(100_000, attempt), mode.read,
                           bucket)
        assert resp.status_code == 200, resp.get_data()
    return upload_id


def state_of(stack: Stack, bucket: str, key: str, upload_id: str) -> list[str]:
    return internal(stack, upload_location(bucket, key, upload_id))


def kinds(names: list[str], where: str) -> list[str]:
    return sorted(n[len(where):].split("/", 1)[0] for n in names)


# -- Abort ----------------------------------------------------------------------------------

def test_abort_removes_the_record_and_every_held_copy(stack: Stack, client: Client) -> None:
    upload_id = open_upload_with_held_copies(client, "k")
    kept = open_upload_with_held_copies(client, "k2", twice=False)
    where = upload_location(BUCKET, "k", upload_id)
    before = state_of(stack, BUCKET, "k", upload_id)
    assert kinds(before, where) == ["held", "held", "held-ref", "held-ref", "part", "part",
                                   "record"]
    resp = client.delete(path(BUCKET, "k"), query_string={"uploadId": upload_id})
    assert resp.status_code == 204, resp.get_data()
    assert state_of(stack, BUCKET, "k", upload_id) == []
    assert len(state_of(stack, BUCKET, "k2", kept)) == 4     # another upload's is untouched


def test_abort_of_an_upload_the_backend_no_longer_has_still_cleans_up(stack: Stack,
                                                                      client: Client) -> None:
    upload_id = open_upload_with_held_copies(client, "k")
    assert stack.direct.delete(path(BUCKET, "k"),
                               query_string={"uploadId": upload_id}).status_code == 204
    assert len(state_of(stack, BUCKET, "k", upload_id)) == 7
    resp = client.delete(path(BUCKET, "k"), query_string={"uploadId": upload_id})
    assert resp.status_code == 404           # NoSuchUpload, relayed as the backend says
    assert state_of(stack, BUCKET, "k", upload_id) == []


def test_a_part_uploaded_after_its_upload_is_gone_leaves_no_held_copy(stack: Stack,
                                                                       client: Client) -> None:
    """A terminal part writes its held copy first; when the upload turns out to be gone
    (aborted behind this process's back), the copy is removed with the refusal."""
    upload_id = open_upload_with_held_copies(client, "k", twice=False)
    where = upload_location(BUCKET, "k", upload_id)
    assert kinds(state_of(stack, BUCKET, "k", upload_id), where) == ["held", "held-ref",
                                                                      "part", "record"]
    assert stack.direct.delete(path(BUCKET, "k"),
                               query_string={"uploadId": upload_id}).status_code == 204
    resp = upload_part(client, "k", upload_id, 2, payload(50_000, 7), SSE_S3.read)
    assert resp.status_code == 404, resp.get_data()            # NoSuchUpload
    assert kinds(state_of(stack, BUCKET, "k", upload_id), where) == ["held", "held-ref",
                                                                      "part", "record"]


# -- DeleteBucket ---------------------------------------------------------------------------

def put_config(client: Client, bucket: str) -> None:
    body = (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
            b"<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
            b"</ServerSideEncryptionConfiguration>")
    resp = client.put(path(bucket), query_string="encryption", data=body)
    assert resp.status_code == 200, resp.get_data()


def test_delete_bucket_with_open_uploads_deletes_them_and_their_state(
        stack: Stack, client: Client) -> None:
    assert client.put(path(OTHER)).status_code == 200
    put_config(client, OTHER)
    ids = [open_upload_with_held_copies(client, f"k{i}", OTHER) for i in range(3)]
    plain = create_upload(client, "plain", {}, OTHER)   # a record only
    sse_c = open_upload_with_held_copies(client, "c", OTHER, twice=False, mode=SSE_C)
    elsewhere = open_upload_with_held_copies(client, "k0", BUCKET)
    assert len(internal(stack, "uploads/")) == 3 * 7 + 1 + 3 + 7   # SSE-C: no part records
    assert internal(stack, "bucket-encryption/") == [f"bucket-encryption/{OTHER}"]

    resp = client.delete(path(OTHER))
    assert resp.status_code == 204, resp.get_data()     # as S3: open uploads do not keep it
    assert client.head(path(OTHER)).status_code == 404
    for key, upload_id in [*((f"k{i}", u) for i, u in enumerate(ids)), ("plain", plain),
                           ("c", sse_c)]:
        assert state_of(stack, OTHER, key, upload_id) == []
    assert internal(stack, "bucket-encryption/") == []
    # Only the other bucket's upload is left, whole.
    assert internal(stack, "uploads/") == state_of(stack, BUCKET, "k0", elsewhere)
    assert len(internal(stack, "uploads/")) == 7


def test_delete_bucket_refused_keeps_the_uploads_and_their_state(stack: Stack,
                                                                  client: Client) -> None:
    assert client.put(path(OTHER)).status_code == 200
    upload_id = open_upload_with_held_copies(client, "k", OTHER)
    assert client.put(path(OTHER, "an-object"), data=b"x").status_code == 200
    resp = client.delete(path(OTHER))
    assert resp.status_code == 409 and b"BucketNotEmpty" in resp.get_data()
    assert len(state_of(stack, OTHER, "k", upload_id)) == 7
    # The upload still works: a second part attempt and Abort.
    assert upload_part(client, "k", upload_id, 1, payload(10), SSE_S3.read,
                       OTHER).status_code == 200


def test_delete_of_a_missing_bucket_is_nosuchbucket(client: Client) -> None:
    resp = client.delete(path("no-such-bucket"))
    assert resp.status_code == 404 and b"NoSuchBucket" in resp.get_data()


# -- encproxy uploads orphans ---------------------------------------------------------------

def records_of(stack: Stack) -> RecordKeys:
    return RecordKeys(stack.backend, INTERNAL_BUCKET, stack.keys, KEY_ID)


def test_orphans_are_found_and_removed_and_live_uploads_are_not(stack: Stack,
                                                              client: Client) -> None:
    live = open_upload_with_held_copies(client, "live")
    gone = open_upload_with_held_copies(client, "gone")
    # An older encproxy, or an abort behind encproxy's back: the backend upload goes alone.
    assert stack.direct.delete(path(BUCKET, "gone"),
                               query_string={"uploadId": gone}).status_code == 204
    # A bucket deleted behind encproxy's back, with an open upload and a configuration.
    assert client.put(path(OTHER)).status_code == 200
    put_config(client, OTHER)
    lost = open_upload_with_held_copies(client, "k", OTHER, twice=False)
    assert stack.direct.delete(path(OTHER)).status_code == 204
    live_state = state_of(stack, BUCKET, "live", live)

    report = orphans.find(stack.backend, INTERNAL_BUCKET, records_of(stack))
    found = {f.name: f for f in report.findings}
    assert set(found) == {upload_location(BUCKET, "gone", gone),
                          upload_location(OTHER, "k", lost), f"bucket-encryption/{OTHER}"}
    assert all(f.removable for f in found.values()) and report.problems == []
    assert "'gone'" in found[upload_location(BUCKET, "gone", gone)].reason   # claimed key
    assert "unverified" in found[upload_location(BUCKET, "gone", gone)].reason
    assert "does not exist" not in found[upload_location(BUCKET, "gone", gone)].reason
    assert f"'{OTHER}', a bucket that does not exist" in \
        found[upload_location(OTHER, "k", lost)].reason
    assert not report.ok(deleted=False)
    text = report.render(deleted=False)
    assert text.splitlines()[-1].startswith("found 3, removed 0")
    assert len(internal(stack, "uploads/")) == 7 + 7 + 4      # a dry run removes nothing

    orphans.remove(stack.backend, INTERNAL_BUCKET, report)
    assert report.ok(deleted=True)
    assert report.render(deleted=True).splitlines()[-1] == "found 3, removed 3, failed 0"
    assert internal(stack, "uploads/") == live_state
    assert internal(stack, "bucket-encryption/") == []
    again = orphans.find(stack.backend, INTERNAL_BUCKET, records_of(stack))
    assert again.findings == [] and again.ok(deleted=False)
    # The live upload still completes.
    resp = upload_part(client, "live", live, 1, payload(7), SSE_S3.read)
    etag = resp.headers["ETag"]
    body = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>"
            f"</Part></CompleteMultipartUpload>").encode()
    resp = client.post(path(BUCKET, "live"), query_string={"uploadId": live}, data=body)
    assert resp.status_code == 200 and b"<Error>" not in resp.get_data(), resp.get_data()
    assert client.get(path(BUCKET, "live")).get_data() == payload(7)


def test_a_live_uploads_record_that_fails_authentication_is_reported_and_kept(
        stack: Stack, client: Client) -> None:
    upload_id = open_upload_with_held_copies(client, "k", twice=False)
    where = upload_location(BUCKET, "k", upload_id)
    stored = stack.direct.get(path(INTERNAL_BUCKET, where + "record")).get_data()
    forged = stored.replace(b'"AES256"', b'"none"')
    assert forged != stored
    assert stack.direct.put(path(INTERNAL_BUCKET, where + "record"),
                            data=forged).status_code == 200
    report = orphans.find(stack.backend, INTERNAL_BUCKET, records_of(stack))
    assert [(f.name, f.removable) for f in report.findings] == [(where, False)]
    assert "fails authentication" in report.findings[0].reason
    orphans.remove(stack.backend, INTERNAL_BUCKET, report)
    assert not report.ok(deleted=True)
    assert report.render(deleted=True).splitlines()[-1] == "found 1, removed 0, failed 1"
    assert len(state_of(stack, BUCKET, "k", upload_id)) == 4     # never deleted


def test_names_encproxy_does_not_write_are_reported_not_removed(stack: Stack) -> None:
    assert stack.direct.put(path(INTERNAL_BUCKET, "uploads/junk"), data=b"x").status_code == 200
    report = orphans.find(stack.backend, INTERNAL_BUCKET, None)
    assert [(f.name, f.removable) for f in report.findings] == [("uploads/junk", False)]
    orphans.remove(stack.backend, INTERNAL_BUCKET, report)
    assert internal(stack, "uploads/") == ["uploads/junk"]


def test_an_orphan_of_many_parts_is_removed_whole(stack: Stack, client: Client) -> None:
    """More names than one listing page (1000) under one location."""
    upload_id = create_upload(client, "many", SSE_S3.write)
    where = upload_location(BUCKET, "many", upload_id)
    for i in range(1100):
        assert stack.direct.put(path(INTERNAL_BUCKET, f"{where}held/{i:05d}/00"),
                                data=b"x").status_code == 200
    assert stack.direct.delete(path(BUCKET, "many"),
                               query_string={"uploadId": upload_id}).status_code == 204
    report = orphans.find(stack.backend, INTERNAL_BUCKET, None)
    assert [f.name for f in report.findings] == [where]
    assert report.findings[0].what.startswith("a record, 1100 held copy(ies)")
    orphans.remove(stack.backend, INTERNAL_BUCKET, report)
    assert internal(stack, "uploads/") == []


class RefusingUploadListings:
    """The file store app, except that ListMultipartUploads of ``bucket`` is refused (403),
    as a backend whose credentials may not list it would."""

    def __init__(self, app, bucket: str) -> None:
        self.app = app
        self.bucket = bucket

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/" + self.bucket and environ["REQUEST_METHOD"] == "GET" \
                and environ["QUERY_STRING"].split("&")[0] == "uploads":
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"]
        return self.app(environ, start_response)


def test_nothing_is_removed_unless_every_bucket_could_be_listed(stack: Stack,
                                                               client: Client) -> None:
    gone = open_upload_with_held_copies(client, "gone")
    assert stack.direct.delete(path(BUCKET, "gone"),
                               query_string={"uploadId": gone}).status_code == 204
    assert client.put(path(OTHER)).status_code == 200
    backend = RefusingUploadListings(stack.backend, OTHER)
    report = orphans.find(backend, INTERNAL_BUCKET, None)
    assert [(f.name, f.removable) for f in report.findings] == [
        (upload_location(BUCKET, "gone", gone), False)]
    assert len(report.problems) == 1 and OTHER in report.problems[0]
    orphans.remove(backend, INTERNAL_BUCKET, report)
    assert not report.ok(deleted=True)
    assert len(state_of(stack, BUCKET, "gone", gone)) == 7
    assert report.render(deleted=True).splitlines()[-1] == "found 1, removed 0, failed 2"


def test_open_uploads_reads_every_page(stack: Stack) -> None:
    made = set()
    for i in range(1003):      # the backend lists 1000 a page
        made.add((f"k{i % 7}", create_upload(stack.direct, f"k{i % 7}")))
    assert set(open_uploads(stack.backend, BUCKET, None)) == made


def test_an_unauthenticated_v1_record_of_a_gone_upload_is_an_orphan(stack: Stack) -> None:
    """Plain JSON, as encproxy wrote records before they were authenticated."""
    where = upload_location(BUCKET, "old", "an-upload-long-gone")
    v1 = b'{"bucket": "data", "envelope": null, "key": "old", "mode": "none", "v": 1}'
    assert stack.direct.put(path(INTERNAL_BUCKET, where + "record"), data=v1).status_code == 200
    report = orphans.find(stack.backend, INTERNAL_BUCKET, None)
    assert [(f.name, f.removable) for f in report.findings] == [(where, True)]
    assert "claims bucket 'data', key 'old' (unverified)" in report.findings[0].reason
    orphans.remove(stack.backend, INTERNAL_BUCKET, report)
    assert report.ok(deleted=True) and internal(stack, "uploads/") == []
