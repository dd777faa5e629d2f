"""Namespaces and the sandbox's filesystem view.

The sandbox sees a fresh tmpfs root holding only what the policy lists (bind mounts), its own ``/proc``
(its PID namespace, ``hidepid=2``), its own ``/tmp`` and a minimal ``/dev``, and the workdir at ``/sandbox``.
Host paths that are not listed - ``/run`` with docker.sock and D-Bus, ``/var/run``, the host's ``/tmp`` -
do not exist in it: Landlock (ABI <= 7) does not govern ``connect()`` on pathname Unix sockets, so hiding
them is the defence.

Construction follows bubblewrap: mount a tmpfs on ``/tmp`` (in our private mount namespace only) and
``pivot_root`` into it; the host root stays reachable at ``/.oldroot`` as the bind source until it is
detached. Binds are recursive; read-only and nosuid/nodev are applied to the whole subtree with
``mount_setattr(AT_RECURSIVE)`` (Linux 5.12).
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import fcntl
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from clawfleet.sandbox import syscalls
from clawfleet.sandbox.spec import SANDBOX_WORKDIR

T = TypeVar("T")

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100

OLDROOT = "/.oldroot"
# Device nodes every sandbox gets (Landlock still decides who may open them).
STANDARD_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
# Trees the sandbox builds itself, never bound from the host (host /tmp and /dev/shm hold other
# programs' sockets and shared memory; host /dev/pts their terminals).
_BUILT = ("/proc", "/tmp", "/dev/shm", "/dev/pts", "/dev/fd")

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _set_attr(path: str, attrs: int) -> None:
    attr = _MountAttr(attrs, 0, 0, 0)
    syscalls.syscall(
        "mount_setattr", AT_FDCWD, os.fsencode(path), AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def loopback_up() -> None:
    """Bring ``lo`` up in the (new) network namespace: 127.0.0.1 exists only once it is up."""
    # _socket, not socket: the wrapper module builds enums at import, a measurable part of the start.
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def make_mounts_private() -> None:
    # Nothing we mount may propagate back to the host, and host mounts must not appear later.
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)


@dataclass(frozen=True)
class PathPlan:
    """The policy's paths as the sandbox sees them: (target, read_only) pairs, parents first, and the paths
    refused because they resolve through a symlink the sandbox user could have planted."""

    entries: tuple[tuple[str, bool], ...]
    refused: tuple[str, ...] = ()

    def paths(self, read_only: bool) -> tuple[str, ...]:
        return tuple(target for target, ro in self.entries if ro == read_only)


def plan_paths(read_only: tuple[str, ...], read_write: tuple[str, ...], uid: int, gid: int) -> PathPlan:
    """Resolve the policy's paths against the host root (run before it moves). Host paths are canonicalised
    (``/lib`` -> ``/usr/lib``); the sandbox's own trees are not. A path in both lists is read-only."""
    wanted = {os.path.normpath(p): False for p in read_write}
    wanted.update({os.path.normpath(p): True for p in read_only})
    plan: dict[str, bool] = {}
    refused: list[str] = []
    for path, ro in wanted.items():
        own = any(_under(path, t) for t in ("/proc", "/tmp", "/dev", SANDBOX_WORKDIR))
        target = path if own else _resolve_host(path, uid, gid)
        if target is None:
            refused.append(path)
            continue
        plan[target] = plan.get(target, False) or ro
    entries = sorted(plan.items(), key=lambda item: (item[0].count("/"), item[0]))
    return PathPlan(tuple(entries), tuple(refused))


def _resolve_host(path: str, uid: int, gid: int) -> str | None:
    """``os.path.realpath``, except that a symlink is never followed below a directory the sandbox user can
    write (or one it owns): None then.

    Such a symlink may be the agent's, left in a read_write tree (or the workdir) by an earlier run; followed
    by root here, it would pick any host path to bind into the sandbox. Symlinks elsewhere (``/lib`` ->
    ``usr/lib``, ``/etc/alternatives``) are root's and are followed.
    """
    todo = [p for p in reversed(path.split("/")) if p]  # a stack: the next component is last
    parts: list[str] = []
    writable: list[bool] = []  # per component of ``parts``: could the sandbox user write in it?
    links = 0
    while todo:
        part = todo.pop()
        if part == "." or (part == ".." and not parts):
            continue
        if part == "..":
            parts.pop()
            writable.pop()
            continue
        current = "/" + "/".join([*parts, part])
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return os.path.normpath("/".join([current, *reversed(todo)]))  # missing: skipped when mounting
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if any(writable) or st.st_uid == uid or links > 40:
                return None
            link = os.readlink(current)
            if link.startswith("/"):
                parts, writable = [], []
            todo.extend(p for p in reversed(link.split("/")) if p)
            continue
        parts.append(part)
        writable.append(_writable_by(st, uid, gid))
    return "/" + "/".join(parts)


