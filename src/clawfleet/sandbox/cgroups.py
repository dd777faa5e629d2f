"""A cgroup per sandbox with memory and pids limits, on cgroup v2 or v1 (including hybrid layouts).

Each controller is taken from the unified (v2) hierarchy when the v2 root offers it, else from its own
v1 hierarchy (Debian 12 hybrid: cgroup2 at /sys/fs/cgroup/unified with no controllers, memory and pids
as v1 hierarchies). Placement:

- v2: ``<v2 root>/clawfleet/<sandbox>``. Not under our own cgroup: v2 forbids enabling controllers for
  children of a cgroup that holds processes (ours holds us), and the root cgroup is exempt.
- v1: ``<hierarchy>/<our own cgroup>/clawfleet/<sandbox>``, so limits set on the supervisor still apply.

Requested limits that cannot be applied are an error (the launcher fails closed).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass, field

GROUP = "clawfleet"


class CgroupError(OSError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where each controller lives. ``root`` is a prefix for tests that fake /proc and /sys."""

    v2_mount: str | None
    v2_controllers: frozenset[str]
    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    own: dict[str, str] = field(default_factory=dict)  # controller ("" for v2) -> own cgroup path

    @property
    def version(self) -> str:
        if self.v2_mount and not self.v1_mounts:
            return "v2"
        return "hybrid" if self.v2_mount else ("v1" if self.v1_mounts else "none")


def detect(root: str = "/") -> Layout:
    v2_mount, v1 = None, {}
    with open(os.path.join(root, "proc/self/mountinfo")) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = [*right.split(), "", "", ""][:3]
            mount_point = left.split()[4]
            if fstype == "cgroup2" and v2_mount is None:
                v2_mount = mount_point
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("memory", "pids"):
                        v1[opt] = mount_point
    controllers: frozenset[str] = frozenset()
    if v2_mount:
        with contextlib.suppress(OSError):
            controllers = frozenset(_read(_join(root, v2_mount, "cgroup.controllers")).split())
    own: dict[str, str] = {}
    with open(os.path.join(root, "proc/self/cgroup")) as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                own[ctrl] = path
    return Layout(v2_mount, controllers, v1, own)


def _join(root: str, *parts: str) -> str:
    return os.path.join(root, *(p.lstrip("/") for p in parts))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cgroup: cannot write {value!r} to {path}: {exc.strerror}") from exc


@dataclass
class Cgroup:
    dirs: list[str]
    version: str

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0 = the calling process) into the sandbox's cgroup, in every hierarchy."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def destroy(self, timeout: float = 2.0) -> None:
        """Kill whatever is left and remove the directories (leaves first)."""
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            if os.path.exists(os.path.join(d, "cgroup.kill")):
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "cgroup.kill"), "1")
            else:
                with contextlib.suppress(OSError):
                    for pid in _read(os.path.join(d, "cgroup.procs")).split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)


_NAME = re.compile(r"sandbox-([0-9]+)-[0-9a-f]{8}")


def _sweep(base: str) -> None:
    """Remove the empty cgroups of sandboxes whose launcher is gone: one killed with SIGKILL (or by the OOM killer)
    never ran its own clean-up, and its directory would stay forever. A launcher that still runs (or a process that
    got its pid since) keeps its group; the kernel refuses to remove a group that still holds a process."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        m = _NAME.fullmatch(name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # alive (or its pid was reused): not ours to judge
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(base, name))


def create(memory_max: int | None, pids_max: int | None, root: str = "/", layout: Layout | None = None) -> Cgroup:
    """Create the sandbox's cgroup(s) with the given limits; nothing is created when no limit is asked."""
    wanted = {"memory": memory_max, "pids": pids_max}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return Cgroup([], "none")
    layout = layout or detect(root)
    name = f"sandbox-{os.getpid()}-{os.urandom(4).hex()}"
    made: list[str] = []
    cg = Cgroup(made, layout.version)
    try:
        v2_ctrls = [c for c in wanted if c in layout.v2_controllers and layout.v2_mount]
        if v2_ctrls:
            base = _join(root, layout.v2_mount or "", GROUP)
            os.makedirs(base, exist_ok=True)
            for parent in (_join(root, layout.v2_mount or ""), base):
                enabled = _read(os.path.join(parent, "cgroup.subtree_control")).split()
                missing = [c for c in v2_ctrls if c not in enabled]
                if missing:
                    _write(os.path.join(parent, "cgroup.subtree_control"), " ".join("+" + c for c in missing))
            _sweep(base)
            d = os.path.join(base, name)
            os.mkdir(d, 0o755)
            made.append(d)
            if "memory" in v2_ctrls:
                _write(os.path.join(d, "memory.max"), str(wanted["memory"]))
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    _write(os.path.join(d, "memory.swap.max"), "0")  # swap must not lift the limit
                if os.path.exists(os.path.join(d, "memory.oom.group")):
                    _write(os.path.join(d, "memory.oom.group"), "1")
            if "pids" in v2_ctrls:
                _write(os.path.join(d, "pids.max"), str(wanted["pids"]))
        for ctrl in (c for c in wanted if c not in v2_ctrls):
            mount = layout.v1_mounts.get(ctrl)
            if mount is None:
                raise CgroupError(0, f"cgroup: no {ctrl} controller on this host (neither cgroup v2 nor v1)")
            d = _join(root, mount, layout.own.get(ctrl, "/"), GROUP, name)
            _sweep(os.path.dirname(d))
            os.makedirs(d, 0o755)
            made.append(d)
            if ctrl == "memory":
                _write(os.path.join(d, "memory.limit_in_bytes"), str(wanted["memory"]))
                if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(wanted["memory"]))
            else:
                _write(os.path.join(d, "pids.max"), str(wanted["pids"]))
    except OSError as exc:
        with contextlib.suppress(OSError):
            cg.destroy(timeout=0)
        if isinstance(exc, CgroupError):
            raise
        raise CgroupError(exc.errno, f"cgroup: {exc}") from exc
    return cg
