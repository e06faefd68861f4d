"""What is particular to one provider: SigV4 for KMS, HSM key attributes, KMIP states,
call counts (one provider call per object), and missing libraries (docs/KEYS.md §6)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from encproxy import errors
from encproxy.keys.awskms import sign
from support.keys_services import REPO, start_pykmip, start_softhsm

CTX = {"bucket": "b", "key": "k"}


# -- awskms: the signer agrees with botocore's ------------------------------------------------
@pytest.mark.parametrize("url, token", [
    ("https://kms.eu-west-1.amazonaws.com/", ""),
    ("http://127.0.0.1:4566/", "session-token-value"),
])
def test_kms_signature_matches_botocore(url, token, monkeypatch):
    now = datetime(2024, 5, 1, 12, 30, 45, tzinfo=timezone.utc)
    body = b'{"KeyId":"alias/x","Plaintext":"AAAA"}'
    headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": "TrentService.Encrypt"}
    mine = sign("POST", url, headers, body, access_key="AKIDEXAMPLE",
                secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region="eu-west-1",
                service="kms", now=now, session_token=token)
    request = AWSRequest("POST", url, data=body, headers=dict(headers))
    import botocore.auth
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda remove_tzinfo=True: now.replace(tzinfo=None))
    SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                          token or None), "kms", "eu-west-1").add_auth(request)
    assert mine["x-amz-date"] == request.headers["X-Amz-Date"]
    theirs = request.headers["Authorization"]
    assert mine["authorization"].rsplit("Signature=", 1)[1] == theirs.rsplit("Signature=", 1)[1]


# -- pkcs11: master keys are non-extractable token objects -------------------------------------
def test_pkcs11_master_keys_never_leave_the_token(harnesses):
    import pkcs11
    h = harnesses["pkcs11"]
    key_id = h.new_key()
    lib = pkcs11.lib(h.options["pkcs11_module"])
    token = lib.get_token(token_label=h.options["pkcs11_token_label"])
    provider = h.provider()
    provider.describe(key_id)  # logs the process in through the provider's own session
    with token.open(rw=False) as session:
        key = session.get_key(label=key_id, id=b"1")
        assert key[pkcs11.Attribute.TOKEN] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.SENSITIVE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]
    provider.close()


def test_pkcs11_wrong_pin_is_503(harnesses, tmp_path):
    # A separate token, in another process: a rejected PIN stays out of this one.
    h = harnesses["pkcs11"]
    code = (
        "import sys; from pathlib import Path; from encproxy.keys.factory import build_provider;"
        "from encproxy.settings import load; from encproxy import errors\n"
        "p = build_provider(load(sys.stdin.read(), Path('.'), environ={}))\n"
        "try:\n    p.describe('default')\nexcept errors.S3Error as e:\n"
        "    print(e.status, e.code)\n")
    token = start_softhsm(tmp_path, label="pin-test")
    ini = (f"[credentials]\nabc = 12345678\n[keys]\nprovider = pkcs11\n"
           f"pkcs11_module = {h.options['pkcs11_module']}\npkcs11_token_label = pin-test\n"
           f"pkcs11_pin = wrong-pin\n")
    out = subprocess.run([sys.executable, "-c", code], input=ini, capture_output=True,
                         text=True, timeout=60, env={**os.environ, **token.env})
    assert out.stdout.split() == ["503", "ServiceUnavailable"], out.stderr
    assert "wrong-pin" not in out.stderr


# -- kmip: states and the TLS identity ---------------------------------------------------------
def test_kmip_revoked_key_is_kms_disabled(harnesses):
    h = harnesses["kmip"]
    key_id = h.new_key()
    provider = h.provider(metadata_ttl=0)
    blob = provider.wrap(key_id, b"\x01" * 32, CTX)
    uid = provider.describe(key_id).current_version
    k = provider._k
    provider._call(k.enums.Operation.REVOKE, k.payloads.RevokeRequestPayload(
        unique_identifier=k.attributes.UniqueIdentifier(uid),
        revocation_reason=k.objects.RevocationReason(
            code=k.enums.RevocationReasonCode.CESSATION_OF_OPERATION)), "revoke")
    info = provider.describe(key_id)
    assert info.enabled is False and provider.key_exists(key_id)
    for call in (lambda: provider.wrap(key_id, b"\x01" * 32, CTX),
                 lambda: provider.unwrap(blob, CTX)):
        with pytest.raises(errors.KMSDisabled) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (400, "KMS.DisabledException")
    provider.close()


def test_kmip_server_certificate_must_match_ca(harnesses, tmp_path):
    h = harnesses["kmip"]
    other = tmp_path / "other-ca"  # a CA that did not sign the server's certificate
    subprocess.run([sys.executable, str(REPO / "scripts/services/pykmip_certs.py"), str(other)],
                   check=True, timeout=60)
    provider = h.provider(kmip_ca=other / "ca.pem")
    with pytest.raises(errors.S3Error) as info:
        provider.describe("anything")
    assert info.value.status == 503
    provider.close()


# -- one provider call per object ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["kmip", "awskms"])
def test_one_provider_call_per_object(harnesses, name):
    h = harnesses[name]
    key_id = h.new_key()
    provider = h.provider()
    calls: list[str] = []
    original = provider._call

    def counting(operation, *args, **kwargs):
        calls.append(str(operation))
        return original(operation, *args, **kwargs)

    provider._call = counting  # type: ignore[method-assign]
    provider.describe(key_id)  # warms the key-metadata cache (kmip resolves versions)
    for _ in range(3):
        calls.clear()
        dk = provider.generate_data_key(key_id, CTX)
        assert len(calls) == 1, calls
        calls.clear()
        provider.unwrap(dk.blob, CTX)
        assert len(calls) == 1, calls
    provider.close()


# -- optional libraries ---------------------------------------------------------------------------
@pytest.mark.parametrize("provider, module", [("pkcs11", "pkcs11"), ("kmip", "kmip")])
def test_missing_library_is_a_one_line_config_error(tmp_path, provider, module):
    config = tmp_path / "e.ini"
    extra = {"pkcs11": "pkcs11_module = /x.so\npkcs11_token_label = t\npkcs11_pin = 1\n",
             "kmip": "kmip_host = h\nkmip_certfile = c\nkmip_keyfile = k\nkmip_ca = a\n"}
    config.write_text(f"[credentials]\nabc = 12345678\n[keys]\nprovider = {provider}\n"
                      + extra[provider])
    config.chmod(0o600)
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from encproxy.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "check-config", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert f"encproxy[{provider}]" in out.stderr


# -- a KMIP server that stops, then comes back --------------------------------------------------
def test_kmip_server_stopped_is_503_and_restarted_is_used_again(harnesses, tmp_path):
    server = start_pykmip(tmp_path / "kmip")
    try:
        h = harnesses["kmip"]
        provider = h.provider(kmip_port=server.port, kmip_ca=server.ca,
                              kmip_certfile=server.cert, kmip_keyfile=server.key,
                              connect_timeout=1, timeout=2)
        provider.create_key("restart")
        blob = provider.wrap("restart", b"\x09" * 32, CTX)  # leaves a connection open
        server.stop()
        started = time.monotonic()
        with pytest.raises(errors.S3Error) as info:
            provider.unwrap(blob, CTX)
        assert info.value.status == 503 and time.monotonic() - started < 3
        server = start_pykmip(tmp_path / "kmip", port=server.port)  # same database
        assert provider.unwrap(blob, CTX) == b"\x09" * 32
        provider.close()
    finally:
        server.stop()
