"""A stored multipart-format object copied backend part by backend part.

A backend CopyObject would store one part and drop the ``-N`` of the ETag that
listing sizes and segment numbers depend on (FORMAT.md §3.4, §7.5).  So a copy
that keeps the body (CopyObject that rebinds the data key, ``encproxy rotate``)
creates a new backend upload carrying the new envelope and copies each backend
part's byte range to its own part number with UploadPartCopy, conditional on
the source's backend ETag.  Bodies, part numbers and ``-N`` stay as they were.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from encproxy.s3 import xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp


def upload_query(upload_id: str, number: int | None = None) -> str:
    """The query naming an upload (and one of its parts) for the backend."""
    query = "uploadId=" + subrequest.quote_param(upload_id)
    return query if number is None else f"partNumber={number}&" + query


def complete_upload(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                    upload_id: str, etags: Sequence[tuple[int, str]],
                    headers: dict[str, str] | None = None) -> subrequest.SubResponse:
    """CompleteMultipartUpload with these (part number, ETag); S3Error if it failed
    (including S3's 200 with an Error body).  ``headers``: the write's conditions
    (``If-Match``, ``If-None-Match``), enforced by the app below."""
    out = xml.Node("CompleteMultipartUpload")
    for number, etag in etags:
        out.add("Part", [xml.Node("PartNumber", number), xml.Node("ETag", etag)])
    done = subrequest.request(app, parent, "POST", bucket, key, upload_query(upload_id),
                              headers={"content-type": "application/xml", **(headers or {})},
                              body=xml.render(out))
    if not done.ok:
        raise subrequest.failure(done.status, done.body)
    result = xml.parse(done.body, max_size=subrequest.MAX_SUBRESPONSE)
    if result.tag.rpartition("}")[2] != "CompleteMultipartUploadResult":
        raise subrequest.failure(500, done.body)
    return done


def copy_parts(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str, *,
               source: str, source_etag: str, ranges: Sequence[tuple[int, int]],
               numbers: Sequence[int], headers: dict[str, str],
               before_complete: Callable[[], None] | None = None) -> str:
    """``copy_parts_completed``, returning the new backend ETag."""
    done = copy_parts_completed(app, parent, bucket, key, source=source,
                                source_etag=source_etag, ranges=ranges, numbers=numbers,
                                headers=headers, before_complete=before_complete)
    result = xml.parse(done.body, max_size=subrequest.MAX_SUBRESPONSE)
    return xml.child_text(result, "ETag") or ""


def copy_parts_completed(app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                         *, source: str, source_etag: str, ranges: Sequence[tuple[int, int]],
                         numbers: Sequence[int], headers: dict[str, str],
                         before_complete: Callable[[], None] | None = None,
                         complete_headers: dict[str, str] | None = None
                         ) -> subrequest.SubResponse:
    """Copy the stored bytes ``ranges`` of ``source`` (an ``x-amz-copy-source`` value
    whose backend ETag is ``source_etag``) to parts ``numbers`` of a new upload of
    bucket/key created with ``headers``; complete it (with ``complete_headers``: the
    write's conditions) and return the backend's answer to the Complete.

    ``before_complete`` may raise to abandon the copy just before it replaces the
    object.  On any failure the upload is aborted and the backend's error raised
    (PreconditionFailed when the source changed meanwhile).
    """
    created = subrequest.request(app, parent, "POST", bucket, key, "uploads", headers=headers)
    if not created.ok:
        raise subrequest.failure(created.status, created.body)
    upload_id = xml.child_text(xml.parse(created.body, max_size=subrequest.MAX_SUBRESPONSE),
                               "UploadId") or ""
    try:
        etags = []
        for (start, stop), number in zip(ranges, numbers, strict=True):
            part = subrequest.request(
                app, parent, "PUT", bucket, key, upload_query(upload_id, number),
                headers={"x-amz-copy-source": source,
                         "x-amz-copy-source-range": f"bytes={start}-{stop - 1}",
                         "x-amz-copy-source-if-match": source_etag})
            if not part.ok:
                raise subrequest.failure(part.status, part.body)
            etag = xml.child_text(xml.parse(part.body, max_size=subrequest.MAX_SUBRESPONSE),
                                  "ETag") or ""
            etags.append((number, etag))
        if before_complete is not None:
            before_complete()
        done = complete_upload(app, parent, bucket, key, upload_id, etags, complete_headers)
    except BaseException:
        subrequest.request(app, parent, "DELETE", bucket, key, upload_query(upload_id))
        raise
    return done
