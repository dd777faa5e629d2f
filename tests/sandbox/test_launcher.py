"""The launcher's contract: exit codes, stdio, signals, limits, Landlock negotiation, the gateway hook."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from clawfleet.sandbox import landlock
from clawfleet.sandbox.launcher import Launcher
from clawfleet.sandbox.namespaces import run_in_netns
from clawfleet.sandbox.spec import SandboxSpec

from .conftest import BASE_POLICY, HOST_PYTHON

pytestmark = pytest.mark.root


def test_exit_status_and_stdio_pass_through(sandbox):
    assert sandbox.run(["/bin/sh", "-c", "exit 7"]).returncode == 7
    assert sandbox.run(["/bin/sh", "-c", "kill -9 $$"]).returncode == 128 + 9
    proc = sandbox.run(["/bin/sh", "-c", "cat; echo err >&2; pwd"], input="hello\n")
    assert proc.returncode == 0
    assert proc.stdout == "hello\n/sandbox\n" and proc.stderr == "err\n"


def test_setup_failures_exit_125_with_one_line(sandbox, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nfilesystem_policy:\n  read_only: relative/path\n")
    cases = [
        sandbox.run(["/bin/true"], policy=tmp_path / "missing.yaml"),
        sandbox.run(["/bin/true"], policy=bad),
        sandbox.run(["/bin/true"], extra=("--user", "root")),
        sandbox.run(["/bin/true"], extra=("--workdir", str(tmp_path / "nope"))),
    ]
    for proc in cases:
        assert proc.returncode == 125, proc.stderr
        assert proc.stderr.startswith("clawfleet sandbox: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "root" in cases[2].stderr
    not_found = sandbox.run(["/no/such/command"])
    assert not_found.returncode == 127 and "command not found" in not_found.stderr


def test_sigterm_is_forwarded_and_background_processes_die(sandbox):
    # A duration no other process on the host uses: the check below looks for it host-wide (a plain `sleep 300`
    # elsewhere on a shared machine made it fail).
    sleeper = f"sleep {300 + secrets.randbelow(10**6) / 10**6:.6f}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(sandbox.write_policy()),
         "--workdir", str(sandbox.workdir), "--", "/bin/sh", "-c", f"{sleeper} & echo ready; wait"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    # The orphaned sleep dies with the PID namespace: nothing of it is left on the host. The kernel kills
    # the namespace's remaining processes when its init exits, asynchronously: give it a moment, not forever.
    deadline = time.monotonic() + 5
    while True:
        out = subprocess.run(["pgrep", "-f", f"^{re.escape(sleeper)}$"], capture_output=True, text=True)
        if out.stdout == "" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert out.stdout == "", subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", out.stdout.split()[0]],
                                            capture_output=True, text=True).stdout  # fmt: skip


def test_background_daemon_does_not_keep_the_sandbox_alive(sandbox):
    start = time.monotonic()
    proc = sandbox.run(["/bin/sh", "-c", "sleep 100 >/dev/null 2>&1 & exit 3"])
    assert proc.returncode == 3 and time.monotonic() - start < 20


@pytest.mark.parametrize("compat", ["best_effort", "hard_requirement"])
@pytest.mark.parametrize("max_abi", [0, 5])
def test_landlock_missing_abi(sandbox, compat, max_abi, tmp_path):
    log = tmp_path / "log.jsonl"
    policy = sandbox.write_policy(compat=compat)
    proc = sandbox.run(["/bin/sh", "-c", "echo ran"], policy=policy, extra=("--log", str(log)),
                       env={"CLAWFLEET_LANDLOCK_MAX_ABI": str(max_abi)})  # fmt: skip
    missing = "Landlock itself" if max_abi == 0 else "scoping of abstract Unix sockets and signals"
    if compat == "hard_requirement":
        assert proc.returncode == 125 and proc.stdout == ""
        assert "hard_requirement" in proc.stderr and missing in proc.stderr
    else:
        assert proc.returncode == 0 and proc.stdout == "ran\n"
        assert "WARNING" in proc.stderr and "NOT enforced" in proc.stderr and missing in proc.stderr
    record = [json.loads(line) for line in log.read_text().splitlines()][-1]
    assert record["landlock_abi"] == max_abi
    assert any(missing in m for m in record["landlock_missing"])


def test_full_landlock_is_used_and_recorded(sandbox, tmp_path):
    log = tmp_path / "log.jsonl"
    policy = sandbox.write_policy(compat="hard_requirement")
    proc = sandbox.run(["/bin/true"], policy=policy, extra=("--log", str(log), "--mode", "monitor"))
    assert proc.returncode == 0 and proc.stderr == ""
    start, end = (json.loads(line) for line in log.read_text().splitlines())
    assert start["event"] == "start" and end["event"] == "exit" and end["exit_code"] == 0
    assert end["landlock_abi"] == landlock.kernel_abi() >= landlock.FULL_ABI
    assert end["landlock_missing"] == [] and end["mode"] == "monitor"
    assert "/app" in end["skipped_paths"]  # listed but absent on this host: no mount, no rule


def test_nested_read_only_path_in_workdir(sandbox):
    (sandbox.workdir / "ro").mkdir()
    os.chown(sandbox.workdir / "ro", sandbox.user.pw_uid, sandbox.user.pw_gid)
    policy = sandbox.write_policy(read_only=[*BASE_POLICY["read_only"], "/sandbox/ro"])
    r = sandbox.py(
        """
        R["nested"] = tr(open, "/sandbox/ro/x", "w")
        R["outer"] = tr(open, "/sandbox/x", "w")
        R["read_nested"] = tr(os.listdir, "/sandbox/ro")
        """,
        policy=policy,
    )
    assert r["nested"] == "EROFS"  # Landlock alone would allow it (rights union along the path)
    assert r["outer"] == "ok" and r["read_nested"] == "ok"


def test_nested_path_planted_as_symlink_is_not_followed(sandbox):
    os.symlink("/etc", sandbox.workdir / "ro")  # what a sandboxed agent could leave behind
    policy = sandbox.write_policy(read_only=[*BASE_POLICY["read_only"], "/sandbox/ro"])
    r = sandbox.py('R["mounts"] = [l.split()[4] for l in open("/proc/self/mountinfo")]', policy=policy)
    assert "/sandbox/ro" not in r["mounts"] and "/etc" in r["mounts"]


def test_pids_limit(sandbox):
    r = sandbox.py(
        """
        import subprocess
        procs, R["error"] = [], None
        try:
            for _ in range(40):
                procs.append(subprocess.Popen(["/bin/sleep", "5"]))
        except OSError as exc:
            R["error"] = name(exc.errno)
        R["started"] = len(procs)
        for p in procs:
            p.kill(); p.wait()
        """,
        extra=("--pids-max", "20"),
    )
    assert r["error"] == "EAGAIN" and 5 <= r["started"] < 20


def test_memory_limit(sandbox):
    code = "import sys; b = bytearray(int(sys.argv[1]) << 20); b[::4096] = b'x' * len(b[::4096]); print('ok')"
    small = sandbox.run([HOST_PYTHON, "-I", "-c", code, "16"], extra=("--memory-max", "96M"))
    assert small.returncode == 0 and small.stdout == "ok\n", small.stderr
    big = sandbox.run([HOST_PYTHON, "-I", "-c", code, "400"], extra=("--memory-max", "96M"))
    assert big.returncode == 128 + signal.SIGKILL  # the OOM killer, inside the sandbox's cgroup


def test_cgroup_is_removed_afterwards(sandbox):
    """This sandbox's own cgroup (``sandbox-<launcher pid>-…``) exists while it runs and is gone after: other
    sandboxes on the host (a daemon, another test run) may have theirs in the same directory meanwhile."""
    from clawfleet.sandbox import cgroups

    layout = cgroups.detect()
    bases = [os.path.join(m, layout.own.get(c, "/").lstrip("/"), cgroups.GROUP) for c, m in layout.v1_mounts.items()]
    if layout.v2_mount and "pids" in layout.v2_controllers:
        bases.append(os.path.join(layout.v2_mount, cgroups.GROUP))
    cmd = [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(sandbox.write_policy()),
           "--workdir", str(sandbox.workdir), "--memory-max", "1G", "--", "/bin/sleep", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def mine() -> list[str]:
        return [
            f"{b}/{e}" for b in bases if os.path.isdir(b) for e in os.listdir(b) if e.startswith(f"sandbox-{proc.pid}-")
        ]

    seen: list[str] = []
    while proc.poll() is None and not seen:
        seen = mine()
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert seen, "the sandbox's cgroup was never seen while it ran"
    assert mine() == []


def test_a_killed_launchers_empty_cgroup_is_swept_and_a_live_ones_kept(sandbox):
    """A launcher killed with SIGKILL cannot remove its cgroup; the next sandbox removes such an empty group whose
    launcher is gone, and leaves the group of a launcher that still runs."""
    from clawfleet.sandbox import cgroups

    layout = cgroups.detect()
    bases = [os.path.join(m, layout.own.get(c, "/").lstrip("/"), cgroups.GROUP)
             for c, m in layout.v1_mounts.items() if c in ("memory", "pids")]  # fmt: skip
    if layout.v2_mount and "pids" in layout.v2_controllers:
        bases.append(os.path.join(layout.v2_mount, cgroups.GROUP))
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()  # a pid no process has now
    stale = [os.path.join(b, f"sandbox-{gone.pid}-deadbeef") for b in bases]
    live = [os.path.join(b, f"sandbox-{os.getpid()}-cafebabe") for b in bases]
    for d in stale + live:
        os.makedirs(d)
    try:
        proc = sandbox.run(["/bin/true"], extra=("--memory-max", "1G", "--pids-max", "64"))
        assert proc.returncode == 0, proc.stderr
        assert [d for d in stale if os.path.isdir(d)] == []
        assert all(os.path.isdir(d) for d in live)
    finally:
        for d in stale + live:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)


def _spec(sandbox, code: str, **kw) -> SandboxSpec:
    from clawfleet.sandbox import environment

    return SandboxSpec(
        argv=(HOST_PYTHON, "-I", "-c", code),
        workdir=str(sandbox.workdir),
        uid=sandbox.user.pw_uid,
        gid=sandbox.user.pw_gid,
        user=sandbox.user.pw_name,
        read_only=tuple(BASE_POLICY["read_only"]),
        read_write=tuple(BASE_POLICY["read_write"]),
        env=environment.build({}, sandbox.user.pw_name),
        **kw,
    )


def test_gateway_hook_listener_is_the_only_way_out(sandbox, capfd):
    """The seam for the egress gateway: a listener opened in the sandbox's netns by the supervisor."""
    abstract = f"\0gateway-{uuid.uuid4().hex}"
    state: dict = {}

    def hook(pid: int) -> None:
        def make():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            unix = socket.socket(socket.AF_UNIX)
            unix.bind(abstract)
            unix.listen()
            return srv, unix

        srv, unix = run_in_netns(pid, make)
        state["port"], state["unix"] = srv.getsockname()[1], unix

        def echo():
            conn, _ = srv.accept()
            conn.sendall(b"echo:" + conn.recv(100))
            conn.close()
            srv.close()

        threading.Thread(target=echo, daemon=True).start()
        # The port is handed to the sandboxed command through its workdir.
        (sandbox.workdir / "port").write_text(str(state["port"]))

    code = f"""
import errno, socket
port = int(open("/sandbox/port").read())
c = socket.create_connection(("127.0.0.1", port), 5)
c.sendall(b"hi")
print("gateway", c.recv(100).decode())
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("192.0.2.1", 443)); print("direct ok")
except OSError as exc:
    print("direct", errno.errorcode[exc.errno])
u = socket.socket(socket.AF_UNIX)
try:
    u.connect({abstract!r}); print("abstract ok")
except OSError as exc:
    print("abstract", errno.errorcode[exc.errno])
"""
    code_ = Launcher(_spec(sandbox, code), on_netns_ready=hook).run()
    out = capfd.readouterr().out
    state["unix"].close()
    assert code_ == 0, out
    assert "gateway echo:hi" in out
    assert "direct ENETUNREACH" in out
    # Same network namespace, so only Landlock's abstract-socket scoping (ABI 6) stops this one.
    assert "abstract EPERM" in out


