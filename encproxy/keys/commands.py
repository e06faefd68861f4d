"""``encproxy keys ...``: manage master keys (docs/KEYS.md §7, README "Keys").

::

    encproxy keys create NAME [--if-missing]   # a new key, version 1
    encproxy keys rotate NAME                  # a new version, which becomes current
    encproxy keys list                         # id, versions, current version, created
    encproxy keys ensure-default               # create [keys] default_key if missing (local)
    encproxy keys retire NAME VERSION          # take an old version out of use (local)

``create``, ``rotate`` and ``list`` work with the ``local``, ``pkcs11`` and ``kmip``
providers; with ``awskms`` keys are managed in KMS itself. No command ever prints key
material. Exit status: 0 done, 1 refused (exists, missing, unreachable, awskms), 2 bad
config.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from encproxy import errors
from encproxy.keys.provider import KeyAdmin, KeyAdminError, KeyInfo, KeyProvider
from encproxy.settings import Settings

_KMS_HINT = ("with provider = awskms, keys are managed in KMS itself "
             "(aws kms create-key, create-alias, rotate-key-on-demand)")


def _fail(message: str) -> int:
    print(f"encproxy: {message}", file=sys.stderr)
    return 1


def _admin(provider: KeyProvider) -> KeyAdmin | None:
    return provider if isinstance(provider, KeyAdmin) else None


def _fmt(info: KeyInfo) -> str:
    return f"key {info.key_id!r}: versions {', '.join(info.versions)}; " \
           f"current {info.current_version}"


def _run(settings: Settings, body: Callable[[KeyProvider], int]) -> int:
    from encproxy.keys.factory import build_provider
    provider = build_provider(settings, cache=False)
    try:
        return body(provider)
    except KeyAdminError as exc:
        return _fail(str(exc))
    except errors.KMSNotFound as exc:
        return _fail(exc.message)
    except errors.S3Error as exc:
        return _fail(f"{exc.code}: {exc.message}")
    finally:
        provider.close()


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    def body(provider: KeyProvider) -> int:
        admin = _admin(provider)
        if admin is None:
            return _fail(_KMS_HINT)
        if args.if_missing and provider.key_exists(args.name):
            print(f"{_fmt(provider.describe(args.name))} (exists)")
            return 0
        print(f"created {_fmt(admin.create_key(args.name))}")
        return 0
    return _run(settings, body)


def cmd_rotate(settings: Settings, args: argparse.Namespace) -> int:
    def body(provider: KeyProvider) -> int:
        admin = _admin(provider)
        if admin is None:
            return _fail(_KMS_HINT)
        print(f"rotated {_fmt(admin.rotate_key(args.name))}")
        return 0
    return _run(settings, body)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    def body(provider: KeyProvider) -> int:
        admin = _admin(provider)
        if admin is None:
            return _fail(_KMS_HINT)
        rows = [("KEY ID", "VERSIONS", "CURRENT", "CREATED")]
        for info in admin.list_keys():
            created = info.created.strftime("%Y-%m-%dT%H:%M:%SZ") if info.created else "-"
            rows.append((info.key_id, ",".join(info.versions), info.current_version, created))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3])
        return 0
    return _run(settings, body)


def cmd_retire(settings: Settings, args: argparse.Namespace) -> int:
    def body(provider: KeyProvider) -> int:
        admin = _admin(provider)
        if admin is None:
            return _fail(_KMS_HINT)
        info = admin.retire_version(args.name, args.version)
        print(f"retired version {args.version} of {_fmt(info)}")
        return 0
    return _run(settings, body)


def cmd_ensure_default(settings: Settings, args: argparse.Namespace) -> int:
    def body(provider: KeyProvider) -> int:
        name = settings.get("keys", "default_key")
        if provider.key_exists(name):
            return 0
        admin = _admin(provider)
        if admin is None:
            return _fail(f"default key {name!r} does not exist; {_KMS_HINT}")
        if provider.name != "local":
            return _fail(f"default key {name!r} does not exist in the {provider.name} "
                         f"provider (create it with: encproxy keys create {name})")
        print(f"created default {_fmt(admin.create_key(name))}")
        return 0
    return _run(settings, body)


def add_keys_parser(sub: Any) -> None:
    """Register ``encproxy keys ...`` on the top-level subparsers of ``encproxy.cli``."""
    keys = sub.add_parser("keys", help="manage master keys (create, rotate, list, retire)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, func, help_text, takes_name in (
        ("create", cmd_create, "create a master key (version 1)", True),
        ("rotate", cmd_rotate, "add a master-key version, which becomes current", True),
        ("list", cmd_list, "list master keys and their versions", False),
        ("ensure-default", cmd_ensure_default,
         "create [keys] default_key if it does not exist (provider = local)", False),
        ("retire", cmd_retire, "take a key version that is not current out of use "
         "(provider = local; first check with: encproxy rotate --dry-run)", True),
    ):
        sp = keys_sub.add_parser(name, help=help_text)
        if takes_name:
            sp.add_argument("name", metavar="NAME", help="key id (alias/NAME and ARNs accepted)")
        if name == "retire":
            sp.add_argument("version", metavar="VERSION", help="the version to retire")
        if name == "create":
            sp.add_argument("--if-missing", action="store_true",
                            help="succeed without change if the key exists")
        sp.add_argument("--config", metavar="PATH",
                        help="ini file (default: $ENCPROXY_CONFIG, else conf/encproxy.ini)")
        sp.set_defaults(func=func)


__all__ = ["add_keys_parser"]
