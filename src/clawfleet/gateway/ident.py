"""Who is calling: the kernel's answer, never the caller's.

connection 4-tuple -> socket inode, looked up by the exact 4-tuple through sock_diag in the sandbox's network
namespace (:mod:`.sockdiag`; ``/proc/<netns pid>/net/tcp{,6}`` only where the kernel has no sock_diag) -> the
processes holding ``socket:[inode]`` in the fd table of any of their tasks (only processes in
that network namespace; :mod:`.fdtables`) -> ``/proc/<pid>/exe`` and the ancestor chain up to, not
including, the sandbox's init (PID 1 of its PID namespace: the clawfleet supervisor stage).

A socket held by processes running different executables (path or file) is refused: any holder can write
the request, so no single identity is true for it. Holders running the same executable are judged with the
ancestors they all share. Identification runs off the event loop, one at a time per sandbox, in the
identifier's own thread (:meth:`Identifier.identify_async`), so a slow scan in one sandbox delays only that
sandbox's new connections.

A connection whose client socket is already closed when its turn comes (the kernel reports no socket, or one
that no file refers to: inode 0) is dropped before any fd table is read, so a sandbox that opens and closes
connections in a burst queues no scans for them (:attr:`Identifier.dropped_closed` counts them).

Binaries can be pinned by SHA-256 (trust on first use): the first hash seen for a path is remembered
(optionally in a JSON file); a different hash for the same path later is reported as a mismatch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import stat
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from clawfleet.atomicfile import write_atomic
from clawfleet.sandbox.namespaces import run_in_netns

from .fdtables import FdTables
from .sockdiag import CLOSED, SockDiag, SockDiagUnavailable

__all__ = ["Caller", "ConnectionClosed", "HashPins", "Identifier", "IdentityError", "NotThisSandbox"]

_MAX_ANCESTORS = 32


class IdentityError(Exception):
    """The caller could not be identified (it exited, or passed the socket on): deny."""


class ConnectionClosed(IdentityError):
    """The client's socket was closed before its identification started: nothing to serve, no scan made."""


class NotThisSandbox(IdentityError):
    """A descriptor handed over for identification is not an accepted connection of this sandbox's listener
    (:meth:`Identifier.identify_fd`): refused before anything is looked at."""


@dataclass(frozen=True)
class Caller:
    pid: int  # host PID
    exe: str
    ancestors: tuple[str, ...] = ()
    owners: tuple[tuple[int, str], ...] = ()  # every (pid, exe) holding the socket
    sha256: str | None = None
    pin_error: str | None = None

    def to_log(self) -> dict:
        return {"pid": self.pid, "binary": self.exe, "ancestors": list(self.ancestors)}


def _hex_addr(ip: str, port: int) -> str:
    """The kernel's /proc/net/tcp{,6} spelling: each 32-bit word in host (little-endian) order."""
    if ":" in ip:
        words = struct.unpack("<4I", socket.inet_pton(socket.AF_INET6, ip))
        return "".join(f"{w:08X}" for w in words) + f":{port:04X}"
    (word,) = struct.unpack("<I", socket.inet_aton(ip))
    return f"{word:08X}:{port:04X}"


def _unmapped(addr: tuple[str, int]) -> tuple[str, int]:
    ip = addr[0]
    if ip.lower().startswith("::ffff:") and "." in ip:
        return ip[7:], addr[1]
    return addr


def _exe(pid: int) -> str:
    path = os.readlink(f"/proc/{pid}/exe")
    return path.removesuffix(" (deleted)")


def _exe_file(pid: int) -> tuple[int, int]:
    """(device, inode) of the running executable: two files can show the same path (a deleted binary)."""
    st = os.stat(f"/proc/{pid}/exe")
    return st.st_dev, st.st_ino


def _status(pid: int) -> tuple[int, int]:
    """(ppid, pid inside the innermost PID namespace)."""
    ppid, nspid = -1, -1
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith(b"NSpid:"):
                nspid = int(line.split()[-1])
                break
    return ppid, nspid


