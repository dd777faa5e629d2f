"""Identification work a sandbox can queue (issue 14, isolation): connections that the client closed before
their turn are dropped before any fd table is read, and the socket inode comes from sock_diag."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from clawfleet.gateway.ident import Identifier
from clawfleet.gateway.sockdiag import CLOSED, SockDiag

# A client process (the gateway runs in the test process, whose own sockets identification skips).
_CLIENT = r"""
import socket, sys
port, n, keep = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "keep"
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
if not keep:
    for c in conns:
        c.close()
print("done", flush=True)
sys.stdin.read()
"""


def _queued(gw, n: int, keep: bool):
    """Block the identifier's thread, let a client open n connections (closing them unless keep), and wait
    until the gateway has a handler waiting on each; returns (client process, gate to release)."""
    ident = Identifier(stop_at_ns_init=False)
    gw.gateway.identify = ident.identify_async
    gate = threading.Event()
    ident._executor.submit(gate.wait)  # the thread is busy: every identification queues behind this
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT, str(gw.port), str(n), "keep" if keep else "close"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "done"
    assert gw.wait_for(lambda: gw.gateway.active == n, 10)
    return ident, proc, gate


def test_burst_of_closed_connections_queues_no_identification_work(make_gateway):
    """Attack: a sandbox opens and closes connections in a burst, so that its identifier (and the daemon's
    CPU) works for connections that no longer exist. Each one is dropped at its socket lookup: no fd table
    read, nobody identified."""
    gw = make_gateway()
    ident, proc, gate = _queued(gw, 30, keep=False)
    try:
        gate.set()
        assert gw.wait_for(lambda: gw.gateway.active == 0, 20)
        assert ident.dropped_closed == 30
        assert ident.identified == 0
        assert ident.tables.reads == 0
        assert ident.diag is not None and ident.diag.queries == 30  # one sock_diag lookup each, no /proc/net/tcp
    finally:
        proc.stdin.close()
        proc.wait()


def test_open_connection_in_the_queue_is_identified(make_gateway):
    """Allowed twin: a connection still open when its turn comes is identified as its real binary."""
    gw = make_gateway()
    ident, proc, gate = _queued(gw, 1, keep=True)
    try:
        gate.set()
        assert gw.wait_for(lambda: ident.identified == 1, 20)
        assert ident.dropped_closed == 0
        assert ident.tables.reads >= 1
    finally:
        proc.stdin.close()
        proc.wait()
    assert gw.wait_for(lambda: gw.gateway.active == 0, 10)


def test_sock_diag_finds_the_same_inode_as_the_fd_table():
    """The 4-tuple lookup returns the inode the client's fd points at (IPv4 and IPv6), CLOSED once the
    client closed it, None for a 4-tuple that never existed; and it agrees with /proc/net/tcp."""
    diag = SockDiag()
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as srv:
                srv.bind((host, 0))
                srv.listen()
                client = socket.create_connection(srv.getsockname()[:2])
                peer, _ = srv.accept()
                local, remote = client.getsockname()[:2], client.getpeername()[:2]
                want = int(os.readlink(f"/proc/self/fd/{client.fileno()}")[8:-1])
                assert diag.inode(local, remote) == want
                assert Identifier(stop_at_ns_init=False)._proc_inode(local, remote) == want
                client.close()
                assert diag.inode(local, remote) == CLOSED
                peer.close()
        assert diag.inode(("127.0.0.1", 1), ("127.0.0.1", 2)) is None
    finally:
        diag.close()


def test_ipv4_client_of_a_dual_stack_listener_is_found():
    """A dual-stack listener reports an IPv4 client as ::ffff:127.0.0.1; its socket is keyed by IPv4."""
    with socket.socket(socket.AF_INET6) as srv:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.bind(("::", 0))
        srv.listen()
        with socket.create_connection(("127.0.0.1", srv.getsockname()[1])) as client:
            conn, peer = srv.accept()
            with conn:
                assert peer[0] == "::ffff:127.0.0.1"
                want = int(os.readlink(f"/proc/self/fd/{client.fileno()}")[8:-1])
                ident = Identifier(stop_at_ns_init=False)
                assert ident.inode_for(peer[:2], conn.getsockname()[:2]) == want
