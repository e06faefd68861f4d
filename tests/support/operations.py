"""Helpers for the operations tests: metrics scraping, slow uploads, TLS material."""
from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from support.raw_s3 import Signed

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(endpoint: str, **kwargs: Any) -> Samples:
    """``/_encproxy/metrics`` parsed: sample name -> [(labels, value)]."""
    resp = requests.get(endpoint + "/_encproxy/metrics", timeout=10, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for got, v in samples.get(name, [])
               if all(got.get(k) == want for k, want in labels.items()))


class SlowUpload:
    """A PUT whose body is sent in two halves, on a raw socket, when the test says so."""

    def __init__(self, endpoint: str, port: int, path: str, body: bytes,
                 headers: dict[str, str] | None = None, access_key: str | None = None,
                 secret: str | None = None) -> None:
        extra = {"access_key": access_key, "secret": secret} if access_key else {}
        signed = Signed("PUT", endpoint + path, {"content-length": str(len(body)),
                                                 **(headers or {})},
                        "UNSIGNED-PAYLOAD", **extra)  # type: ignore[arg-type]
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> tuple[int, bytes]:
        """Send the rest; the status and the raw response."""
        self.sock.sendall(self.body[len(self.body) // 2:])
        data = b""
        while b"\r\n\r\n" not in data:
            piece = self.sock.recv(65536)
            if not piece:
                break
            data += piece
        self.sock.close()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        return status, data


def self_signed(directory: Path, names: Iterable[str] = ("localhost",),
                addresses: Iterable[str] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """A self-signed server certificate and its key (PEM files): (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "encproxy test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(n) for n in names] + \
        [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path
