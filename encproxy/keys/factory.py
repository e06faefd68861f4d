"""A key provider from ``[keys]`` settings, and the start-up check (docs/KEYS.md §3).

``build_provider(settings)`` imports only the chosen provider's module, so a
provider whose library is missing fails here, with a ``ConfigError`` (exit 2, one
line), and the others cost nothing. ``check_provider(settings)`` is what
``encproxy serve`` and ``check-config`` run before anything listens: the provider
can be built (key files are private, certificates load), it can be reached, and
``default_key`` exists and is enabled.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.keys.provider import KeyInfo, KeyProvider
from encproxy.settings import Settings


def _opt_path(settings: Settings, option: str) -> str:
    return str(settings.path("keys", option)) if settings.get("keys", option) else ""


def build_provider(settings: Settings, *, cache: bool = True,
                   measure: Callable[[KeyProvider], KeyProvider] | None = None) -> KeyProvider:
    """The configured provider (wrapped in the data-key cache if ``cache_entries`` > 0).

    ``measure`` wraps the provider itself, under the cache (``metrics.metered``: what it
    counts are the calls that reach the provider, never cache hits)."""
    kind = settings.get("keys", "provider")

    def get(option: str) -> Any:
        return settings.get("keys", option)

    ttl = get("metadata_ttl")
    provider: KeyProvider
    if kind == "local":
        from encproxy.keys.local import LocalKeyring
        provider = LocalKeyring(settings.path("keys", "keyring"), metadata_ttl=ttl)
    elif kind == "pkcs11":
        from encproxy.keys.pkcs11 import Pkcs11Provider
        provider = Pkcs11Provider(_opt_path(settings, "pkcs11_module"),
                                  get("pkcs11_token_label"), get("pkcs11_pin"),
                                  metadata_ttl=ttl)
    elif kind == "kmip":
        from encproxy.keys.kmip import KmipProvider
        provider = KmipProvider(get("kmip_host"), get("kmip_port"),
                                _opt_path(settings, "kmip_certfile"),
                                _opt_path(settings, "kmip_keyfile"),
                                _opt_path(settings, "kmip_ca"),
                                connect_timeout=get("connect_timeout"), timeout=get("timeout"),
                                metadata_ttl=ttl)
    elif kind == "awskms":
        from encproxy.keys.awskms import AwsKmsProvider
        provider = AwsKmsProvider(get("endpoint"), get("region"), get("access_key"),
                                  get("secret_key"), session_token=get("session_token"),
                                  connect_timeout=get("connect_timeout"),
                                  timeout=get("timeout"), ca_file=_opt_path(settings, "ca_file"),
                                  metadata_ttl=ttl)
    else:  # settings validation admits only the four names
        raise AssertionError(f"key provider {kind!r} passed validation but has no builder")
    if measure is not None:
        provider = measure(provider)
    if cache and get("cache_entries") > 0:
        from encproxy.keys.cache import CachingProvider
        provider = CachingProvider(provider, get("cache_entries"), get("cache_ttl"))
    return provider


def check_default_key(provider: KeyProvider, default_key: str) -> KeyInfo:
    """Describe ``default_key``; any problem is a one-line ConfigError."""
    hint = ("create it with: encproxy keys create " + default_key
            if provider.name in ("local", "pkcs11", "kmip") else "create it in the KMS")
    try:
        info = provider.describe(default_key)
    except errors.KMSNotFound:
        raise ConfigError("keys", "default_key",
                          f"key {default_key!r} does not exist in the {provider.name} "
                          f"provider ({hint})") from None
    except errors.S3Error as exc:
        raise ConfigError("keys", "default_key",
                          f"cannot use key {default_key!r}: {exc.code}: {exc.message}") from None
    if not info.enabled:
        raise ConfigError("keys", "default_key", f"key {default_key!r} is disabled")
    return info


def check_provider(settings: Settings) -> KeyInfo:
    """Build the provider, check ``default_key``, close it again (nothing stays open)."""
    provider = build_provider(settings, cache=False)
    try:
        return check_default_key(provider, settings.get("keys", "default_key"))
    finally:
        provider.close()


__all__ = ["build_provider", "check_default_key", "check_provider"]
