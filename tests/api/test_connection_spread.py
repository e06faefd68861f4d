"""A real ``encproxy serve`` with two gunicorn workers spreads kept-alive connections
over them (encproxy.accept_balance): which worker holds a connection is read from
Linux's /proc (the socket's inode in /proc/net/tcp, and which worker has it open)."""
from __future__ import annotations

import http.client
import os
import re
import time
from pathlib import Path

import pytest
from support.server import start_server

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(),
                                reason="LOUD SKIP: reading socket owners needs Linux's /proc")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            found.add(match.group(1))
    return found


def server_side_inode(server_port: int, client_port: int) -> str:
    """The inode of the server's end of the connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and \
                int(remote.split(":")[1], 16) == client_port:
            return inode
    raise AssertionError(f"no server socket for client port {client_port}")


def holder(workers: list[int], inode: str) -> int:
    owners = [pid for pid in workers if inode in socket_inodes(pid)]
    assert len(owners) == 1, owners
    return owners[0]


def inode_of(server_port: int, conn: http.client.HTTPConnection) -> str:
    assert conn.sock is not None
    return server_side_inode(server_port, conn.sock.getsockname()[1])


def answered(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/_encproxy/health")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and not resp.will_close
    return conn


def test_two_kept_alive_clients_are_served_by_two_workers(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        deadline = time.monotonic() + 30
        while len(re.findall(r"worker \d+ ready", server.log_text())) < 2:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        # Without the spreading, each pair shares a worker half the time: ten pairs in a
        # row on two workers happen by chance once in 1,024.
        for _ in range(10):
            first, second = answered(server.port), answered(server.port)
            inodes = {inode_of(server.port, first), inode_of(server.port, second)}
            assert {holder(workers, inode) for inode in inodes} == set(workers)
            for conn in (first, second):
                conn.close()
            # Both workers have closed their end before the next pair comes.
            deadline = time.monotonic() + 10
            while any(inodes & socket_inodes(pid) for pid in workers):
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        server.stop()
