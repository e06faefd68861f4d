"""Prometheus metrics, correct across gunicorn workers (docs/OPERATIONS.md §2).

Every metric lives here, behind small functions that the layers call once per
request, per key-provider call or per event (never per chunk).  The
``prometheus_client`` library is imported on first use, not at import time:
its multiprocess mode is chosen when the library is imported, from
``PROMETHEUS_MULTIPROC_DIR``, which ``encproxy.server`` sets (a fresh
directory per server start) before gunicorn forks its workers.  Each worker
then writes its samples to its own files there, ``/_encproxy/metrics`` sums
them all, and the master's ``child_exit`` hook calls :func:`mark_process_dead`
for a worker that has gone (SIGHUP, a crash), so that its live gauges stop
counting while its counters keep adding up.  Without the variable (tests,
tools), the metrics are ordinary in-process ones.

Families (all prefixed ``encproxy_``):

* ``requests_total{operation,status}``, ``request_duration_seconds{operation,status}``
  (histogram), ``requests_in_flight``;
* ``received_bytes_total{operation}`` and ``sent_bytes_total{operation}``: body bytes
  on the client connection;
* ``encrypted_bytes_total`` and ``decrypted_bytes_total``: plaintext bytes;
* ``key_provider_calls_total{provider,call}``,
  ``key_provider_errors_total{provider,call,error}``,
  ``key_provider_duration_seconds{provider,call}`` (histogram);
* ``backend_errors_total{status}``: 5xx answers (and exceptions) of the backend app;
* ``integrity_failures_total{reason}``.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from encproxy.keys.provider import Context, DataKey, KeyInfo, KeyProvider

_P = ParamSpec("_P")
_T = TypeVar("_T")
#: A WSGI application (the same shape as ``encproxy.wsgi.responses.WSGIApp``).
_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a cached HEAD to a multi-gigabyte transfer.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)
PROVIDER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)


class _Families:
    """The metric objects, made once per process on first use."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram
        self.requests = Counter("encproxy_requests", "S3 requests answered, by operation "
                                "and HTTP status.", ["operation", "status"])
        self.duration = Histogram("encproxy_request_duration_seconds",
                                  "Time from the request to the end of its response body, by "
                                  "operation and HTTP status.", ["operation", "status"],
                                  buckets=REQUEST_BUCKETS)
        self.in_flight = Gauge("encproxy_requests_in_flight", "S3 requests being served.",
                               multiprocess_mode="livesum")
        self.received = Counter("encproxy_received_bytes", "Request body bytes read from "
                                "clients, by operation.", ["operation"])
        self.sent = Counter("encproxy_sent_bytes", "Response body bytes sent to clients, by "
                            "operation.", ["operation"])
        self.encrypted = Counter("encproxy_encrypted_bytes", "Plaintext bytes encrypted.")
        self.decrypted = Counter("encproxy_decrypted_bytes", "Plaintext bytes decrypted and "
                                 "sent.")
        self.kp_calls = Counter("encproxy_key_provider_calls", "Key-provider calls, by "
                                "provider and call.", ["provider", "call"])
        self.kp_errors = Counter("encproxy_key_provider_errors", "Key-provider calls that "
                                 "failed, by provider, call and error code.",
                                 ["provider", "call", "error"])
        self.kp_duration = Histogram("encproxy_key_provider_duration_seconds",
                                     "Key-provider call latency, by provider and call.",
                                     ["provider", "call"], buckets=PROVIDER_BUCKETS)
        self.backend_errors = Counter("encproxy_backend_errors", "Backend answers with a 5xx "
                                      "status, or that failed, by status.", ["status"])
        self.integrity = Counter("encproxy_integrity_failures", "Stored objects that failed "
                                 "authentication (tampering, corruption), by reason.",
                                 ["reason"])


_families: _Families | None = None
_lock = threading.Lock()


def _m() -> _Families:
    global _families
    if _families is None:
        with _lock:
            if _families is None:
                _families = _Families()
    return _families


def prepare() -> None:
    """Create this process's metric families now rather than on its first request."""
    _m()


# -- what the layers call ---------------------------------------------------------------
def request_started() -> None:
    _m().in_flight.inc()


