"""The configuration schema: every option declared once, with default, validator and help.

An ini file is read, environment overrides (``ENCPROXY_<SECTION>_<OPTION>``)
are applied on top, and every value is validated before anything starts.  A
problem raises :class:`encproxy.errors.ConfigError` naming the section, the
option and the problem; the CLI turns that into one line and exit status 2.

``load`` is pure (it takes text); ``load_file`` reads a file and ``load_settings`` finds
it the way the command line does (``--config``, else ``$ENCPROXY_CONFIG``, else
``conf/encproxy.ini``).
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encproxy.access import ClientRules, parse_grants, parse_key_list
from encproxy.errors import ConfigError

ENV_PREFIX = "ENCPROXY_"
# Environment variables with the prefix that are not option overrides: the config file's
# path, and the per-start runtime directory the server gives its workers.
CONFIG_ENV = "ENCPROXY_CONFIG"
RUNTIME_DIR_ENV = "ENCPROXY_RUNTIME_DIR"
NOT_OVERRIDES = (CONFIG_ENV, RUNTIME_DIR_ENV)
DEFAULT_CONFIG = Path("conf/encproxy.ini")
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


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _bucket_name(text: str) -> str:
    from encproxy.s3.names import is_valid_bucket_name
    value = text.strip()
    if not is_valid_bucket_name(value):
        raise ValueError(f"{value!r} is not a valid bucket name")
    return value


def _text(text: str) -> str:
    return text.strip()


_CONDITIONAL_WRITES = ("PutObject", "CopyObject", "CompleteMultipartUpload")
_CONDITION_NAMES = ("If-Match", "If-None-Match")


def _conditional_writes(text: str) -> frozenset[str]:
    """``Operation`` or ``Operation:Header`` entries, comma-separated (may be empty)."""
    out = set()
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        op, _, header = item.partition(":")
        if op not in _CONDITIONAL_WRITES or (header and header not in _CONDITION_NAMES):
            raise ValueError(f"{item!r} is not one of {', '.join(_CONDITIONAL_WRITES)}, "
                             "optionally followed by :If-Match or :If-None-Match")
        out.add(item)
    return frozenset(out)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0 <= value <= 86400:
        raise ValueError("must be between 0 and 86400")
    return value


def _endpoint(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value:
        return ""
    match = re.fullmatch(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]+))?", value)
    if not match:
        raise ValueError(f"{value!r} is not http(s)://HOST[:PORT]")
    if match.group(3) is not None:
        _port(match.group(3))
    return value


def _size(maximum: int) -> Callable[[str], int]:
    units = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3,
             "gib": 1024**3}

    def parse(text: str) -> int:
        match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", text.strip())
        if not match or match.group(2).lower() not in units:
            raise ValueError(f"{text.strip()!r} is not a size (bytes, or K/M/G/KiB/MiB/GiB)")
        value = int(match.group(1)) * units[match.group(2).lower()]
        if not 1 <= value <= maximum:
            raise ValueError(f"{value} is outside 1..{maximum}")
        return value
    return parse


def _networks(text: str) -> tuple[Any, ...]:
    import ipaddress
    nets = []
    for item in (t.strip() for t in text.split(",")):
        if item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(nets)


def _key_id(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[\x21-\x7e]{1,128}", value):
        raise ValueError("a key id is 1-128 printable ASCII characters")
    return value


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
    Option("server", "keepalive", "75", _int_range(0, 3600),
           "Seconds an idle keep-alive connection is held open: longer than clients keep "
           "theirs, so that a client never reuses a connection the server is closing."),
    Option("server", "client_timeout", "60", _int_range(1, 3600),
           "Seconds a client may stay silent in the middle of sending a request body; "
           "then the request fails with RequestTimeout and nothing is stored."),
    # Slow-client defence (docs/OPERATIONS.md §4, encproxy/worker.py).
    Option("server", "header_timeout", "10", _positive_float,
           "Seconds a client has to send a request's line and headers, from connecting (or "
           "from the first byte of a later request on a kept-alive connection); then it "
           "gets RequestTimeout and the connection is closed. No thread waits for a head."),
    Option("server", "body_timeout", "30", _positive_float,
           "Seconds every request body gets before body_min_rate counts: a body must have "
           "arrived within body_timeout + (bytes so far) / body_min_rate seconds of its "
           "head, else RequestTimeout and the connection is closed."),
    Option("server", "body_min_rate", "4KiB", _size(1024**3),
           "Bytes per second a request body must average beyond its body_timeout allowance "
           "(bytes, or with a unit: K, KiB, M, MiB)."),
    Option("server", "hostnames", "localhost", _hostnames,
           "Comma-separated host names of this service; a request to BUCKET.<hostname> is "
           "virtual-hosted-style, anything else is path-style."),
    Option("server", "region", "us-east-1", _region,
           "The region clients sign for (SigV4 credential scope) and GetBucketLocation."),
    Option("server", "log_level", "info", _choice("debug", "info", "warning", "error"),
           "Log level."),
    # Operations (docs/OPERATIONS.md); certfile/keyfile cross-checked in _check_server.
    Option("server", "log_format", "json", _choice("json", "text"),
           "Log lines on stderr: json (one object per line) or text."),
    Option("server", "access_log", "true", _bool,
           "One JSON line per request on stdout."),
    Option("server", "max_request_body", "5GiB", _size(5 * 1024**3),
           "Largest request body accepted (bytes, or with K/M/G/KiB/MiB/GiB); longer bodies "
           "are refused with EntityTooLarge before they are read."),
    Option("server", "certfile", "", _text, "TLS: the server certificate chain (PEM)."),
    Option("server", "keyfile", "", _text, "TLS: the server's private key (PEM)."),
    Option("server", "metrics_token", "", _text,
           "If set, /_encproxy/metrics requires 'Authorization: Bearer <token>'."),
    Option("server", "metrics_allow", "", _networks,
           "If set, /_encproxy/metrics answers only these client addresses/networks."),
    Option("server", "ready_timeout", "2", _positive_float,
           "Seconds each /_encproxy/ready check may take before it counts as failed."),
    Option("auth", "allow_sigv2", "true", _bool,
           "Accept AWS Signature Version 2 (Authorization: AWS ..., AWSAccessKeyId/Signature/"
           "Expires URLs, SigV2 POST policies), which boto3 uses for presigned URLs and POST "
           "policies unless told s3v4. false: refuse it as a SigV4-only AWS region does "
           "(InvalidRequest, 'Please use AWS4-HMAC-SHA256')."),
    Option("auth", "anonymous", "acl", _choice("acl", "refuse"),
           "Requests without any credentials. acl: decided as S3 decides them, by the ACLs "
           "(the file store's own; an S3 backend's, which gets them unsigned); refuse: "
           "AccessDenied, whatever the ACLs say."),
    Option("backend", "type", "file", _choice("file", "s3"),
           "Where objects are stored: 'file', the embedded store, or 's3', any S3 server."),
    Option("backend", "root", "../var/data", _path,
           "type=file: the directory of the store. Relative paths are relative to the "
           "directory of this config file."),
    # type = s3: cross-checked in _check_backend.
    Option("backend", "endpoint", "", _endpoint,
           "type=s3: the backend's URL, http(s)://HOST[:PORT], without a path."),
    Option("backend", "region", "us-east-1", _region,
           "type=s3: the region requests to the backend are signed for."),
    Option("backend", "access_key", "", _text, "type=s3: the backend's access key."),
    Option("backend", "secret_key", "", _text, "type=s3: the backend's secret key."),
    Option("backend", "addressing", "path", _choice("path", "virtual"),
           "type=s3: path (/BUCKET/KEY) or virtual (Host: BUCKET.HOST) requests."),
    Option("backend", "tls_verify", "true", _bool,
           "type=s3: verify the backend's TLS certificate (https endpoints)."),
    Option("backend", "ca_bundle", "", _text,
           "type=s3: a PEM file of CA certificates to verify the backend with; empty: the "
           "system's. Relative paths are relative to the directory of this config file."),
    Option("backend", "connect_timeout", "5", _positive_float,
           "type=s3: seconds to open a connection to the backend."),
    Option("backend", "read_timeout", "60", _positive_float,
           "type=s3: seconds the backend may stay silent while answering."),
    Option("backend", "pool_size", "32", _int_range(1, 1024),
           "type=s3: connections to the backend kept open per worker process."),
    Option("backend", "conditional_writes", "PutObject", _conditional_writes,
           "type=s3: the conditional writes (If-Match, If-None-Match) the backend enforces "
           "atomically: PutObject, CopyObject, CompleteMultipartUpload, each whole or as "
           "Operation:If-Match / Operation:If-None-Match. encproxy refuses the others with "
           "NotImplemented rather than let the backend ignore them (docs/BACKENDS.md). "
           "AWS S3 enforces all three."),
    Option("backend", "trailing_checksums", "false", _bool,
           "type=s3: the backend takes a checksum in an aws-chunked trailer "
           "(STREAMING-UNSIGNED-PAYLOAD-TRAILER): an unencrypted upload whose client sent "
           "its checksum in a trailer goes on with it in one. AWS S3 and moto do; Ceph RGW "
           "16.2 does not (false: the checksum is not forwarded, docs/BACKENDS.md)."),
    # [keys]: documented in conf/encproxy.ini and docs/KEYS.md; cross-checked in _check_keys.
    Option("backend", "internal_bucket", "encproxy-internal", _bucket_name,
           "The backend bucket where encproxy keeps its own state (bucket encryption "
           "configurations). Clients can neither see nor address it. encproxy creates it "
           "when first needed; with an S3 backend whose credentials cannot create buckets, "
           "create it beforehand."),
    Option("encryption", "default", "none", _choice("none", "AES256", "aws:kms"),
           "Encryption of writes into buckets that have no ?encryption configuration: none, "
           "AES256 (SSE-S3 under [keys] default_key) or aws:kms (SSE-KMS under default_key)."),
    Option("encryption", "require", "false", _bool,
           "true: refuse (AccessDenied) any write that would be stored unencrypted."),
    Option("encryption", "allow_insecure_sse_c", "false", _bool,
           "true: accept SSE-C keys over plain HTTP (local testing, or behind a TLS-terminating "
           "sidecar). AWS refuses them, and so does encproxy by default."),
    Option("encryption", "config_cache_seconds", "5", _non_negative_float,
           "How long a replica may serve a cached bucket encryption configuration: the bound "
           "on how stale one replica's view of a change made through another can be."),
    Option("keys", "provider", "local", _choice("local", "pkcs11", "kmip", "awskms"),
           "Where master keys live: local, pkcs11, kmip or awskms."),
    Option("keys", "default_key", "default", _key_id,
           "The key for SSEAlgorithm AES256 and for aws:kms without a key id."),
    Option("keys", "records_key", "", _text,
           "The key that wraps the records root key, which authenticates encproxy's own "
           "records in the internal bucket (docs/FORMAT.md §14). Empty: default_key."),
    Option("keys", "keyring", "../var/keys", _path, "provider=local: the key directory."),
    Option("keys", "metadata_ttl", "30", _non_negative_float,
           "Seconds a key's current version is remembered (how soon a rotation is seen)."),
    Option("keys", "cache_entries", "0", _int_range(0, 1_000_000),
           "Unwrapped data keys kept in memory per process; 0 turns the cache off."),
    Option("keys", "cache_ttl", "300", _positive_float,
           "Seconds an unwrapped data key may stay cached."),
    Option("keys", "bucket_key_lifetime", "300", _positive_float,
           "SSE-KMS bucket keys: seconds a process wraps new objects' data keys under one "
           "bucket key, and keeps an unwrapped bucket key (docs/KEYS.md, Bucket keys)."),
    Option("keys", "bucket_key_entries", "1024", _int_range(1, 1_000_000),
           "SSE-KMS bucket keys kept per process: at most this many to write with (one per "
           "bucket and master key) and this many unwrapped, least recently used out first."),
    Option("keys", "connect_timeout", "3", _positive_float,
           "kmip, awskms: seconds to connect."),
    Option("keys", "timeout", "10", _positive_float,
           "kmip, awskms: seconds to wait for an answer."),
    Option("keys", "pkcs11_module", "", _text, "provider=pkcs11: the PKCS#11 module (.so)."),
    Option("keys", "pkcs11_token_label", "", _text, "provider=pkcs11: the token label."),
    Option("keys", "pkcs11_pin", "", _text, "provider=pkcs11: the user PIN."),
    Option("keys", "kmip_host", "", _text, "provider=kmip: server host name."),
    Option("keys", "kmip_port", "5696", _port, "provider=kmip: server port."),
    Option("keys", "kmip_certfile", "", _text, "provider=kmip: client certificate (PEM)."),
    Option("keys", "kmip_keyfile", "", _text, "provider=kmip: client private key (PEM)."),
    Option("keys", "kmip_ca", "", _text, "provider=kmip: CA certificate(s) (PEM)."),
    Option("keys", "endpoint", "", _text,
           "provider=awskms: KMS endpoint URL; empty means https://kms.REGION.amazonaws.com."),
    Option("keys", "region", "us-east-1", _region, "provider=awskms: the KMS region."),
    Option("keys", "access_key", "", _text, "provider=awskms: access key id."),
    Option("keys", "secret_key", "", _text, "provider=awskms: secret access key."),
    Option("keys", "session_token", "", _text, "provider=awskms: session token, if any."),
    Option("keys", "ca_file", "", _text, "provider=awskms: CA bundle for the endpoint."),
)

#: ``[backend_credentials]``: ``<client access key> = <backend access key> <backend secret>``.
#: ``[access]``: ``<client access key> = <grants>``; ``[access_kms_keys]``: ``<client> = <keys>``
#: (encproxy.access).
DYNAMIC_SECTIONS = {"credentials", "backend_credentials", "access", "access_kms_keys"}
SECTIONS = {o.section for o in OPTIONS} | DYNAMIC_SECTIONS
#: Options whose values are secrets: each may be given as ``file:PATH`` (a Kubernetes
#: Secret mounted as files), and a config file that holds one must not be world-readable.
SECRET_OPTIONS = frozenset({("server", "metrics_token"), ("backend", "secret_key"),
                            ("keys", "pkcs11_pin"), ("keys", "secret_key"),
                            ("keys", "session_token")})
#: Sections whose every value holds a secret.
SECRET_SECTIONS = frozenset({"credentials", "backend_credentials"})
FILE_PREFIX = "file:"


@dataclass(frozen=True)
class BackendCredential:
    access_key: str
    secret_key: str = field(repr=False)  # keep it out of logs and tracebacks


@dataclass(frozen=True)
class Settings:
    values: Mapping[tuple[str, str], Any]
    credentials: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path = Path(".")
    #: client access key -> the backend identity its requests are signed as (``type = s3``);
    #: a client not named here is signed as ``[backend] access_key``.
    backend_credentials: Mapping[str, BackendCredential] = field(default_factory=dict)
    #: client access key -> what it may do (``[access]``); a client not named here has full
    #: access.  KMS key ids as written (the key provider normalizes them).
    access: Mapping[str, ClientRules] = field(default_factory=dict)
    #: The secrets written in the config text itself, as ``[section] option``.
    inline_secrets: tuple[str, ...] = ()

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
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
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


class _CaseSensitiveParser(configparser.ConfigParser):
    """Option names as written: access keys (``[credentials]``) are case-sensitive."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def load(text: str, base_dir: Path, environ: Mapping[str, str] | None = None,
         read_secret: Callable[[str], str] | None = None) -> Settings:
    """The settings ``text`` and the environment give.  ``read_secret`` reads a
    ``file:PATH`` secret (``load_file`` passes one; without it such a value is an
    error)."""
    parser = _CaseSensitiveParser(interpolation=None, strict=True)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        line = str(exc).splitlines()[0]
        raise ConfigError("file", None, line) from None

    raw: dict[tuple[str, str], str] = {}
    dynamic: dict[str, dict[str, str]] = {name: {} for name in DYNAMIC_SECTIONS}
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(section, None, "unknown section")
        for option, value in parser.items(section):
            if section in DYNAMIC_SECTIONS:
                dynamic[section][option] = value
            else:
                raw[(section, option.lower())] = value
    # The secrets the text itself holds (not the environment's, not file: references).
    inline = tuple(f"[{section}] {option}"
                   for section, option, value in _secret_values(raw, dynamic)
                   if value.strip() and not value.strip().startswith(FILE_PREFIX))

    for section, option, value in _env_overrides(os.environ if environ is None else environ):
        if section in DYNAMIC_SECTIONS:
            dynamic[section][option] = value
        else:
            raw[(section, option)] = value
    for section, option, value in _secret_values(raw, dynamic):
        if value.strip().startswith(FILE_PREFIX):
            secret = _read_file_secret(section, option, value, read_secret)
            if section in DYNAMIC_SECTIONS:
                dynamic[section][option] = secret
            else:
                raw[(section, option)] = secret
    credentials = dynamic["credentials"]

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
    _check_keys(values)
    _check_backend(values)
    _check_server(values)
    backend_credentials = _backend_credentials(dynamic["backend_credentials"], credentials,
                                               values[("backend", "type")])
    access = _access_rules(dynamic["access"], dynamic["access_kms_keys"], credentials)
    return Settings(values=values, credentials=credentials, base_dir=base_dir,
                    backend_credentials=backend_credentials, access=access,
                    inline_secrets=inline)