def test_failing_hook_aborts_start(sandbox, capfd):
    def hook(pid: int) -> None:
        raise RuntimeError("gateway not ready")

    launcher = Launcher(_spec(sandbox, "print('must not run')"), on_netns_ready=hook)
    assert launcher.run() == 125
    assert "gateway not ready" in (launcher.report.error or "")
    assert "must not run" not in capfd.readouterr().out


def test_on_forked_runs_before_the_netns_hook_and_before_the_command(sandbox, capfd):
    order = []
    marker = sandbox.workdir / "written-beside"  # /sandbox/written-beside inside

    def forked(pid: int) -> None:
        order.append(("forked", pid))
        marker.write_text("ready")  # what the gateway does here: the CA bundle the sandbox will read

    def hook(pid: int) -> None:
        order.append(("netns", pid))

    launcher = Launcher(_spec(sandbox, "print('saw', open('/sandbox/written-beside').read())"), on_netns_ready=hook,
                        on_forked=forked)  # fmt: skip
    assert launcher.run() == 0, launcher.report.error
    assert [kind for kind, _ in order] == ["forked", "netns"] and order[0][1] == order[1][1]
    assert "saw ready" in capfd.readouterr().out


def test_failing_on_forked_aborts_start_before_anything_runs(sandbox, capfd):
    hooked = []

    def forked(pid: int) -> None:
        raise RuntimeError("gateway failed to start")

    launcher = Launcher(_spec(sandbox, "print('must not run')"), on_netns_ready=hooked.append, on_forked=forked)
    assert launcher.run() == 125
    assert "gateway failed to start" in (launcher.report.error or "")
    assert hooked == [] and "must not run" not in capfd.readouterr().out


