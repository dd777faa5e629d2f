"""``clawfleet sandbox connect NAME [-- CMD]``: run a command inside a running sandbox, confined exactly like it.

The new process joins the sandbox command's cgroup and its IPC, UTS, network, cgroup, PID and mount namespaces
(so it sees the sandbox's root, its /proc and only ``lo`` with the gateway on it), then goes through the same
last step as the sandbox's own start (:func:`clawfleet.sandbox.launcher.confine_and_exec`): the sandbox user, no
capabilities, no_new_privs, the Landlock ruleset of the sandbox's paths and the seccomp filter. Its environment
is the sandboxed command's (proxy, CA bundle, placeholders: never a secret). Root only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping

from . import landlock, seccomp_filter, syscalls
from .environment import display_env
from .launcher import SetupError, confine_and_exec
from .spec import SANDBOX_WORKDIR, SandboxSpec

__all__ = ["command_process", "environ", "join"]

_NAMESPACES = (("ipc", syscalls.CLONE_NEWIPC), ("uts", syscalls.CLONE_NEWUTS), ("net", syscalls.CLONE_NEWNET),
               ("cgroup", syscalls.CLONE_NEWCGROUP), ("pid", syscalls.CLONE_NEWPID),
               ("mnt", syscalls.CLONE_NEWNS))  # fmt: skip
EXIT_SETUP = 125


def _uid_and_start(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return uid, start


def command_process(netns_pid: int, uid: int) -> int | None:
    """The sandboxed command: the oldest process of the sandbox's network namespace running as its user."""
    try:
        netns = os.stat(f"/proc/{netns_pid}/ns/net").st_ino
    except OSError:
        return None
    best: tuple[int, int] | None = None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != netns:
                continue
        except OSError:
            continue
        info = _uid_and_start(pid)
        if info and info[0] == uid and (best is None or info[1] < best[1]):
            best = (info[1], pid)
    return best[1] if best else None


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = [x.decode("utf-8", "replace").partition("=") for x in f.read().split(b"\0") if x]
    return {k: v for k, _, v in items}


def _cgroup_procs(pid: int) -> str | None:
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            if line.startswith("0::"):
                path = os.path.join("/sys/fs/cgroup", line[3:].strip().lstrip("/"), "cgroup.procs")
                return path if os.path.exists(path) else None
    return None


def join(target: int, spec: SandboxSpec, display: Mapping[str, str] | None = None) -> int:
    """Run ``spec.argv`` inside the sandbox whose command is ``target``; returns its exit status.

    The environment is the sandboxed command's, with the caller's terminal and locale settings on top
    (``display``, from :func:`clawfleet.sandbox.environment.display_env`): a TUI run through ``connect`` draws for
    the operator's terminal, not for whatever TERM the service had (none under systemd)."""
    if os.geteuid() != 0:
        raise SetupError("clawfleet sandbox connect must run as root (it drops to the sandbox user itself)")
    plan = landlock.negotiate(spec.landlock_max_abi)
    refusal = plan.refusal(spec.landlock_compat)
    if refusal:
        raise SetupError(refusal)
    sc_filter = seccomp_filter.build()
    env = {**environ(target), **display_env(display or {})}
    spec = dataclasses.replace(spec, env=env)
    procs = _cgroup_procs(target)
    fds = [(os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), flag) for ns, flag in _NAMESPACES]
    pid = os.fork()
    if pid == 0:
        try:
            if procs:  # the sandbox's memory and pids limits apply to us too
                with open(procs, "w", encoding="ascii") as f:
                    f.write(str(os.getpid()))
            for fd, flag in fds:
                syscalls.setns(fd, flag)
            inner = os.fork()  # a PID namespace applies to children only
            if inner == 0:
                os.chdir(SANDBOX_WORKDIR)
                ruleset_fd = -1
                if plan.abi >= 1:
                    ruleset_fd, _ = landlock.build_ruleset(plan.abi, spec.read_only, spec.read_write)
                confine_and_exec(spec, ruleset_fd, sc_filter)
            _, status = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        except SetupError as exc:
            print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
            os._exit(exc.code)
        except BaseException as exc:
            print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
            os._exit(EXIT_SETUP)
    for fd, _ in fds:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
