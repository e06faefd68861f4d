"""The request body as the inner app must see it: decoded, and verified before it ends.

:class:`VerifiedBody` is the file-like object the authentication middleware
installs as ``wsgi.input``.  It reads the raw input in large pieces (gunicorn's
``wsgi.input`` is expensive per call), removes ``aws-chunked`` framing, and
checks every claim the client made about the body: the signed
``x-amz-content-sha256``, chunk and trailer signatures, ``Content-MD5``, and
one ``x-amz-checksum-*`` (header or trailer).

The property everything here serves: **a bad body never reaches its end.**
``read`` holds back at least one byte until the input is exhausted and all
checks have passed, so the read that would deliver the final bytes raises the
verification error instead.  A consumer streaming into a backend with a
fixed ``Content-Length`` therefore can never complete a PUT of bytes the
client did not send (the same rule as for decrypted data: nothing
unauthenticated is ever presented as whole).

Memory stays bounded: at most one raw piece plus the size of the largest
``read(n)`` asked for (and ``n`` is served in full only up to
``max_read``; larger requests get short reads, which file-like semantics
allow).  ``read()`` / ``read(-1)`` is the exception, by the caller's choice.

This module does not import werkzeug: it is WSGI-shaped only in that it
wraps a ``read(n)`` callable.
"""
from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from encproxy import checksums, errors, sigv4
from encproxy.awschunked import AwsChunkedDecoder, ChunkSigning

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

IO_SIZE = 1024 * 1024
MAX_READ = 16 * 1024 * 1024

Read = Callable[[int], bytes]


# -- what the headers promise ---------------------------------------------------------

_LENGTH_RE = re.compile(r"[0-9]{1,19}\Z")


def _parse_length(value: str, header: str) -> int:
    value = value.strip()
    if not _LENGTH_RE.match(value):
        raise errors.InvalidArgument(f"Invalid {header} header.", ArgumentName=header,
                                     ArgumentValue=value[:64])
    return int(value)


@dataclass(frozen=True)
class BodySpec:
    """The claims a request's headers make about its body, validated before it is read.

    ``content_length`` is the raw length (None: until end of input, HTTP
    chunked transfer-encoding); ``decoded_length`` is the length the inner
    app will read, which differs from it only for ``aws-chunked``.
    """

    content_length: int | None
    payload_hash: str
    decoded_length: int | None
    content_md5: bytes | None = None
    checksum: checksums.ChecksumClaim | None = None
    trailer: str | None = None

    @property
    def aws_chunked(self) -> bool:
        return self.payload_hash in sigv4.STREAMING_PAYLOADS

    @property
    def signed_chunks(self) -> bool:
        return self.payload_hash in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)

    @property
    def has_body(self) -> bool:
        return self.aws_chunked or self.content_length is None or self.content_length > 0

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], payload_hash: str, *,
                     method: str = "PUT", chunked_transfer: bool = False) -> BodySpec:
        """Read the body claims from ``headers`` (lower-case names), S3's rules and errors.

        ``payload_hash`` is the verified ``x-amz-content-sha256`` claim
        (:attr:`encproxy.sigv4.VerifiedRequest.payload_hash`).
        ``chunked_transfer`` says the body arrives with HTTP chunked
        transfer-encoding, which is how a body without Content-Length comes.
        """
        content_length = (_parse_length(headers["content-length"], "Content-Length")
                          if "content-length" in headers else None)
        if content_length is None and not chunked_transfer:
            content_length = 0
        streaming = payload_hash in sigv4.STREAMING_PAYLOADS
        codings = {c.strip().lower() for c in headers.get("content-encoding", "").split(",")}
        if "aws-chunked" in codings and not streaming \
                and payload_hash == sigv4.UNSIGNED_PAYLOAD:
            # AWS refuses this pair.  With a signed payload hash it accepts the body as
            # sent, which is then data (the hash is verified), and keeps "aws-chunked" in
            # the object's Content-Encoding: only a STREAMING-* body is decoded and loses it.
            raise errors.InvalidArgument(
                "aws-chunked encoding is not supported when x-amz-content-sha256 "
                "UNSIGNED-PAYLOAD is supplied", ArgumentName="Content-Encoding",
                ArgumentValue=headers.get("content-encoding", ""))
        decoded_length: int | None = content_length
        if streaming:
            if "x-amz-decoded-content-length" not in headers:
                raise errors.MissingContentLength()
            decoded_length = _parse_length(headers["x-amz-decoded-content-length"],
                                           "x-amz-decoded-content-length")
        elif content_length is None and method.upper() == "PUT":
            # A PUT body in HTTP chunked transfer-encoding that is not aws-chunked: AWS
            # answers 501 NotImplemented naming Transfer-Encoding (its length is unknown
            # until the end, and S3 needs it first; so does encproxy, to size ciphertext).
            raise errors.NotImplementedError_(
                "A header you provided implies functionality that is not implemented",
                Header="Transfer-Encoding")

        content_md5 = (checksums.parse_content_md5(headers["content-md5"])
                       if "content-md5" in headers else None)
        checksum = checksums.parse_checksum_headers(headers)
        trailer = None
        if "x-amz-trailer" in headers:
            if payload_hash not in (sigv4.STREAMING_UNSIGNED_TRAILER,
                                    sigv4.STREAMING_SIGNED_TRAILER):
                raise errors.InvalidRequest(
                    "The x-amz-trailer header requires a STREAMING-...-TRAILER "
                    "x-amz-content-sha256.")
            trailer = checksums.parse_trailer_declaration(headers["x-amz-trailer"])
            if checksum is not None:
                raise errors.InvalidRequest(
                    "Expecting a single x-amz-checksum- header. "
                    "Multiple checksum Types are not allowed.")
        if checksums.SDK_ALGORITHM_HEADER in headers:
            # The SDK says which digest it sent; a missing or different one means the
            # body would go unchecked against what the client meant to claim.
            checksums.check_sdk_algorithm(headers[checksums.SDK_ALGORITHM_HEADER],
                                          checksum.algorithm if checksum else trailer)
        return cls(content_length=content_length, payload_hash=payload_hash,
                   decoded_length=decoded_length, content_md5=content_md5,
                   checksum=checksum, trailer=trailer)


