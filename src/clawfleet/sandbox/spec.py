"""What a sandbox is: plain frozen data, validated once, no I/O beyond user lookup.

The kernel-facing modules take a :class:`SandboxSpec` and nothing else, so they never see YAML, HTTP or the
supervisor's environment. :func:`clawfleet.sandbox.from_policy.spec_from_policy` builds the spec from a policy
(for ``clawfleet sandbox run``'s flags and for sandbox definition files alike).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Where the workdir appears inside the sandbox (upstream OpenShell uses the same path).
SANDBOX_WORKDIR = "/sandbox"

BEST_EFFORT = "best_effort"
HARD_REQUIREMENT = "hard_requirement"
ENFORCE = "enforce"
MONITOR = "monitor"
DEFAULT_TMP_MAX = 1 << 30  # bytes


class SpecError(ValueError):
    """The sandbox definition is unusable; the message says why, in one line."""


@dataclass(frozen=True)
class SandboxSpec:
    argv: tuple[str, ...]
    #: Host directory bind-mounted read-write at /sandbox; the command starts there.
    workdir: str
    uid: int
    gid: int
    user: str
    read_only: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()
    landlock_compat: str = BEST_EFFORT
    #: Cap on the Landlock ABI to use (None = the highest the kernel offers). Tests use it to simulate old kernels.
    landlock_max_abi: int | None = None
    memory_max: int | None = None  # bytes
    pids_max: int | None = 4096
    #: Size of the sandbox's /tmp (a tmpfs: memory that no OOM kill gives back, so it is always bounded).
    tmp_max: int = DEFAULT_TMP_MAX
    env: Mapping[str, str] = field(default_factory=dict)
    mode: str = ENFORCE
    log: str | None = None
    hostname: str = "sandbox"

    def __post_init__(self) -> None:
        if not self.argv:
            raise SpecError("no command given")
        if self.uid == 0 or self.gid == 0:
            raise SpecError("the sandbox user and group must not be root (uid/gid 0)")
        if self.landlock_compat not in (BEST_EFFORT, HARD_REQUIREMENT):
            raise SpecError(f"landlock compatibility must be {BEST_EFFORT} or {HARD_REQUIREMENT}")
        if self.mode not in (ENFORCE, MONITOR):
            raise SpecError(f"mode must be {ENFORCE} or {MONITOR}")
        if not os.path.isabs(self.workdir) or os.path.realpath(self.workdir) == "/":
            raise SpecError(f"workdir must be an absolute path other than /: {self.workdir!r}")
        for path in (*self.read_only, *self.read_write):
            _check_policy_path(path)
        for limit in (self.memory_max, self.pids_max, self.tmp_max):
            if limit is not None and limit <= 0:
                raise SpecError("memory, pids and /tmp limits must be positive")
        for name, value in self.env.items():
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise SpecError(f"invalid environment entry {name!r}")


def _check_policy_path(path: str) -> None:
    if not path.startswith("/") or "\0" in path:
        raise SpecError(f"policy path must be absolute: {path!r}")
    if ".." in path.split("/"):
        raise SpecError(f"policy path must not contain '..': {path!r}")
    # "/" would put the whole host filesystem (and every daemon's socket: Landlock does not govern
    # connect() on pathname sockets) back into view; the sandbox is built from the listed paths only.
    if os.path.normpath(path) == "/":
        raise SpecError("policy path '/' is not allowed: list the directories the sandbox needs")


_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``4G``, ``96M``, ``512MiB``, ``1000`` -> bytes. Raises SpecError."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(text[:-1]) * _SIZE_UNITS[text[-1]]) if text[-1:] in _SIZE_UNITS else int(text)
    except (ValueError, IndexError):
        raise SpecError(f"not a size: {text!r}") from None


def resolve_user(user: str, group: str | None = None) -> tuple[str, int, int]:
    """Resolve NAME or numeric id to (name, uid, gid); refuse root."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise SpecError(f"unknown sandbox user {user!r}") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except (KeyError, OverflowError):
            raise SpecError(f"unknown sandbox group {group!r}") from None
    if entry.pw_uid == 0 or gid == 0:
        raise SpecError(f"refusing to run the sandbox as root ({user!r})")
    return entry.pw_name, entry.pw_uid, gid
