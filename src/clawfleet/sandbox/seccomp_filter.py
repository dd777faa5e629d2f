"""The seccomp filter, compiled by libseccomp (through pyseccomp, a thin ctypes binding).

Default allow; what is listed fails with EPERM (clone3: ENOSYS, so libc falls back to clone, whose flags
we can inspect; syscalls newer than libseccomp's table: ENOSYS, as no rule could name them). A superset of
upstream OpenShell's list (docs/sandbox.md has the table).

Architecture: the filter holds the native architecture only, and libseccomp answers any other ABI with the
bad-arch action, KILL_PROCESS. On x86_64 that covers i386 (``int 0x80``) and x32 (syscall numbers with bit
0x40000000): libseccomp's x86_64 filter treats x32 numbers as a foreign architecture. Syscall numbers come
from libseccomp's table by name, so the same code builds the right filter on x86_64 and aarch64.

Integer arguments are compared MASKED to their low 32 bits where the kernel reads an ``int``/``unsigned
int``: a plain 64-bit EQ on ioctl's request is bypassed with ``TIOCSTI | 1 << 32`` (CVE-2019-10063).
"""

from __future__ import annotations

import errno
import itertools
from typing import Any

from clawfleet.sandbox import syscalls

# ioctl requests (asm-generic/ioctls.h; identical on x86_64 and aarch64, see syscalls.SUPPORTED_MACHINES)
TIOCSTI = 0x5412  # push a byte into the terminal's input queue (CVE-2017-5226)
TIOCLINUX = 0x541C  # console selection paste: same attack on a VT
TIOCSETD = 0x5423  # change line discipline: kernel attack surface (n_gsm, CVE-2023-6546)

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
NETLINK_ROUTE = 0
SOCK_TYPE_MASK = 0xF  # type also carries SOCK_NONBLOCK / SOCK_CLOEXEC
SOCK_RAW, SOCK_PACKET = 3, 10
IPPROTO_MPTCP = 262
# Protocols an AF_INET/AF_INET6 socket may name: the default (0), ICMP/ICMPv6 (ping sockets), TCP and UDP.
# Every other number reaches another stack: UDP-Lite, SCTP, DCCP, L2TP, and MPTCP and SMC (IPPROTO_SMC is
# the second spelling of the denied AF_SMC family) - kernel attack surface, and outside Landlock's TCP rules.
INET_PROTOCOLS = (0, 1, 6, 17, 58)
AT_EMPTY_PATH = 0x1000
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP = 22

_LOW32 = 0xFFFFFFFF
# The unified syscall table, shared by every architecture since Linux 5.1, starts at 424 and stays below 512
# (where x86_64's x32 numbers begin). Boundaries of the table, not syscall numbers.
_UNIFIED_TABLE = range(424, 512)

# Denied outright (EPERM). Names unknown on an architecture (e.g. iopl on aarch64) do not exist there.
DENIED = (
    # memory and fd theft from other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "kcmp",
    # I/O that bypasses the filtered syscalls
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # fileless exec
    "memfd_create",
    # kernel exploit primitives
    "bpf", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    # kernel keyrings are not namespaced
    "keyctl", "add_key", "request_key",
    # mount table changes, old and new API
    "mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "pivot_root", "chroot", "setns",
    # privileged anyway; deny so a kernel bug in them is not reachable
    "open_by_handle_at", "name_to_handle_at", "acct", "swapon", "swapoff", "reboot", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "quotactl", "lookup_dcookie", "nfsservctl",
    "uselib", "vhangup", "iopl", "ioperm", "fanotify_init",
    # x86 segment descriptors: unprivileged, and a source of kernel bugs (CVE-2015-5157, CVE-2017-17053)
    "modify_ldt",
)  # fmt: skip

# Legacy x86 syscalls the generic table (aarch64) never had.
_ABSENT = {"aarch64": frozenset({"uselib", "iopl", "ioperm", "modify_ldt"})}

# Families a sandbox may open: Unix, IPv4, IPv6, and netlink for NETLINK_ROUTE only (getaddrinfo, ip addr).
_FAMILIES_DENIED_EQ = tuple(f for f in range(AF_NETLINK) if f not in (AF_UNIX, AF_INET, AF_INET6))


