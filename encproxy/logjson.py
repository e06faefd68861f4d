"""Log formatting: JSON (or text) lines, with secrets redacted (docs/OPERATIONS.md §3).

``logging_config(level, fmt, access_log)`` is the ``logging.config.dictConfig``
document the server hands to gunicorn (``logconfig_dict``), so that gunicorn's
own messages and encproxy's go through the same formatter, and so that a
SIGHUP (which re-reads the ini) applies a changed level or format.

* Every line but the access log goes to stderr: JSON by default
  (``{"time", "level", "logger", "pid", "message"[, "exception"]}``), or text.
* The access log (logger ``encproxy.access``, written by
  :mod:`encproxy.wsgi.edge.access_log`) goes to stdout, one JSON object per line, in
  both formats.

Redaction is a second line of defence: encproxy never passes secrets to a logger,
but messages from libraries (gunicorn's "Invalid request" carries the request
line) may hold a presigned query string or a header.  Every formatted line has
the values of SigV4 signatures, credentials, security tokens, Authorization
headers and SSE-C keys replaced by ``REDACTED``.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

ACCESS_LOGGER = "encproxy.access"
REDACTED = "REDACTED"

# name=value in query strings and header-ish text; the value ends at & space , ; " ' or >.
_SECRET_PARAMS = re.compile(
    r"(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|signature|credential|"
    r"awsaccesskeyid|x-amz-server-side-encryption-customer-key(?:-md5)?|"
    r"x-amz-copy-source-server-side-encryption-customer-key(?:-md5)?|"
    r"authorization|x-amz-security-token)(\s*[=:]\s*|%3D)([^&\s,;\"'<>]+)")
# Bearer tokens, and SigV2's "AWS ACCESSKEY:SIGNATURE".
_AUTH_HEADER = re.compile(r"(Bearer|AWS)\s+([A-Za-z0-9._~+/=@-]+:)?[A-Za-z0-9._~+/=-]{8,}")


# Each name _SECRET_PARAMS looks for contains one of these.  Every access line goes
# through redact, and the case-insensitive alternation costs ~45 us on a line that names
# none of them: ASCII text (where the regex's case-insensitivity is ASCII's) is searched
# only if it contains one of them; other text always.
_SECRET_WORDS = ("signature", "credential", "security-token", "awsaccesskeyid",
                 "customer-key", "authorization")


def redact(text: str) -> str:
    if not text:
        return text
    if "Bearer" in text or "AWS" in text:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + " " + REDACTED
                                if m.group(1) == "Bearer" or m.group(2) else m.group(0), text)
    if text.isascii():
        lowered = text.lower()
        if not any(word in lowered for word in _SECRET_WORDS):
            return text
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _utc(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "pid": record.process,
                               "message": redact(record.getMessage())}
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class AccessFormatter(logging.Formatter):
    """The access line: the record's ``access`` dict as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        doc = getattr(record, "access", None)
        if not isinstance(doc, dict):
            return JsonFormatter().format(record)
        return redact(json.dumps({"time": _utc(record.created), **doc}, ensure_ascii=False,
                                 separators=(",", ":")))


def logging_config(level: str, fmt: str = "json", access_log: bool = True) -> dict[str, Any]:
    """The dictConfig document for gunicorn's ``logconfig_dict``."""
    level = level.upper()
    formatter = "encproxy.logjson.JsonFormatter" if fmt == "json" else \
        "encproxy.logjson.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # gunicorn's access log is off ([server] accesslog = None); ours replaces it.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "CRITICAL",
                            "handlers": ["access"], "propagate": False},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "main",
                       "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "access",
                       "stream": "ext://sys.stdout"},
        },
        "formatters": {
            "main": {"()": formatter},
            "access": {"()": "encproxy.logjson.AccessFormatter"},
        },
    }


def configure(level: str, fmt: str = "json", access_log: bool = True) -> None:
    """Apply :func:`logging_config` now (before gunicorn takes over, and for tools)."""
    import logging.config
    logging.config.dictConfig(logging_config(level, fmt, access_log))


__all__ = ["ACCESS_LOGGER", "AccessFormatter", "JsonFormatter", "TextFormatter", "configure",
           "logging_config", "redact"]
