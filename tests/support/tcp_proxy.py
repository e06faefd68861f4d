"""A TCP proxy that can cut connections: a backend that dies mid-transfer, on demand.

Put between encproxy and its S3 backend, it forwards bytes both ways until told to cut
a connection after so many bytes of a request (encproxy's upload dies mid-body) or of
a response (the backend dies mid-GET). A cut ends the connection as a killed process's
would: with FIN towards encproxy mid-response, with a reset (SO_LINGER 0) mid-request.
"""
from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass


@dataclass
class Cut:
    request_after: int | None = None    # bytes of request (encproxy -> backend)
    response_after: int | None = None   # bytes of response (backend -> encproxy)


class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut = Cut()
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _reset(client)
                continue
            cut = Cut(self.cut.request_after, self.cut.response_after)
            threading.Thread(target=self._pump,
                             args=(client, upstream, cut.request_after, False),
                             daemon=True).start()
            threading.Thread(target=self._pump,
                             args=(upstream, client, cut.response_after, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, cut_after: int | None,
              graceful: bool) -> None:
        moved = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if cut_after is not None and moved + len(data) >= cut_after:
                    sink.sendall(data[: cut_after - moved])
                    with self._lock:
                        self.cuts += 1
                    _reset(source)
                    # A killed process's socket ends with FIN when it had nothing unread
                    # (a backend killed mid-GET), with RST when it had (mid-PUT); an RST
                    # would also make the kernel drop what encproxy has not read yet.
                    if graceful:
                        _finish(sink)
                    else:
                        _reset(sink)
                    return
                sink.sendall(data)
                moved += len(data)
        except OSError:
            _reset(source)
            _reset(sink)


def _finish(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # shutdown first: the other direction's thread may be blocked reading this socket,
        # and a plain close would leave the connection open until that read returns.
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
