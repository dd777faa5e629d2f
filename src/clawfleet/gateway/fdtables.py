"""Which processes hold a socket: every task's fd table, rescanned only where it can have changed.

A thread can own a private fd table (``unshare(CLONE_FILES)``, or ``clone`` of a thread without
``CLONE_FILES``): ``/proc/<tgid>/fd`` shows only the thread-group leader's table, so every task's table
(``/proc/<tgid>/task/<tid>/fd``) is read.

Reading a table costs one ``readlink`` per fd, and a sandbox can hold hundreds of thousands of fds. A table
changes only when a task that uses it runs (open, close, dup, recvmsg with SCM_RIGHTS, exec, exit all run in
the task; the sandbox's seccomp filter denies ptrace, pidfd_getfd and io_uring, which could act on it from
outside). So each task's socket inodes are kept with the kernel's count of that task's CPU time and
timeslices (``/proc/.../schedstat``) and its start time; a task whose count has not moved, and that is not
runnable now, is not re-read. A task that runs (a busy one, or the caller itself: it just connected) is
re-read every time. Without schedstat (kernel built without CONFIG_SCHED_INFO) every table is re-read.

Tasks sharing one table (threads; a process cloned with ``CLONE_FILES``, which ``execve`` unshares, so all
sharers run the same executable) are each read: whichever of them changed the table ran, so its fresh read
sees the change.
"""

from __future__ import annotations

import os

__all__ = ["FdTables"]


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # not open(): no buffered file object per small read
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _stamp(task_dir: str) -> tuple[bytes, bytes, bytes] | None:
    """(start time, CPU ns, timeslices) of a task that is not runnable now; None: re-read its table."""
    try:
        stat = _read(f"{task_dir}/stat")
        sched = _read(f"{task_dir}/schedstat").split()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2 :].split()
    if len(rest) < 20 or len(sched) < 3 or rest[0] in (b"R", b"W"):
        return None
    return rest[19], sched[0], sched[2]  # field 22 of stat: start time in clock ticks


def _sockets(fd_dir: str) -> frozenset[int] | None:
    """Socket inodes in one fd table; None if the task is gone."""
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    found = []
    for fd in names:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.append(int(target[8:-1]))
    return frozenset(found)


class FdTables:
    """Socket holders among a set of processes. Not thread-safe: the caller serialises (Identifier does)."""

    def __init__(self, cache: bool = True) -> None:
        self.cache = cache
        # (tgid, tid) -> (stamp, socket inodes of that task's table)
        self._tables: dict[tuple[int, int], tuple[tuple[bytes, bytes, bytes], frozenset[int]]] = {}
        self.reads = 0  # tables read since creation (the benchmark and tests look at it)

    def _task_sockets(self, tgid: int, tid: int) -> frozenset[int] | None:
        task_dir = f"/proc/{tgid}/task/{tid}"
        key = (tgid, tid)
        stamp = _stamp(task_dir) if self.cache else None
        if stamp is not None:
            known = self._tables.get(key)
            if known is not None and known[0] == stamp:
                return known[1]
        socks = _sockets(f"{task_dir}/fd")
        self.reads += 1
        if socks is None:
            self._tables.pop(key, None)
        elif stamp is not None:
            self._tables[key] = (stamp, socks)
        else:
            self._tables.pop(key, None)
        return socks

    def holders(self, inode: int, pids: list[int]) -> list[int]:
        """The processes among ``pids`` that hold ``socket:[inode]`` in any of their tasks' tables."""
        found = []
        live: set[tuple[int, int]] = set()
        for pid in pids:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            hit = False
            for tid in tids:
                live.add((pid, tid))
                socks = self._task_sockets(pid, tid)
                if socks is not None and inode in socks:
                    hit = True  # keep reading the other tasks: their tables are refreshed for next time
            if hit:
                found.append(pid)
        if len(self._tables) > len(live):
            for key in [k for k in self._tables if k not in live]:
                del self._tables[key]
        return found