def _stage2_of(stage1: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{stage1}/task/{stage1}/children").read_text().split()
        if kids and os.path.isdir(f"/proc/{kids[0]}/root/.landlock-probe"):  # made after the last mount
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("stage 2 did not build the root while the hook ran")


def test_the_root_is_built_while_the_hook_runs_and_the_command_waits_for_it(sandbox, capfd):
    """Stage 2 mounts the sandbox's filesystem view while the supervisor's hook (the gateway start) runs, on
    another CPU; the command is forked only once the hook has returned."""
    seen = {}

    def hook(pid: int) -> None:
        stage2 = _stage2_of(pid)
        time.sleep(0.2)  # were the command let go early, it would be a child of stage 2 by now
        seen["children"] = Path(f"/proc/{stage2}/task/{stage2}/children").read_text().split()
        seen["out"] = capfd.readouterr().out
        (sandbox.workdir / "late").write_text("written by the hook")

    launcher = Launcher(_spec(sandbox, "print('ran after', open('/sandbox/late').read())"), on_netns_ready=hook)
    assert launcher.run() == 0, launcher.report.error
    assert seen["children"] == [] and "ran after" not in seen["out"]
    assert "ran after written by the hook" in capfd.readouterr().out


def test_a_failing_hook_leaves_no_stage_of_the_sandbox_behind(sandbox, capfd):
    stages = []

    def hook(pid: int) -> None:
        stages.extend([pid, _stage2_of(pid)])  # stage 2 exists and has built the root, waiting for the go
        raise RuntimeError("gateway not ready")

    launcher = Launcher(_spec(sandbox, "print('must not run')"), on_netns_ready=hook)
    assert launcher.run() == 125 and "gateway not ready" in (launcher.report.error or "")
    assert "must not run" not in capfd.readouterr().out
    for pid in stages:  # killed (stage 2 with its parent), not left waiting
        with contextlib.suppress(FileNotFoundError):
            state = re.search(r"State:\s+(\S)", Path(f"/proc/{pid}/status").read_text())
            assert state is not None and state.group(1) in "ZX", (pid, state)  # gone, or dead and not yet reaped


def test_module_entry_point_is_the_same_command(sandbox):
    proc = subprocess.run(
        [sys.executable, "-m", "clawfleet.sandbox", "run", "--policy", str(sandbox.write_policy()), "--workdir",
         str(sandbox.workdir), "--", "/bin/sh", "-c", "id -un; exit 4"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4 and proc.stdout == f"{sandbox.user.pw_name}\n"


def test_proc_self_rule_names_the_commands_own_entry(sandbox):
    policy = sandbox.write_policy(read_only=["/usr", "/lib", "/etc", "/proc/self", "/dev/urandom"])
    r = sandbox.py(
        """
        R["self_status"] = tr(open, "/proc/self/status")
        R["cpuinfo"] = tr(open, "/proc/cpuinfo")
        """,
        policy=policy,
    )
    assert r["self_status"] == "ok" and r["cpuinfo"] == "EACCES"


UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "openshell-policies"


@pytest.mark.parametrize(
    "name",
    sorted(
        p.relative_to(UPSTREAM).as_posix() for p in UPSTREAM.glob("*/*.yaml") if "filesystem_policy" in p.read_text()
    ),
)
def test_upstream_policies_start_a_sandbox(sandbox, name):
    proc = sandbox.run(
        ["/bin/sh", "-c", "cd /sandbox && echo ok > f && cat f"],
        policy=UPSTREAM / name,
        extra=("--user", sandbox.user.pw_name),
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_listed_device_nodes_are_usable_like_a_gpu(sandbox, request):
    # Stands in for /dev/nvidia0 (a 0666 char device): bound from the host, with device access kept
    # (the bind of a device node is not nodev), while unlisted devices do not exist inside.
    node = f"/dev/clawfleet-test-{uuid.uuid4().hex[:6]}"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # same driver as /dev/null
    os.chmod(node, 0o666)
    request.addfinalizer(lambda: os.unlink(node))
    policy = sandbox.write_policy(read_write=[*BASE_POLICY["read_write"], node])
    r = sandbox.py(
        f"""
        R["write"] = tr(lambda: open({node!r}, "w").write("x"))
        R["unlisted"] = tr(open, "/dev/loop-control")
        R["mounts"] = [l.split()[4] for l in open("/proc/self/mountinfo")]
        """,
        policy=policy,
    )
    assert r["write"] == "ok" and node in r["mounts"]
    assert r["unlisted"] == "ENOENT"


def test_stage_2_sees_the_end_of_the_go_pipe_when_the_supervisor_gives_it_up(sandbox, capfd, monkeypatch):
    """Attack on the start handshake: stages 1 and 2 inherited the supervisor's ends of its pipes (the go pipe's
    write end among them), so "EOF on go" could never happen and a stage 2 left waiting for the go waited forever.
    Here the supervisor's write end is swapped for /dev/null while the hook runs, without killing anything: stage 2
    must see EOF and exit by itself (125), nothing of the command runs. (The allowed start is every other test.)"""
    from clawfleet.sandbox import launcher as launcher_mod

    pipes: list[tuple[int, int]] = []
    real_pipe2 = os.pipe2

    def recording_pipe2(flags: int) -> tuple[int, int]:
        pipes.append(real_pipe2(flags))
        return pipes[-1]

    monkeypatch.setattr(launcher_mod.os, "pipe2", recording_pipe2)
    seen: dict[str, object] = {}

    def hook(pid: int) -> None:
        (status_r, _), (ready_r, _), (_, go_w) = pipes[:3]
        stage2 = _stage2_of(pid)
        ours = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in (status_r, ready_r, go_w)}
        held = {}
        for stage in (pid, stage2):
            for fd, target in ours.items():
                with contextlib.suppress(FileNotFoundError):
                    if os.readlink(f"/proc/{stage}/fd/{fd}") == target:
                        held[(stage, fd)] = target
        seen["held"] = held
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, go_w)  # the supervisor's write end is gone (its "G" will go to /dev/null)
        os.close(null)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                state = re.search(r"State:\s+(\S)", Path(f"/proc/{stage2}/status").read_text())
            except FileNotFoundError:  # exited and already reaped by stage 1
                state = None
            if state is None or state.group(1) in "ZX":
                seen["exited"] = True
                return
            time.sleep(0.02)
        seen["exited"] = False
        os.kill(pid, signal.SIGKILL)  # not unwinding by itself: end it here, so the test fails instead of hanging

    launcher = Launcher(_spec(sandbox, "print('must not run')"), on_netns_ready=hook)
    code = launcher.run()
    monkeypatch.undo()
    assert seen.get("held") == {}, (seen, launcher.report.error)
    assert seen["exited"] is True
    assert code == 125 and "must not run" not in capfd.readouterr().out
