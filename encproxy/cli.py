"""The ``encproxy`` command line.

``main`` parses the arguments, loads the settings once (``--config``) and calls the
command with them: every command is ``func(settings, args) -> exit status``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from encproxy.errors import ConfigError
from encproxy.settings import Settings, config_path, load_settings

Command = Callable[[Settings, argparse.Namespace], int]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from encproxy.keys.factory import check_provider
    from encproxy.server import serve
    check_provider(settings)  # key files private, provider reachable, default_key exists
    serve(settings, config_path(args.config))  # the path: SIGHUP reads it again
    return 0


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    from encproxy.keys.factory import check_provider
    from encproxy.wsgi.stack import build_app
    build_app(settings)
    from encproxy.server import check_tls
    check_tls(settings)  # the certificate and key load together
    key = check_provider(settings)
    host, port = settings.get("server", "listen")
    print(f"config ok: {config_path(args.config)} (listen {host}:{port}, "
          f"backend {settings.get('backend', 'type')}, "
          f"{len(settings.credentials)} credential(s), keys {settings.get('keys', 'provider')}, "
          f"default key {key.key_id})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="encproxy", description="An encrypting S3 gateway.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("serve", cmd_serve, "run the gateway"),
        ("check-config", cmd_check_config, "validate a config file without serving"),
    ):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--config", metavar="PATH",
                        help="ini file (default: $ENCPROXY_CONFIG, else conf/encproxy.ini)")
        sp.set_defaults(func=func)
    from encproxy.keys.commands import add_keys_parser
    add_keys_parser(sub)  # encproxy keys create|rotate|list|ensure-default|retire
    from encproxy.rotation import add_rotate_parser
    add_rotate_parser(sub)  # encproxy rotate --bucket B [--prefix P] [--to-key K] [--dry-run]
    from encproxy.orphans import add_uploads_parser
    add_uploads_parser(sub)  # encproxy uploads orphans [--delete]
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    func: Command = args.func
    try:
        return int(func(load_settings(args.config), args))
    except ConfigError as exc:
        print(f"encproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
