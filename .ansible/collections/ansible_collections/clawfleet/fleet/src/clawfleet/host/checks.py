"""Judge a host's facts: pure functions over a :class:`~clawfleet.host.facts.Facts` snapshot.

Each check gives its value, the requirement, a verdict (pass | warn | fail), whether it is required, and
how to fix it. The report is ``ok`` only when no required check fails. The Ansible preflight role runs
the same code (``clawfleet host check --json``) on every host.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from clawfleet.host.facts import Facts

GIB = 1 << 30
MIN_KERNEL = (5, 13)  # Landlock ABI 1
FULL_LANDLOCK_ABI = 6  # scoping of abstract sockets and signals
# "8 GB" as sold: the kernel reserves some, so such a host reports about 7.6-7.8 GiB of MemTotal.
MIN_MEMORY = int(7.5 * GIB)
MIN_DISK = 20 * GIB
MIN_CPUS, RECOMMENDED_CPUS = 2, 4
MIN_LIBSECCOMP = (2, 5)  # knows every syscall the filter names (io_uring, pidfd_getfd, mount_setattr...)
SANDBOX_NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "cgroup")


SUPPORTED_DISTROS = {"debian": ("12", "13"), "ubuntu": ("22.04", "24.04")}
SUPPORTED_MACHINES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class Requirements:
    """Thresholds an operator may raise (or lower, knowingly) per host; defaults are the product's minimums."""

    min_kernel: tuple[int, int] = MIN_KERNEL
    min_landlock_abi: int = 1
    min_memory: int = MIN_MEMORY
    min_disk: int = MIN_DISK
    min_cpus: int = MIN_CPUS


@dataclass(frozen=True)
class Check:
    name: str
    value: object
    requirement: str
    verdict: str  # pass | warn | fail
    required: bool
    fix: str = ""


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / GIB:.1f} GiB"


def _unknown(name: str, requirement: str, fix: str, required: bool = True) -> Check:
    return Check(name, None, requirement, "fail" if required else "warn", required, "could not be determined; " + fix)


