"""A plain body sent on to the backend with its client's trailing checksum.

A client that streams ``aws-chunked`` with its checksum in the trailer
(``x-amz-trailer``; the AWS SDKs over HTTPS, minio-go) has that checksum verified
by the authentication layer when the body ends.  The backend must get it the same
way, after the body: a header must precede the body, whose checksum is not known yet.
With ``[backend] trailing_checksums`` the body is re-framed as
``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (:class:`forwarding.TrailerFraming`), and the
trailer carries the value the authentication layer verified (``BODY_CHECKSUMS``),
never one computed here: if there is none, the upload fails before its last chunk,
and the backend discards it.  Without the option the checksum stays encproxy's
(echoed to the client) and the backend keeps its own default, if any: no checksum,
never a wrong one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from encproxy import errors, sigv4
from encproxy.io_sizes import PIECE
from encproxy.s3backend.client import BodySource, Readable
from encproxy.s3backend.forwarding import TrailerFraming


class TrailedBody(BodySource):
    """``length`` bytes of ``source`` framed as ``aws-chunked`` with the trailer
    ``x-amz-checksum-<algorithm>``, whose value ``verified()`` returns once the source
    has ended (None: the upload fails; the trailer is never sent)."""

    payload_hash = sigv4.STREAMING_UNSIGNED_TRAILER

    def __init__(self, source: Readable, length: int, algorithm: str,
                 verified: Callable[[], str | None], piece: int = PIECE) -> None:
        self.framing = TrailerFraming(algorithm, length, piece)
        self.verified = verified
        super().__init__(source, self.framing.encoded_length(), piece)

    def headers(self) -> dict[str, str]:
        return self.framing.headers()

    def __iter__(self) -> Iterator[bytes]:
        if self.sent:
            raise RuntimeError("a trailed body is sent once")
        read = self.source.read
        try:
            for size in self.framing.chunk_sizes():
                header = self.framing.chunk_header(size)
                pieces, left = [header], size
                while left > 0:   # exact chunk sizes: the length was counted from them
                    data = read(left)
                    if not data:
                        raise errors.IncompleteBody()
                    data = data[:left]
                    pieces.append(data)
                    left -= len(data)
                pieces.append(b"\r\n")
                chunk = b"".join(pieces)
                self.sent += len(chunk)
                yield chunk
            value = self.verified()
            if value is None:
                raise errors.InternalError(
                    "The body's trailing checksum was not verified; it is not forwarded.")
            try:
                end = self.framing.trailer(value)
            except ValueError:
                raise errors.InternalError(
                    "The body's trailing checksum is malformed; it is not forwarded.") from None
            self.sent += len(end)
            yield end
        except BaseException as exc:
            if self.error is None and not isinstance(exc, GeneratorExit):
                self.error = exc
            raise
