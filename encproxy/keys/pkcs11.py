"""Master keys in a PKCS#11 token (an HSM; tested with SoftHSM2) (docs/KEYS.md §6.2).

Each master-key version is a token object: an AES-256 secret key with
``CKA_LABEL = key id`` and ``CKA_ID = the version as ASCII decimal`` ("1", "2", ...),
created non-extractable and sensitive. The current version is the highest ``CKA_ID``.
Wrapping is ``C_Encrypt`` with ``CKM_AES_GCM`` inside the token: a random 96-bit
IV, a 128-bit tag, and the blob header plus the canonical context as AAD, so the
master key never leaves the token and the context is bound by the token itself.

Sessions: one logged-in session per process and token is kept open (PKCS#11 login
state belongs to the application, so further sessions, opened without a PIN, share
it); a pool of sessions serves concurrent threads. After ``fork`` (gunicorn workers)
the child re-initializes the library before it touches the token.

Errors: an absent token, a removed device, a lost session or a refused PIN is
``KeyProviderUnavailable`` (503); an unknown label or version is
``KMS.NotFoundException``; a failed GCM decryption is ``KeyUnwrapFailed``.

Layer 3. ``python-pkcs11`` is optional (``pip install 'encproxy[pkcs11]'``) and
imported when a provider is built.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.keys.blob import (
    GCM_NONCE_SIZE,
    GCM_TAG_SIZE,
    Algorithm,
    ProviderKind,
    WrappedKey,
    aad,
    encode_header,
)
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


def _import_pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise ConfigError("keys", "provider", "provider = pkcs11 needs python-pkcs11 "
                          "(pip install 'encproxy[pkcs11]')") from None
    return pkcs11


class _TokenPool:
    """The sessions of one process with one token (shared by every provider instance)."""

    def __init__(self, p11: Any, lib: Any, label: str, pin: str) -> None:
        self.p11 = p11
        self.lib = lib
        self.label = label
        self.pin = pin
        self.lock = threading.Lock()
        self.token: Any = None
        self.login: Any = None
        self.idle: list[Any] = []

    def acquire(self) -> Any:
        with self.lock:
            if self.idle:
                return self.idle.pop()
            if self.login is None:
                self.token = self.lib.get_token(token_label=self.label)
                try:
                    self.login = self.token.open(user_pin=self.pin, rw=True)
                except self.p11.exceptions.UserAlreadyLoggedIn:
                    self.login = self.token.open(rw=True)
                return self.login
            return self.token.open(rw=True)

    def release(self, session: Any) -> None:
        with self.lock:
            if session is self.login or len(self.idle) < 64:
                self.idle.append(session)
                return
        _close_quietly(session)

    def reset(self) -> None:
        """Forget every session (after a device error): the next call logs in afresh."""
        with self.lock:
            sessions = [s for s in self.idle if s is not self.login]
            self.idle, self.token, self.login = [], None, None
        for s in sessions:
            _close_quietly(s)


def _close_quietly(session: Any) -> None:
    with suppress(Exception):  # a broken session is being dropped anyway
        session.close()


_pools: dict[tuple[int, str, str], _TokenPool] = {}
_pools_lock = threading.Lock()
_initialized_pid: dict[str, int] = {}


def _pool(p11: Any, module: str, label: str, pin: str) -> _TokenPool:
    pid = os.getpid()
    with _pools_lock:
        pool = _pools.get((pid, module, label))
        if pool is not None:
            return pool
        lib = p11.lib(module)
        if _initialized_pid.setdefault(module, pid) != pid:
            # A forked child: PKCS#11 requires C_Initialize again in the new process.
            with suppress(p11.exceptions.PKCS11Error):
                lib.finalize()
            lib.initialize()
            _initialized_pid[module] = pid
        for key in [k for k in _pools if k[0] != pid]:
            del _pools[key]
        pool = _pools[(pid, module, label)] = _TokenPool(p11, lib, label, pin)
        return pool


class Pkcs11Provider(BaseProvider, KeyAdmin):
    """AES-GCM wrapping inside a PKCS#11 token; see the module docstring."""

    kind = ProviderKind.PKCS11

    def __init__(self, module: str, token_label: str, pin: str, *,
                 metadata_ttl: float = 30.0) -> None:
        super().__init__(metadata_ttl)
        self._p11 = _import_pkcs11()
        if not Path(module).is_file():
            raise ConfigError("keys", "pkcs11_module", f"{module}: no such file")
        if not token_label:
            raise ConfigError("keys", "pkcs11_token_label", "is required for provider = pkcs11")
        try:
            self._p11.lib(module)
        except (self._p11.exceptions.PKCS11Error, OSError) as exc:
            raise ConfigError("keys", "pkcs11_module",
                              f"{module}: cannot load the PKCS#11 module "
                              f"({type(exc).__name__})") from None
        self.module = module
        self.token_label = token_label
        self._pin = pin
        e = self._p11.exceptions
        self._down = (e.DeviceError, e.DeviceMemory, e.DeviceRemoved, e.TokenNotPresent,
                      e.TokenNotRecognised, e.SessionClosed, e.SessionHandleInvalid,
                      e.SessionCount, e.UserNotLoggedIn, e.HostMemory, e.NoSuchToken,
                      e.PinIncorrect, e.PinLocked, e.PinExpired, e.PinInvalid,
                      e.PinLenRange, e.UserPinNotInitialized, e.FunctionFailed,
                      e.MultipleTokensReturned)

    def __repr__(self) -> str:
        return f"Pkcs11Provider(module={self.module!r}, token={self.token_label!r})"

    # -- sessions --------------------------------------------------------------------------
    @contextmanager
    def _session(self, what: str) -> Iterator[Any]:
        pool = _pool(self._p11, self.module, self.token_label, self._pin)
        try:
            session = pool.acquire()
        except self._down as exc:
            pool.reset()
            raise unavailable(self.name, f"cannot open token {self.token_label!r}", exc) from None
        try:
            yield session
        except self._down as exc:
            pool.reset()
            raise unavailable(self.name, f"{what} on token {self.token_label!r}", exc) from None
        except BaseException:
            pool.release(session)
            raise
        else:
            pool.release(session)

    def _find(self, session: Any, key_id: str, version: str) -> Any:
        p11 = self._p11
        try:
            return session.get_key(object_class=p11.ObjectClass.SECRET_KEY,
                                   key_type=p11.KeyType.AES, label=key_id,
                                   id=version.encode("ascii"))
        except p11.exceptions.NoSuchKey:
            raise errors.KMSNotFound(
                f"Key '{key_id}' version {version} does not exist") from None
        except p11.exceptions.MultipleObjectsReturned:
            log.error("pkcs11: token %r holds several keys labelled %r with id %r",
                      self.token_label, key_id, version)
            raise errors.KMSInvalidState(
                f"Key '{key_id}' version {version} is ambiguous in the HSM") from None

    def _versions(self, session: Any, key_id: str) -> list[int]:
        p11 = self._p11
        found: list[int] = []
        for obj in session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.SECRET_KEY,
                                        p11.Attribute.LABEL: key_id}):
            raw = obj[p11.Attribute.ID]
            if obj.key_type == p11.KeyType.AES and raw.isdigit() and raw[:1] != b"0":
                found.append(int(raw))
        return sorted(set(found))

    # -- the provider interface -----------------------------------------------------------
    def _describe(self, key_id: str) -> KeyInfo:
        with self._session("describe") as session:
            versions = self._versions(session, key_id)
        if not versions:
            raise not_found(key_id)
        return KeyInfo(key_id, str(versions[-1]), tuple(map(str, versions)))

    def _wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        version = self._current(key_id).current_version
        nonce = os.urandom(GCM_NONCE_SIZE)
        header = encode_header(self.kind, Algorithm.AES256_GCM, key_id, version)
        p11 = self._p11
        with self._session("wrap") as session:
            try:
                key = self._find(session, key_id, version)
            except errors.S3Error:
                self._info.invalidate(key_id)  # the cached current version has gone
                raise
            ciphertext = key.encrypt(data_key, mechanism=p11.Mechanism.AES_GCM,
                                     mechanism_param=p11.GCMParams(
                                         nonce, aad(header, context), GCM_TAG_SIZE * 8))
        return WrappedKey(self.kind, Algorithm.AES256_GCM, key_id, version, nonce,
                          bytes(ciphertext)).to_bytes()

    def _unwrap(self, wrapped: WrappedKey, context: Context) -> bytes:
        if wrapped.algorithm is not Algorithm.AES256_GCM or not wrapped.key_version.isdigit():
            raise errors.KeyUnwrapFailed("malformed-blob")
        p11 = self._p11
        with self._session("unwrap") as session:
            key = self._find(session, wrapped.key_id, wrapped.key_version)
            try:
                return bytes(key.decrypt(
                    wrapped.ciphertext, mechanism=p11.Mechanism.AES_GCM,
                    mechanism_param=p11.GCMParams(wrapped.nonce,
                                                  aad(wrapped.header(), context),
                                                  GCM_TAG_SIZE * 8)))
            except self._down:
                raise
            except p11.exceptions.PKCS11Error as exc:
                # SoftHSM reports a bad tag as CKR_GENERAL_ERROR, others as
                # CKR_ENCRYPTED_DATA_INVALID: either way the blob did not authenticate.
                log.debug("pkcs11: decrypt refused (%s)", type(exc).__name__)
                raise errors.KeyUnwrapFailed("authentication") from None

    # -- management -----------------------------------------------------------------------
    def _generate(self, key_id: str, version: int) -> None:
        p11 = self._p11
        a = p11.Attribute
        with self._session("create key") as session:
            session.generate_key(
                p11.KeyType.AES, 256, label=key_id, id=str(version).encode("ascii"),
                store=True, template={
                    a.TOKEN: True, a.PRIVATE: True, a.SENSITIVE: True, a.EXTRACTABLE: False,
                    a.ENCRYPT: True, a.DECRYPT: True, a.WRAP: False, a.UNWRAP: False,
                    a.SIGN: False, a.VERIFY: False, a.DERIVE: False})
        self._info.invalidate(key_id)

    def create_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        if self.key_exists(key_id):
            raise KeyAdminError(f"key {key_id!r} already exists")
        self._generate(key_id, 1)
        return self._describe(key_id)

    def rotate_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        current = self._describe(key_id)
        self._generate(key_id, int(current.current_version) + 1)
        return self._describe(key_id)

    def list_keys(self) -> list[KeyInfo]:
        p11 = self._p11
        with self._session("list keys") as session:
            labels = sorted({obj[p11.Attribute.LABEL] for obj in session.get_objects(
                {p11.Attribute.CLASS: p11.ObjectClass.SECRET_KEY})})
        infos = []
        for label in labels:
            try:
                infos.append(self._describe(label))
            except errors.KMSNotFound:
                continue  # labelled keys without decimal ids are not encproxy's
        return infos


__all__ = ["Pkcs11Provider"]
