"""Attacks found in the adversarial review of the sandbox, beyond the checklist rows (test_escapes.py).

Same rules as the checklist tests: each attack runs INSIDE the sandbox as the sandbox user through the real
CLI and must fail with a specific errno; each is paired with the allowed action it must not break.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import BASE_POLICY

pytestmark = pytest.mark.root


def _plant(sandbox, policy, commands: str) -> None:
    """A first run in which the agent leaves symlinks behind in the trees it may write."""
    proc = sandbox.run(["/bin/sh", "-ec", commands], policy=policy)
    assert proc.returncode == 0, proc.stderr


def test_planted_symlink_cannot_redirect_a_host_policy_path(sandbox, request):
    """A host read_write tree the agent writes persists across runs. If the NEXT start resolves a policy path
    nested in it on the host (realpath, as root), a symlink the agent planted there picks any host directory
    to bind into the sandbox: here one holding a secret and a daemon's socket, neither in the policy."""
    base = Path(f"/var/tmp/clawfleet-test-{uuid.uuid4().hex[:8]}")
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    agent, outside = base / "agent", base / "outside"
    for d in (agent / "cache", agent / "docs", outside):
        d.mkdir(parents=True, mode=0o755)
    for d in (agent, agent / "cache", agent / "docs"):
        os.chown(d, sandbox.user.pw_uid, sandbox.user.pw_gid)
    (outside / "secret").write_text("host secret")
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(outside / "sock"))
    os.chmod(outside / "sock", 0o777)
    daemon.listen()
    request.addfinalizer(daemon.close)
    policy = sandbox.write_policy(
        read_only=[*BASE_POLICY["read_only"], str(agent / "docs")],
        read_write=[*BASE_POLICY["read_write"], str(agent), str(agent / "cache")],
    )
    _plant(sandbox, policy, f"rmdir {agent}/cache; ln -s {outside} {agent}/cache")
    log = sandbox.tmp / "log.jsonl"
    r = sandbox.py(
        f"""
        R["read"] = tr(open, "{outside}/secret")
        R["via_link"] = tr(open, "{agent}/cache/secret")
        R["connect"] = tr(socket.socket(socket.AF_UNIX).connect, "{outside}/sock")
        R["own"] = tr(lambda: open("{agent}/mine", "w").write("x"))
        R["docs_write"] = tr(open, "{agent}/docs/x", "w")
        R["docs_list"] = tr(os.listdir, "{agent}/docs")
        """,
        policy=policy,
        extra=("--log", str(log)),
    )
    assert r["read"] == r["via_link"] == r["connect"] == "ENOENT", r  # the outside dir is not in the sandbox
    assert r["own"] == r["docs_list"] == "ok"  # the host tree itself and a real nested path still work
    assert r["docs_write"] == "EROFS"
    assert str(agent / "cache") in log.read_text()  # refused, and the record says so


def test_planted_symlink_cannot_widen_a_landlock_rule(sandbox):
    """The workdir persists too. A nested policy path the agent replaced by a symlink to /sandbox must not
    become a Landlock rule for /sandbox (the rule would follow the link and grant rights on all of it)."""
    work = sandbox.workdir
    (work / "rw" / "cache").mkdir(parents=True)
    (work / "protected.txt").write_text("secret")
    (work / "protected.txt").chmod(0o666)
    for p in (work / "rw", work / "rw" / "cache", work / "protected.txt"):
        os.chown(p, sandbox.user.pw_uid, sandbox.user.pw_gid)
    policy = sandbox.write_policy(
        include_workdir=False,
        read_only=["/usr", "/lib", "/etc", "/proc"],
        read_write=["/sandbox/rw", "/sandbox/rw/cache", "/tmp", "/dev/null"],
    )
    _plant(sandbox, policy, "rmdir /sandbox/rw/cache; ln -s /sandbox /sandbox/rw/cache")
    r = sandbox.py(
        """
        R["overwrite"] = tr(open, "/sandbox/protected.txt", "w")
        R["via_link"] = tr(open, "/sandbox/rw/cache/protected.txt", "w")
        R["allowed"] = tr(lambda: open("/sandbox/rw/ok.txt", "w").write("x"))
        """,
        policy=policy,
    )
    assert r["overwrite"] == r["via_link"] == "EACCES"
    assert r["allowed"] == "ok"
    assert (work / "protected.txt").read_text() == "secret"


