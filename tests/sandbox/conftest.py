"""Fixtures for the sandbox tests: a dedicated sandbox user, a workdir it owns, policies written as YAML,
and a runner that executes Python snippets INSIDE the sandbox through the real CLI.

Everything here needs root (namespaces, mounts, switching users). In CI the suite runs as root, so
nothing skips there.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SANDBOX_USER = "clawfleet-sbx"
HOST_PYTHON = "/usr/bin/python3"  # the system interpreter: the venv is not visible inside the sandbox

pytestmark = pytest.mark.root

# A prelude for snippets run inside: errno names for results, raw syscalls by (injected) number.
PRELUDE = textwrap.dedent(
    """
    import ctypes, errno, json, os, socket, sys
    libc = ctypes.CDLL(None, use_errno=True)
    NR = json.loads(os.environ.get("NR", "{}"))
    R = {}
    def name(e):
        return errno.errorcode.get(e, str(e))
    def sc(nr_name, *args):
        ctypes.set_errno(0)
        conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        res = libc.syscall(ctypes.c_long(NR[nr_name]), *conv)
        return "ok" if res != -1 else name(ctypes.get_errno())
    def tr(fn, *a, **k):
        try:
            fn(*a, **k)
            return "ok"
        except OSError as exc:
            return name(exc.errno) if exc.errno else type(exc).__name__
    """
)

SYSCALLS = [
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "memfd_create",
    "execveat",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "pivot_root",
    "setns",
    "unshare",
    "clone",
    "clone3",
    "seccomp",
    "prctl",
    "socket",
    "ioctl",
    "getpid",
    "getppid",
    "uname",
    "mount_setattr",
    "modify_ldt",
    "fchmodat2",
]


def syscall_numbers() -> dict[str, int]:
    import pyseccomp

    return {n: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) for n in SYSCALLS}


@pytest.fixture(scope="session")
def root_required():
    if os.geteuid() != 0:
        pytest.skip("sandbox tests need root (namespaces, mounts, credential changes); CI runs them as root")


@pytest.fixture(scope="session")
def sandbox_user(root_required) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SANDBOX_USER],
            check=True,
        )  # fmt: skip
        return pwd.getpwnam(SANDBOX_USER)


BASE_POLICY = {
    "include_workdir": True,
    "read_only": ["/usr", "/lib", "/proc", "/dev/urandom", "/app", "/etc", "/var/log"],
    "read_write": ["/sandbox", "/tmp", "/dev/null"],
}


def policy_yaml(read_only=None, read_write=None, include_workdir=True, compat="best_effort", user=SANDBOX_USER) -> str:
    ro = BASE_POLICY["read_only"] if read_only is None else read_only
    rw = BASE_POLICY["read_write"] if read_write is None else read_write
    return textwrap.dedent(
        f"""\
        version: 1
        filesystem_policy:
          include_workdir: {"true" if include_workdir else "false"}
          read_only: {json.dumps(list(ro))}
          read_write: {json.dumps(list(rw))}
        landlock:
          compatibility: {compat}
        process:
          run_as_user: {user}
        """
    )


@dataclass
class Sandbox:
    tmp: Path
    workdir: Path
    user: pwd.struct_passwd

    def write_policy(self, name: str = "policy.yaml", **kw) -> Path:
        path = self.tmp / name
        path.write_text(policy_yaml(**kw))
        return path

    def run(self, argv, policy: Path | None = None, extra=(), env=None, **kw) -> subprocess.CompletedProcess:
        """Run argv in the sandbox via the real CLI (``python -m clawfleet.cli sandbox run``)."""
        policy = policy or self.write_policy()
        cmd = [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(policy),
               "--workdir", str(self.workdir), *extra, "--", *argv]  # fmt: skip
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(cmd, env={**os.environ, **(env or {})}, text=True, **kw)

    def py(self, code: str, policy: Path | None = None, extra=(), env=None, **kw) -> dict:
        """Run a Python snippet inside; it fills dict R, returned here. Fails the test on a bad exit."""
        script = PRELUDE + textwrap.dedent(code) + "\nprint('RESULT=' + json.dumps(R))\n"
        env_args = ["--env", "NR=" + json.dumps(syscall_numbers())]
        proc = self.run([HOST_PYTHON, "-I", "-c", script], policy, (*env_args, *extra), env, **kw)
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT=")]
        assert line, proc.stdout + proc.stderr
        return json.loads(line[-1][len("RESULT=") :])


@pytest.fixture
def sandbox(sandbox_user, tmp_path: Path) -> Sandbox:
    tmp_path.chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    os.chown(workdir, sandbox_user.pw_uid, sandbox_user.pw_gid)
    return Sandbox(tmp_path, workdir, sandbox_user)
