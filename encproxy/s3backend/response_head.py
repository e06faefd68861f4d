"""A backend response's head, read without the email package.

``http.client`` reads a response's header fields with ``email.parser``, a general
MIME parser: about 37 µs for the ten fields of a backend GET, paid on every backend
request (a PUT through an S3 backend makes two).  :func:`read_fields` builds the same
:class:`http.client.HTTPMessage` from the lines directly, in about 5 µs; a head the
fast reading is not sure of (a folded continuation line, a line that is not
``name: value``, a CR inside a line) goes to the email package as before, so that
what a backend sends is read exactly as ``http.client`` reads it.

:class:`BackendHTTPResponse` is ``http.client``'s response with that reading; the
backend client's connections make theirs of this class (``response_class``).  Its
``begin`` is ``http.client.HTTPResponse.begin`` with the one call replaced.
"""
from __future__ import annotations

import email.parser
import http.client
import re
from typing import Any

import urllib3.connection

# http.client's own limits (its _MAXLINE and _MAXHEADERS).
MAX_LINE = 65536
MAX_FIELDS = 100

# A line the email package reads as one field, and what it keeps of it: a name of
# printable ASCII without ":", then ":", then the value without its leading blanks and
# its line end (policy compat32's header_source_parse).  No CR inside: the email package
# would break the line there.
_FIELD = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n?\Z")
_END = (b"\r\n", b"\n", b"")


def read_lines(fp: Any) -> list[bytes]:
    """The lines of one head's fields from ``fp``, the empty line that ends them included,
    under http.client's limits (which count that line)."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_FIELDS:
            raise http.client.HTTPException(f"got more than {MAX_FIELDS} headers")
        if line in _END:
            return lines


def read_fields(fp: Any) -> http.client.HTTPMessage:
    """The header fields of a response head from ``fp``, as
    ``http.client.parse_headers(fp)`` reads them."""
    lines = read_lines(fp)
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        field = _FIELD.match(line.decode("iso-8859-1"))
        if field is None or line.startswith(b"From "):
            return _by_email_parser(lines)
        message.set_raw(field[1], field[2])
    return message


def _by_email_parser(lines: list[bytes]) -> http.client.HTTPMessage:
    """The fields as ``http.client.parse_headers`` reads them: with the email package."""
    text = b"".join(lines).decode("iso-8859-1")
    parsed = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    assert isinstance(parsed, http.client.HTTPMessage)
    return parsed


class BackendHTTPResponse(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` whose header fields are read by :func:`read_fields`."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_lines(self.fp)       # an interim 100's fields: dropped, as http.client does
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = read_fields(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer_encoding and transfer_encoding.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) \
                or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class BackendConnection(urllib3.connection.HTTPConnection):
    response_class = BackendHTTPResponse


class BackendTLSConnection(urllib3.connection.HTTPSConnection):
    response_class = BackendHTTPResponse


__all__ = ["BackendConnection", "BackendHTTPResponse", "BackendTLSConnection", "read_fields"]