# -- the raw input --------------------------------------------------------------------

class RawInput:
    """``read(n)`` over the server's input, ending exactly at Content-Length.

    Ending early is the client's fault (IncompleteBody); reading past the
    declared length never touches the input.  Failures of the connection
    itself become the S3 errors a client expects: a read timeout (the
    server's socket timeout on a stalled upload) is RequestTimeout, any other
    I/O error (a reset, or the server's own framing errors, which are
    ``OSError`` subclasses in gunicorn) is IncompleteBody.
    """

    def __init__(self, read: Read, length: int | None) -> None:
        self._read = read
        self._left = length

    def read(self, size: int) -> bytes:
        if self._left == 0:
            return b""
        want = size if self._left is None else min(size, self._left)
        try:
            data = self._read(want)
        except TimeoutError:
            raise errors.RequestTimeout() from None
        except OSError:
            raise errors.IncompleteBody() from None
        if self._left is not None:
            if not data:
                raise errors.IncompleteBody()
            self._left -= len(data)
        return data


# -- the verified body ----------------------------------------------------------------

class VerifiedBody(io.RawIOBase):
    """A ``wsgi.input`` replacement that decodes and verifies; see the module docstring.

    ``read`` is the server's input ``read``; ``signing`` (the verified
    request) is needed for signed ``aws-chunked`` bodies.  ``extra_digests``
    names digests to compute anyway (``"md5"`` for an ETag, say), found in
    :attr:`digests` after the end.  ``on_verified`` is called once, after
    every check has passed and before the final bytes are returned, with
    :attr:`checksums`.

    After the end, :attr:`checksums` maps each verified ``x-amz-checksum-*``
    algorithm to its base64 value (for the PUT response), and
    :attr:`digests` holds every raw digest computed.
    """

    def __init__(self, read: Read, spec: BodySpec, *, signing: ChunkSigning | None = None,
                 io_size: int = IO_SIZE, max_read: int = MAX_READ,
                 extra_digests: tuple[str, ...] = (),
                 on_verified: Callable[[dict[str, str]], None] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self._io_size = io_size
        self._max_read = max(max_read, 1)
        self._on_verified = on_verified
        raw = RawInput(read, spec.content_length)
        self._decoder: AwsChunkedDecoder | None = None
        if spec.aws_chunked:
            self._decoder = AwsChunkedDecoder(
                raw.read, spec.payload_hash, signing=signing if spec.signed_chunks else None,
                decoded_length=spec.decoded_length, trailer=spec.trailer, io_size=io_size)
            self._pull: Callable[[], bytes] = self._decoder.read
        else:
            self._pull = lambda: raw.read(self._io_size)
        wanted = set(extra_digests)
        if spec.content_md5 is not None:
            wanted.add("md5")
        if not spec.aws_chunked and spec.payload_hash not in (sigv4.UNSIGNED_PAYLOAD,):
            wanted.add("sha256")
        if spec.checksum is not None:
            wanted.add(spec.checksum.algorithm)
        self._digest_set = checksums.DigestSet(sorted(wanted))

        self._pieces: deque[bytes] = deque()
        self._offset = 0          # consumed bytes of _pieces[0]
        self._buffered = 0        # unconsumed bytes in _pieces
        self._ended = False       # input exhausted and every check passed
        self._error: errors.S3Error | None = None
        self.checksums: dict[str, str] = {}
        self.digests: dict[str, bytes] = {}

    # -- io.RawIOBase -----------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    @property
    def length(self) -> int | None:
        """The number of bytes ``read`` will return in all, if known."""
        return self.spec.decoded_length

    @property
    def verified(self) -> bool:
        return self._ended

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` decoded bytes (all if negative); ``b""`` only after verifying."""
        if self._error is not None:
            raise self._error
        try:
            if size is None or size < 0:
                while not self._ended:
                    self._fill()
                return self._take(self._buffered)
            if size == 0:
                return b""
            size = min(size, self._max_read)
            # Keep at least one byte back until the end has verified.
            while not self._ended and self._buffered <= size:
                self._fill()
            return self._take(min(size, self._buffered))
        except errors.S3Error as err:
            self._error = err
            raise

    # -- internals --------------------------------------------------------------------

    def _fill(self) -> None:
        data = self._pull()
        if not data:
            self._finish()
            return
        self._digest_set.update(data)
        self._pieces.append(data)
        self._buffered += len(data)

    def _take(self, size: int) -> bytes:
        parts: list[bytes] = []
        while size > 0:
            head = self._pieces[0]
            available = len(head) - self._offset
            if available <= size:
                parts.append(head if self._offset == 0 else head[self._offset:])
                self._pieces.popleft()
                self._offset = 0
                taken = available
            else:
                parts.append(head[self._offset:self._offset + size])
                self._offset += size
                taken = size
            size -= taken
            self._buffered -= taken
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _finish(self) -> None:
        """The input is exhausted: check every digest claim, then release the tail."""
        spec = self.spec
        self.digests = self._digest_set.digests()
        if "sha256" in self._digest_set and spec.payload_hash not in sigv4.STREAMING_PAYLOADS \
                and spec.payload_hash != sigv4.UNSIGNED_PAYLOAD:
            computed = self.digests["sha256"].hex()
            if computed != spec.payload_hash:
                raise errors.XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=spec.payload_hash,
                    S3ComputedContentSHA256=computed)
        if spec.content_md5 is not None:
            checksums.check_content_md5(spec.content_md5, self.digests["md5"])
        claim = spec.checksum
        if claim is not None:
            checksums.check_checksum(claim, self.digests[claim.algorithm])
        elif self._decoder is not None:
            claim = self._decoder.checksum
        if claim is not None:
            self.checksums = {claim.algorithm: claim.value}
        self._ended = True
        if self._on_verified is not None:
            self._on_verified(dict(self.checksums))


def verify_empty_body(spec: BodySpec) -> dict[str, str]:
    """Check a body-less request's digest claims against the empty body.

    Returns the verified checksums (for the response), like
    :attr:`VerifiedBody.checksums`.
    """
    body = VerifiedBody(lambda _size: b"", spec)
    body.read()
    return body.checksums
