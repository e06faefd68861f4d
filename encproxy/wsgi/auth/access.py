"""Per-client access rules, applied once per request right after authentication
(``[access]``; the rules and what each permission covers: ``encproxy.access``).

A request signed by a client with rules goes on only if they allow its operation on
its bucket (and, for a copy, ``read`` on the source's bucket); otherwise it is S3's
``403 AccessDenied`` before any layer below acts.  Anonymous requests are decided by
ACLs (``encproxy.wsgi.apps.*.anonymous``), and clients without rules keep full access.
The decision goes to the access log (``access``): ``full``, ``allowed`` or
``denied: no <permission> on <bucket>``.

Two decisions need what only layers below read: the KMS key a request names (in its
headers, in PutBucketEncryption's or UpdateObjectEncryption's body), which those layers
check with :func:`require_kms_key`, and ListBuckets, which the bucket layer filters
with :func:`visible_bucket`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from encproxy import errors
from encproxy.access import COPIES, ClientRules, decide
from encproxy.s3.copy_source import parse_copy_source
from encproxy.wsgi import environ as env
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import error_response

#: The decision, for the access log.
DECISION = "encproxy.access_decision"
#: The restricted caller's rules, for the layers below (KMS keys, ListBuckets).
RULES = "encproxy.access_rules"
FULL, ALLOWED = "full", "allowed"


class AccessRulesLayer:
    """Refuses what a client's ``[access]`` rules do not allow; ``rules`` maps access
    keys to their rules (KMS key ids already normalized)."""

    def __init__(self, app: Callable[..., Iterable[bytes]],
                 rules: Mapping[str, ClientRules]) -> None:
        self.app = app
        self.rules = dict(rules)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        access_key = environ.get(env.ACCESS_KEY)
        if access_key is None:   # anonymous: decided by ACLs during authentication
            return self.app(environ, start_response)
        rules = self.rules.get(access_key)
        if rules is None:
            environ[DECISION] = FULL
            return self.app(environ, start_response)
        environ[RULES] = rules
        req = S3Request.of(environ)
        if req.operation is None:   # refused below as S3 refuses it; nothing is done
            return self.app(environ, start_response)
        refusal = decide(rules, req.operation, req.bucket, _copy_source_bucket(req))
        if refusal is not None:
            environ[DECISION] = f"denied: {refusal}"
            return error_response(errors.AccessDenied(), environ)(environ, start_response)
        environ[DECISION] = ALLOWED
        return self.app(environ, start_response)


def _copy_source_bucket(req: S3Request) -> str | None:
    if req.operation not in COPIES:
        return None
    raw = req.headers.get("x-amz-copy-source", "")
    try:
        return parse_copy_source(raw).bucket
    except errors.S3Error:
        # Refused below for its malformed header, before anything is read: but never
        # let a copy from an unchecked bucket through.
        return raw.lstrip("/").partition("/")[0] or "-"


def require_kms_key(environ: dict[str, Any], key_id: str) -> None:
    """AccessDenied unless the caller may name the KMS key ``key_id`` (normalized)."""
    rules = environ.get(RULES)
    if isinstance(rules, ClientRules) and key_id not in rules.kms_keys:
        environ[DECISION] = f"denied: KMS key {key_id} not allowed"
        raise errors.AccessDenied(f"This client may not use the KMS key {key_id}.")


def visible_bucket(environ: dict[str, Any]) -> Callable[[str], bool]:
    """Which buckets ListBuckets shows the caller: those its rules give any permission
    on; every one for a client without rules."""
    rules = environ.get(RULES)
    if isinstance(rules, ClientRules):
        return rules.sees
    return lambda _name: True


__all__ = ["AccessRulesLayer", "DECISION", "require_kms_key", "visible_bucket"]
