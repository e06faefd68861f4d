"""Runs the WSGI stack under gunicorn, through gunicorn's custom-application API.

The only module that imports gunicorn (layer 5 of DESIGN.md).  Lifecycle
(docs/OPERATIONS.md §4):

* SIGTERM: gunicorn stops accepting, lets in-flight requests finish within
  ``[server] graceful_timeout``, then exits;
* SIGHUP: the ini is read again (``load_config``), checked (the stack is built
  once and the key provider's default key described), and new workers start
  with it while the old ones finish their requests; the listening socket stays
  open.  A config that does not check is logged and the running one is kept;
* metrics: a fresh ``PROMETHEUS_MULTIPROC_DIR`` per start, set before the
  workers fork, removed when the master exits; ``child_exit`` marks a gone
  worker dead;
* connections spread over the workers by how many each holds: the master keeps
  a shared table of counts and gives each worker a slot before it forks
  (``pre_fork``), freed when it exits (encproxy.accept_balance);
* TLS when ``[server] certfile`` and ``keyfile`` are set.  No request header
  makes a request count as HTTPS (gunicorn's ``secure_scheme_headers`` are
  off): only a TLS connection to encproxy itself does.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from encproxy import logjson, metrics
from encproxy.accept_balance import ConnectionTable
from encproxy.access import unrestricted
from encproxy.errors import ConfigError
from encproxy.settings import RUNTIME_DIR_ENV, Settings, load_file
from encproxy.worker import EncproxyWorker
from encproxy.wsgi.stack import build_app

log = logging.getLogger("encproxy.server")


def _pre_fork(server: Any, worker: Any) -> None:
    """In the master, before a worker forks: its slot in the connection table (the
    lowest free one; workers of an earlier configuration still serving keep theirs)."""
    table: ConnectionTable = server.app.connection_table
    worker.accept_slot = table.claim(
        getattr(sibling, "accept_slot", None) for sibling in server.WORKERS.values())


def _child_exit(server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
    slot = getattr(worker, "accept_slot", None)
    if slot is not None:
        server.app.connection_table.vacate(slot)


def check_tls(settings: Settings) -> tuple[str, str] | None:
    """The certificate and key paths, loaded once to fail early; None without TLS."""
    if not settings.get("server", "certfile"):
        return None
    cert, key = settings.path("server", "certfile"), settings.path("server", "keyfile")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("server", "certfile",
                          f"cannot load {cert} with {key}: {type(exc).__name__}") from None
    return str(cert), str(key)


def check_settings(settings: Settings) -> None:
    """Everything a start (or a reload) checks before it serves with ``settings``."""
    from encproxy.keys.factory import check_provider
    check_tls(settings)
    build_apart(settings)
    check_provider(settings)


def build_apart(settings: Settings) -> None:
    """``build_app(settings)`` in a child process, to check that it builds; its
    ConfigError raised here.

    gunicorn's master forks the workers, so it must hold nothing a worker could
    inherit and misuse: the file store's SQLite index above all.  A connection that
    crosses a fork is closed, sooner or later, in the child too, and POSIX drops a
    process's locks on a file when it closes any descriptor of it: a worker's own
    connection then looks closed to the others, and the next process to close its
    connection takes itself for the last, checkpoints and removes the write-ahead log
    under writers still using it (their commits vanish until they close).  The child
    leaves with ``os._exit``, which closes its descriptors without SQLite's close."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        status, report = 0, b""
        try:
            build_app(settings)
        except ConfigError as exc:
            status, report = 2, json.dumps([exc.section, exc.option, exc.problem]).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            status, report = 3, type(exc).__name__.encode()
        try:
            os.write(write_end, report)
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status == 2:
        section, option, problem = json.loads(report)
        raise ConfigError(section, option, problem)
    if status != 0:
        raise RuntimeError(f"building the application failed ({report.decode() or status})")


def warn_shared_full_access(settings: Settings) -> None:
    """More than one client with full access: each can read, overwrite and delete the
    others' data.  Fine for a sidecar, not for a gateway shared by teams ([access])."""
    full = unrestricted(settings.credentials, settings.access)
    if len(full) > 1:
        log.warning("%d client credentials have full access to every bucket (%s): each can "
                    "read, overwrite and delete the others' data; give each its buckets in "
                    "[access] (docs/OPERATIONS.md §11)", len(full), ", ".join(full))


