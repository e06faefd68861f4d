"""The key-provider contract, run against every provider (docs/KEYS.md §8).

Each test runs four times: local keyring, PKCS#11 (SoftHSM2), KMIP (PyKMIP), AWS
KMS API (moto). The providers are real; nothing is mocked.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.keys.blob import MAX_BLOB_SIZE, ProviderKind, WrappedKey
from encproxy.keys.provider import DataKey, KeyProvider
from support.keys_services import Blackhole

WORKER = Path(__file__).with_name("keys_worker.py")


def ctx(key: str = "photos/2024/a.jpg", bucket: str = "photos") -> dict[str, str]:
    return {"encproxy-format": "1", "bucket": bucket, "key": key,
            "object-id": "00112233445566778899aabbccddeeff"}


@pytest.fixture(scope="module")
def key_id(harness) -> str:
    return harness.new_key()


@pytest.fixture(scope="module")
def provider(harness) -> KeyProvider:
    p = harness.provider()
    yield p
    p.close()


# -- round trip -------------------------------------------------------------------------------
def test_generate_data_key_round_trip(harness, provider, key_id):
    dk = provider.generate_data_key(key_id, ctx())
    assert isinstance(dk, DataKey) and len(dk.plaintext) == 32
    assert 0 < len(dk.blob) <= MAX_BLOB_SIZE
    assert provider.unwrap(dk.blob, ctx()) == dk.plaintext
    plaintext, blob = dk  # also a plain (plaintext, blob) pair
    assert (plaintext, blob) == (dk.plaintext, dk.blob)
    assert dk.plaintext.hex() not in repr(dk)
    assert provider.generate_data_key(key_id, ctx()).plaintext != dk.plaintext


def test_wrap_round_trip_and_blob_is_self_describing(harness, provider, key_id):
    data_key = os.urandom(32)
    blob = provider.wrap(key_id, data_key, ctx())
    assert provider.unwrap(blob, ctx()) == data_key
    parsed = WrappedKey.from_bytes(blob)
    assert parsed.provider is ProviderKind[harness.name.upper()]
    info = provider.describe(key_id)
    assert parsed.key_id == info.key_id
    if info.managed_versions:
        assert parsed.key_version == info.current_version
    assert data_key not in blob


def test_fresh_provider_instance_unwraps(harness, provider, key_id):
    """No state outside the blob and the provider: a new instance unwraps what another made."""
    blob = provider.wrap(key_id, b"\x07" * 32, ctx())
    other = harness.provider()
    try:
        assert other.unwrap(blob, ctx()) == b"\x07" * 32
    finally:
        other.close()


# -- context binding --------------------------------------------------------------------------
@pytest.mark.parametrize("change", [
    pytest.param(lambda c: {**c, "key": c["key"] + "x"}, id="other-key"),
    pytest.param(lambda c: {**c, "bucket": "other"}, id="other-bucket"),
    pytest.param(lambda c: {**c, "extra": "1"}, id="added-entry"),
    pytest.param(lambda c: {k: v for k, v in c.items() if k != "object-id"}, id="dropped-entry"),
    pytest.param(lambda c: {}, id="empty"),
    pytest.param(lambda c: {"bucket": c["bucket"] + c["key"][:3], "key": c["key"][3:],
                            "encproxy-format": "1", "object-id": c["object-id"]},
                 id="shifted-boundary"),
])
def test_wrong_context_fails(provider, key_id, change):
    blob = provider.wrap(key_id, os.urandom(32), ctx())
    with pytest.raises(errors.KeyUnwrapFailed) as info:
        provider.unwrap(blob, change(ctx()))
    assert info.value.status == 500 and info.value.code == "InternalError"


# -- unknown keys and key ids --------------------------------------------------------------------
def test_unknown_key_is_kms_not_found(harness, provider):
    missing = "alias/no-such-key-ever" if harness.name == "awskms" else "no-such-key-ever"
    for call in (lambda: provider.wrap(missing, os.urandom(32), ctx()),
                 lambda: provider.generate_data_key(missing, ctx()),
                 lambda: provider.describe(missing)):
        with pytest.raises(errors.KMSNotFound) as info:
            call()
        assert (info.value.status, info.value.code) == (400, "KMS.NotFoundException")
    assert provider.key_exists(missing) is False


@pytest.mark.parametrize("bad", ["", "has space", "arn:aws:kms:us-east-1:1234/5678example",
                                 "alias/", "x" * 200, "caf\u00e9"])
def test_malformed_key_id_is_kms_not_found(provider, bad):
    with pytest.raises(errors.KMSNotFound):
        provider.wrap(bad, os.urandom(32), ctx())
    assert provider.key_exists(bad) is False


def test_key_exists_and_key_id_forms(harness, provider, key_id):
    assert provider.key_exists(key_id)
    info = provider.describe(key_id)
    assert info.enabled and info.current_version in info.versions
    if harness.name == "awskms":
        assert info.key_id.startswith("arn:aws:kms:")
        forms = [info.key_id, info.key_id.rsplit("/", 1)[1],
                 f"arn:aws:kms:us-east-1:123456789012:{key_id}"]
    else:
        assert info.key_id == key_id
        forms = [f"alias/{key_id}", f"arn:aws:kms:us-east-1:123456789012:key/{key_id}",
                 f"arn:aws:kms:eu-west-1:000000000000:alias/{key_id}"]
    for form in forms:
        assert provider.key_exists(form), form
        assert provider.describe(form).key_id == info.key_id
        blob = provider.wrap(form, b"\x01" * 32, ctx())
        assert provider.unwrap(blob, ctx()) == b"\x01" * 32


# -- rotation -------------------------------------------------------------------------------------
def test_rotation_keeps_old_blobs_unwrappable(harness, provider):
    key = harness.new_key()
    before = provider.describe(key)
    old_key = os.urandom(32)
    old_blob = provider.wrap(key, old_key, ctx())
    harness.rotate(provider, key)
    after = provider.describe(key)
    if after.managed_versions:
        assert after.current_version != before.current_version
        assert after.versions == (*before.versions, after.current_version)
        assert provider.current_version(key) == after.current_version
        assert provider.versions(key) == after.versions
    new_blob = provider.wrap(key, old_key, ctx())
    if after.managed_versions:
        assert WrappedKey.from_bytes(new_blob).key_version == after.current_version
        assert WrappedKey.from_bytes(old_blob).key_version == before.current_version
    assert provider.unwrap(old_blob, ctx()) == old_key
    assert provider.unwrap(new_blob, ctx()) == old_key
    fresh = harness.provider()  # and in a process that never saw the old version current
    try:
        assert fresh.unwrap(old_blob, ctx()) == old_key
    finally:
        fresh.close()


# -- tampering ------------------------------------------------------------------------------------
def test_every_flipped_byte_fails(provider, key_id):
    data_key = os.urandom(32)
    blob = provider.wrap(key_id, data_key, ctx())
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        # Fails closed, whichever way: mostly KeyUnwrapFailed; a flipped key id may name
        # a key that does not exist; moto answers some flips in its own ciphertext with
        # AccessDeniedException.
        with pytest.raises((errors.KeyUnwrapFailed, errors.KMSNotFound, errors.AccessDenied)):
            provider.unwrap(bytes(bad), ctx())


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda b: b[:-1], id="truncated"),
    pytest.param(lambda b: b + b"\0", id="extended"),
    pytest.param(lambda b: b"", id="empty"),
    pytest.param(lambda b: b * 8, id="oversized"),
    pytest.param(lambda b: bytes([2]) + b[1:], id="future-version"),
])
def test_malformed_blob_fails(provider, key_id, mangle):
    blob = provider.wrap(key_id, os.urandom(32), ctx())
    with pytest.raises(errors.KeyUnwrapFailed):
        provider.unwrap(mangle(blob), ctx())


def test_blob_of_another_provider_fails(harness, harnesses, provider):
    others = [h for name, h in harnesses.items() if name != harness.name]
    for other in others:
        p = other.provider()
        try:
            blob = p.wrap(other.new_key(), os.urandom(32), ctx())
        finally:
            p.close()
        with pytest.raises(errors.KeyUnwrapFailed) as info:
            provider.unwrap(blob, ctx())
        assert info.value.reason == "foreign-provider"


# -- provider down --------------------------------------------------------------------------------
def test_provider_down_is_503_fast(harness, provider, key_id):
    blob = provider.wrap(key_id, os.urandom(32), ctx())
    down = harness.down()
    try:
        for call in (lambda: down.wrap(key_id, os.urandom(32), ctx()),
                     lambda: down.generate_data_key(key_id, ctx()),
                     lambda: down.unwrap(blob, ctx()),
                     lambda: down.describe(key_id),
                     lambda: down.key_exists(key_id)):
            started = time.monotonic()
            with pytest.raises(errors.S3Error) as info:
                call()
            assert (info.value.status, info.value.code) == (503, "ServiceUnavailable")
            assert time.monotonic() - started < 2.5
    finally:
        down.close()


@pytest.mark.parametrize("name", ["kmip", "awskms"])
def test_unresponsive_server_times_out_as_503(harnesses, name):
    hole = Blackhole()
    provider = harnesses[name].unresponsive(hole)
    try:
        started = time.monotonic()
        with pytest.raises(errors.S3Error) as info:
            provider.wrap("some-key" if name == "kmip" else "alias/some-key", os.urandom(32),
                          ctx())
        assert info.value.status == 503
        assert time.monotonic() - started < 3
    finally:
        provider.close()
        hole.close()


# -- several processes ------------------------------------------------------------------------------
def _worker(harness, ops: list[dict]) -> list[dict]:
    request = {"ini": harness.ini(), "base_dir": str(harness.directory), "ops": ops}
    result = subprocess.run([sys.executable, str(WORKER)], input=json.dumps(request),
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **harness.env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_processes_share_one_key(harness, provider, key_id):
    mine = os.urandom(32)
    theirs = os.urandom(32)
    my_blob = provider.wrap(key_id, mine, ctx())
    results = _worker(harness, [
        {"op": "unwrap", "blob": my_blob.hex(), "context": ctx()},
        {"op": "unwrap", "blob": my_blob.hex(), "context": ctx("other")},
        {"op": "wrap", "key": key_id, "data_key": theirs.hex(), "context": ctx()},
    ])
    assert results[0] == {"ok": mine.hex()}
    assert results[1] == {"error": "InternalError"}
    assert provider.unwrap(bytes.fromhex(results[2]["ok"]), ctx()) == theirs


def test_forked_child_uses_the_provider(provider, key_id):
    """gunicorn forks workers from a master that may have used the provider."""
    data_key = os.urandom(32)
    blob = provider.wrap(key_id, data_key, ctx())
    assert provider.unwrap(blob, ctx()) == data_key
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            out = provider.unwrap(blob, ctx())
            child_blob = provider.wrap(key_id, data_key, ctx())
            os.write(write_end, out + child_blob)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert received[:32] == data_key
    assert provider.unwrap(received[32:], ctx()) == data_key  # the parent still works


# -- secrets stay secret --------------------------------------------------------------------------
def _spellings(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="),
            base64.b64encode(secret).decode().rstrip("="), secret.decode("latin-1")]


def test_no_key_material_in_logs_or_errors(harness, provider, key_id, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level: kmip, urllib3, encproxy
    seen: list[str] = [repr(provider)]
    data_keys: list[bytes] = []

    def record(exc: BaseException) -> None:
        seen.extend([str(exc), repr(exc), repr(getattr(exc, "fields", "")),
                     str(exc.__cause__), str(exc.__context__)])

    dk = provider.generate_data_key(key_id, ctx())
    data_keys.append(dk.plaintext)
    seen.append(repr(dk))
    data_key = os.urandom(32)
    data_keys.append(data_key)
    blob = provider.wrap(key_id, data_key, ctx())
    provider.unwrap(blob, ctx())
    for call in (lambda: provider.unwrap(blob, ctx("other")),
                 lambda: provider.wrap("no-such-key-x", data_key, ctx()),
                 lambda: provider.unwrap(blob[:-3], ctx())):
        try:
            call()
        except errors.EncproxyError as exc:
            record(exc)
    down = harness.down()
    try:
        down.wrap(key_id, data_key, ctx())
    except errors.EncproxyError as exc:
        record(exc)
    finally:
        down.close()
    secrets = list(data_keys)
    secrets += [s.encode() for s in harness.secrets]
    if harness.name == "local":
        for path in (harness.directory / "keys").glob(f"{key_id}.v*.key"):
            secrets.append(base64.b64decode(json.loads(path.read_text())["material"]))
    text = caplog.text + "\n".join(seen)
    assert caplog.records, "the providers should log something at DEBUG"
    for secret in secrets:
        for spelling in _spellings(secret):
            assert spelling not in text, f"secret leaked ({len(secret)}-byte secret)"


# -- with the object format ---------------------------------------------------------------------
def test_object_envelope_round_trip(provider, key_id):
    """The format's KeyWrapper (encproxy.crypto.keys) accepts every provider as it is."""
    from encproxy.crypto.keys import new_object, open_object
    from encproxy.format.constants import Kind
    keys, envelope = new_object(provider, key_id, "photos", "a/b.jpg", kind=Kind.SINGLE)
    assert open_object(provider, envelope, "photos", "a/b.jpg").data_key == keys.data_key
    with pytest.raises(errors.IntegrityError):  # an envelope moved to another key
        open_object(provider, envelope, "photos", "a/c.jpg")
