"""The ``encproxy`` command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from encproxy.errors import ConfigError
from encproxy.settings import Settings, load_file

DEFAULT_CONFIG = Path("conf/encproxy.ini")


def config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("ENCPROXY_CONFIG"):
        return Path(os.environ["ENCPROXY_CONFIG"])
    return DEFAULT_CONFIG


def load_settings(arg: str | None) -> Settings:
    return load_file(config_path(arg))


def cmd_serve(args: argparse.Namespace) -> int:
    from encproxy.server import serve
    serve(load_settings(args.config))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from encproxy.wsgi.stack import build_app
    settings = load_settings(args.config)
    build_app(settings)
    host, port = settings.get("server", "listen")
    print(f"config ok: {config_path(args.config)} (listen {host}:{port}, "
          f"backend {settings.get('backend', 'type')}, "
          f"{len(settings.credentials)} credential(s))")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"encproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