def test_tmp_is_size_limited(sandbox):
    """/tmp is memory: unlimited, it can take half the host's RAM, which no OOM kill gives back."""
    r = sandbox.py(
        """
        st = os.statvfs("/tmp")
        R["size"], R["inodes"] = st.f_blocks * st.f_frsize, st.f_files
        def fill(path, mib):
            with open(path, "wb") as f:
                for _ in range(mib):
                    f.write(b"x" * (1 << 20))
                f.flush()
        R["small"] = tr(fill, "/tmp/small", 1)
        R["fill"] = tr(fill, "/tmp/big", 64)
        """,
        extra=("--tmp-max", "8M"),
    )
    assert r["fill"] == "ENOSPC"
    assert r["small"] == "ok"
    assert r["size"] == 8 << 20
    default = sandbox.py('st = os.statvfs("/tmp"); R["size"], R["inodes"] = st.f_blocks * st.f_frsize, st.f_files')
    assert default["size"] == 1 << 30 and default["inodes"] <= 1 << 18


def test_inet_protocols_beyond_tcp_udp_icmp_denied(sandbox):
    """AF_INET/AF_INET6 with another protocol reach whole other stacks (UDP-Lite, SCTP, DCCP, L2TP, and SMC
    whose AF_SMC family is already denied: IPPROTO_SMC is its second spelling, like MPTCP)."""
    r = sandbox.py(
        """
        def sock(*a):
            try:
                socket.socket(*a).close(); return "ok"
            except OSError as exc:
                return name(exc.errno)
        R["udplite"] = sock(socket.AF_INET, socket.SOCK_DGRAM, 136)
        R["udplite6"] = sock(socket.AF_INET6, socket.SOCK_DGRAM, 136)
        R["sctp"] = sock(socket.AF_INET, socket.SOCK_STREAM, 132)
        R["dccp"] = sock(socket.AF_INET6, 6, 33)  # SOCK_DCCP
        R["l2tp"] = sock(socket.AF_INET, socket.SOCK_DGRAM, 115)
        R["smc"] = sock(socket.AF_INET, socket.SOCK_STREAM, 256)
        R["tcp_high_bits"] = sc("socket", 2, 1, 6 | (1 << 32))
        R["tcp"] = sock(socket.AF_INET, socket.SOCK_STREAM, 6)
        R["udp6"] = sock(socket.AF_INET6, socket.SOCK_DGRAM, 17)
        R["default"] = sock(socket.AF_INET6, socket.SOCK_STREAM, 0)
        R["ping"] = sock(socket.AF_INET, socket.SOCK_DGRAM, 1)
        R["unix_any"] = sock(socket.AF_UNIX, socket.SOCK_STREAM, 0)
        """
    )
    for key in ("udplite", "udplite6", "sctp", "dccp", "l2tp", "smc", "tcp_high_bits"):
        assert r[key] == "EPERM", key
    assert r["tcp"] == r["udp6"] == r["default"] == r["unix_any"] == "ok"
    assert r["ping"] == "EACCES"  # passes seccomp; ping_group_range of the new netns refuses it


@pytest.mark.skipif(platform.machine() != "x86_64", reason="modify_ldt exists only on x86")
def test_modify_ldt_denied(sandbox):
    r = sandbox.py(
        """
        buf = ctypes.create_string_buffer(16)
        R["modify_ldt"] = sc("modify_ldt", 0, ctypes.addressof(buf), 16)  # read the LDT
        R["getpid"] = sc("getpid")
        """
    )
    assert r["modify_ldt"] == "EPERM"
    assert r["getpid"] == "ok"


