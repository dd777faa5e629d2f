"""The few libc entry points Python < 3.12 lacks, via ctypes, each checked.

Syscall numbers are never written down for one architecture: they come from libseccomp's table for the
running architecture (``seccomp_syscall_resolve_name``), the same table the filter is compiled from.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import types

# The interpreter's own global symbols include libc's; ctypes.util.find_library would run `ldconfig -p`
# in a subprocess (about 12 ms of every sandbox start).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Architectures this sandbox is built and tested for. Constants that differ between architectures
# (ioctl numbers, clone flags) are identical on these two (asm-generic), which the tables below rely on.
SUPPORTED_MACHINES = ("x86_64", "aarch64")
MACHINE = os.uname().machine  # what platform.machine() returns, without importing platform

# namespaces (include/uapi/linux/sched.h, identical on every architecture)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_ALL = (
    CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
    | CLONE_NEWPID | CLONE_NEWNET
)  # fmt: skip

# prctl options (include/uapi/linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


class KernelError(OSError):
    """A setup syscall failed; ``str()`` names the step."""


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise KernelError(err, f"{what}: {os.strerror(err)}")


# Syscalls added since Linux 5.1 have one number on every architecture (the unified table), so these need no
# libseccomp: `clawfleet host check` probes Landlock on hosts that do not have the runtime's venv yet.
_UNIFIED_NUMBERS = {"landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446}


@functools.cache
def syscall_number(name: str) -> int:
    """Number of ``name`` on the running architecture, from libseccomp's table."""
    if MACHINE not in SUPPORTED_MACHINES:
        raise KernelError(0, f"unsupported architecture {MACHINE!r}")
    try:
        sc = import_pyseccomp()
    except ImportError:
        if name in _UNIFIED_NUMBERS:
            return _UNIFIED_NUMBERS[name]
        raise
    nr = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    if nr < 0:
        raise KernelError(0, f"libseccomp does not know the syscall {name!r} on this architecture")
    return nr


def import_pyseccomp() -> types.ModuleType:
    """Import pyseccomp, skipping the two ``ldconfig -p`` subprocesses its import runs.

    pyseccomp locates libc and libseccomp with ctypes.util.find_library at import time, which costs more
    than the rest of the sandbox start. Their sonames are fixed by the ABI on every glibc system we
    support, so they are offered first; any other name, or a failure, takes the normal path.
    """
    if "pyseccomp" in sys.modules:
        return sys.modules["pyseccomp"]
    import ctypes.util

    real = ctypes.util.find_library
    sonames = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
    ctypes.util.find_library = lambda name: sonames.get(name) or real(name)
    try:
        import pyseccomp
    except OSError:  # a soname above is not there: retry the slow, general way
        sys.modules.pop("pyseccomp", None)
        ctypes.util.find_library = real
        import pyseccomp
    finally:
        ctypes.util.find_library = real
    return sys.modules[pyseccomp.__name__]


def syscall(name: str, *args: object) -> int:
    """Raw syscall; returns the result or raises KernelError naming the syscall."""
    # Variadic call: every integer goes as a full register (c_long), as the kernel reads size_t and pointers.
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    res = _libc.syscall(ctypes.c_long(syscall_number(name)), *conv)
    if res == -1:
        _raise(name)
    return int(res)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    res = _libc.prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5),
    )
    if res == -1:
        _raise(f"prctl({option})")
    return int(res)


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        _raise("unshare")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        _raise("setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else os.fsencode(s) for s in (source, target, fstype, data)]
    if _libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        _raise(f"mount {source or fstype} on {target}")


def umount2(target: str, flags: int) -> None:
    if _libc.umount2(os.fsencode(target), ctypes.c_int(flags)) != 0:
        _raise(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", os.fsencode(new_root), os.fsencode(put_old))


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, ctypes.c_size_t(len(raw))) != 0:
        _raise("sethostname")
