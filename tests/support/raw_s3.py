"""A small, independent SigV4 client for requests boto3 will not make.

It exists so that the tests can send what real clients send but boto3 does
not over plain HTTP (the three aws-chunked framings, tampered signatures),
and it is written from the AWS documentation, separately from encproxy's own
signer, so that the two check each other.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import zlib
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import requests

from support.server import ACCESS_KEY, SECRET_KEY

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str) -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    for part in (REGION, "s3", "aws4_request"):
        k = _hmac(k, part)
    return k


class Signed:
    """Headers for one request plus what chunk signatures chain from."""

    def __init__(self, method: str, url: str, headers: dict[str, str], payload_hash: str,
                 access_key: str = ACCESS_KEY, secret: str = SECRET_KEY,
                 now: datetime | None = None) -> None:
        now = now or datetime.now(timezone.utc)
        self.amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        self.date = now.strftime("%Y%m%d")
        self.scope = f"{self.date}/{REGION}/s3/aws4_request"
        self.key = signing_key(secret, self.date)
        parts = urlsplit(url)
        self.headers = {**headers, "host": parts.netloc, "x-amz-date": self.amz_date,
                        "x-amz-content-sha256": payload_hash}
        names = sorted(h.lower() for h in self.headers)
        lowered = {k.lower(): str(v).strip() for k, v in self.headers.items()}
        # Sorted by encoded name, then value (not as joined strings: "a-b=" < "a=").
        query = "&".join(f"{k}={v}" for k, v in sorted(
            (quote(k, safe='-_.~'), quote(v, safe='-_.~'))
            for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)))
        canonical = "\n".join([
            method, quote(requests.utils.unquote(parts.path), safe="/-_.~"), query,
            "".join(f"{n}:{lowered[n]}\n" for n in names), ";".join(names), payload_hash])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        self.signature = hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()
        self.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{self.scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={self.signature}")

    def chunk_signature(self, previous: str, data: bytes) -> str:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, previous,
                             EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()

    def trailer_signature(self, previous: str, trailer: bytes) -> str:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous,
                             hashlib.sha256(trailer).hexdigest()])
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] + [b""]


def put_aws_chunked(url: str, data: bytes, form: str, chunk: int = 64 * 1024,
                    tamper: str | None = None) -> requests.Response:
    """PUT ``data`` framed as aws-chunked in one of the three forms.

    ``form`` is the x-amz-content-sha256 value.  ``tamper`` breaks one thing on
    purpose: "data" (a body byte), "chunk-sig", "trailer-sig", "checksum".
    """
    signed_chunks = form.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    trailer = form.endswith("TRAILER")
    headers = {"content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data))}
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    checksum = crc32_b64(data if tamper != "checksum" else data + b"!")
    trailer_line = f"x-amz-checksum-crc32:{checksum}".encode()

    def frame(signed: Signed | None) -> bytes:
        body = bytearray()
        previous = signed.signature if signed else ""
        for i, piece in enumerate(chunks_of(data, chunk)):
            sent = piece
            if tamper == "data" and i == 0 and piece:
                sent = bytes([piece[0] ^ 1]) + piece[1:]
            body += f"{len(piece):x}".encode()
            if signed_chunks:
                sig = signed.chunk_signature(previous, piece) if signed else "0" * 64
                previous = sig
                if tamper == "chunk-sig" and i == 0:
                    sig = ("0" if sig[0] != "0" else "1") + sig[1:]
                body += f";chunk-signature={sig}".encode()
            body += b"\r\n"
            if piece or not trailer:
                body += sent + b"\r\n"
        if trailer:
            body += trailer_line + b"\r\n"
            if signed_chunks:
                tsig = signed.trailer_signature(previous, trailer_line + b"\n") if signed \
                    else "0" * 64
                if tamper == "trailer-sig":
                    tsig = ("0" if tsig[0] != "0" else "1") + tsig[1:]
                body += f"x-amz-trailer-signature:{tsig}".encode() + b"\r\n"
            body += b"\r\n"
        return bytes(body)

    # Content-Length is signed, so frame once with placeholder signatures to learn it.
    headers["content-length"] = str(len(frame(None)))
    signed = Signed("PUT", url, headers, form)
    body = frame(signed)
    assert len(body) == int(headers["content-length"])
    return requests.put(url, data=body, headers=signed.headers, timeout=30)


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response with a Content-Length: headers, then that many bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body
