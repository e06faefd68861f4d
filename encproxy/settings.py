"""The configuration schema: every option declared once, with default, validator and help.

An ini file is read, environment overrides (``ENCPROXY_<SECTION>_<OPTION>``)
are applied on top, and every value is validated before anything starts.  A
problem raises :class:`encproxy.errors.ConfigError` naming the section, the
option and the problem; the CLI turns that into one line and exit status 2.

Pure module: reading the file is the caller's job (``load`` takes text).
"""
from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encproxy.errors import ConfigError

ENV_PREFIX = "ENCPROXY_"
ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]{3,128}$")
MIN_SECRET_LENGTH = 8


# -- validators: text -> value, raising ValueError with a short reason ------------------
def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT")
    host = host.strip("[]")
    return host, _port(port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number")
    return int(text)


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside {lo}..{hi}")
        return value
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return parse


def _hostnames(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    for n in names:
        if not re.fullmatch(r"[a-z0-9.-]+", n):
            raise ValueError(f"{n!r} is not a host name")
    return names


def _region(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[a-z0-9-]{1,32}", value):
        raise ValueError(f"{value!r} is not a region name")
    return value


def _path(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


@dataclass(frozen=True)
class Option:
    section: str
    name: str
    default: str | None          # None: required
    parse: Callable[[str], Any]
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("server", "listen", "127.0.0.1:8080", _listen,
           "HOST:PORT to listen on."),
    Option("server", "workers", "2", _int_range(1, 256),
           "gunicorn worker processes."),
    Option("server", "threads", "8", _int_range(1, 1024),
           "Threads per worker (gthread): concurrent requests per process."),
    Option("server", "timeout", "120", _int_range(1, 86400),
           "Seconds a worker may be silent before it is restarted."),
    Option("server", "graceful_timeout", "30", _int_range(1, 86400),
           "Seconds in-flight requests get to finish on SIGTERM."),
    Option("server", "keepalive", "5", _int_range(0, 3600),
           "Seconds an idle keep-alive connection is held open."),
    Option("server", "client_timeout", "60", _int_range(1, 3600),
           "Seconds a client may stay silent in the middle of sending a request body; "
           "then the request fails with RequestTimeout and nothing is stored."),
    Option("server", "hostnames", "localhost", _hostnames,
           "Comma-separated host names of this service; a request to BUCKET.<hostname> is "
           "virtual-hosted-style, anything else is path-style."),
    Option("server", "region", "us-east-1", _region,
           "The region clients sign for (SigV4 credential scope) and GetBucketLocation."),
    Option("server", "log_level", "info", _choice("debug", "info", "warning", "error"),
           "Log level."),
    Option("backend", "type", "file", _choice("file"),
           "Where objects are stored: 'file', the embedded store (more types come later)."),
    Option("backend", "root", "../var/data", _path,
           "type=file: the directory of the store. Relative paths are relative to the "
           "directory of this config file."),
)

DYNAMIC_SECTIONS = {"credentials"}
SECTIONS = {o.section for o in OPTIONS} | DYNAMIC_SECTIONS


@dataclass(frozen=True)
class Settings:
    values: Mapping[tuple[str, str], Any]
    credentials: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def get(self, section: str, option: str) -> Any:
        return self.values[(section, option)]

    def path(self, section: str, option: str) -> Path:
        """A path option, resolved against the config file's directory."""
        p = Path(self.get(section, option)).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``ENCPROXY_SERVER_LISTEN=…`` → ("server", "listen", value); credentials keep case."""
    found = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "ENCPROXY_CONFIG":
            continue
        rest = name[len(ENV_PREFIX):]
        for section in sorted(SECTIONS, key=len, reverse=True):
            head = section.upper() + "_"
            if rest.startswith(head) and len(rest) > len(head):
                option = rest[len(head):]
                found.append((section, option if section in DYNAMIC_SECTIONS
                              else option.lower(), value))
                break
        else:
            raise ConfigError("environment", name, "names no known section")
    return found


def load(text: str, base_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # access keys are case-sensitive
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        line = str(exc).splitlines()[0]
        raise ConfigError("file", None, line) from None

    raw: dict[tuple[str, str], str] = {}
    credentials: dict[str, str] = {}
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(section, None, "unknown section")
        for option, value in parser.items(section):
            if section == "credentials":
                credentials[option] = value
            else:
                raw[(section, option.lower())] = value

    for section, option, value in _env_overrides(os.environ if environ is None else environ):
        if section == "credentials":
            credentials[option] = value
        else:
            raw[(section, option)] = value

    known = {(o.section, o.name): o for o in OPTIONS}
    for section, option in raw:
        if (section, option) not in known:
            raise ConfigError(section, option, "unknown option")

    values: dict[tuple[str, str], Any] = {}
    for (section, name), opt in known.items():
        text_value = raw.get((section, name), opt.default)
        if text_value is None:
            raise ConfigError(section, name, "is required")
        try:
            values[(section, name)] = opt.parse(text_value)
        except ValueError as exc:
            raise ConfigError(section, name, str(exc)) from None

    for access_key, secret in credentials.items():
        if not ACCESS_KEY_RE.match(access_key):
            raise ConfigError("credentials", access_key,
                              "access key must be 3-128 characters of A-Z a-z 0-9 _+=,.@-")
        if len(secret.strip()) < MIN_SECRET_LENGTH:
            raise ConfigError("credentials", access_key,
                              f"secret key must be at least {MIN_SECRET_LENGTH} characters")
    credentials = {k: v.strip() for k, v in credentials.items()}
    if not credentials:
        raise ConfigError("credentials", None, "no client credentials are configured")
    return Settings(values=values, credentials=credentials, base_dir=base_dir)


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("file", None, f"cannot read {path}: {exc.strerror}") from None
    return load(text, path.resolve().parent, environ)
