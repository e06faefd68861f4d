"""The local keyring: master keys in files, AES-256-GCM wrapping (docs/KEYS.md §6.1).

One file per key id and version, ``<keyring>/<NAME>.v<N>.key``, mode 0600, holding
a small JSON document::

    {"encproxy_key": 1, "key_id": "NAME", "version": N,
     "created": "2024-05-01T12:00:00Z", "material": "<base64 of 32 random bytes>"}

A version is never modified: rotation adds ``N+1``, which becomes current. Files are
created with ``O_EXCL`` through a temporary name and a hard link, so two concurrent
``encproxy keys rotate`` never overwrite each other.

Refusals: a key file readable or writable by group or others, a key file that is not
a regular file (symlinks are refused), a keyring directory writable by group or
others, or a file whose contents disagree with its name. At start-up each is a
:class:`ConfigError`; later (a rescan while serving) the file is skipped and logged.

A running server rescans the directory every ``metadata_ttl`` seconds, and at once
when asked for a key or version it has not loaded if the directory changed since
(its inode or mtime), so a key created or rotated by ``encproxy keys`` is used
without a restart. A keyring that cannot be read any more (the directory vanished or
cannot be listed) answers 503 for what is not loaded; loaded keys keep working.

Layer 2: the only key provider that imports ``cryptography``.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.keys.blob import (
    GCM_NONCE_SIZE,
    Algorithm,
    ProviderKind,
    WrappedKey,
    aad,
    encode_header,
)
from encproxy.keys.keyid import NAME_RE
from encproxy.keys.provider import (
    BaseProvider,
    Context,
    KeyAdmin,
    KeyAdminError,
    KeyInfo,
    log,
    not_found,
    unavailable,
)

MASTER_KEY_SIZE = 32
FILE_FORMAT = 1
MAX_KEY_FILE_SIZE = 4096
_FILE_RE = re.compile(
    r"(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.v(?P<version>[1-9][0-9]{0,8})\.key\Z")


@dataclass(frozen=True)
class _Key:
    key_id: str
    version: int
    created: datetime | None
    material: bytes = field(repr=False)
    aead: AESGCM = field(repr=False, compare=False)


def key_file_name(key_id: str, version: int) -> str:
    return f"{key_id}.v{version}.key"


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _BadKeyFile(Exception):
    """A key file that must not be used; the message names the file, never its contents."""


def _read_key_file(directory: Path, name: str) -> _Key:
    m = _FILE_RE.match(name)
    if m is None:
        raise _BadKeyFile(f"{directory / name}: not named NAME.vN.key")
    path = directory / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _BadKeyFile(f"{path}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _BadKeyFile(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            raise _BadKeyFile(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: key files must not be "
                f"accessible to group or others (chmod 600 it)")
        if st.st_size > MAX_KEY_FILE_SIZE:
            raise _BadKeyFile(f"{path}: too large to be a key file")
        raw = os.read(fd, MAX_KEY_FILE_SIZE + 1)
    finally:
        os.close(fd)
    try:
        doc = json.loads(raw)
        material = base64.b64decode(doc["material"], validate=True)
        created = datetime.strptime(doc["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC) if doc.get("created") else None
        ok = (doc.get("encproxy_key") == FILE_FORMAT and doc.get("key_id") == m["id"]
              and doc.get("version") == int(m["version"]) and len(material) == MASTER_KEY_SIZE)
    except (ValueError, KeyError, TypeError, binascii.Error):
        ok = False
    if not ok:
        raise _BadKeyFile(f"{path}: not a valid encproxy key file for {m['id']} "
                          f"version {m['version']}")
    return _Key(m["id"], int(m["version"]), created, material, AESGCM(material))


def _check_directory(directory: Path) -> None:
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise _BadKeyFile(f"{directory} is not a directory")
    if st.st_mode & 0o022:
        raise _BadKeyFile(f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}: the keyring "
                          f"must not be writable by group or others (chmod 700 it)")


class LocalKeyring(BaseProvider, KeyAdmin):
    """Master keys in ``directory``; see the module docstring."""

    kind = ProviderKind.LOCAL

    def __init__(self, directory: Path, *, metadata_ttl: float = 30.0,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(metadata_ttl=0.0)  # the keyring caches itself (rescans)
        self.directory = Path(directory)
        self._ttl = metadata_ttl
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], _Key] = {}
        self._scanned_at = float("-inf")
        self._stamp: tuple[int, int] | None = None  # (inode, mtime) at the last scan
        self._existed = False
        self._unreadable: str | None = None  # why the last rescan could not read the keyring
        try:
            self._scan(strict=True)
        except _BadKeyFile as exc:
            raise ConfigError("keys", "keyring", str(exc)) from None

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self.directory)!r}, {len(self._keys)} key versions)"

    # -- scanning -----------------------------------------------------------------------
    def _scan(self, strict: bool) -> None:
        """Mirror the directory: load new files, forget vanished ones.

        A keyring that cannot be read (it existed and vanished, or cannot be listed) raises
        _BadKeyFile and leaves the loaded keys as they were.
        """
        found: dict[tuple[str, int], _Key] = {}
        stamp = self._dir_stamp()
        if not self.directory.exists():
            if self._existed:
                raise _BadKeyFile(f"{self.directory}: the keyring directory has gone")
        else:
            _check_directory(self.directory)
            try:
                names = sorted(os.listdir(self.directory))
            except OSError as exc:
                raise _BadKeyFile(f"{self.directory}: cannot list ({exc.strerror})") from None
            self._existed = True
            for name in names:
                if name.startswith(".") or not name.endswith(".key"):
                    continue
                m = _FILE_RE.match(name)
                ident = (m["id"], int(m["version"])) if m else None
                known = self._keys.get(ident) if ident else None
                try:
                    if ident is not None and known is not None:
                        mode = os.lstat(self.directory / name).st_mode
                        if not stat.S_ISREG(mode) or mode & 0o077:
                            raise _BadKeyFile(f"{self.directory / name}: mode or type changed")
                        found[ident] = known
                    else:
                        key = _read_key_file(self.directory, name)
                        found[(key.key_id, key.version)] = key
                except _BadKeyFile as exc:
                    if strict:
                        raise
                    log.error("keyring: ignoring %s", exc)
                except OSError:
                    continue  # vanished between listdir and open
        with self._lock:
            self._keys = found
            self._scanned_at = self._clock()
            self._stamp = stamp

    def _rescan(self) -> None:
        try:
            self._scan(strict=False)
        except (_BadKeyFile, OSError) as exc:
            if self._unreadable is None:
                log.error("keyring: rescan failed: %s", exc)
            self._unreadable = str(exc)
        else:
            self._unreadable = None

    def _fresh(self) -> None:
        if self._clock() - self._scanned_at >= self._ttl:
            self._rescan()

    def _dir_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.directory)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _rescan_after_miss(self) -> bool:
        """Rescan if the directory changed since the last scan (a key was added)."""
        stamp = self._dir_stamp()
        if stamp is not None and stamp == self._stamp and self._unreadable is None:
            return False
        self._rescan()
        return True

    def _missing(self, what: str) -> errors.S3Error:
        """Not found -- unless the keyring cannot be read, when nobody can tell: 503."""
        if self._unreadable is not None:
            return unavailable(self.name, f"keyring unreadable: {self._unreadable}")
        return errors.KMSNotFound(f"Key '{what}' does not exist")

    def _versions_of(self, key_id: str) -> list[_Key]:
        with self._lock:
            return sorted((k for (kid, _), k in self._keys.items() if kid == key_id),
                          key=lambda k: k.version)

    # -- the provider interface -----------------------------------------------------------
    def _describe(self, key_id: str) -> KeyInfo:
        self._fresh()
        versions = self._versions_of(key_id)
        if not versions and self._rescan_after_miss():
            versions = self._versions_of(key_id)
        if not versions:
            raise self._missing(key_id)
        return KeyInfo(key_id, str(versions[-1].version),
                       tuple(str(k.version) for k in versions), True, versions[-1].created)

    def _wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        info = self._describe(key_id)
        key = self._key(key_id, int(info.current_version))
        nonce = os.urandom(GCM_NONCE_SIZE)
        header = encode_header(self.kind, Algorithm.AES256_GCM, key_id, info.current_version)
        ciphertext = key.aead.encrypt(nonce, data_key, aad(header, context))
        return WrappedKey(self.kind, Algorithm.AES256_GCM, key_id, info.current_version,
                          nonce, ciphertext).to_bytes()

    def _unwrap(self, wrapped: WrappedKey, context: Context) -> bytes:
        if wrapped.algorithm is not Algorithm.AES256_GCM or not wrapped.key_version.isdigit():
            raise errors.KeyUnwrapFailed("malformed-blob")
        key = self._key(wrapped.key_id, int(wrapped.key_version))
        try:
            return key.aead.decrypt(wrapped.nonce, wrapped.ciphertext,
                                    aad(wrapped.header(), context))
        except InvalidTag:
            raise errors.KeyUnwrapFailed("authentication") from None

    def _key(self, key_id: str, version: int) -> _Key:
        with self._lock:
            key = self._keys.get((key_id, version))
        if key is None and self._rescan_after_miss():
            with self._lock:
                key = self._keys.get((key_id, version))
        if key is None:
            raise self._missing(f"{key_id}' version '{version}")
        return key

    # -- management -----------------------------------------------------------------------
    def _admin_scan(self) -> None:
        try:
            self._scan(strict=False)
        except _BadKeyFile as exc:
            raise ConfigError("keys", "keyring", str(exc)) from None

    def list_keys(self) -> list[KeyInfo]:
        self._admin_scan()
        with self._lock:
            ids = sorted({kid for kid, _ in self._keys})
        return [self._describe(kid) for kid in ids]

    def create_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        self._admin_scan()
        if self._versions_of(key_id):
            raise KeyAdminError(f"key {key_id!r} already exists")
        self._write(key_id, 1)
        self._admin_scan()
        return self._describe(key_id)

    def rotate_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        self._admin_scan()
        versions = self._versions_of(key_id)
        if not versions:
            raise not_found(key_id)
        version = versions[-1].version + 1
        while not self._write(key_id, version, exclusive_retry=True):
            version += 1  # another process rotated at the same moment
        self._admin_scan()
        return self._describe(key_id)

    def retire_version(self, key_id: str, version: str) -> KeyInfo:
        """Move ``NAME.vN.key`` into ``<keyring>/retired/`` (mode 0700); never the current one.

        Running servers stop using it within ``metadata_ttl`` (their next rescan). The
        file is kept there, not deleted, so that a retirement made too early can be undone
        by moving it back; delete it to destroy the version.
        """
        key_id = self.normalize(key_id)
        self._admin_scan()
        versions = self._versions_of(key_id)
        if not versions:
            raise not_found(key_id)
        if not version.isdigit() or int(version) not in {k.version for k in versions}:
            raise KeyAdminError(f"key {key_id!r} has no version {version!r} "
                                f"(versions {', '.join(str(k.version) for k in versions)})")
        if int(version) == versions[-1].version:
            raise KeyAdminError(f"version {version} is the current version of key {key_id!r}; "
                                "rotate the key first (encproxy keys rotate)")
        retired = self.directory / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        os.chmod(retired, 0o700)
        name = key_file_name(key_id, int(version))
        os.replace(self.directory / name, retired / name)
        for path in (retired, self.directory):
            dir_fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._admin_scan()
        return self._describe(key_id)

    def _write(self, key_id: str, version: int, exclusive_retry: bool = False) -> bool:
        """Create ``key_id`` version ``version``; False if that version appeared meanwhile."""
        if not NAME_RE.match(key_id):
            raise errors.KMSNotFound(f"Invalid keyId '{key_id}'")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _check_directory(self.directory)
        except _BadKeyFile as exc:
            raise ConfigError("keys", "keyring", str(exc)) from None
        doc = {"encproxy_key": FILE_FORMAT, "key_id": key_id, "version": version,
               "created": _fmt_time(datetime.now(UTC)),
               "material": base64.b64encode(os.urandom(MASTER_KEY_SIZE)).decode("ascii")}
        tmp = self.directory / f".tmp-{key_id}.{os.getpid()}.{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(doc).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.directory / key_file_name(key_id, version))
        except FileExistsError:
            if not exclusive_retry:
                raise KeyAdminError(f"key {key_id!r} version {version} already exists") from None
            return False
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True


__all__ = ["LocalKeyring", "MASTER_KEY_SIZE", "key_file_name"]
