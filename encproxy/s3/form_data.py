"""A POST Object request body, ``multipart/form-data``, read as a stream (pure).

S3 requires the file to be the last field of the form ("any fields below it
are ignored"), so everything an upload needs to be authorized arrives before
the file: :class:`FormReader` reads the fields (their total size capped at
:data:`MAX_HEAD`) and the file part's headers, then hands out the file's data
as a stream (:class:`FileData`); the file is never held in memory.

The file's length must be known before its first byte goes anywhere (a
backend needs a Content-Length, the ciphertext length follows from it, and the
policy's ``content-length-range`` is checked before anything is stored).  It
follows from the request's Content-Length: after the file's data comes only
the close delimiter, ``CRLF--boundary--CRLF``, which is what browsers,
urllib3 (requests, boto3), curl, Go, Java and .NET all send.  :class:`FileData`
verifies that prediction as it streams -- no delimiter inside the data, the
exact close delimiter after it -- and raises instead of returning the last
bytes when it does not hold, so that a form with fields after the file (or an
epilogue) is refused (MalformedPOSTRequest) and nothing is stored.

The parser takes a ``read(n)`` callable and does no I/O of its own, like
``encproxy.awschunked``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from encproxy import errors

Read = Callable[[int], bytes]

#: Bytes a form may hold before the file's data (fields and part headers).  AWS's
#: limit is 20 KB; a little more room costs nothing and keeps memory bounded.
MAX_HEAD = 64 * 1024
MAX_BOUNDARY = 70      # RFC 2046
READ_SIZE = 16 * 1024  # while reading the fields
FILE_FIELD = "file"

_CRLF = b"\r\n"
# RFC 2046 bchars: never CR or LF, so a delimiter can only begin at its own CRLF.
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z",
                          re.ASCII)
_HEADER_LINE_RE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*:[ \t]*(.*?)[ \t]*\Z")


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type.

    S3 answers a POST of any other enclosure with 412 PreconditionFailed.
    """
    message = Message()
    try:
        message["content-type"] = content_type
    except ValueError:
        raise errors.MalformedPOSTRequest() from None
    if message.get_content_type() != "multipart/form-data":
        raise errors.PreconditionFailed(
            Condition="Bucket POST must be of the enclosure-type multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY_RE.match(boundary):
        raise errors.MalformedPOSTRequest()
    return boundary.encode("ascii")


@dataclass(frozen=True)
class FilePart:
    """The file field's part: its headers, not its data."""

    filename: str | None
    content_type: str | None


@dataclass(frozen=True)
class FormHead:
    """What a form says before the file's data."""

    #: The fields in the order sent: (name as sent, value).
    fields: tuple[tuple[str, str], ...]
    file: FilePart
    #: The file's length, as predicted from the request's Content-Length.
    file_length: int
    by_name: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Field names are case-insensitive to S3 ("kEy" is the key).
        names: dict[str, str] = {}
        for name, value in self.fields:
            lower = name.lower()
            if lower in names:
                raise errors.InvalidArgument(
                    f"POST requires exactly one value for each field; {name!r} has more.",
                    ArgumentName=name)
            names[lower] = value
        object.__setattr__(self, "by_name", names)

    def get(self, name: str) -> str | None:
        """The value of field ``name`` (any case), or None."""
        return self.by_name.get(name.lower())


def _disposition(value: str) -> tuple[str | None, str | None]:
    """``form-data; name="..."; filename="..."`` as (name, filename)."""
    message = Message()
    message["content-disposition"] = value
    if message.get_content_disposition() != "form-data":
        return None, None
    name = message.get_param("name", header="content-disposition")
    filename = message.get_param("filename", header="content-disposition")
    return (name if isinstance(name, str) else None,
            filename if isinstance(filename, str) else None)


class FormReader:
    """Reads a form's fields, then streams its file (see the module docstring).

    ``read(n)`` returns up to ``n`` bytes of the body, ``b""`` only at its end
    (the caller bounds it by the Content-Length, ``length``).
    """

    def __init__(self, read: Read, boundary: bytes, length: int,
                 max_head: int = MAX_HEAD) -> None:
        self._read = read
        self._length = length
        self._max_head = max_head
        self._delimiter = _CRLF + b"--" + boundary
        self._buffer = bytearray()
        self._consumed = 0   # body bytes taken out of the buffer
        self._received = 0   # body bytes read from the input
        self._eof = False

    # -- buffer -----------------------------------------------------------------------
    def _fill(self) -> bool:
        if self._eof:
            return False
        if self._received >= self._max_head:
            raise errors.MaxPostPreDataLengthExceededError()
        data = self._read(min(READ_SIZE, self._max_head - self._received))
        if not data:
            self._eof = True
            return False
        self._buffer += data
        self._received += len(data)
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._consumed += size
        return data

    def _find(self, needle: bytes, start: int = 0) -> int:
        """Index of ``needle`` in the buffer, reading more until it appears."""
        while True:
            at = self._buffer.find(needle, start)
            if at >= 0:
                return at
            start = max(start, len(self._buffer) - len(needle) + 1)
            if not self._fill():
                raise errors.MalformedPOSTRequest()

    def _need(self, size: int) -> None:
        while len(self._buffer) < size:
            if not self._fill():
                raise errors.MalformedPOSTRequest()

    # -- the form ---------------------------------------------------------------------
    def read_head(self) -> FormHead:
        """The fields before the file, and the file part's headers; the data is next."""
        # The first delimiter may come without its CRLF, at the very start.
        opening = self._delimiter[2:]
        self._need(len(opening))
        if self._buffer.startswith(opening):
            self._take(len(opening))
        else:
            self._take(self._find(self._delimiter) + len(self._delimiter))
        fields: list[tuple[str, str]] = []
        while True:
            self._after_delimiter()
            headers = self._part_headers()
            name, filename = _disposition(headers.get("content-disposition", ""))
            if name is None:
                raise errors.MalformedPOSTRequest()
            if name.lower() == FILE_FIELD:
                return self._file_head(fields, FilePart(filename, headers.get("content-type")))
            end = self._find(self._delimiter)
            raw = self._take(end)
            self._take(len(self._delimiter))
            try:
                fields.append((name, raw.decode("utf-8")))
            except UnicodeDecodeError:
                raise errors.MalformedPOSTRequest() from None

    def _after_delimiter(self) -> None:
        """After a delimiter: ``--`` closes the form (no file came), else padding, CRLF."""
        self._need(2)
        if self._buffer.startswith(b"--"):
            raise errors.IncorrectNumberOfFilesInPostRequest(ArgumentName="file",
                                                             ArgumentValue="0")
        end = self._find(_CRLF)
        if self._take(end).strip(b" \t"):
            raise errors.MalformedPOSTRequest()
        self._take(len(_CRLF))

    def _part_headers(self) -> dict[str, str]:
        """A part's header lines, up to the empty line that ends them (names lower-case)."""
        self._need(2)
        if self._buffer.startswith(_CRLF):   # a part without headers
            self._take(2)
            return {}
        block = self._take(self._find(_CRLF + _CRLF))
        self._take(4)
        headers: dict[str, str] = {}
        for line in block.split(_CRLF):
            if not line:
                continue
            match = _HEADER_LINE_RE.match(line)
            if match is None:
                raise errors.MalformedPOSTRequest()
            headers[match.group(1).decode("ascii").lower()] = match.group(2).decode(
                "utf-8", "replace")
        return headers

    def _file_head(self, fields: list[tuple[str, str]], part: FilePart) -> FormHead:
        closing = self._delimiter + b"--" + _CRLF
        length = self._length - self._consumed - len(closing)
        if length < 0:
            raise errors.MalformedPOSTRequest()
        return FormHead(tuple(fields), part, length)

    def file_data(self, head: FormHead) -> FileData:
        """The file's data, exactly ``head.file_length`` bytes, verified as it streams."""
        return FileData(self._read, bytes(self._buffer), head.file_length, self._delimiter)


class FileData:
    """``read(n)`` over the file's data; raises rather than return its last bytes
    unless the close delimiter, and nothing else, follows them."""

    def __init__(self, read: Read, buffered: bytes, length: int, delimiter: bytes) -> None:
        self._read = read
        self._pending = buffered
        self._left = length
        self._delimiter = delimiter
        self._closing = delimiter + b"--" + _CRLF
        self._tail = b""            # the end of the data returned so far, for the scan
        self._done = False

    def _next(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return self._read(size)

    def read(self, size: int = -1) -> bytes:
        if self._left == 0:
            if not self._done:
                self._finish(b"")
            return b""
        if size == 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._next(want)
        if not data:
            raise errors.IncompleteBody()
        self._left -= len(data)
        window = self._tail + data
        if self._delimiter in window:
            # The file ended before the predicted length: fields (or an epilogue) follow.
            raise errors.MalformedPOSTRequest(
                "The file must be the last field of the form, followed only by the closing "
                "boundary.")
        self._tail = window[-(len(self._delimiter) - 1):]
        if self._left == 0:
            self._finish(window)
        return data

    def _finish(self, window: bytes) -> None:
        """The data is complete: the close delimiter, exactly, must end the body."""
        rest = b""
        while len(rest) < len(self._closing) + 1:
            piece = self._next(len(self._closing) + 1 - len(rest))
            if not piece:
                break
            rest += piece
        if rest != self._closing:
            raise errors.MalformedPOSTRequest(
                "The file must be the last field of the form, followed only by the closing "
                "boundary.")
        self._done = True
