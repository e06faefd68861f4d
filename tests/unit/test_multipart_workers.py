"""Multipart uploads across workers: two encryption stacks over one store, as two gunicorn
workers (or two replicas) share one backend, each with its own caches.

A worker caches an upload's record the first time it needs it (UploadPart). When another
worker completes the upload, the record is deleted in the backend but not from the first
worker's cache; a retried Complete that lands on the first worker must still be
recognised as a retry (the same answer again), not taken for a live upload.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from encryption_testkit import (
    PART,
    SSE,
    assert_error,
    build_stack,
    complete,
    create_upload,
    parse_xml,
    payload,
    read_body,
    upload_part,
)
from werkzeug.test import TestResponse

SSE_S3 = {SSE: "AES256"}
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _answer(resp: TestResponse) -> tuple[str | None, str | None, str | None]:
    root = parse_xml(resp.get_data())
    return (root.findtext(f"{NS}ETag"), root.findtext(f"{NS}Key"),
            resp.headers.get(SSE))


@pytest.mark.parametrize("parts_on", ["completing-worker", "other-worker", "both"])
def test_a_complete_retried_on_another_worker_gets_the_same_answer(tmp_path: Path,
                                                                  parts_on: str) -> None:
    first = build_stack(tmp_path)
    second = first.replica()
    parts = {1: payload(PART, seed=1), 2: payload(1000, seed=2)}
    upload_id = create_upload(first.client, "k", SSE_S3)
    uploaders = {"completing-worker": (first, first), "other-worker": (second, second),
                 "both": (first, second)}[parts_on]
    etags = []
    for (number, data), stack in zip(sorted(parts.items()), uploaders, strict=True):
        resp = upload_part(stack.client, "k", upload_id, number, data)
        assert resp.status_code == 200, resp.get_data()
        etags.append((number, resp.headers["ETag"]))
    # The other worker has the record cached whichever worker took the parts.
    listed = second.client.get("/data/k", query_string={"uploadId": upload_id})
    assert listed.status_code == 200, listed.get_data()

    done = complete(first.client, "k", upload_id, etags)
    assert done.status_code == 200, done.get_data()
    retried = complete(second.client, "k", upload_id, etags)
    assert retried.status_code == 200, retried.get_data()
    assert _answer(retried) == _answer(done)
    assert _answer(done)[2] == "AES256"

    # The object is whole, and the other worker's stale record let nothing through.
    read = read_body(second.client, "k")
    assert read.status == 200 and read.body == parts[1] + parts[2]


def test_a_part_sent_after_another_worker_completed_is_nosuchupload(tmp_path: Path) -> None:
    first = build_stack(tmp_path)
    second = first.replica()
    upload_id = create_upload(first.client, "k", SSE_S3)
    one = upload_part(second.client, "k", upload_id, 1, payload(PART, seed=3))
    assert one.status_code == 200, one.get_data()
    done = complete(first.client, "k", upload_id, [(1, one.headers["ETag"])])
    assert done.status_code == 200, done.get_data()
    late = upload_part(second.client, "k", upload_id, 2, payload(10, seed=4))
    assert_error(late, 404, "NoSuchUpload")
    assert read_body(first.client, "k").body == payload(PART, seed=3)
