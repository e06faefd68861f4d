"""Assembles the WSGI stack from settings: Gateway(Authentication(backend))."""
from __future__ import annotations

from encproxy.errors import ConfigError
from encproxy.filestore.store import FileStore
from encproxy.settings import Settings
from encproxy.wsgi.auth import AuthenticationMiddleware
from encproxy.wsgi.filestore_app import FileStoreApp
from encproxy.wsgi.gateway import Gateway
from encproxy.wsgi.responses import WSGIApp


def build_backend(settings: Settings) -> WSGIApp:
    kind = settings.get("backend", "type")
    if kind == "file":
        root = settings.path("backend", "root")
        try:
            store = FileStore(root)
        except OSError as exc:
            raise ConfigError("backend", "root", f"cannot use {root}: {exc.strerror}") from None
        return FileStoreApp(store, region=settings.get("server", "region"))
    raise AssertionError(f"backend type {kind!r} passed validation but has no builder")


def build_app(settings: Settings) -> WSGIApp:
    credentials = dict(settings.credentials)
    auth = AuthenticationMiddleware(build_backend(settings), credentials.get,
                                    region=settings.get("server", "region"))
    return Gateway(auth, settings.get("server", "hostnames"),
                   client_timeout=settings.get("server", "client_timeout"))