def build(machine: str | None = None) -> Any:
    """Return the pyseccomp filter object (not loaded).

    ``machine`` builds the filter for another supported architecture instead of the running one (to
    export and inspect it; tests check the aarch64 filter on x86_64 this way).
    """
    sc = syscalls.import_pyseccomp()  # kept off the CLI's import path until a sandbox starts

    machine = machine or syscalls.MACHINE
    arches = {"x86_64": sc.Arch.X86_64, "aarch64": sc.Arch.AARCH64}
    if machine not in arches:
        raise syscalls.KernelError(0, f"unsupported architecture {machine!r}")
    arch = arches[machine]
    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    if machine != syscalls.MACHINE:
        f.add_arch(arch)
        f.remove_arch(sc.Arch.NATIVE)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    # We set no_new_privs ourselves, before Landlock; libseccomp must not hide a failure of it.
    f.set_attr(sc.Attr.CTL_NNP, 0)

    absent = _ABSENT.get(machine, frozenset())

    def rule(action: int, name: str, *args: Any) -> None:
        if sc.resolve_syscall(arch, name) < 0:
            if name in absent:
                return  # the architecture has no such syscall
            # Fail closed: a libseccomp too old to know a syscall cannot filter it.
            raise syscalls.KernelError(0, f"libseccomp does not know {name!r}: upgrade libseccomp2 (>= 2.5)")
        f.add_rule(action, name, *args)

    def masked(arg: int, value: int, mask: int = _LOW32) -> Any:
        return sc.Arg(arg, sc.MASKED_EQ, mask, value)

    for name in DENIED:
        rule(deny, name)

    # Default allow has a blind spot: a syscall newer than this libseccomp has no name, so no rule here can
    # deny it - not even a new spelling of a denied call (open_tree_attr, Linux 6.15, for open_tree). Those
    # get ENOSYS, as from an older kernel; libc falls back. Native filter only: libseccomp cannot translate
    # a number it has no name for to another architecture (the numbers are the same on both anyway).
    if machine == syscalls.MACHINE:
        for nr in _UNIFIED_TABLE:
            if not _known(sc, arch, nr):
                f.add_rule(sc.ERRNO(errno.ENOSYS), nr)

    # clone3 passes its flags in a struct seccomp cannot read: make libc fall back to clone.
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _namespace_flags():
        rule(deny, "unshare", masked(0, flag, flag))
        rule(deny, "clone", masked(0, flag, flag))

    for ioctl in (TIOCSTI, TIOCLINUX, TIOCSETD):
        rule(deny, "ioctl", masked(1, ioctl))

    for call in ("socket", "socketpair"):
        for family in _FAMILIES_DENIED_EQ:
            rule(deny, call, masked(0, family))
        # Any family >= AF_NETLINK+1, and any value with high bits set (the kernel reads an int).
        rule(deny, call, sc.Arg(0, sc.GE, AF_NETLINK + 1))
        rule(deny, call, masked(0, AF_NETLINK), sc.Arg(2, sc.NE, NETLINK_ROUTE))
        for family in (AF_INET, AF_INET6):
            for sock_type in (SOCK_RAW, SOCK_PACKET):
                rule(deny, call, masked(0, family), masked(1, sock_type, SOCK_TYPE_MASK))
            # "Not in INET_PROTOCOLS": the gaps below the largest one as aligned blocks (one masked compare
            # each), and anything above it, compared on all 64 bits so that high bits are denied too.
            for value, mask in _gaps(INET_PROTOCOLS):
                rule(deny, call, masked(0, family), masked(2, value, mask))
            rule(deny, call, masked(0, family), sc.Arg(2, sc.GT, max(INET_PROTOCOLS)))
        rule(deny, call, masked(2, IPPROTO_MPTCP))

    # fileless exec: execveat(fd, "", argv, envp, AT_EMPTY_PATH) runs a memfd or any open fd
    rule(deny, "execveat", masked(4, AT_EMPTY_PATH, AT_EMPTY_PATH))
    # no second filter stacked on ours (filter confusion); the prctl spelling too
    rule(deny, "seccomp", masked(0, SECCOMP_SET_MODE_FILTER))
    rule(deny, "prctl", masked(0, PR_SET_SECCOMP))
    return f


def _known(sc: Any, arch: int, nr: int) -> bool:
    try:
        sc.resolve_syscall(arch, nr)
    except ValueError:  # pyseccomp: "Unknown syscall N on arch A"
        return False
    return True


def _gaps(allowed: tuple[int, ...]) -> list[tuple[int, int]]:
    """(value, mask) pairs that together match exactly the numbers below max(allowed) not in ``allowed``:
    each is an aligned power-of-two block, matched by ``x & mask == value``."""
    blocks = []
    for lo, hi in itertools.pairwise(sorted(allowed)):
        n = lo + 1
        while n < hi:
            size = n & -n
            while n + size > hi:
                size //= 2
            blocks.append((n, _LOW32 & ~(size - 1)))
            n += size
    return blocks


def _namespace_flags() -> tuple[int, ...]:
    return tuple(bit for bit in (1 << i for i in range(32)) if bit & syscalls.CLONE_NEW_ALL)


def load(seccomp_filter: Any) -> None:
    """Load (last step before exec); requires no_new_privs, which the launcher set earlier."""
    seccomp_filter.load()
