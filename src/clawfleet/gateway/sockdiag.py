"""Socket inode of one TCP connection, by its exact 4-tuple, through the kernel's sock_diag netlink interface.

Caller identification needs the inode of the client's socket. ``/proc/<pid>/net/tcp`` has it, but the kernel
builds that file by walking the host's whole TCP hash table (skipping other namespaces' sockets): about 3.5 ms
per read plus about 0.8 ms per 10,000 sockets anywhere on the host, so every sandbox's connections slowed
every other sandbox's identifications. ``SOCK_DIAG_BY_FAMILY`` without ``NLM_F_DUMP`` and with the exact
4-tuple (``inet_diag_req_v2``) is one hash lookup in the kernel: about 5 us whatever the host holds
(``benchmarks/bench_inode_lookup.py`` compares the two).

sock_diag answers for the network namespace of the netlink socket that asks, so :class:`SockDiag` is opened
in the sandbox's namespace (:func:`clawfleet.sandbox.namespaces.run_in_netns`) and kept: the open socket holds
the namespace, later queries need no setns.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
import threading

__all__ = ["CLOSED", "SockDiag", "SockDiagUnavailable"]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
# A socket the kernel still tracks but that no file refers to any more (the process closed it: an orphan in
# FIN_WAIT/LAST_ACK, or a TIME_WAIT entry) has inode 0; its connection can carry no request.
CLOSED = 0


class SockDiagUnavailable(OSError):
    """The kernel has no sock_diag for TCP (CONFIG_INET_DIAG off): the caller falls back to /proc/net/tcp."""


def _addr(family: int, ip: str) -> bytes:
    raw = socket.inet_pton(family, ip)
    return raw + bytes(16 - len(raw))


class SockDiag:
    """Exact-4-tuple TCP lookups in the network namespace this object was created in. Thread-safe."""

    def __init__(self) -> None:
        try:
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise SockDiagUnavailable(exc.errno, f"sock_diag unavailable: {exc.strerror}") from None
        self._nl.settimeout(2.0)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.queries = 0  # lookups made (tests and benchmarks look at it)

    def close(self) -> None:
        self._nl.close()

    def inode(self, local: tuple[str, int], remote: tuple[str, int]) -> int | None:
        """Inode of the TCP socket whose own address is ``local`` and whose peer is ``remote``: None when the
        kernel has no such socket, :data:`CLOSED` (0) when it has one that no process holds any more."""
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        # struct inet_diag_req_v2 {u8 family, protocol, ext, pad; u32 states; struct inet_diag_sockid id}
        # inet_diag_sockid {be16 sport, dport; be32 src[4], dst[4]; u32 if; u32 cookie[2]}
        sockid = struct.pack("!HH16s16s", local[1], remote[1], _addr(family, local[0]), _addr(family, remote[0]))
        sockid += struct.pack("=III", 0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + sockid
        with self._lock:
            seq = next(self._seq) & 0xFFFFFFFF
            self.queries += 1
            self._nl.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + req)
            while True:
                data = self._nl.recv(65536)
                if len(data) >= 16 and struct.unpack_from("=I", data, 8)[0] == seq:
                    break  # an answer to an earlier query that timed out is skipped
        kind = struct.unpack_from("=H", data, 4)[0]
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", data, 16)[0]
            if err == errno.ENOENT:
                return None
            if err in (errno.EINVAL, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT):
                raise SockDiagUnavailable(err, "sock_diag cannot look up TCP sockets here")
            raise OSError(err, f"sock_diag lookup failed: {errno.errorcode.get(err, err)}")
        if kind != SOCK_DIAG_BY_FAMILY or len(data) < 16 + 72:
            raise OSError(errno.EPROTO, f"sock_diag answered message type {kind}")
        # struct inet_diag_msg {u8 family, state, timer, retrans; sockid (48); u32 expires, rqueue, wqueue,
        # uid, inode}
        return int(struct.unpack_from("=I", data, 16 + 68)[0])
