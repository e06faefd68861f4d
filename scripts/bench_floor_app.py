"""A WSGI app that does nothing: bench-small's floors (scripts/bench_small.py).

Served two ways, it shows what a request costs before any work of encproxy's:

* by plain gunicorn (gthread, with encproxy's shipped workers, threads and keep-alive):
  ``gunicorn --chdir scripts bench_floor_app:app``;
* by encproxy's own server (its worker, ``encproxy.worker.EncproxyWorker``, its hooks and
  its configuration), with this app in place of encproxy's stack:
  ``python scripts/bench_floor_app.py --config encproxy.ini``.

A PUT's body is read and dropped; a GET of an object answers 4 KiB of zeros; everything
else answers 200 with no body.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BODY = bytes(4096)


def app(environ: dict[str, Any],
        start_response: Callable[[str, list[tuple[str, str]]], Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "PUT":
        environ["wsgi.input"].read()
    if method == "GET" and path.count("/") > 1:      # an object
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(BODY))), ("ETag", '"floor"')])
        return [BODY]
    start_response("200 OK", [("Content-Length", "0"), ("ETag", '"floor"')])
    return [b""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the app that does nothing through "
                                     "encproxy's own server and worker.")
    parser.add_argument("--config", type=Path, required=True, help="an encproxy ini file")
    args = parser.parse_args(argv)
    from encproxy import server
    from encproxy.settings import load_file

    class FloorApplication(server.EncproxyApplication):
        def load(self) -> Any:
            return app

    server.serve(load_file(args.config), args.config, application=FloorApplication)


if __name__ == "__main__":
    main()
