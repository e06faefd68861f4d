"""Runs the WSGI stack under gunicorn, through gunicorn's custom-application API.

The only module that imports gunicorn (layer 5 of DESIGN.md).
"""
from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from encproxy.settings import Settings
from encproxy.wsgi.stack import build_app


class EncproxyApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        host, port = s.get("server", "listen")
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for name, value in {
            "bind": [bind],
            "worker_class": "gthread",
            "workers": s.get("server", "workers"),
            "threads": s.get("server", "threads"),
            "timeout": s.get("server", "timeout"),
            "graceful_timeout": s.get("server", "graceful_timeout"),
            "keepalive": s.get("server", "keepalive"),
            "loglevel": s.get("server", "log_level"),
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "encproxy",
            # gunicorn's control socket sits at one fixed path per user: several encproxy
            # servers on a host (replicas, sidecars) would take it from each other.
            "control_socket_disable": True,
            # S3 keys may be 1024 bytes, URL-encoded up to three times longer.
            "limit_request_line": 8190,
            "limit_request_field_size": 16380,
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return build_app(self.settings)


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.get("server", "log_level").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Build once in the master so that a broken store fails start-up, not every worker.
    build_app(settings)
    EncproxyApplication(settings).run()