def _secret_values(raw: Mapping[tuple[str, str], str], dynamic: Mapping[str, Mapping[str, str]]
                   ) -> list[tuple[str, str, str]]:
    out = [(section, option, value) for (section, option), value in raw.items()
           if (section, option) in SECRET_OPTIONS]
    out += [(section, option, value) for section in sorted(SECRET_SECTIONS)
            for option, value in dynamic[section].items()]
    return out


def _read_file_secret(section: str, option: str, value: str,
                      read_secret: Callable[[str], str] | None) -> str:
    path = value.strip()[len(FILE_PREFIX):].strip()
    if read_secret is None:
        raise ConfigError(section, option, "file: secrets are read from a config file only")
    if not path:
        raise ConfigError(section, option, "file: names no file")
    try:
        secret = read_secret(path).strip()
    except OSError as exc:
        # The path is not a secret; what the file holds never reaches a message.
        raise ConfigError(section, option,
                          f"cannot read its secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(section, option,
                          f"its secret file {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(section, option, f"its secret file {path} is empty")
    return secret


def _access_rules(entries: Mapping[str, str], kms_keys: Mapping[str, str],
                  credentials: Mapping[str, str]) -> dict[str, ClientRules]:
    """``[access]`` and ``[access_kms_keys]``: each line names a client of
    ``[credentials]``; a KMS key list needs that client's ``[access]`` line (an
    unrestricted client may name any key)."""
    out: dict[str, ClientRules] = {}
    for client, value in entries.items():
        if client not in credentials:
            raise ConfigError("access", client, "names no access key of [credentials]")
        try:
            out[client] = ClientRules(parse_grants(value))
        except ValueError as exc:
            raise ConfigError("access", client, str(exc)) from None
    for client, value in kms_keys.items():
        if client not in out:
            raise ConfigError("access_kms_keys", client,
                              "names no client of [access] (a client without access "
                              "rules may name any key)")
        try:
            keys = frozenset(parse_key_list(value))
        except ValueError as exc:
            raise ConfigError("access_kms_keys", client, str(exc)) from None
        out[client] = dataclasses.replace(out[client], kms_keys=keys)
    return out


def _backend_credentials(entries: Mapping[str, str], credentials: Mapping[str, str],
                         backend_type: str) -> dict[str, BackendCredential]:
    """``[backend_credentials]``: each names a client of ``[credentials]`` and the backend
    access key and secret (separated by white space) its requests are signed with."""
    out: dict[str, BackendCredential] = {}
    for client, value in entries.items():
        if client not in credentials:
            raise ConfigError("backend_credentials", client,
                              "names no access key of [credentials]")
        if backend_type != "s3":
            raise ConfigError("backend_credentials", client,
                              "backend identities need [backend] type = s3")
        fields = value.split()
        if len(fields) != 2 or not ACCESS_KEY_RE.match(fields[0]):
            # The value holds a secret: the message never quotes it.
            raise ConfigError("backend_credentials", client,
                              "must be '<backend access key> <backend secret key>'")
        out[client] = BackendCredential(fields[0], fields[1])
    return out


_KEYS_REQUIRED = {
    "pkcs11": ("pkcs11_module", "pkcs11_token_label", "pkcs11_pin"),
    "kmip": ("kmip_host", "kmip_certfile", "kmip_keyfile", "kmip_ca"),
    "awskms": ("access_key", "secret_key"),
}


def _check_keys(values: Mapping[tuple[str, str], Any]) -> None:
    """[keys]: the options the chosen provider needs are set."""
    provider = values[("keys", "provider")]
    for option in _KEYS_REQUIRED.get(provider, ()):
        if not values[("keys", option)]:
            raise ConfigError("keys", option, f"is required when provider = {provider} "
                              f"(or set ENCPROXY_KEYS_{option.upper()})")


_BACKEND_REQUIRED = {"s3": ("endpoint", "access_key", "secret_key")}


def _check_backend(values: Mapping[tuple[str, str], Any]) -> None:
    """[backend]: the options the chosen type needs are set."""
    kind = values[("backend", "type")]
    for option in _BACKEND_REQUIRED.get(kind, ()):
        if not values[("backend", option)]:
            raise ConfigError("backend", option, f"is required when type = {kind} "
                              f"(or set ENCPROXY_BACKEND_{option.upper()})")


def _check_server(values: Mapping[tuple[str, str], Any]) -> None:
    """[server]: TLS needs both a certificate and its key."""
    cert, key = values[("server", "certfile")], values[("server", "keyfile")]
    if bool(cert) != bool(key):
        raise ConfigError("server", "keyfile" if cert else "certfile",
                          "certfile and keyfile must be set together (TLS)")


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the config file at ``path``, its ``file:`` secrets read (relative
    paths from its directory).  A file that holds secrets itself must not be readable by
    every user of the machine."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError("file", None, f"cannot read {path}: {exc.strerror}") from None
    base_dir = path.resolve().parent

    def read_secret(name: str) -> str:
        return (base_dir / Path(name).expanduser()).read_text(encoding="utf-8")

    settings = load(text, base_dir, environ, read_secret)
    if settings.inline_secrets and mode & stat.S_IROTH:
        raise ConfigError("file", None, (
            f"{path} holds secrets ({', '.join(settings.inline_secrets)}) and every user of "
            f"this machine may read it: chmod o-rwx {path}, or give the secrets in the "
            "environment (ENCPROXY_CREDENTIALS_<access key>, ...) or in files (file:PATH)"))
    return settings


def config_path(arg: str | None) -> Path:
    """The config file: ``arg`` (``--config``), else ``$ENCPROXY_CONFIG``, else the default."""
    if arg:
        return Path(arg)
    if os.environ.get("ENCPROXY_CONFIG"):
        return Path(os.environ["ENCPROXY_CONFIG"])
    return DEFAULT_CONFIG


def load_settings(arg: str | None) -> Settings:
    """The settings of the config file that ``arg`` (``--config``) names, or the default one."""
    return load_file(config_path(arg))
