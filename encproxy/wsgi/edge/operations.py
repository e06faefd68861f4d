"""The outermost layer: health, readiness and metrics on reserved paths (docs/OPERATIONS.md §1).

    GET /_encproxy/health    liveness: 200 while the worker answers
    GET /_encproxy/ready     readiness: 200 when the backend and the key provider answer,
                             else 503
    GET /_encproxy/metrics   Prometheus text format, summed over all workers

``_encproxy`` can never be a bucket (S3 bucket names have no underscore), so a
path-style request for it is never an S3 request.  A virtual-hosted request
(``Host: BUCKET.<hostname>``) for the same path is an object key of that
bucket, and passes through.  These paths need no SigV4 authentication; the
metrics may be restricted to a bearer token (``[server] metrics_token``) and to
client networks (``[server] metrics_allow``).  They are not access-logged and
not counted in the request metrics (probes would drown both).

Readiness makes one cheap call to each dependency, both at once, each bounded
by ``ready_timeout``: a HEAD of the internal bucket through the backend app
(any answer below 500 means the backend is there), and ``describe`` of the
default key.  A check still running from an earlier probe is waited on rather
than started again, so a hanging backend never piles up threads.  The answer
is a small JSON document naming each check's result (``ok``, ``timeout`` or an
error code), never a message that could carry a secret.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from encproxy import errors, metrics
from encproxy.keys.provider import KeyProvider
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.operations")

PREFIX = "/_encproxy/"
HEALTH = PREFIX + "health"
READY = PREFIX + "ready"
METRICS = PREFIX + "metrics"
PATHS = (HEALTH, READY, METRICS)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ReadinessChecks:
    """The two dependency checks, single-flight, each bounded by ``timeout`` seconds."""

    def __init__(self, backend: WSGIApp, keys: KeyProvider, default_key: str,
                 internal_bucket: str, timeout: float) -> None:
        self.backend = backend
        self.keys = keys
        self.default_key = default_key
        self.internal_bucket = internal_bucket
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # made in the worker, after fork
        self._running: dict[str, Future[str]] = {}

    def _backend(self) -> str:
        resp = subrequest.request(self.backend, None, "HEAD", self.internal_bucket)
        if resp.status >= 500:
            return resp.headers.get("x-amz-error-code") or f"HTTP {resp.status}"
        return "ok"

    def _keys(self) -> str:
        info = self.keys.describe(self.default_key)
        return "ok" if info.enabled else "KMS.DisabledException"

    def _submit(self, name: str, check: Callable[[], str]) -> Future[str]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(4, thread_name_prefix="encproxy-ready")
            running = self._running.get(name)
            if running is None or running.done():
                running = self._running[name] = self._pool.submit(check)
            return running

    def run(self) -> dict[str, str]:
        futures = {"backend": self._submit("backend", self._backend),
                   "keys": self._submit("keys", self._keys)}
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=self.timeout)
            except FutureTimeout:
                results[name] = "timeout"
            except errors.S3Error as exc:
                results[name] = exc.code
            except Exception as exc:  # noqa: BLE001 - reported by class, never by text
                results[name] = type(exc).__name__
        if any(v != "ok" for v in results.values()):
            log.warning("not ready: %s", ", ".join(f"{k} {v}" for k, v in results.items()))
        return results


class OperationsLayer:
    def __init__(self, app: WSGIApp, hostnames: Iterable[str], checks: ReadinessChecks,
                 metrics_token: str = "", metrics_allow: Sequence[Network] = ()) -> None:
        self.app = app
        self.suffixes = tuple("." + h.lower() for h in hostnames)
        self.checks = checks
        self.metrics_token = metrics_token
        self.metrics_allow = tuple(metrics_allow)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        path = self._reserved_path(environ)
        if path is None:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _json(start_response, 405, {"error": "method not allowed"}, method,
                         [("Allow", "GET, HEAD")])
        if path == HEALTH:
            return _json(start_response, 200, {"status": "ok"}, method)
        if path == READY:
            checks = self.checks.run()
            ready = all(v == "ok" for v in checks.values())
            return _json(start_response, 200 if ready else 503,
                         {"status": "ready" if ready else "not ready", "checks": checks}, method)
        if path == METRICS:
            refusal = self._refuse_metrics(environ)
            if refusal is not None:
                return _json(start_response, refusal[0], {"error": refusal[1]}, method,
                             [("WWW-Authenticate", "Bearer")] if refusal[0] == 401 else [])
            body = metrics.render()
            start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE),
                                      ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store")])
            return [b"" if method == "HEAD" else body]
        return _json(start_response, 404, {"error": "no such path",
                                            "paths": list(PATHS)}, method)

    def _reserved_path(self, environ: dict[str, Any]) -> str | None:
        raw: str = environ.get("RAW_URI") or environ.get("REQUEST_URI") or \
            environ.get("PATH_INFO", "")
        if "://" in raw[:10]:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        path = raw.partition("?")[0]
        if not path.startswith(PREFIX) and path != PREFIX[:-1]:
            return None
        host = (environ.get("HTTP_HOST") or "").lower()
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if any(host.endswith(s) and len(host) > len(s) for s in self.suffixes):
            return None  # virtual-hosted: an object key in the bucket BUCKET
        return path

    def _refuse_metrics(self, environ: dict[str, Any]) -> tuple[int, str] | None:
        if self.metrics_allow:
            try:
                addr = ipaddress.ip_address((environ.get("REMOTE_ADDR") or "").strip("[]"))
            except ValueError:
                return 403, "forbidden"
            if not any(addr in net for net in self.metrics_allow):
                return 403, "forbidden"
        if self.metrics_token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.strip().encode(), self.metrics_token.encode()):
                return 401, "a bearer token is required"
        return None


def _json(start_response: Callable[..., Any], status: int, doc: dict[str, Any], method: str,
          headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              405: "Method Not Allowed", 503: "Service Unavailable"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body))),
                                          ("Cache-Control", "no-store"), *(headers or [])])
    return [b"" if method == "HEAD" else body]


def outer_layers(gateway: WSGIApp, settings: Any, backend: WSGIApp,
                 keys: KeyProvider) -> WSGIApp:
    """``OperationsLayer(RequestLog(gateway))`` from ``[server]`` settings (stack.py)."""
    from encproxy.wsgi.edge.access_log import RequestLog

    def server(option: str) -> Any:
        return settings.get("server", option)

    checks = ReadinessChecks(backend, keys, settings.get("keys", "default_key"),
                             settings.get("backend", "internal_bucket"), server("ready_timeout"))
    logged = RequestLog(gateway, access_log=server("access_log"),
                        max_body=server("max_request_body"))
    return OperationsLayer(logged, server("hostnames"), checks,
                           metrics_token=server("metrics_token"),
                           metrics_allow=server("metrics_allow"))


__all__ = ["HEALTH", "METRICS", "OperationsLayer", "PATHS", "READY", "ReadinessChecks",
           "outer_layers"]
