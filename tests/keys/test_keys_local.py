"""The local keyring: files, modes, refusals, rescans (docs/KEYS.md §6.1)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.keys.blob import WrappedKey
from encproxy.keys.local import LocalKeyring
from encproxy.keys.provider import KeyAdminError

CTX = {"bucket": "b", "key": "k"}


@pytest.fixture
def keys_dir(tmp_path):
    return tmp_path / "keys"


def test_files_are_private_and_named_by_id_and_version(keys_dir):
    ring = LocalKeyring(keys_dir)
    ring.create_key("default")
    ring.rotate_key("default")
    assert sorted(p.name for p in keys_dir.iterdir()) == ["default.v1.key", "default.v2.key"]
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for path in keys_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert doc["key_id"] == "default" and doc["encproxy_key"] == 1
    info = ring.describe("default")
    assert (info.current_version, info.versions) == ("2", ("1", "2"))


def test_create_refuses_existing_and_rotate_refuses_missing(keys_dir):
    ring = LocalKeyring(keys_dir)
    ring.create_key("a")
    with pytest.raises(KeyAdminError):
        ring.create_key("alias/a")
    with pytest.raises(errors.KMSNotFound):
        ring.rotate_key("b")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_refuses_key_file_open_to_group_or_others(keys_dir, mode):
    LocalKeyring(keys_dir).create_key("default")
    (keys_dir / "default.v1.key").chmod(mode)
    with pytest.raises(ConfigError) as info:
        LocalKeyring(keys_dir)
    assert f"{mode:04o}" in str(info.value) and "chmod 600" in str(info.value)


def test_refuses_group_writable_keyring(keys_dir):
    LocalKeyring(keys_dir).create_key("default")
    keys_dir.chmod(0o770)
    with pytest.raises(ConfigError, match="chmod 700"):
        LocalKeyring(keys_dir)


def test_refuses_symlinked_key_file(keys_dir, tmp_path):
    ring = LocalKeyring(keys_dir)
    ring.create_key("default")
    (keys_dir / "default.v1.key").rename(tmp_path / "elsewhere.key")
    (keys_dir / "default.v1.key").symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(ConfigError, match="cannot open"):
        LocalKeyring(keys_dir)


@pytest.mark.parametrize("edit", [
    pytest.param(lambda d: {**d, "key_id": "other"}, id="id-mismatch"),
    pytest.param(lambda d: {**d, "version": 7}, id="version-mismatch"),
    pytest.param(lambda d: {**d, "material": "c2hvcnQ="}, id="short-material"),
    pytest.param(lambda d: {**d, "encproxy_key": 2}, id="unknown-format"),
    pytest.param(lambda d: "not json", id="garbage"),
])
def test_refuses_key_file_that_disagrees_with_its_name(keys_dir, edit):
    LocalKeyring(keys_dir).create_key("default")
    path = keys_dir / "default.v1.key"
    doc = json.loads(path.read_text())
    edited = edit(doc)
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ConfigError, match="not a valid encproxy key file"):
        LocalKeyring(keys_dir)


def test_ignores_other_files_but_refuses_badly_named_keys(keys_dir):
    LocalKeyring(keys_dir).create_key("default")
    (keys_dir / "README").write_text("notes")
    (keys_dir / ".tmp-x").write_text("partial")
    LocalKeyring(keys_dir)
    bad = keys_dir / "no-version.key"
    bad.write_text("{}")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="NAME.vN.key"):
        LocalKeyring(keys_dir)


def test_running_keyring_sees_keys_added_by_another_process(keys_dir):
    serving = LocalKeyring(keys_dir, metadata_ttl=3600)
    admin = LocalKeyring(keys_dir)
    admin.create_key("new")
    assert serving.key_exists("new")                 # a miss rescans a changed directory
    blob_v1 = serving.wrap("new", b"\x01" * 32, CTX)
    admin.rotate_key("new")
    blob_v2 = admin.wrap("new", b"\x02" * 32, CTX)   # a version `serving` has not loaded
    assert serving.unwrap(blob_v2, CTX) == b"\x02" * 32
    assert serving.unwrap(blob_v1, CTX) == b"\x01" * 32


def test_rotation_seen_by_a_running_keyring_within_metadata_ttl(keys_dir):
    now = [0.0]
    serving = LocalKeyring(keys_dir, metadata_ttl=30, clock=lambda: now[0])
    admin = LocalKeyring(keys_dir)
    admin.create_key("k")
    assert WrappedKey.from_bytes(serving.wrap("k", b"\0" * 32, CTX)).key_version == "1"
    admin.rotate_key("k")
    now[0] += 30
    assert WrappedKey.from_bytes(serving.wrap("k", b"\0" * 32, CTX)).key_version == "2"


def test_key_file_made_public_while_serving_is_dropped(keys_dir):
    now = [0.0]
    serving = LocalKeyring(keys_dir, metadata_ttl=30, clock=lambda: now[0])
    serving.create_key("k")
    (keys_dir / "k.v1.key").chmod(0o644)
    now[0] += 30
    with pytest.raises(errors.KMSNotFound):
        serving.wrap("k", b"\0" * 32, CTX)


def test_unreadable_keyring_is_503_for_keys_not_loaded(keys_dir, tmp_path):
    admin = LocalKeyring(keys_dir)
    admin.create_key("k")
    serving = LocalKeyring(keys_dir)
    blob = serving.wrap("k", b"\x05" * 32, CTX)
    keys_dir.rename(tmp_path / "moved")
    assert serving.unwrap(blob, CTX) == b"\x05" * 32    # loaded keys keep working
    for call in (lambda: serving.wrap("other", b"\0" * 32, CTX),
                 lambda: serving.describe("other")):
        with pytest.raises(errors.S3Error) as info:
            call()
        assert info.value.status == 503


def test_concurrent_rotations_get_distinct_versions(keys_dir):
    LocalKeyring(keys_dir).create_key("k")
    code = ("import sys; from pathlib import Path; from encproxy.keys.local import LocalKeyring;"
            "r = LocalKeyring(Path(sys.argv[1]));"
            "[r.rotate_key('k') for _ in range(5)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(keys_dir)]) for _ in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    info = LocalKeyring(keys_dir).describe("k")
    assert info.versions == tuple(str(v) for v in range(1, 17))
    assert not [p for p in os.listdir(keys_dir) if p.startswith(".tmp")]