def _writable_by(st: os.stat_result, uid: int, gid: int) -> bool:
    """Could ``uid``/``gid`` (no other groups: the sandbox has none) create entries in this directory? Its
    owner could, whatever the mode says (it may chmod)."""
    return st.st_uid == uid or bool(st.st_mode & 0o002) or (st.st_gid == gid and bool(st.st_mode & 0o020))


def build_root(
    workdir: str, workdir_id: tuple[int, int], plan: PathPlan, hostname: str, tmp_size: int
) -> list[str]:  # fmt: skip
    """Build the sandbox root and pivot into it. Runs as root, as PID 1 of the new PID namespace.

    ``workdir_id`` is the (st_dev, st_ino) the supervisor saw: the workdir is opened once here and
    bind-mounted through that fd, so a path swapped for a symlink meanwhile is refused, not followed.
    ``plan`` comes from :func:`plan_paths`, run before. Returns the policy paths that got no mount because
    they do not exist (they get no Landlock rule).
    """
    workdir_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    st = os.fstat(workdir_fd)
    if (st.st_dev, st.st_ino) != workdir_id:
        raise OSError(errno.ESTALE, "workdir changed while the sandbox was starting", workdir)
    syscalls.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096")
    os.mkdir("/tmp" + OLDROOT, 0o700)
    syscalls.pivot_root("/tmp", "/tmp" + OLDROOT)
    os.chdir("/")

    # Top-level symlinks of the host root (/bin -> usr/bin, /lib64 -> usr/lib64 on merged-/usr systems)
    # keep the dynamic loader's and scripts' paths working; a symlink exposes nothing by itself.
    for entry in os.scandir(OLDROOT):
        if entry.is_symlink() and entry.name not in ("proc", "tmp", "dev", SANDBOX_WORKDIR.strip("/")):
            os.symlink(os.readlink(entry.path), "/" + entry.name)

    _mount_proc()
    os.mkdir("/tmp", 0o755)
    # The sandbox's own /tmp. tmpfs pages belong to no process: unbounded, /tmp could hold half the host's
    # RAM that no OOM kill frees. Inodes are bounded too (they cost kernel memory, not tmpfs blocks).
    syscalls.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
               f"mode=1777,size={tmp_size},nr_inodes={max(1024, tmp_size // 4096)}")  # fmt: skip
    _build_dev()
    os.mkdir(SANDBOX_WORKDIR, 0o755)
    syscalls.mount(f"/proc/self/fd/{workdir_fd}", SANDBOX_WORKDIR, None, MS_BIND | MS_REC)
    os.close(workdir_fd)
    _set_attr(SANDBOX_WORKDIR, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)

    skipped: list[str] = []
    mounted = {SANDBOX_WORKDIR: False}  # sandbox path -> read-only?
    for target, read_only_ in plan.entries:
        enclosing = [m for m in mounted if _under(target, m)]
        if enclosing:
            # Inside an earlier bind (or the workdir): same files, only the read-only flag may differ.
            # Landlock unions rights along a path, so a read-only path under a read-write one needs this.
            if mounted[max(enclosing, key=len)] == read_only_:
                continue
            ok = _rebind(target, read_only_)
        elif target == "/dev" or target in STANDARD_DEVICES or any(_under(target, t) for t in _BUILT):
            continue  # built by us above; the policy entry only becomes a Landlock rule
        else:
            ok = _bind_host_path(target, read_only_)  # includes /dev/<device> such as /dev/nvidia0
        if ok:
            mounted[target] = read_only_
        else:
            skipped.append(target)

    syscalls.umount2(OLDROOT, MNT_DETACH)
    os.rmdir(OLDROOT)
    syscalls.sethostname(hostname)
    return skipped


def _bind_host_path(target: str, read_only: bool) -> bool:
    # ``target`` is canonical (plan_paths): a symlink on the way now means it changed since; refuse it.
    fd = _open_no_symlinks(target, root=OLDROOT)
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        _make_mountpoint(target, directory=stat.S_ISDIR(st.st_mode))
        syscalls.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    is_device = stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
    attrs = MOUNT_ATTR_NOSUID | (0 if is_device else MOUNT_ATTR_NODEV) | (MOUNT_ATTR_RDONLY if read_only else 0)
    _set_attr(target, attrs)
    return True


