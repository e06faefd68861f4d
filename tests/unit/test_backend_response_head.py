"""encproxy.s3backend.response_head: a backend response's head read as http.client reads
it, without the email package (the backend client's use of it: test_backend_client.py)."""
from __future__ import annotations

import http.client
import io
import random

import pytest

from encproxy.s3backend.response_head import BackendHTTPResponse, read_fields


def stdlib(head: bytes) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(head))


def assert_read_alike(head: bytes) -> None:
    ours, theirs = read_fields(io.BytesIO(head)), stdlib(head)
    assert ours.items() == theirs.items(), head
    # What follows a line that is no field is the message's "body" (urllib3 warns of it).
    assert (ours.get_payload() or "") == (theirs.get_payload() or ""), head
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects], head


@pytest.mark.parametrize("head", [
    b"Content-Length: 4\r\nETag: \"abc\"\r\nx-amz-meta-a: 1\r\n\r\n",
    b"x-amz-meta-a: 1\r\nx-amz-meta-a: 2\r\nSet-Cookie: a\r\nset-cookie: b\r\n\r\n",
    b"Empty:\r\nBlank:   \r\nTabbed:\t\t v \t\r\n\r\n",            # values kept as read
    b"Latin: caf\xe9 \xff\r\n\r\n",
    b"Bare-LF: yes\nOther: too\n\n",
    b"Folded: first\r\n  second line\r\nNext: x\r\n\r\n",          # a continuation line
    b"No colon here\r\nAfter: it\r\n\r\n",
    b": empty name\r\nAfter: it\r\n\r\n",
    b"Spaced name : v\r\n\r\n",
    b"From someone\r\nAfter: it\r\n\r\n",
    b"Inner: a\rb\r\nAfter: it\r\n\r\n",                         # a CR inside a line
    b"Non-ASCII-\xe9: v\r\n\r\n",
    b"Last: without a line end",
    b"\r\n",
    b"",
], ids=lambda head: head[:24].decode("latin-1"))
def test_fields_are_read_as_http_client_reads_them(head):
    assert_read_alike(head)


def test_random_heads_are_read_as_http_client_reads_them():
    pieces = ["Name", "x-amz-meta-k", "From", "From ", ":", ": ", " ", "\t", "\r", "\n",
              "\r\n", "value", "\"q\"", "é", "\xff", "=", ";", "a:b", "-", "\x7f", "\x00"]
    rng = random.Random(18)
    for _ in range(3000):
        lines = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) + "\r\n"
                 for _ in range(rng.randint(1, 5))]
        assert_read_alike("".join(lines).encode("latin-1") + b"\r\n")


def test_limits_are_http_clients():
    most = b"".join(b"F%d: v\r\n" % n for n in range(99)) + b"\r\n"   # the end line counts
    assert len(read_fields(io.BytesIO(most))) == len(stdlib(most)) == 99
    many = b"".join(b"F%d: v\r\n" % n for n in range(100)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_fields(io.BytesIO(many))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        stdlib(many)
    long_line = b"Long: " + b"v" * 65536 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        read_fields(io.BytesIO(long_line))
    with pytest.raises(http.client.LineTooLong):
        stdlib(long_line)


def test_unknown_protocol_is_refused():
    class Sock:
        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(b"HTTP/2.0 200 OK\r\n\r\n")
    response = BackendHTTPResponse(Sock())   # type: ignore[arg-type]
    with pytest.raises(http.client.UnknownProtocol):
        response.begin()