class HashPins:
    """Trust-on-first-use SHA-256 pins per binary path; hashes cached per (dev, inode, size, mtime)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.pins: dict[str, str] = {}
        self._cache: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()
        if path and os.path.exists(path):
            with open(path) as f:
                self.pins = dict(json.load(f))

    def check(self, pid: int, exe: str) -> tuple[str, str | None]:
        """(sha256, error or None) for the executable of ``pid`` (opened through /proc, not by path)."""
        st = os.stat(f"/proc/{pid}/exe")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self._cache.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(f"/proc/{pid}/exe", "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            digest = h.hexdigest()
            self._cache[key] = digest
        with self._lock:
            known = self.pins.get(exe)
            if known is None:
                self.pins[exe] = digest
                self._save()
                return digest, None
        if known != digest:
            return digest, f"binary {exe} has sha256 {digest[:16]}..., pinned {known[:16]}... (trust on first use)"
        return digest, None

    def _save(self) -> None:
        if not self.path:
            return
        write_atomic(self.path, json.dumps(self.pins, indent=1, sort_keys=True), 0o600)


@dataclass
class Identifier:
    """Identify callers of sockets in the network namespace of ``netns_pid`` (None: our own namespace).

    ``stop_at_ns_init``: end the ancestor chain below the PID namespace's init (the sandbox supervisor).
    ``cache_tables``: keep fd tables of tasks that have not run since they were read (:mod:`.fdtables`).
    """

    netns_pid: int | None = None
    pins: HashPins | None = None
    stop_at_ns_init: bool = True
    cache_tables: bool = True
    _members: list[int] = field(default_factory=list)
    _membership: dict[tuple[int, int], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = f"/proc/{self.netns_pid}" if self.netns_pid else "/proc/self"
        self._tcp = (f"{base}/net/tcp", f"{base}/net/tcp6")
        self._netns_ino = os.stat(f"{base}/ns/net").st_ino
        self.tables = FdTables(cache=self.cache_tables)
        self._lock = threading.Lock()
        # One thread per sandbox: its identifications queue behind each other, never behind another
        # sandbox's (the loop's default executor is shared, and DNS uses it). The thread ends when the
        # identifier is dropped (ThreadPoolExecutor's workers exit once their executor is collected).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clawfleet-ident")
        self.diag: SockDiag | None = None
        try:
            # opened in the sandbox's namespace and kept: sock_diag answers for the namespace of its socket
            self.diag = run_in_netns(self.netns_pid, SockDiag) if self.netns_pid else SockDiag()
        except SockDiagUnavailable:
            self.diag = None  # /proc/net/tcp: correct, but its cost grows with every TCP socket on the host
        self.identified = 0  # callers identified (fd tables scanned for their socket)
        self.dropped_closed = 0  # connections found closed before any scan

    def close(self) -> None:
        if self.diag is not None:
            self.diag.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- socket inode ------------------------------------------------------------------------------
    def inode_for(self, peer: tuple[str, int], local: tuple[str, int]) -> int:
        """Inode of the client's socket: local address = our peer, remote = our local address.
        :class:`ConnectionClosed` when the client no longer holds it."""
        # an IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d; the kernel keys its socket by IPv4
        peer, local = _unmapped(peer), _unmapped(local)
        inode = self._diag_inode(peer, local) if self.diag is not None else None
        if inode is None:
            inode = self._proc_inode(peer, local)
        if inode == CLOSED:
            raise ConnectionClosed(f"the client closed {peer[0]}:{peer[1]} before it was identified")
        return inode

    def _diag_inode(self, peer: tuple[str, int], local: tuple[str, int]) -> int | None:
        assert self.diag is not None
        try:
            inode = self.diag.inode(peer, local)
        except SockDiagUnavailable:
            self.diag = None
            return None
        if inode is None:
            # no socket with this 4-tuple in the namespace: the client is gone (reset, or its TIME_WAIT ended)
            raise ConnectionClosed(f"no socket {peer[0]}:{peer[1]} -> {local[0]}:{local[1]} (client gone)")
        return inode

    def _proc_inode(self, peer: tuple[str, int], local: tuple[str, int]) -> int:
        v4 = ":" not in peer[0]
        want_l = _hex_addr(peer[0], peer[1])
        want_r = _hex_addr(local[0], local[1])
        path = self._tcp[0] if v4 else self._tcp[1]
        needle = f" {want_l} {want_r} ".encode()
        with open(path, "rb") as f:
            data = f.read()
        i = data.find(needle)
        if i < 0:
            raise ConnectionClosed(f"no socket {peer[0]}:{peer[1]} -> {local[0]}:{local[1]} in {path}")
        line = data[i : data.find(b"\n", i)].split()
        # after the two addresses: st tx:rx tr:when retrnsmt uid timeout inode
        return int(line[8])

    # -- owners --------------------------------------------------------------------------------------
    def _refresh_members(self, fresh: bool = False) -> None:
        """The namespace's processes, listed anew each time: a cached list would miss a holder started since,
        and a socket passed to a fresh process would then be judged by the older holder alone. Membership
        is remembered per (pid, inode of /proc/<pid>): a reused pid comes with a new /proc inode, so only
        processes not seen before cost a stat (the listing alone is one getdents per ~100 processes)."""
        known = {} if fresh else self._membership
        seen: dict[tuple[int, int], bool] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            key = (int(entry.name), entry.inode())
            member = known.get(key)
            if member is None:
                try:
                    member = os.stat(f"/proc/{entry.name}/ns/net").st_ino == self._netns_ino
                except OSError:
                    continue
            seen[key] = member
        self._membership = seen
        # newest first: the caller is usually a fresh process
        self._members = sorted((pid for (pid, _ino), member in seen.items() if member), reverse=True)

    def owners_of(self, inode: int) -> list[int]:
        """Every process of the namespace holding the socket in any task's fd table (all of them: a shared
        socket is refused unless every holder runs the same executable). When none is found, membership is
        read again from scratch (a process that joined the namespace with setns keeps its pid)."""
        me = os.getpid()
        with self._lock:
            self._refresh_members()
            found = self.tables.holders(inode, [pid for pid in self._members if pid != me])
            if not found:
                self._refresh_members(fresh=True)
                found = self.tables.holders(inode, [pid for pid in self._members if pid != me])
            return found

    # -- whole answer --------------------------------------------------------------------------------
    def ancestors(self, pid: int) -> tuple[str, ...]:
        chain: list[str] = []
        ppid, _ = _status(pid)
        while ppid > 1 and len(chain) < _MAX_ANCESTORS:
            try:
                nxt, nspid = _status(ppid)
                if self.stop_at_ns_init and self.netns_pid and nspid == 1:
                    break
                chain.append(_exe(ppid))
            except OSError:
                break
            ppid = nxt
        return tuple(chain)

    async def identify_async(self, peer: tuple[str, int], local: tuple[str, int]) -> Caller:
        """:meth:`identify` in this identifier's own thread (the event loop keeps serving meanwhile)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.identify, peer, local)

    # -- a connection handed over as a descriptor (privilege separation, :mod:`.privsep`) ----------------
    def connection_of(self, fd: int, listen: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
        """(peer, local) of ``fd``, proved to be a TCP connection accepted on ``listen`` inside this identifier's
        network namespace: the kernel's socket for that exact 4-tuple in the namespace (sock_diag, or its
        /proc fallback) must be this very socket (same inode). The descriptor comes from a process assumed
        compromised, so nothing it says is used: no address, pid or path, only what the kernel reports for the
        descriptor. :class:`NotThisSandbox` otherwise. Does not close ``fd``."""
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode):
            raise NotThisSandbox("not a socket")
        sock = socket.socket(fileno=os.dup(fd))
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                raise NotThisSandbox(f"not a TCP socket ({sock.family!r}, {sock.type!r})")
            try:
                local, peer = _unmapped(sock.getsockname()[:2]), _unmapped(sock.getpeername()[:2])
            except OSError as exc:
                raise NotThisSandbox(f"not a connected socket: {exc.strerror}") from None
        finally:
            sock.close()
        if local != _unmapped(listen):
            raise NotThisSandbox(f"not a connection to the gateway's listener {listen[0]}:{listen[1]}")
        try:
            # the socket whose own address is `local` and whose peer is `peer`: the accepted (server) side
            inode = self.inode_for(local, peer)
        except (ConnectionClosed, OSError):
            inode = None
        if inode != st.st_ino:
            raise NotThisSandbox("not a connection inside this sandbox's network namespace")
        return peer, local

    def identify_fd(self, fd: int, listen: tuple[str, int]) -> Caller:
        """:meth:`identify` for the connection ``fd`` (:meth:`connection_of`); closes ``fd``."""
        try:
            peer, local = self.connection_of(fd, listen)
        finally:
            os.close(fd)
        return self.identify(peer, local)

    async def identify_fd_async(self, fd: int, listen: tuple[str, int]) -> Caller:
        """:meth:`identify_fd` in this identifier's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.identify_fd, fd, listen)

    def identify(self, peer: tuple[str, int], local: tuple[str, int]) -> Caller:
        try:
            try:
                inode = self.inode_for(peer, local)
            except ConnectionClosed:
                self.dropped_closed += 1
                raise
            pids = self.owners_of(inode)
            if not pids:
                raise IdentityError(f"no process holds socket inode {inode} (caller exited or hid it)")
            holders = []
            for pid in pids:
                try:
                    holders.append((pid, _exe(pid), _exe_file(pid), self.ancestors(pid)))
                except OSError:
                    continue  # exited meanwhile: it no longer holds the socket
            if not holders:
                raise IdentityError("the caller exited before it could be identified")
            pid, exe, exe_file, anc = holders[0]
            others = sorted({f"{e} (pid {p})" for p, e, f, _ in holders if (e, f) != (exe, exe_file)})
            if others:
                raise IdentityError(
                    f"socket inode {inode} is held by different executables: {exe} (pid {pid}), "
                    + ", ".join(others)
                    + "; any of them can write to it, so the connection is refused"
                )
            for _p, _e, _f, other_anc in holders[1:]:  # the same binary: judged by the ancestors all share
                anc = tuple(a for a in anc if a in other_anc)
            owners = tuple((p, e) for p, e, _f, _a in holders)
        except OSError as exc:
            raise IdentityError(f"identification failed: {exc}") from None
        sha = err = None
        if self.pins is not None:
            try:
                sha, err = self.pins.check(pid, exe)
            except OSError as exc:
                raise IdentityError(f"cannot hash {exe}: {exc}") from None
        self.identified += 1
        return Caller(pid, exe, anc, owners, sha, err)
