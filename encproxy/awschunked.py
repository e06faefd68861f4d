"""Streaming decoder of S3 ``aws-chunked`` request bodies.  Pure: I/O is a ``read(n)`` callable.

Wire format (``Content-Encoding: aws-chunked``), one of three flavours chosen
by ``x-amz-content-sha256``::

    STREAMING-AWS4-HMAC-SHA256-PAYLOAD           hex;chunk-signature=SIG CRLF data CRLF ...
                                                 0;chunk-signature=SIG CRLF CRLF
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER   ... 0;chunk-signature=SIG CRLF
                                                 x-amz-checksum-crc32c:VALUE CRLF
                                                 x-amz-trailer-signature:SIG CRLF CRLF
    STREAMING-UNSIGNED-PAYLOAD-TRAILER           hex CRLF data CRLF ... 0 CRLF
                                                 x-amz-checksum-crc32:VALUE CRLF CRLF

Each chunk signature chains on the previous one, starting from the seed
signature of the request (``encproxy.sigv4.VerifiedRequest``), so chunks
cannot be dropped, reordered or replayed; the trailer signature chains on the
final (empty) chunk's.  The trailing checksum is computed here over the
decoded bytes and compared with the trailer.

Why it is shaped this way:

* memory is bounded by one raw read (``io_size``) plus one header line,
  whatever the chunk sizes: chunk data is handed out as it arrives and the
  chunk's signature is checked when its last byte has been read.  A hostile
  size (more than 16 hex digits, more than :data:`MAX_CHUNK_SIZE`, or more
  than ``x-amz-decoded-content-length`` allows) is refused before any of its
  data is read, and header and trailer lines have hard length caps;
* :meth:`AwsChunkedDecoder.read` returns ``b""`` only once the whole framing,
  every signature, the trailer checksum and the decoded length have been
  verified, so a consumer that holds back its last bytes until it sees EOF
  (``encproxy.wsgi.auth.body.VerifiedBody``) never releases a complete bad body.

Errors: truncation is ``IncompleteBody`` (S3: "The request body terminated
unexpectedly"), broken framing and bad trailers ``InvalidRequest``, a bad
chunk or trailer signature ``SignatureDoesNotMatch``, a wrong trailing
checksum ``BadDigest``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Protocol

from encproxy import checksums, errors, sigv4

MAX_CHUNK_SIZE = 5 * 1024 ** 3   # the largest single PUT or part S3 accepts
MAX_HEX_DIGITS = 16
MAX_HEADER_LINE = 256            # "hex;chunk-signature=<64 hex>" is under 100 bytes
MAX_TRAILER_LINE = 1024
MAX_TRAILER_LINES = 8
DEFAULT_IO_SIZE = 1024 * 1024

_SIGNED_HEADER_RE = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})\Z")
_UNSIGNED_HEADER_RE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;[\x20-\x7e]*)?\Z")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}\Z")


class ChunkSigning(Protocol):
    """What chunk signatures chain on; :class:`encproxy.sigv4.VerifiedRequest` provides it."""

    @property
    def signing_key(self) -> bytes: ...
    @property
    def timestamp(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def seed_signature(self) -> str: ...


def truncated() -> errors.S3Error:
    return errors.IncompleteBody("The request body terminated unexpectedly")


def malformed(detail: str) -> errors.S3Error:
    return errors.InvalidRequest(f"The aws-chunked request body is malformed: {detail}")


class AwsChunkedDecoder:
    """Decode one ``aws-chunked`` body from ``read``; see the module docstring.

    ``payload`` is the ``x-amz-content-sha256`` literal; ``signing`` is
    required for the two signed flavours.  ``decoded_length`` is
    ``x-amz-decoded-content-length`` (None: unchecked).  ``trailer`` is the
    checksum algorithm announced by ``x-amz-trailer`` (None: no trailer may
    be sent).
    """

    def __init__(self, read: Callable[[int], bytes], payload: str, *,
                 signing: ChunkSigning | None = None, decoded_length: int | None = None,
                 trailer: str | None = None, io_size: int = DEFAULT_IO_SIZE,
                 max_chunk_size: int = MAX_CHUNK_SIZE) -> None:
        if payload not in sigv4.STREAMING_PAYLOADS:
            raise ValueError(f"not an aws-chunked payload: {payload!r}")
        self._signed = payload != sigv4.STREAMING_UNSIGNED_TRAILER
        self._with_trailer = payload != sigv4.STREAMING_SIGNED
        if self._signed and signing is None:
            raise ValueError("signed aws-chunked payloads need the request's signing context")
        if trailer is not None and not self._with_trailer:
            raise malformed(f"{payload} carries no trailer, but x-amz-trailer announces one")
        self._read = read
        self._signing = signing
        self._previous = signing.seed_signature if signing is not None else ""
        self._decoded_length = decoded_length
        self._trailer_algorithm = trailer
        self._trailer_hasher = checksums.new_hasher(trailer) if trailer else None
        self._io_size = io_size
        self._max_chunk_size = max_chunk_size

        self._piece = b""        # current raw bytes; unconsumed from _pos
        self._pos = 0
        self._eof = False
        self._chunk_left = 0     # data bytes left in the current chunk
        self._chunk_hash: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._in_chunk = False
        self._done = False
        self._error: errors.S3Error | None = None
        self.decoded = 0
        self.trailers: dict[str, str] = {}
        self.checksum: checksums.ChecksumClaim | None = None

    # -- raw input --------------------------------------------------------------------

    def _available(self) -> int:
        return len(self._piece) - self._pos

    def _more(self) -> bool:
        """Append the next raw read to what is unconsumed; False at end of input."""
        if self._eof:
            return False
        data = self._read(self._io_size)
        if not data:
            self._eof = True
            return False
        tail = self._piece[self._pos:]
        self._piece = tail + data if tail else bytes(data)
        self._pos = 0
        return True

    def _line(self, limit: int, lf_ok: bool = False) -> bytes | None:
        """The next line without its terminator; None at a clean end of input.

        Lines end in CRLF; ``lf_ok`` also accepts a bare LF (some SDKs end
        trailer lines that way).  A line longer than ``limit`` is refused
        without buffering it.
        """
        while True:
            end = self._piece.find(b"\n", self._pos, self._pos + limit + 2)
            if end >= 0:
                line = self._piece[self._pos:end]
                self._pos = end + 1
                if line.endswith(b"\r"):
                    return line[:-1]
                if lf_ok:
                    return line
                raise malformed("a line does not end in CRLF")
            if self._available() > limit + 1:
                raise malformed("a chunk header or trailer line is too long")
            if not self._more():
                if self._available():
                    raise truncated()
                return None

    def _expect_crlf(self) -> None:
        while self._available() < 2:
            if not self._more():
                raise truncated()
        if self._piece[self._pos:self._pos + 2] != b"\r\n":
            raise malformed("chunk data is not followed by CRLF")
        self._pos += 2

    # -- decoding ---------------------------------------------------------------------

    def read(self) -> bytes:
        """The next piece of decoded data; ``b""`` once the whole body has verified."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except errors.S3Error as err:
            self._error = err
            raise

    def _next(self) -> bytes:
        while not self._done:
            if self._in_chunk:
                if self._chunk_left:
                    return self._data()
                self._expect_crlf()
                self._end_chunk()
            else:
                self._start_chunk()
        return b""

    def _start_chunk(self) -> None:
        line = self._line(MAX_HEADER_LINE)
        if line is None:
            raise truncated()
        match = (_SIGNED_HEADER_RE if self._signed else _UNSIGNED_HEADER_RE).match(line)
        if match is None:
            raise malformed("invalid chunk header")
        size = int(match.group(1), 16)
        if size > self._max_chunk_size:
            raise malformed("chunk size exceeds the maximum")
        if self._decoded_length is not None and self.decoded + size > self._decoded_length:
            raise malformed("the chunks carry more data than x-amz-decoded-content-length")
        if self._signed:
            self._chunk_signature = match.group(2).decode("ascii")
            self._chunk_hash = hashlib.sha256()
        if size == 0:
            self._verify_chunk_signature(hashlib.sha256())
            self._finish()
            return
        self._chunk_left = size
        self._in_chunk = True

    def _data(self) -> bytes:
        if not self._available() and not self._more():
            raise truncated()
        take = min(self._chunk_left, self._available())
        data = self._piece[self._pos:self._pos + take]
        self._pos += take
        self._chunk_left -= take
        self.decoded += take
        if self._chunk_hash is not None:
            self._chunk_hash.update(data)
        if self._trailer_hasher is not None:
            self._trailer_hasher.update(data)
        return data

    def _end_chunk(self) -> None:
        self._in_chunk = False
        if self._chunk_hash is not None:
            self._verify_chunk_signature(self._chunk_hash)
            self._chunk_hash = None

    def _verify_chunk_signature(self, chunk_hash: hashlib._Hash) -> None:
        if not self._signed:
            return
        assert self._signing is not None
        expected = sigv4.signature(self._signing.signing_key, sigv4.chunk_string_to_sign(
            self._signing.timestamp, self._signing.scope, self._previous,
            chunk_hash.hexdigest()))
        if not sigv4.signatures_equal(expected, self._chunk_signature):
            raise errors.SignatureDoesNotMatch()
        self._previous = expected

    # -- the end: trailers and final checks -------------------------------------------

    def _finish(self) -> None:
        if self._decoded_length is not None and self.decoded != self._decoded_length:
            raise errors.IncompleteBody(
                "The decoded body is shorter than x-amz-decoded-content-length.")
        lines = self._trailer_lines()
        signature = self._parse_trailers(lines)
        if self._signed and self._with_trailer:
            self._verify_trailer_signature(lines, signature)
        self._check_trailer_checksum()
        if self._available() or self._more():
            raise malformed("data follows the final chunk")
        self._done = True

    def _trailer_lines(self) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        while True:
            raw = self._line(MAX_TRAILER_LINE, lf_ok=True)
            if raw is None:
                # Some SDKs omit the blank line that ends the trailer section.
                if self._with_trailer and lines:
                    return lines
                raise truncated()
            if not raw:
                if lines and lines[-1][0] != _TRAILER_SIGNATURE and self._signed \
                        and self._with_trailer:
                    continue  # tolerate "name:value\n\r\n" before the signature line
                # minio-go ends an unsigned trailer "name:value\n\r\n\r\n": one more blank
                # line may follow the one that ends the section, and nothing else.
                if lines and self._with_trailer and not self._signed \
                        and self._line(MAX_TRAILER_LINE, lf_ok=True) not in (None, b""):
                    raise malformed("data follows the final chunk")
                return lines
            if not self._with_trailer:
                raise malformed("trailing headers after the final chunk")
            if len(lines) >= MAX_TRAILER_LINES:
                raise malformed("too many trailing headers")
            name, colon, value = raw.partition(b":")
            if not colon:
                raise malformed("a trailing header has no colon")
            try:
                lines.append((name.strip().decode("ascii").lower(),
                              value.strip().decode("ascii")))
            except UnicodeDecodeError:
                raise malformed("a trailing header is not ASCII") from None

    def _parse_trailers(self, lines: list[tuple[str, str]]) -> str | None:
        signature: str | None = None
        for index, (name, value) in enumerate(lines):
            if name == _TRAILER_SIGNATURE:
                if not (self._signed and index == len(lines) - 1):
                    raise malformed("unexpected x-amz-trailer-signature")
                signature = value
                continue
            if name in self.trailers:
                raise malformed(f"trailing header {name} is repeated")
            expected = (checksums.CHECKSUM_HEADER_PREFIX + self._trailer_algorithm
                        if self._trailer_algorithm else None)
            if name != expected:
                raise errors.InvalidRequest(
                    f"The trailing header {name} was not announced by x-amz-trailer.")
            self.trailers[name] = value
        return signature

    def _verify_trailer_signature(self, lines: list[tuple[str, str]],
                                  signature: str | None) -> None:
        assert self._signing is not None
        if signature is None or not _SIGNATURE_RE.match(signature):
            raise errors.SignatureDoesNotMatch()
        canonical = "".join(f"{name}:{value}\n" for name, value in lines
                            if name != _TRAILER_SIGNATURE)
        expected = sigv4.signature(self._signing.signing_key, sigv4.trailer_string_to_sign(
            self._signing.timestamp, self._signing.scope, self._previous,
            hashlib.sha256(canonical.encode("ascii")).hexdigest()))
        if not sigv4.signatures_equal(expected, signature):
            raise errors.SignatureDoesNotMatch()

    def _check_trailer_checksum(self) -> None:
        if self._trailer_algorithm is None:
            return
        header = checksums.CHECKSUM_HEADER_PREFIX + self._trailer_algorithm
        if header not in self.trailers:
            raise errors.InvalidRequest(
                f"x-amz-trailer announced {header}, but the body carries no such trailer.")
        claim = checksums.parse_checksum_value(self._trailer_algorithm, self.trailers[header])
        assert self._trailer_hasher is not None
        checksums.check_checksum(claim, self._trailer_hasher.digest())
        self.checksum = claim