def test_kill_minus_one_reaches_only_the_sandbox(sandbox):
    """``kill -9 -1`` as the sandbox user: a host process of the SAME uid must survive it (PID namespace);
    the sandbox's own processes are what it may kill. (Sound before the review; kept as a regression test.)"""
    uid, gid = sandbox.user.pw_uid, sandbox.user.pw_gid
    victim = subprocess.Popen(["sleep", "30"], user=uid, group=gid, extra_groups=[])
    try:
        r = sandbox.py(
            """
            import signal, time
            child = os.fork()
            if child == 0:
                time.sleep(30); os._exit(0)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            R["kill_all"] = tr(os.kill, -1, signal.SIGKILL)  # every process we may signal, but ourselves
            R["child"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            """
        )
        assert victim.poll() is None  # same uid, outside the sandbox: alive
    finally:
        victim.kill()
        victim.wait()
    assert r["kill_all"] == "ok" and r["child"] == -9


def test_syscalls_newer_than_libseccomp_get_enosys(sandbox):
    """The filter allows by default and names syscalls through libseccomp's table; a syscall newer than that
    table (libseccomp 2.5.4 stops at Linux 6.5) had no rule at all - including open_tree_attr (Linux 6.15),
    the new spelling of the denied open_tree."""
    r = sandbox.py(
        """
        OPEN_TREE_ATTR = 467  # unified table: the same number on x86_64 and aarch64
        ctypes.set_errno(0)
        res = libc.syscall(ctypes.c_long(OPEN_TREE_ATTR), ctypes.c_long(-100), ctypes.c_char_p(b"/tmp"),
                           ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
        R["open_tree_attr"] = "ok" if res >= 0 else name(ctypes.get_errno())
        R["open_tree"] = sc("open_tree", -100, ctypes.c_char_p(b"/tmp"), 0)
        open("/tmp/f", "w").close()
        R["fchmodat2"] = sc("fchmodat2", -100, ctypes.c_char_p(b"/tmp/f"), 0o600, 0)  # Linux 6.6, known
        R["o_path"] = tr(os.open, "/tmp", os.O_PATH)
        """
    )
    assert r["open_tree_attr"] == "ENOSYS"
    assert r["open_tree"] == "EPERM"
    assert r["fchmodat2"] == r["o_path"] == "ok"


def test_log_path_planted_as_symlink_or_fifo_is_not_followed(sandbox, request):
    """The supervisor (root) appends to --log. Put in a tree the agent writes (the workdir), the agent can swap
    the file for a symlink to a host file - root would append to it - or for a FIFO, on which root's open
    blocks forever and the next start never happens."""
    victim = Path(f"/var/tmp/clawfleet-test-{uuid.uuid4().hex[:8]}")
    victim.write_text("intact\n")
    request.addfinalizer(lambda: victim.unlink())
    log = sandbox.workdir / "sandbox.log"
    first = sandbox.run(["/bin/sh", "-c", f"rm sandbox.log && ln -s {victim} sandbox.log"], extra=("--log", str(log)))
    assert first.returncode == 0, first.stderr
    second = sandbox.run(["/bin/true"], extra=("--log", str(log)))
    assert second.returncode == 0 and "cannot write the log" in second.stderr
    assert victim.read_text() == "intact\n"
    os.unlink(log)
    os.mkfifo(log)
    third = sandbox.run(["/bin/true"], extra=("--log", str(log)), timeout=20)
    assert third.returncode == 0 and "cannot write the log" in third.stderr
    os.unlink(log)
    fourth = sandbox.run(["/bin/true"], extra=("--log", str(log)))  # allowed: a fresh log is written
    assert fourth.returncode == 0 and '"event": "exit"' in log.read_text()
