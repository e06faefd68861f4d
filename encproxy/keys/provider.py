"""The one interface every key provider implements (docs/KEYS.md §1).

``KeyProvider`` is what the object layer uses::

    generate_data_key(key_id, context) -> DataKey(plaintext, blob)
    wrap(key_id, data_key, context)    -> blob
    unwrap(blob, context)              -> data_key
    describe(key_id)                   -> KeyInfo      (KMS.NotFoundException if absent)
    key_exists(key_id)                 -> bool
    versions(key_id) / current_version(key_id)
    normalize(key_id)                  -> str
    close()

``KeyAdmin`` is what ``encproxy keys`` uses where encproxy manages the keys itself
(local, pkcs11, kmip): ``create_key``, ``rotate_key``, ``list_keys``.

Errors (all :mod:`encproxy.errors` leaves; messages never hold key material; the full
table is docs/KEYS.md §5):

* unknown key or malformed key id -> ``KMS.NotFoundException`` (400);
* disabled / not active key -> ``KMS.DisabledException`` (400);
* provider unreachable, timed out or refusing encproxy's own credentials ->
  ``KeyProviderUnavailable`` (503 ServiceUnavailable);
* a blob that does not unwrap under this context (wrong context, tampered, foreign,
  malformed) -> ``KeyUnwrapFailed`` (an IntegrityError: 500 InternalError).

Providers fail closed: anything they cannot classify is raised, never ignored.

No file or network I/O and no third-party imports: providers add those.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from encproxy import errors
from encproxy.keys.blob import ProviderKind, WrappedKey, check_context
from encproxy.keys.keyid import normalize_key_id

log = logging.getLogger("encproxy.keys")

DATA_KEY_SIZE = 32
MIN_DATA_KEY = 16
MAX_DATA_KEY = 64

Context = Mapping[str, str]


class DataKey(NamedTuple):
    """A fresh data key: ``plaintext`` (secret, never logged) and its wrapped ``blob``."""

    plaintext: bytes
    blob: bytes

    def __repr__(self) -> str:
        return f"DataKey(plaintext=<{len(self.plaintext)} bytes>, blob=<{len(self.blob)} bytes>)"


@dataclass(frozen=True)
class KeyInfo:
    """What a provider says about one master key. Never holds key material."""

    key_id: str                       # the provider's normal form (awskms: the key ARN)
    current_version: str              # the version new wraps use
    versions: tuple[str, ...]         # oldest first; all still unwrap
    enabled: bool = True
    created: datetime | None = None   # of the current version, where the provider knows it
    managed_versions: bool = True     # False where the provider hides versions (AWS KMS)


class KeyProvider(ABC):
    """A custodian of master keys (see the module docstring)."""

    # Set by each provider class; wrappers (cache, metrics) take their inner provider's.
    kind: ProviderKind

    @property
    def name(self) -> str:
        return self.kind.config_name

    def normalize(self, key_id: str) -> str:
        """The id this provider names the key by; KMS.NotFoundException if malformed."""
        return normalize_key_id(key_id, self.name)

    @abstractmethod
    def generate_data_key(self, key_id: str, context: Context) -> DataKey: ...

    @abstractmethod
    def wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes: ...

    @abstractmethod
    def unwrap(self, blob: bytes, context: Context) -> bytes: ...

    @abstractmethod
    def describe(self, key_id: str) -> KeyInfo: ...

    def key_exists(self, key_id: str) -> bool:
        """True if the key exists (enabled or not); provider errors other than absence raise."""
        try:
            self.describe(key_id)
        except errors.KMSNotFound:
            return False
        return True

    def versions(self, key_id: str) -> tuple[str, ...]:
        return self.describe(key_id).versions

    def current_version(self, key_id: str) -> str:
        return self.describe(key_id).current_version

    def close(self) -> None:  # noqa: B027 - optional: most providers hold nothing to release
        """Release connections and sessions. The provider may be used again afterwards."""


class KeyAdminError(errors.EncproxyError):
    """A key-management request that cannot be done (the key already exists, ...)."""


class KeyAdmin(ABC):
    """Key management, for providers where encproxy creates and rotates keys itself."""

    @abstractmethod
    def create_key(self, key_id: str) -> KeyInfo: ...

    @abstractmethod
    def rotate_key(self, key_id: str) -> KeyInfo:
        """Add a version, which becomes current; older versions still unwrap."""

    @abstractmethod
    def list_keys(self) -> list[KeyInfo]: ...

    def retire_version(self, key_id: str, version: str) -> KeyInfo:
        """Take a version that is not current out of use; blobs under it stop unwrapping."""
        raise KeyAdminError(f"the {getattr(self, 'name', 'configured')} provider cannot retire "
                            "key versions through encproxy; use the provider's own tools")


@dataclass
class _Cached:
    at: float
    info: KeyInfo


@dataclass
class InfoCache:
    """Key metadata (never key material) for ``ttl`` seconds: which version is current.

    Bounds how long another replica's rotation takes to be seen (docs/KEYS.md §4).
    """

    ttl: float
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 1024
    _entries: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key_id: str, load: Callable[[str], KeyInfo]) -> KeyInfo:
        now = self.clock()
        with self._lock:
            hit = self._entries.get(key_id)
        if hit is not None and now - hit.at < self.ttl:
            return hit.info
        info = load(key_id)
        self.put(key_id, info, now)
        return info

    def put(self, key_id: str, info: KeyInfo, now: float | None = None) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key_id] = _Cached(self.clock() if now is None else now, info)

    def invalidate(self, key_id: str | None = None) -> None:
        with self._lock:
            if key_id is None:
                self._entries.clear()
            else:
                self._entries.pop(key_id, None)


class BaseProvider(KeyProvider):
    """Shared argument checks, blob decoding and metadata caching.

    Subclasses implement ``_wrap(key_id, data_key, context)`` with a normalized key id,
    ``_unwrap(wrapped, context)`` with a decoded blob of their own kind, and
    ``_describe(key_id)`` with a normalized key id.
    """

    def __init__(self, metadata_ttl: float = 30.0) -> None:
        self._info = InfoCache(metadata_ttl)

    # -- the interface --------------------------------------------------------------
    def generate_data_key(self, key_id: str, context: Context) -> DataKey:
        plaintext = os.urandom(DATA_KEY_SIZE)
        return DataKey(plaintext, self.wrap(key_id, plaintext, context))

    def wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        if not isinstance(data_key, (bytes, bytearray)) \
                or not MIN_DATA_KEY <= len(data_key) <= MAX_DATA_KEY:
            raise ValueError("data key must be 16..64 bytes")
        check_context(context)
        return self._wrap(self.normalize(key_id), bytes(data_key), context)

    def unwrap(self, blob: bytes, context: Context) -> bytes:
        check_context(context)
        wrapped = WrappedKey.from_bytes(blob)
        if wrapped.provider is not self.kind:
            log.error("a blob wrapped by the %s provider reached the %s provider",
                      wrapped.provider.config_name, self.name)
            raise errors.KeyUnwrapFailed("foreign-provider")
        data_key = self._unwrap(wrapped, context)
        if not MIN_DATA_KEY <= len(data_key) <= MAX_DATA_KEY:
            raise errors.KeyUnwrapFailed("bad-length")
        return data_key

    def describe(self, key_id: str) -> KeyInfo:
        """Asks the provider (never the cache), and refreshes the cache with the answer."""
        normalized = self.normalize(key_id)
        info = self._describe(normalized)
        self._info.put(normalized, info)
        return info

    # -- for subclasses ---------------------------------------------------------------
    def _current(self, key_id: str) -> KeyInfo:
        """Cached describe of a normalized id; raises KMS.DisabledException if disabled."""
        info = self._info.get(key_id, self._describe)
        if not info.enabled:
            raise errors.KMSDisabled(f"The key '{info.key_id}' is disabled.")
        return info

    @abstractmethod
    def _wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes: ...

    @abstractmethod
    def _unwrap(self, wrapped: WrappedKey, context: Context) -> bytes: ...

    @abstractmethod
    def _describe(self, key_id: str) -> KeyInfo: ...


def not_found(key_id: str) -> errors.S3Error:
    return errors.KMSNotFound(f"Key '{key_id}' does not exist")


def unavailable(provider: str, what: str, exc: BaseException | None = None) -> errors.S3Error:
    """A 503, logged with the cause's class (never its text, which may echo request data)."""
    cause = f" ({type(exc).__name__})" if exc is not None else ""
    log.error("key provider %s unavailable: %s%s", provider, what, cause)
    return errors.KeyProviderUnavailable()


__all__ = ["BaseProvider", "Context", "DATA_KEY_SIZE", "DataKey", "InfoCache", "KeyAdmin",
           "KeyAdminError", "KeyInfo", "KeyProvider", "not_found", "unavailable"]