def _make_mountpoint(target: str, directory: bool) -> None:
    # The directories leading to a bind (/opt and /opt/clawfleet for /opt/clawfleet/openclaw) must be searchable
    # by the sandbox user: mkdir's mode is cut by the umask, and the sandbox unit runs with UMask=0077.
    missing = []
    parent = os.path.dirname(target)
    while parent and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)  # noqa: S103 - read-only path to the bind: the sandbox user must traverse it
    if directory:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))


def _rebind(target: str, read_only: bool) -> bool:
    """Bind ``target`` onto itself with the read-only flag set or cleared.

    The path may lie in the workdir, which the sandbox user wrote to on earlier runs: it is opened
    component by component refusing symlinks, and both the bind and the flag change go through fds.
    """
    fd = _open_no_symlinks(target)
    if fd is None:
        return False
    try:
        magic = f"/proc/self/fd/{fd}"
        syscalls.mount(magic, magic, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    top = _open_no_symlinks(target)  # now resolves to the new bind on top
    if top is None:
        return False
    try:
        attr = _MountAttr(MOUNT_ATTR_NOSUID | (MOUNT_ATTR_RDONLY if read_only else 0),
                          0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)  # fmt: skip
        syscalls.syscall(
            "mount_setattr", top, b"", AT_RECURSIVE | AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)
        )
    finally:
        os.close(top)
    return True


def _open_no_symlinks(path: str, root: str = "/") -> int | None:
    """O_PATH fd on ``path`` below ``root``, walking component by component and refusing any symlink."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return None
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return None
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def open_policy_path(path: str) -> int | None:
    """O_PATH fd on a planned target inside the sandbox root, for its Landlock rule (None: missing).

    Symlinks are followed only in the trees PID 1 built during this start (``/proc/self`` is the command's
    own entry); elsewhere - the workdir, read_write binds - a symlink may be the agent's from an earlier run
    and would carry the rule to where it points.
    """
    if any(_under(path, tree) for tree in ("/proc", "/dev", "/tmp")):
        try:
            return os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
    return _open_no_symlinks(path)


def _mount_proc() -> None:
    os.mkdir("/proc", 0o555)
    # hidepid=2: processes of other users (PID 1, which stays root) are invisible in /proc.
    syscalls.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")


def _build_dev() -> None:
    os.mkdir("/dev", 0o755)
    syscalls.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for dev in STANDARD_DEVICES:
        source = OLDROOT + dev
        if os.path.exists(source):
            _make_mountpoint(dev, directory=False)
            syscalls.mount(source, dev, None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, f"/dev/{name}")
    os.mkdir("/dev/shm", 0o1777)
    os.chmod("/dev/shm", 0o1777)  # noqa: S103 - sticky and world-writable like /dev/shm everywhere


def run_in_netns(pid: int, fn: Callable[[], T], netns_inode: int | None = None) -> T:
    """Run ``fn`` in the network namespace of process ``pid`` and return its result (root only).

    The one setns helper of clawfleet (the gateway listens in a sandbox's namespace with it, ``sandbox forward``
    connects into it): a socket created by ``fn`` stays in that namespace after we leave it. setns changes only the
    calling thread, so ``fn`` runs on a short-lived helper thread and the caller's own namespace is never touched.

    ``netns_inode``: the namespace the caller recorded earlier. A pid can be reused once its process exits; the
    namespace entered is checked on the opened fd itself (the one setns uses), so a reused pid raises ESRCH
    instead of entering some other process's namespace - possibly the host's.
    """
    import threading

    result: dict[str, Any] = {}
    ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if netns_inode is not None and os.fstat(ns_fd).st_ino != netns_inode:
        os.close(ns_fd)
        raise ProcessLookupError(errno.ESRCH, f"process {pid} no longer holds network namespace {netns_inode}")

    def helper() -> None:
        try:
            syscalls.setns(ns_fd, syscalls.CLONE_NEWNET)
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    try:
        thread = threading.Thread(target=helper, name=f"netns-{pid}")
        thread.start()
        thread.join()
    finally:
        os.close(ns_fd)
    if "error" in result:
        raise result["error"]
    value: T = result["value"]
    return value
