"""Streams of the encryption layer: ranged reads pinned to one stored body, the
client's body read in pieces, and decrypted bodies sent to the client.

Every read of a stored object after the first request for it is pinned to the
backend ETag that request saw (``If-Match``): an object replaced between two
reads is never mixed with its successor; the client is asked to retry instead.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors, metrics
from encproxy.crypto.stream import copied
from encproxy.format.errors import CiphertextTruncated
from encproxy.io_sizes import PIECE
from encproxy.readahead import read_ahead
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.responses import WSGIApp

# Bodies from this size up are decrypted one batch ahead in a helper thread; below it,
# starting the thread costs more than it saves.
READ_AHEAD_FROM = 2 * 1024 * 1024


def object_changed() -> errors.S3Error:
    """The stored object was replaced between two reads of one request."""
    return errors.ServiceUnavailable("The object changed while it was being read; "
                                     "please retry.")


class Fetcher:
    """Reads of one stored object (a version of it), pinned to its backend ETag."""

    def __init__(self, app: WSGIApp, parent: dict[str, Any] | None, bucket: str, key: str,
                 version_id: str | None, etag: str) -> None:
        self.app, self.parent, self.bucket, self.key = app, parent, bucket, key
        self.version_id = version_id
        self.query = ("versionId=" + subrequest.quote_param(version_id)) if version_id else ""
        self.etag = etag

    def stream(self, start: int | None = None, stop: int | None = None
               ) -> subrequest.StreamingResponse:
        """Bytes ``[start, stop)`` (the whole object without a range), as a stream."""
        headers = {"If-Match": self.etag} if self.etag else {}
        if start is not None and stop is not None:
            if stop <= start:
                raise ValueError("empty range")
            headers["Range"] = f"bytes={start}-{stop - 1}"
        resp = subrequest.stream(self.app, self.parent, "GET", self.bucket, self.key,
                                 self.query, headers)
        if resp.status == 412:
            resp.close()
            raise object_changed()
        if resp.status >= 300:
            resp.close()
            raise subrequest.internal_failure(resp.status)
        return resp

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` (small: headers, a seal, an index)."""
        data = self.stream(start, stop).read_all(limit=stop - start)
        if len(data) != stop - start:
            raise CiphertextTruncated()
        return data


def read_exactly(body: Any, length: int) -> Iterator[bytes]:
    """The client's body, ``length`` bytes in pieces; IncompleteBody if it ends early."""
    left = length
    while left > 0:
        piece = body.read(min(PIECE, left))
        if not piece:
            raise errors.IncompleteBody()
        left -= len(piece)
        yield piece
    if length == 0 and body.read(1):
        # Read even an empty body to its end: a verifying body checks its claims there
        # (auth.body.VerifiedBody: an aws-chunked trailer's checksum, which an SDK sends
        # over HTTPS even for 0 bytes); a longer one than declared breaks its contract.
        raise errors.InternalError("The request body returned more bytes than asked for.")


def close_iterator(pieces: Iterator[Any]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


def decrypted_response(batches: Iterator[memoryview], stream: subrequest.StreamingResponse,
                       status: int, headers: list[tuple[str, str]], bucket: str, key: str,
                       length: int) -> Response:
    """The client's response streaming ``batches`` of plaintext (``length`` bytes) that
    are decrypted from ``stream``, which is closed when the response ends.

    The first batch is decrypted before the response starts, so that a fault found
    that early is an S3 error rather than an aborted connection.
    """
    pieces: Iterator[bytes] = copied(metrics.count_decrypted(batches))
    if length >= READ_AHEAD_FROM:
        pieces = read_ahead(pieces)  # decrypt the next batch while this one is sent
    try:
        with integrity.reported(bucket, key):
            head_piece = next(pieces, None)
    except BaseException:
        close_iterator(pieces)
        stream.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            with integrity.reported(bucket, key):  # headers are gone: the server aborts
                if head_piece is not None:
                    yield head_piece
                yield from pieces
        finally:
            close_iterator(pieces)
            stream.close()

    return Response(body(), status=status, headers=headers, direct_passthrough=True)
