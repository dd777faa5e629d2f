"""Gather the facts the preflight judges, once, into a plain snapshot.

``read(root)`` reads a live host (``root="/"``) or a copied tree under a prefix; kernel probes (Landlock
syscall, statvfs, nvidia-smi) run only against the live host. Captured GPU hosts
(``tests/data/gpu-hosts/*``) are read with ``clawfleet.gpu.detect.detect_from_dir``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from dataclasses import dataclass, field
from typing import Any

NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user")


@dataclass(frozen=True)
class Facts:
    """None means "not known" (a check on an unknown required fact fails)."""

    host: str = "unknown"
    machine: str | None = None
    distro: str | None = None  # "<ID> <VERSION_ID>" from os-release, e.g. "debian 12", "ubuntu 24.04"
    dgx_os: bool = False
    kernel: str | None = None  # release, e.g. "6.18.44-fc-v669"
    landlock_abi: int | None = None
    seccomp_actions: tuple[str, ...] | None = None  # from /proc/sys/kernel/seccomp/actions_avail
    libseccomp: str | None = None  # version the sandbox compiles its filter with; "" = not installed
    namespaces: tuple[str, ...] | None = None
    max_user_namespaces: int | None = None
    cgroup_version: str | None = None  # v2 | hybrid | v1 | none
    cgroup_controllers: tuple[str, ...] | None = None  # memory/pids usable for sandboxes
    mem_total: int | None = None  # bytes
    swap_total: int | None = None
    disk_free: int | None = None  # bytes free on disk_path
    disk_path: str = "/var/lib"
    cpus: int | None = None
    gpu: dict[str, Any] | None = field(default=None)  # clawfleet.gpu GpuReport.to_dict()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def libseccomp_version() -> str | None:
    """Version of libseccomp.so.2 as loaded by the sandbox (None: not installed)."""
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def meminfo(text: str) -> tuple[int | None, int | None]:
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values.get("MemTotal"), values.get("SwapTotal")


def cpu_count(cpuinfo: str | None) -> int | None:
    if cpuinfo is None:
        return None
    n = sum(1 for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor")
    return n or None


def os_release(text: str | None) -> str | None:
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    if "ID" not in fields:
        return None
    return f"{fields['ID']} {fields.get('VERSION_ID', '')}".strip()


def read(root: str = "/", disk_path: str = "/var/lib") -> Facts:
    live = os.path.realpath(root) == "/"

    def p(rel: str) -> str:
        return os.path.join(root, rel.lstrip("/"))

    kernel = (_read(p("/proc/sys/kernel/osrelease")) or "").strip() or None
    mem_total, swap_total = meminfo(_read(p("/proc/meminfo")) or "")
    actions = _read(p("/proc/sys/kernel/seccomp/actions_avail"))
    max_userns = (_read(p("/proc/sys/user/max_user_namespaces")) or "").strip()
    namespaces = tuple(n for n in NAMESPACES if os.path.exists(p(f"/proc/self/ns/{n}")))
    hostname = (_read(p("/proc/sys/kernel/hostname")) or "").strip() or (socket.gethostname() if live else "unknown")

    cgroup_version, controllers = None, None
    with contextlib.suppress(OSError, ValueError):
        from clawfleet.sandbox import cgroups

        layout = cgroups.detect(root)
        cgroup_version = layout.version
        controllers = tuple(
            sorted(c for c in ("memory", "pids") if c in layout.v2_controllers or c in layout.v1_mounts)
        )

    landlock_abi = disk_free = libseccomp = None
    if live:
        libseccomp = libseccomp_version() or ""
        with contextlib.suppress(OSError):
            from clawfleet.sandbox import landlock

            landlock_abi = landlock.kernel_abi()
        target = disk_path if os.path.exists(disk_path) else "/"
        with contextlib.suppress(OSError):
            st = os.statvfs(target)
            disk_free = st.f_bavail * st.f_frsize

    from clawfleet.gpu.detect import detect

    return Facts(
        host=hostname,
        machine=(_read(p("/proc/sys/kernel/arch")) or "").strip() or (platform.machine() if live else None),
        distro=os_release(_read(p("/etc/os-release")) or _read(p("/usr/lib/os-release"))),
        dgx_os=os.path.exists(p("/etc/dgx-release")),
        kernel=kernel,
        landlock_abi=landlock_abi,
        seccomp_actions=tuple(actions.split()) if actions else None,
        libseccomp=libseccomp,
        namespaces=namespaces if os.path.isdir(p("/proc/self/ns")) else None,
        max_user_namespaces=int(max_userns) if max_userns.isdigit() else None,
        cgroup_version=cgroup_version,
        cgroup_controllers=controllers,
        mem_total=mem_total,
        swap_total=swap_total,
        disk_free=disk_free,
        disk_path=disk_path,
        cpus=(os.cpu_count() if live else None) or cpu_count(_read(p("/proc/cpuinfo"))),
        gpu=detect(root).to_dict(),
    )
