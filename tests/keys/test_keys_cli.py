"""``encproxy keys ...`` and the start-up checks, run as a user runs them (README "Keys")."""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ENCPROXY = str(Path(sys.executable).with_name("encproxy"))


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENCPROXY, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "encproxy.ini"
    path.write_text(f"[server]\nlisten = 127.0.0.1:1\n[credentials]\nabc = 12345678\n"
                    f"[backend]\nroot = {tmp_path / 'data'}\n[keys]\nkeyring = keys\n")
    path.chmod(0o600)
    return path


def materials(keys: Path) -> list[bytes]:
    return [base64.b64decode(json.loads(p.read_text())["material"]) for p in keys.glob("*.key")]


def test_create_rotate_list(config, tmp_path):
    keys = tmp_path / "keys"
    out = run("keys", "create", "photos", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert one_line(out.stdout) == "created key 'photos': versions 1; current 1"
    assert stat.S_IMODE((keys / "photos.v1.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    out = run("keys", "rotate", "alias/photos", "--config", str(config))
    assert one_line(out.stdout) == "rotated key 'photos': versions 1, 2; current 2"
    run("keys", "create", "backups", "--config", str(config))
    out = run("keys", "list", "--config", str(config))
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["KEY", "ID", "VERSIONS", "CURRENT", "CREATED"]
    assert [line.split()[:3] for line in lines[1:]] == [["backups", "1", "1"],
                                                        ["photos", "1,2", "2"]]
    everything = out.stdout + out.stderr
    for material in materials(keys):
        assert material.hex() not in everything
        assert base64.b64encode(material).decode() not in everything


def test_refusals_are_one_line_exit_1(config):
    run("keys", "create", "photos", "--config", str(config))
    for args, expected in (
            (("keys", "create", "photos"), "encproxy: key 'photos' already exists"),
            (("keys", "rotate", "nope"), "encproxy: Key 'nope' does not exist"),
            (("keys", "create", "bad name"), "encproxy: Invalid keyId 'bad name'")):
        out = run(*args, "--config", str(config))
        assert (out.returncode, one_line(out.stderr)) == (1, expected)


def test_create_if_missing_and_ensure_default(config, tmp_path):
    assert run("keys", "create", "--if-missing", "x", "--config", str(config)).returncode == 0
    assert run("keys", "create", "--if-missing", "x", "--config", str(config)).returncode == 0
    out = run("keys", "ensure-default", "--config", str(config))
    assert out.returncode == 0 and "created default key 'default'" in out.stdout
    out = run("keys", "ensure-default", "--config", str(config))
    assert out.returncode == 0 and out.stdout == ""
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == \
        ["default.v1.key", "x.v1.key"]


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_public_key_file_stops_start_up(config, tmp_path, command):
    run("keys", "ensure-default", "--config", str(config))
    (tmp_path / "keys" / "default.v1.key").chmod(0o644)
    out = run(command, "--config", str(config))
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert line.startswith("encproxy: config error: [keys] keyring: ")
    assert "default.v1.key has mode 0644" in line


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_missing_default_key_stops_start_up(config, command):
    out = run(command, "--config", str(config))
    assert out.returncode == 2
    assert one_line(out.stderr) == (
        "encproxy: config error: [keys] default_key: key 'default' does not exist in the "
        "local provider (create it with: encproxy keys create default)")


def test_check_config_names_provider_and_default_key(config):
    run("keys", "ensure-default", "--config", str(config))
    out = run("check-config", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert "keys local, default key default)" in out.stdout


@pytest.mark.parametrize("provider, option", [
    ("pkcs11", "pkcs11_module"), ("kmip", "kmip_host"), ("awskms", "access_key")])
def test_provider_options_are_required(config, provider, option):
    config.write_text(config.read_text() + f"provider = {provider}\n")
    out = run("check-config", "--config", str(config))
    assert out.returncode == 2
    assert one_line(out.stderr) == (
        f"encproxy: config error: [keys] {option}: is required when provider = {provider} "
        f"(or set ENCPROXY_KEYS_{option.upper()})")


def test_awskms_keys_are_managed_in_kms(config, harnesses):
    h = harnesses["awskms"]
    config.write_text(config.read_text() + "".join(
        f"{k} = {v}\n" for k, v in {"provider": "awskms", **h.options}.items()))
    for args in (("create", "x"), ("rotate", "x"), ("list",)):
        out = run("keys", *args, "--config", str(config))
        assert out.returncode == 1
        assert "keys are managed in KMS itself" in one_line(out.stderr)
    out = run("check-config", "--config", str(config))
    assert out.returncode == 2 and "create it in the KMS" in one_line(out.stderr)
    key = h.new_key()
    out = run("check-config", "--config", str(config), env={"ENCPROXY_KEYS_DEFAULT_KEY": key})
    assert out.returncode == 0, out.stderr
    assert h.secrets[0] not in out.stdout + out.stderr


def test_pkcs11_commands_with_pin_from_environment(config, harnesses):
    h = harnesses["pkcs11"]
    options = {k: v for k, v in h.options.items() if k != "pkcs11_pin"}
    config.write_text(config.read_text() + "".join(
        f"{k} = {v}\n" for k, v in {"provider": "pkcs11", **options}.items()))
    env = {**h.env, "ENCPROXY_KEYS_PKCS11_PIN": h.options["pkcs11_pin"]}
    name = "cli-" + os.urandom(4).hex()
    assert run("keys", "create", name, "--config", str(config), env=env).returncode == 0
    out = run("keys", "rotate", name, "--config", str(config), env=env)
    assert one_line(out.stdout) == f"rotated key '{name}': versions 1, 2; current 2"
    out = run("keys", "list", "--config", str(config), env=env)
    assert any(line.split()[:3] == [name, "1,2", "2"] for line in out.stdout.splitlines())
    out = run("keys", "list", "--config", str(config), env=h.env)
    assert out.returncode == 2 and "pkcs11_pin: is required" in one_line(out.stderr)


def test_kmip_commands(config, harnesses):
    h = harnesses["kmip"]
    config.write_text(config.read_text() + "".join(
        f"{k} = {v}\n" for k, v in {"provider": "kmip", **h.options}.items()))
    name = "cli-" + os.urandom(4).hex()
    out = run("keys", "create", name, "--config", str(config))
    assert out.returncode == 0, out.stderr
    out = run("keys", "list", "--config", str(config))
    assert any(line.split()[0] == name for line in out.stdout.splitlines()[1:])
    out = run("check-config", "--config", str(config), env={"ENCPROXY_KEYS_DEFAULT_KEY": name})
    assert out.returncode == 0, out.stderr


def test_unreachable_provider_stops_start_up(config):
    config.write_text(config.read_text() + "provider = awskms\nendpoint = http://127.0.0.1:1\n"
                      "access_key = AKIAEXAMPLE\nsecret_key = secret-example-123\n"
                      "connect_timeout = 1\n")
    out = run("check-config", "--config", str(config))
    assert out.returncode == 2
    assert "[keys] default_key: cannot use key 'default': ServiceUnavailable" in out.stderr