def request_finished(operation: str, status: int, seconds: float, received: int,
                     sent: int) -> None:
    m = _m()
    code = str(status)
    m.in_flight.dec()
    m.requests.labels(operation, code).inc()
    m.duration.labels(operation, code).observe(seconds)
    if received:
        m.received.labels(operation).inc(received)
    if sent:
        m.sent.labels(operation).inc(sent)


def encrypted(nbytes: int) -> None:
    _m().encrypted.inc(nbytes)


def encrypted_if_sse(response: Any, nbytes: int) -> Any:
    """Count ``nbytes`` as encrypted if ``response`` (2xx) reports server-side encryption."""
    headers = getattr(response, "headers", {})
    if 200 <= getattr(response, "status_code", 0) < 300 and nbytes and (
            "x-amz-server-side-encryption" in headers
            or "x-amz-server-side-encryption-customer-algorithm" in headers):
        encrypted(nbytes)
    return response


def count_decrypted(batches: Iterable[Any]) -> Iterator[Any]:
    """Pass decrypted batches through, adding their length up once at the end."""
    total = 0
    try:
        for batch in batches:
            total += len(batch)
            yield batch
    finally:
        if total:
            _m().decrypted.inc(total)


def integrity_failure(reason: str) -> None:
    _m().integrity.labels(reason).inc()


def backend_error(status: int | str) -> None:
    _m().backend_errors.labels(str(status)).inc()


# -- exposition and process bookkeeping -------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render() -> bytes:
    """The text exposition of every metric (summed over all workers in multiprocess mode)."""
    _m()  # every family is listed, even before its first sample
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    if multiprocess_dir():
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def mark_process_dead(pid: int) -> None:
    """gunicorn ``child_exit``: a worker has gone; its live gauges no longer count."""
    if multiprocess_dir():
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


# -- the key provider, measured ---------------------------------------------------------
class MeteredProvider(KeyProvider):
    """A key provider whose calls are counted and timed; everything else passes through."""

    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner
        self.kind = inner.kind

    def __repr__(self) -> str:
        return f"MeteredProvider({self.inner!r})"

    def _call(self, call: str, func: Callable[_P, _T], *args: _P.args,
              **kwargs: _P.kwargs) -> _T:
        m = _m()
        provider = self.inner.name
        m.kp_calls.labels(provider, call).inc()
        started = time.monotonic()
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            m.kp_errors.labels(provider, call, getattr(exc, "code", type(exc).__name__)).inc()
            raise
        finally:
            m.kp_duration.labels(provider, call).observe(time.monotonic() - started)

    def normalize(self, key_id: str) -> str:
        return self.inner.normalize(key_id)

    def generate_data_key(self, key_id: str, context: Context) -> DataKey:
        return self._call("generate_data_key", self.inner.generate_data_key, key_id, context)

    def wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        return self._call("wrap", self.inner.wrap, key_id, data_key, context)

    def unwrap(self, blob: bytes, context: Context) -> bytes:
        return self._call("unwrap", self.inner.unwrap, blob, context)

    def describe(self, key_id: str) -> KeyInfo:
        return self._call("describe", self.inner.describe, key_id)

    def key_exists(self, key_id: str) -> bool:
        return self._call("key_exists", self.inner.key_exists, key_id)

    def versions(self, key_id: str) -> tuple[str, ...]:
        return self.describe(key_id).versions

    def current_version(self, key_id: str) -> str:
        return self.describe(key_id).current_version

    def close(self) -> None:
        self.inner.close()


def metered(provider: KeyProvider) -> KeyProvider:
    return provider if isinstance(provider, MeteredProvider) else MeteredProvider(provider)


# -- the backend app, measured ----------------------------------------------------------
class ObservedBackend:
    """WSGI: the backend app, with its 5xx answers and failures counted.

    Sits directly above the backend app, so every request to the backend counts
    (client requests, the encryption layer's sub-requests, the configuration store's).
    """

    def __init__(self, app: _WSGIApp) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # the backend's own attributes (store, ...)
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status[:1] == "5":
                backend_error(status[:3])
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        try:
            return self.app(environ, start)
        except Exception as exc:
            backend_error(type(exc).__name__)
            raise


__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "MeteredProvider", "ObservedBackend", "backend_error",
           "count_decrypted", "encrypted", "encrypted_if_sse", "integrity_failure",
           "mark_process_dead", "metered", "multiprocess_dir", "render", "request_finished",
           "request_started"]
