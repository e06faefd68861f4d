"""Errors answered before a request body is read, on a kept-alive connection (the real
server, encproxy.worker): the body is drained and the connection kept when it is small,
and otherwise the answer says Connection: close and the server closes cleanly."""
from __future__ import annotations

import socket

import pytest
from support.raw_s3 import Signed

KiB = 1024


def request_bytes(method: str, endpoint: str, path: str, body: bytes,
                  headers: dict[str, str] | None = None, tamper: bool = False,
                  length: int | None = None) -> bytes:
    signed = Signed(method, endpoint + path,
                    {"content-length": str(len(body) if length is None else length),
                     **(headers or {})}, "UNSIGNED-PAYLOAD")
    wire = dict(signed.headers)
    if tamper:  # a signature that cannot match: SignatureDoesNotMatch before the body
        auth = wire["Authorization"]
        wire["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in wire.items()) + "\r\n").encode() + body


def read_one(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One response: status line, headers (lower-case names), body (Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower().decode(): v.strip().decode()
               for k, _, v in (line.partition(b":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece
        body += piece
    # Nothing after it: a pipelined request must not have been answered in the same breath
    # (each test reads one response per request it expects answered).
    assert len(body) == length, body[length:length + 100]
    return lines[0], headers, body


def closed_cleanly(sock: socket.socket) -> bool:
    """The server ends the connection with a FIN (not a reset) and sends nothing more."""
    sock.settimeout(10)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return False


def health(endpoint: str) -> bytes:
    host = endpoint.split("//", 1)[1]
    return f"GET /_encproxy/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@pytest.mark.parametrize("size", [100 * KiB, 64 * KiB])
def test_refused_large_body_says_close_and_closes(server, bucket, size):
    body = b"x" * size
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("PUT", server.endpoint, f"/{bucket}/k", body, tamper=True)
                     + health(server.endpoint))
        status, headers, xml = read_one(sock)
        assert status.split()[1] == b"403"
        assert b"<Code>SignatureDoesNotMatch</Code>" in xml
        assert headers["connection"] == "close"
        # The pipelined health request is not answered: the client knows to reconnect.
        assert closed_cleanly(sock)


def test_refused_small_body_is_drained_and_the_next_request_answered(server, bucket):
    body = b"x" * (60 * KiB)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("PUT", server.endpoint, f"/{bucket}/k", body, tamper=True))
        status, headers, _ = read_one(sock)
        assert status.split()[1] == b"403"
        assert headers["connection"] == "keep-alive"
        sock.sendall(health(server.endpoint))
        status, headers, answer = read_one(sock)
        assert status.split()[1] == b"200" and b'"ok"' in answer
        # And a signed request after it, on the same connection.
        sock.sendall(request_bytes("PUT", server.endpoint, f"/{bucket}/after", b"hello"))
        status, _, _ = read_one(sock)
        assert status.split()[1] == b"200"


def test_entity_too_large_says_close(server, bucket):
    # Over S3's 5 GiB: refused from the headers; only 100 KiB of the body is ever sent.
    wire = request_bytes("PUT", server.endpoint, f"/{bucket}/big", b"",
                         length=5 * 1024**3 + 1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(wire + b"y" * (100 * KiB))
        status, headers, xml = read_one(sock)
        assert status.split()[1] == b"400"
        assert b"<Code>EntityTooLarge</Code>" in xml
        assert headers["connection"] == "close"
        assert closed_cleanly(sock)


def test_gunicorn_parse_errors_are_s3_xml(server):
    cases = [
        (b"NOT A REQUEST\r\n\r\n", b"400 Bad Request", b"InvalidRequest"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400 Bad Request",
         b"InvalidURI"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n",
         b"400 Bad Request", b"InvalidRequest"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", b"400 Bad Request",
         b"InvalidRequest"),
    ]
    for wire, status, code in cases:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(wire)
            line, headers, xml = read_one(sock)
            assert line == b"HTTP/1.1 " + status, (wire[:40], line)
            assert headers["content-type"] == "application/xml"
            assert headers["connection"] == "close"
            assert xml.startswith(b"<?xml") and b"<Code>" + code + b"</Code>" in xml, xml
            assert b"<RequestId>" in xml and headers["x-amz-request-id"]
            assert closed_cleanly(sock)


# -- Expect: 100-continue -------------------------------------------------------------------

def expecting(method: str, endpoint: str, path: str, body: bytes, tamper: bool) -> bytes:
    """The head alone, with Expect: 100-continue (the body follows only when told)."""
    head = request_bytes(method, endpoint, path, body, {"expect": "100-continue"}, tamper)
    return head[:len(head) - len(body)] if body else head


def test_100_continue_comes_only_after_authentication(server, bucket):
    """S3 answers Expect: 100-continue only for a request it accepts; a refused one gets
    its error and no 100 (gunicorn itself sent 100 before anything was checked)."""
    body = b"y" * 1000
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(expecting("PUT", server.endpoint, f"/{bucket}/refused", body, True))
        status, headers, xml = read_one(sock)
        assert status.split()[1] == b"403", status
        assert b"<Code>SignatureDoesNotMatch</Code>" in xml
        assert headers["connection"] == "close"   # whether the body comes is the client's
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(expecting("PUT", server.endpoint, f"/{bucket}/accepted", body, False))
        status, _, _ = read_one(sock)
        assert status.split()[1] == b"100", status
        sock.sendall(body)
        status, headers, _ = read_one(sock)
        assert status.split()[1] == b"200", status
        sock.sendall(request_bytes("GET", server.endpoint, f"/{bucket}/accepted", b""))
        status, _, got = read_one(sock)
        assert status.split()[1] == b"200" and got == body
