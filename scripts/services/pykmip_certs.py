"""Generate a throw-away CA, a server and a client certificate for a test PyKMIP server.

Usage: pykmip_certs.py DIR [HOST]

Writes DIR/ca.pem, DIR/server.pem + DIR/server.key (subjectAltName HOST, default
127.0.0.1), DIR/client.pem + DIR/client.key (CN encproxy, extendedKeyUsage
clientAuth, which PyKMIP requires for mutual TLS).  Private keys are mode 0600.
EC P-256 keys: PyKMIP's TLS 1.2 suite list includes ECDHE-ECDSA with AES-GCM.
For tests only: the CA key is discarded once the certificates are signed.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
          usage: x509.ObjectIdentifier | None = None,
          san: x509.GeneralName | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[1])
    host = argv[2] if len(argv) == 3 else "127.0.0.1"
    out.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("encproxy test KMIP CA", ca_key, "encproxy test KMIP CA", ca_key, ca=True)
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    for name, cn, usage, san in (
            ("server", host, ExtendedKeyUsageOID.SERVER_AUTH, _san(host)),
            ("client", "encproxy", ExtendedKeyUsageOID.CLIENT_AUTH, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, "encproxy test KMIP CA", ca_key, ca=False, usage=usage, san=san)
        (out / f"{name}.pem").write_bytes(cert.public_bytes(pem))
        _write_key(out / f"{name}.key", key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