def kernel_version(release: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_distro(f: Facts, r: Requirements) -> Check:
    req = "Debian 12/13, Ubuntu 22.04/24.04 or DGX OS"
    fix = "reinstall the host with a supported distribution"
    if f.distro is None:
        return _unknown("distro", req, fix)
    name, _, version = f.distro.partition(" ")
    ok = version in SUPPORTED_DISTROS.get(name, ()) or (f.dgx_os and name == "ubuntu")
    value = f.distro + (" (DGX OS)" if f.dgx_os else "")
    return Check("distro", value, req, "pass" if ok else "fail", True, "" if ok else fix)


def check_machine(f: Facts, r: Requirements) -> Check:
    req = " or ".join(SUPPORTED_MACHINES)
    if f.machine is None:
        return _unknown("machine", req, "run the check on the host itself")
    ok = f.machine in SUPPORTED_MACHINES
    return Check("machine", f.machine, req, "pass" if ok else "fail", True, "" if ok else "use an x86_64 or arm64 host")


def check_kernel(f: Facts, r: Requirements) -> Check:
    req = f">= {r.min_kernel[0]}.{r.min_kernel[1]} (Landlock)"
    fix = "upgrade the kernel (Ubuntu 22.04 HWE, Debian 12 or newer)"
    version = kernel_version(f.kernel)
    if version is None:
        return _unknown("kernel", req, fix)
    ok = version >= r.min_kernel
    return Check("kernel", f.kernel, req, "pass" if ok else "fail", True, "" if ok else fix)


def check_landlock(f: Facts, r: Requirements) -> Check:
    req = f"ABI >= {r.min_landlock_abi} required, >= {FULL_LANDLOCK_ABI} for full protection"
    fix = "boot with lsm=...,landlock (CONFIG_SECURITY_LANDLOCK=y); kernel 6.12+ gives ABI 6"
    if f.landlock_abi is None:
        return _unknown("landlock", req, fix)
    verdict = (
        "fail"
        if f.landlock_abi < max(1, r.min_landlock_abi)
        else ("warn" if f.landlock_abi < FULL_LANDLOCK_ABI else "pass")
    )
    return Check("landlock", f.landlock_abi, req, verdict, True, fix if verdict != "pass" else "")


def check_seccomp(f: Facts, r: Requirements) -> Check:
    req = f"seccomp filters with errno and kill_process; libseccomp >= {'.'.join(map(str, MIN_LIBSECCOMP))}"
    fix = "enable CONFIG_SECCOMP_FILTER in the kernel; apt-get install libseccomp2"
    if f.seccomp_actions is None:
        return _unknown("seccomp", req, fix)
    ok = {"errno", "kill_process"} <= set(f.seccomp_actions)
    if f.libseccomp is not None:  # "" = not installed; None = not known (facts not from a live host)
        ok = ok and (kernel_version(f.libseccomp) or (0, 0)) >= MIN_LIBSECCOMP
    value = " ".join(f.seccomp_actions) + (
        f"; libseccomp {f.libseccomp or 'missing'}" if f.libseccomp is not None else ""
    )
    return Check("seccomp", value, req, "pass" if ok else "fail", True, "" if ok else fix)


def check_namespaces(f: Facts, r: Requirements) -> Check:
    req = "mount, pid, net, ipc, uts and cgroup namespaces"
    fix = "enable CONFIG_NAMESPACES with PID/NET/IPC/UTS/CGROUP namespaces in the kernel"
    if f.namespaces is None:
        return _unknown("namespaces", req, fix)
    missing = [n for n in SANDBOX_NAMESPACES if n not in f.namespaces]
    return Check("namespaces", " ".join(f.namespaces), req, "fail" if missing else "pass", True,
                 fix if missing else "")  # fmt: skip


def check_user_namespaces(f: Facts, r: Requirements) -> Check:
    req = "user namespaces enabled (agents' own tools, e.g. rootless builds; the sandbox itself runs as root)"
    fix = "sysctl -w user.max_user_namespaces=15000"
    if f.max_user_namespaces is None:
        return _unknown("user_namespaces", req, fix, required=False)
    ok = f.max_user_namespaces > 0 and (f.namespaces is None or "user" in f.namespaces)
    return Check("user_namespaces", f.max_user_namespaces, req, "pass" if ok else "warn", False, "" if ok else fix)


def check_cgroups(f: Facts, r: Requirements) -> Check:
    req = "memory and pids controllers (cgroup v2, or v1 / hybrid)"
    fix = "mount cgroup2 with the memory and pids controllers (systemd.unified_cgroup_hierarchy=1)"
    if f.cgroup_version is None or f.cgroup_controllers is None:
        return _unknown("cgroups", req, fix)
    ok = {"memory", "pids"} <= set(f.cgroup_controllers)
    value = f"{f.cgroup_version} ({', '.join(f.cgroup_controllers) or 'no controllers'})"
    return Check("cgroups", value, req, "pass" if ok else "fail", True, "" if ok else fix)


def check_memory(f: Facts, r: Requirements) -> Check:
    req = f"RAM >= {_gib(r.min_memory)} usable, or RAM + swap >= that"
    fix = "add RAM, or swap: clawfleet's swap role (roles/swap) sizes and enables a swap file"
    if f.mem_total is None:
        return _unknown("memory", req, fix)
    swap = f.swap_total or 0
    value = f"RAM {_gib(f.mem_total)}, swap {_gib(swap)}"
    if f.mem_total >= r.min_memory:
        return Check("memory", value, req, "pass", True)
    if f.mem_total + swap >= r.min_memory:
        return Check("memory", value, req, "warn", True, "works with swap; add RAM for steady performance")
    return Check("memory", value, req, "fail", True, fix)


def check_disk(f: Facts, r: Requirements) -> Check:
    req = f">= {_gib(r.min_disk)} free on {f.disk_path}"
    fix = f"free space or grow the filesystem holding {f.disk_path}"
    if f.disk_free is None:
        return _unknown("disk", req, fix)
    ok = f.disk_free >= r.min_disk
    return Check("disk", _gib(f.disk_free), req, "pass" if ok else "fail", True, "" if ok else fix)


def check_cpus(f: Facts, r: Requirements) -> Check:
    req = f">= {r.min_cpus} CPUs ({max(r.min_cpus, RECOMMENDED_CPUS)} recommended)"
    fix = "use a host with more vCPUs"
    if f.cpus is None:
        return _unknown("cpus", req, fix)
    verdict = "fail" if f.cpus < r.min_cpus else ("warn" if f.cpus < max(r.min_cpus, RECOMMENDED_CPUS) else "pass")
    return Check("cpus", f.cpus, req, verdict, True, "" if verdict == "pass" else fix)


def check_gpu(f: Facts, r: Requirements) -> Check:
    req = "optional: NVIDIA GPU for local inference"
    if not f.gpu:
        return Check("gpu", None, req, "pass", False)
    gpus = [g.get("name") for g in f.gpu.get("gpus", [])]
    value = {"count": len(gpus), "models": gpus, "driver": f.gpu.get("driver_version")}
    fix = ""
    if gpus and not f.gpu.get("driver_loaded"):
        fix = "NVIDIA GPU without a loaded driver: run the nvidia driver role"
    return Check("gpu", value, req, "warn" if fix else "pass", False, fix)


CHECKS = (
    check_distro,
    check_machine,
    check_kernel,
    check_landlock,
    check_seccomp,
    check_namespaces,
    check_user_namespaces,
    check_cgroups,
    check_memory,
    check_disk,
    check_cpus,
    check_gpu,
)


def evaluate(facts: Facts, requirements: Requirements | None = None, ignore: tuple[str, ...] = ()) -> dict:
    """Run every check. Names in ``ignore`` (an operator's explicit override) turn a failure into a warning."""
    r = requirements or Requirements()
    unknown = sorted(set(ignore) - {c.__name__.removeprefix("check_") for c in CHECKS})
    if unknown:
        raise ValueError(f"cannot ignore unknown check(s) {', '.join(unknown)}")
    checks = []
    for check in (c(facts, r) for c in CHECKS):
        if check.name in ignore and check.verdict == "fail":
            check = replace(check, verdict="warn", fix=f"IGNORED by operator; {check.fix}")
        checks.append(check)
    return {
        "host": facts.host,
        "checks": [asdict(c) for c in checks],
        "ok": not any(c.required and c.verdict == "fail" for c in checks),
    }
