"""Landlock: filesystem rights, Unix-socket and signal scoping, with ABI negotiation.

Rights are the union along a path's ancestors (Landlock's rule), so a read-only path nested in a read-write
one is made read-only by a read-only bind mount (namespaces.py), not here. Everything not listed is denied,
including REFER (link/rename across directories), TRUNCATE and IOCTL_DEV where the ABI has them.

Syscall numbers: landlock_create_ruleset/add_rule/restrict_self are 444/445/446 on x86_64 and on aarch64
(the generic table): they were added after the tables were unified. They are still resolved through
libseccomp (``syscalls.syscall_number``), never written down here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass

from clawfleet.sandbox import namespaces, syscalls

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

# Rights that make sense on a file (not a directory); adding directory rights to a file rule is EINVAL.
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
_READ_RIGHTS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR

#: Full protection needs this ABI; below it best_effort warns and hard_requirement refuses.
FULL_ABI = 6

# (ABI that introduced it, what is lost without it) - the text of the best_effort warning.
_FEATURES = (
    (1, "Landlock itself: the filesystem is NOT restricted by Landlock (only the mount namespace hides paths)"),
    (2, "REFER (ABI 2): link/rename across directories is refused outright"),
    (3, "TRUNCATE (ABI 3): truncate() on read-only files is not governed"),
    (5, "IOCTL_DEV (ABI 5): ioctl on device files is not governed"),
    (6, "scoping of abstract Unix sockets and signals (ABI 6)"),
)


class LandlockError(OSError):
    pass


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def kernel_abi() -> int:
    """The Landlock ABI the kernel offers (0 = none); works where /sys/kernel/security/lsm is missing."""
    try:
        return syscalls.syscall("landlock_create_ruleset", None, 0, CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def handled_fs(abi: int) -> int:
    if abi < 1:
        return 0
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def scoped(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def missing_features(abi: int) -> list[str]:
    return [text for needed, text in _FEATURES if abi < needed]


@dataclass(frozen=True)
class Plan:
    """The negotiated ABI and what it lacks; decided before the sandbox is built."""

    abi: int
    missing: tuple[str, ...]

    def refusal(self, compat: str) -> str | None:
        """Why ``hard_requirement`` refuses to start with this ABI (None: it may start)."""
        if not self.missing or compat != "hard_requirement":
            return None
        return f"landlock hard_requirement not met (ABI {self.abi}, need {FULL_ABI}): missing " + "; ".join(
            self.missing
        )


def negotiate(max_abi: int | None = None) -> Plan:
    """The highest ABI the kernel offers (optionally capped), and what it lacks."""
    abi = kernel_abi()
    if max_abi is not None:
        abi = min(abi, max_abi)
    return Plan(abi, tuple(missing_features(abi)))


def build_ruleset(abi: int, read_only: tuple[str, ...], read_write: tuple[str, ...]) -> tuple[int, list[str]]:
    """Create the ruleset fd (close-on-exec) for paths as seen now; returns (fd, paths skipped as missing).

    The paths are the planned targets (namespaces.plan_paths), opened by namespaces.open_policy_path: a
    symlink the agent left in the workdir must not carry a rule to where it points.
    """
    handled = handled_fs(abi)
    attr = _RulesetAttr(handled, 0, scoped(abi))
    # Pass only the part of the struct this ABI knows: an older kernel rejects unknown non-zero fields.
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    fd = syscalls.syscall("landlock_create_ruleset", ctypes.byref(attr), size, 0)
    skipped: list[str] = []
    try:
        for paths, rights in ((read_only, _READ_RIGHTS), (read_write, handled)):
            for path in paths:
                if not _add_path(fd, path, rights & handled):
                    skipped.append(path)
    except BaseException:
        os.close(fd)
        raise
    os.set_inheritable(fd, False)
    return fd, skipped


def _add_path(ruleset_fd: int, path: str, rights: int) -> bool:
    pfd = namespaces.open_policy_path(path)
    if pfd is None:
        return False
    try:
        if not stat.S_ISDIR(os.fstat(pfd).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, pfd)
        syscalls.syscall("landlock_add_rule", ruleset_fd, RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    finally:
        os.close(pfd)
    return True


def restrict_self(ruleset_fd: int, probe_dir: str = "/") -> None:
    """Enforce the ruleset on this thread (and what it execs), then prove it is enforced.

    The proof is an access the ruleset must deny whatever the policy says: creating a directory in
    ``probe_dir`` (the sandbox's own root, which no rule may cover with write rights). Run as root, so
    only Landlock can be the reason it fails. Upstream issue #803: "best effort" that silently enforced
    nothing.
    """
    syscalls.syscall("landlock_restrict_self", ruleset_fd, 0)
    probe = os.path.join(probe_dir, f".landlock-probe-{os.getpid()}")
    try:
        os.mkdir(probe, 0o700)
    except PermissionError:
        return
    except OSError as exc:
        raise LandlockError(exc.errno, f"landlock enforcement probe failed unexpectedly: {exc}") from exc
    os.rmdir(probe)
    raise LandlockError(errno.EPERM, "landlock ruleset is NOT enforced: the probe directory could be created")