class _Logger(GunicornLogger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's logger without its access log, which encproxy writes itself
    (encproxy.wsgi.edge.access_log).  gunicorn takes any ``logconfig_dict`` for an
    access log of its own and builds that line's fields for every request, only for
    the ``gunicorn.access`` logger to drop it: a few per cent of a small GET."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class EncproxyApplication(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self._loaded = False
        # Made before any worker forks, so that every worker shares it.
        self.connection_table = ConnectionTable()
        super().__init__()

    def load_config(self) -> None:
        if self._loaded and self.config_path is not None:
            self._reread()
        self._loaded = True
        s = self.settings
        host, port = s.get("server", "listen")
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        tls = check_tls(s)
        for name, value in {
            "bind": [bind],
            # gthread, hardened against slow clients (encproxy.worker).
            "worker_class": EncproxyWorker,
            "workers": s.get("server", "workers"),
            "threads": s.get("server", "threads"),
            "timeout": s.get("server", "timeout"),
            "graceful_timeout": s.get("server", "graceful_timeout"),
            "keepalive": s.get("server", "keepalive"),
            "loglevel": s.get("server", "log_level"),
            "errorlog": "-",
            "accesslog": None,  # encproxy writes its own (encproxy.wsgi.edge.access_log)
            "logger_class": _Logger,
            "logconfig_dict": logjson.logging_config(
                s.get("server", "log_level"), s.get("server", "log_format"),
                s.get("server", "access_log")),
            "pre_fork": _pre_fork,
            "child_exit": _child_exit,
            "certfile": tls[0] if tls else None,
            "keyfile": tls[1] if tls else None,
            # Only TLS to encproxy itself is HTTPS (SSE-C keys): no X-Forwarded-Proto.
            "secure_scheme_headers": {},
            "proc_name": "encproxy",
            # gunicorn's control socket sits at one fixed path per user: several encproxy
            # servers on a host (replicas, sidecars) would take it from each other.
            "control_socket_disable": True,
            # S3 keys may be 1024 bytes, URL-encoded up to three times longer.
            "limit_request_line": 8190,
            "limit_request_field_size": 16380,
        }.items():
            self.cfg.set(name, value)

    def _reread(self) -> None:
        """SIGHUP: the ini again; keep the running settings if the new ones do not check."""
        assert self.config_path is not None
        try:
            settings = load_file(self.config_path)
            check_settings(settings)
        except ConfigError as exc:
            log.error("reload: keeping the running configuration: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the server
            log.error("reload: keeping the running configuration: %s", type(exc).__name__)
            return
        self.settings = settings
        log.info("reload: configuration read from %s (%d credential(s))", self.config_path,
                 len(settings.credentials))
        warn_shared_full_access(settings)

    def load(self) -> Any:
        """The app, built in each worker, which is then made ready for its first request."""
        return ready_worker(build_app(self.settings))


def ready_worker(app: Any) -> Any:
    """What a worker would otherwise do on its first request, done before it takes one:
    the metrics families (and the import of prometheus_client, 20-odd modules), then a
    full collection and ``gc.freeze()``, which takes everything loaded so far out of the
    collector's generations, so that no later collection walks it again (a worker's first
    listing after a restart paid a 24 ms collection of the whole import graph)."""
    metrics.prepare()
    gc.collect()
    gc.freeze()
    # Said once the worker takes requests: before it, a request waits for a worker to
    # start, whatever it asks (scripts/bench-small times first requests after this).
    log.info("worker %d ready", os.getpid())
    return app


def _metrics_dir() -> str:
    """A fresh directory for this server's metrics (inside $PROMETHEUS_MULTIPROC_DIR if set)."""
    parent = os.environ.get(metrics.MULTIPROC_ENV) or None
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix="encproxy-metrics-", dir=parent)


def serve(settings: Settings, config_path: Path | None = None,
          application: type[EncproxyApplication] = EncproxyApplication) -> None:
    """Run the server until it is stopped.  ``application``: the gunicorn application
    (scripts/bench_floor_app.py serves an app that does nothing through encproxy's own
    worker and hooks, to measure what they cost)."""
    logjson.configure(settings.get("server", "log_level"), settings.get("server", "log_format"),
                      settings.get("server", "access_log"))
    # Build once before the workers so that a broken store fails start-up, not every
    # worker (in a child: the master must hold no store of its own, build_apart).
    check_tls(settings)
    build_apart(settings)
    warn_shared_full_access(settings)
    master = os.getpid()
    directory = _metrics_dir()
    os.environ[metrics.MULTIPROC_ENV] = directory  # before any worker forks
    # Per-start runtime files shared by the workers (bucket-configuration generation).
    os.environ[RUNTIME_DIR_ENV] = directory
    try:
        application(settings, config_path.resolve() if config_path else None).run()
    finally:
        if os.getpid() == master:  # workers leave through here too
            shutil.rmtree(directory, ignore_errors=True)
