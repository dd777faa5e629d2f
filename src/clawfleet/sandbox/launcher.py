"""Start a command inside the sandbox and wait for it.

Processes (host PIDs)::

    supervisor --fork--> stage 1 --fork--> stage 2 (PID 1 of the new PID ns) --fork--> stage 3 --exec--> CMD

- stage 1: joins the sandbox cgroup, unshares mount/PID/IPC/UTS/net/cgroup namespaces, brings ``lo``
  up, tells the supervisor the network namespace exists, forks stage 2 and relays its exit status.
- stage 2 (PID 1): builds the filesystem view (namespaces.build_root), waits until the supervisor's
  ``on_netns_ready`` hook has run (the gateway opens its listener in the namespace), forks the command,
  forwards signals, reaps every orphan, exits with the command's status. The wait is here, not in stage 1,
  so that the mounts are made while the supervisor starts the gateway (on another CPU): none of it is the
  command's, which is only forked once the hook has returned.
- stage 3: new session, builds the Landlock ruleset while still root, drops the capability bounding set,
  becomes the sandbox user, proves it has no capabilities, sets no_new_privs, enforces Landlock (and
  proves it), loads seccomp last, marks every fd but 0-2 close-on-exec, execs.

Every step is checked; a failure is reported through a close-on-exec pipe as one line and the supervisor
returns 125 (127: command not found, 126: not executable). Exit status otherwise: the command's, or
128+N when it was killed by signal N.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clawfleet.sandbox import cgroups, landlock, namespaces, seccomp_filter, syscalls
from clawfleet.sandbox.spec import SANDBOX_WORKDIR, SandboxSpec

EXIT_SETUP = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
PROBE_DIR = "/.landlock-probe"  # owned by the sandbox user, never covered by a write rule
CLOSE_RANGE_CLOEXEC = 1 << 2
FORWARDED_SIGNALS = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGCONT,
)  # fmt: skip
_NAMESPACES = (
    syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNET
    | syscalls.CLONE_NEWCGROUP
)  # fmt: skip
# Raw syscalls used after fork: resolved before it (no imports or library loading in the children).
_SYSCALLS = ("pivot_root", "mount_setattr", "landlock_create_ruleset", "landlock_add_rule",
             "landlock_restrict_self", "close_range")  # fmt: skip


class SetupError(Exception):
    """The sandbox could not be set up; ``str()`` is the one-line reason."""

    def __init__(self, reason: str, code: int = EXIT_SETUP) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Report:
    """What was enforced, for the log and the caller."""

    exit_code: int = EXIT_SETUP
    landlock_abi: int = 0
    landlock_missing: tuple[str, ...] = ()
    skipped_paths: list[str] = field(default_factory=list)
    refused_paths: list[str] = field(default_factory=list)
    cgroup: str = "none"
    mode: str = "enforce"
    error: str | None = None
    duration_s: float = 0.0


NetnsHook = Callable[[int], None]


class Launcher:
    """Run ``spec`` once. ``on_netns_ready(pid)`` runs in the supervisor after the sandbox's network
    namespace exists (``/proc/<pid>/ns/net``) and before anything in the sandbox executes; the sandbox
    waits for it to return. ``on_forked(pid)`` runs in the supervisor as soon as stage 1 is forked, while that
    stage joins its cgroup (the first cgroup migration after a while waits for an RCU grace period, ~10-15 ms)
    and makes its namespaces, and stage 2 builds the filesystem view: work the caller would otherwise do before
    the launch (the gateway's imports and set-up) overlaps that wait and those mounts, and no thread of the
    caller's exists at the fork. An exception from either hook aborts the start (exit 125); nothing of the
    command's has run (stage 2 waits for the hooks before it forks the command).
    """

    def __init__(
        self, spec: SandboxSpec, on_netns_ready: NetnsHook | None = None, warn: Callable[[str], None] | None = None,
        on_forked: NetnsHook | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.on_netns_ready = on_netns_ready
        self.on_forked = on_forked
        self.warn = warn or (lambda msg: print(f"clawfleet sandbox: WARNING: {msg}", file=sys.stderr))
        self.report = Report(mode=spec.mode)

    def run(self) -> int:
        start = time.monotonic()
        try:
            code = self._run()
        except SetupError as exc:
            self.report.error = str(exc)
            code = exc.code
        self.report.exit_code = code
        self.report.duration_s = round(time.monotonic() - start, 4)
        self._log("exit")
        return code

    # -- supervisor side ------------------------------------------------------------------------------

    def _run(self) -> int:
        spec = self.spec
        if os.geteuid() != 0:
            raise SetupError("the sandbox launcher must run as root (it drops to the sandbox user itself)")
        try:
            plan = landlock.negotiate(spec.landlock_max_abi)
        except OSError as exc:
            raise SetupError(f"landlock probe failed: {exc}") from None
        self.report.landlock_abi, self.report.landlock_missing = plan.abi, plan.missing
        refusal = plan.refusal(spec.landlock_compat)
        if refusal:
            raise SetupError(refusal)
        if plan.missing:
            self.warn(f"landlock best_effort on ABI {plan.abi}: NOT enforced: " + "; ".join(plan.missing))
        try:
            for name in _SYSCALLS:
                syscalls.syscall_number(name)
            sc_filter = seccomp_filter.build()
            st = os.stat(spec.workdir)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(20, "workdir is not a directory", spec.workdir)
            workdir_id = (st.st_dev, st.st_ino)
        except RuntimeError as exc:  # pyseccomp: "Unable to find libseccomp"
            raise SetupError(f"seccomp: {exc} (apt-get install libseccomp2)") from None
        except OSError as exc:
            raise SetupError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
        try:
            cgroup = cgroups.create(spec.memory_max, spec.pids_max)
        except OSError as exc:
            raise SetupError(exc.strerror or str(exc)) from None
        self.report.cgroup = cgroup.version if cgroup.dirs else "none"
        self._log("start")
        try:
            return self._fork_and_wait(plan, sc_filter, workdir_id, cgroup)
        finally:
            with contextlib.suppress(OSError):
                cgroup.destroy()

    def _fork_and_wait(
        self, plan: landlock.Plan, sc_filter: Any, workdir_id: tuple[int, int], cgroup: cgroups.Cgroup
    ) -> int:
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # stage 1
            _child(status_w, _stage1, self.spec, plan, sc_filter, workdir_id, cgroup, supervisor,
                   (ready_w, go_r), status_w, (status_r, ready_r, go_w))  # fmt: skip
        for fd in (status_w, ready_w, go_r):
            os.close(fd)
        restore = self._forward_signals(pid)
        try:
            if self.on_forked is not None:
                try:
                    self.on_forked(pid)
                except Exception as exc:
                    _kill(pid)
                    raise SetupError(f"set-up beside the sandbox failed: {exc}") from None
            if os.read(ready_r, 1) == b"R":
                try:
                    if self.on_netns_ready is not None:
                        self.on_netns_ready(pid)
                except Exception as exc:
                    _kill(pid)
                    raise SetupError(f"network namespace hook failed: {exc}") from None
                os.write(go_w, b"G")
            os.close(go_w)
            go_w = -1
            messages = _read_all(status_r)
            _, status = os.waitpid(pid, 0)
        finally:
            restore()
            for fd in (ready_r, status_r, go_w):
                if fd >= 0:
                    os.close(fd)
        error = None
        for line in messages.decode(errors="replace").splitlines():
            kind, _, payload = line.partition(" ")
            if kind == "info":
                info = json.loads(payload)
                self.report.skipped_paths = sorted(set(self.report.skipped_paths) | set(info.get("skipped", [])))
                for path in info.get("refused", []):
                    self.report.refused_paths.append(path)
                    self.warn(f"policy path {path} resolves through a symlink the sandbox user could have made:"
                              " not mounted, no Landlock rule")  # fmt: skip
            else:
                error = (int(kind), payload)
        if error is not None:
            raise SetupError(error[1], error[0])
        return _exit_code(status)

    def _forward_signals(self, pid: int) -> Callable[[], None]:
        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

        previous = {}
        try:
            for s in FORWARDED_SIGNALS:
                previous[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread: Python only lets it set handlers
            pass

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        return restore

    def _log(self, event: str) -> None:
        if not self.spec.log:
            return
        record = {"ts": time.time(), "event": event, "argv": list(self.spec.argv), "user": self.spec.user,
                  "workdir": self.spec.workdir, **self.report.__dict__}  # fmt: skip
        # We are root and the path may lie in a tree the agent writes (its workdir): never follow a symlink
        # it planted there, and never block on a FIFO (O_NONBLOCK: ENXIO without a reader).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.spec.log, flags, 0o640)
            with open(fd, "a") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file")
                f.write(json.dumps(record, default=list) + "\n")
        except OSError as exc:  # the log is a record, not a protection: say so, keep going
            self.warn(f"cannot write the log {self.spec.log}: {exc.strerror}")


def _kill(pid: int) -> None:
    """Stage 1 waits for "G" before anything of the sandbox runs: kill it there and reap it."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# -- children -------------------------------------------------------------------------------------------
# They never return: each ends in os._exit or exec. Errors go to the status pipe as "<code> <reason>".


def _child(status_w: int, stage: Callable[..., None], *args: Any) -> None:
    try:
        stage(*args)
        code, reason = EXIT_SETUP, "internal error: stage returned"
    except SetupError as exc:
        code, reason = exc.code, str(exc)
    except OSError as exc:
        # KernelError, LandlockError and CgroupError carry the whole reason in strerror
        code, reason = EXIT_SETUP, exc.strerror or str(exc)
        if exc.filename:
            reason += f": {exc.filename}"
    except BaseException as exc:
        code, reason = EXIT_SETUP, f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(OSError):
        os.write(status_w, f"{code} {reason}".replace("\n", " ").encode()[:4000] + b"\n")
    os._exit(code)


def _die_with_parent(parent: int | None = None, lifeline: int = -1) -> None:
    """SIGKILL us when the parent dies; exit now if it already died before the prctl took effect.

    Across a PID namespace getppid() is 0, so stage 2 checks a ``lifeline`` pipe instead: its parent
    holds the write end, and the read end reports EOF once the parent is gone.
    """
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(EXIT_SETUP)
    if lifeline >= 0:
        if select.select([lifeline], [], [], 0)[0]:
            os._exit(EXIT_SETUP)
        os.close(lifeline)


def _stage1(
    spec: SandboxSpec,
    plan: landlock.Plan,
    sc_filter: Any,
    workdir_id: tuple[int, int],
    cgroup: cgroups.Cgroup,
    supervisor: int,
    sync: tuple[int, int],
    status_w: int,
    supervisors: tuple[int, ...],
) -> None:
    # The supervisor's ends (status_r, ready_r, go_w) first: were they held here, and so in stage 2, the go pipe
    # would never reach EOF while stage 2 waits on it, and the status pipe's reader would outlive the supervisor.
    for fd in supervisors:
        os.close(fd)
    ready_w, go_r = sync
    _die_with_parent(supervisor)
    os.setpgid(0, 0)  # terminal signals reach only the supervisor, which forwards them once
    cgroup.join()
    syscalls.unshare(_NAMESPACES)
    namespaces.make_mounts_private()
    namespaces.loopback_up()
    os.write(ready_w, b"R")
    os.close(ready_w)
    lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
    target = _forward_to_child()
    pid = os.fork()
    if pid == 0:
        _default_signals()
        os.close(lifeline_w)
        _child(status_w, _stage2, spec, plan, sc_filter, workdir_id, lifeline_r, go_r, status_w)
    target[0] = pid
    os.close(go_r)  # stage 2 alone waits for the go
    os.close(lifeline_r)
    os.close(status_w)
    _relay(pid, reap_all=False)


def _stage2(
    spec: SandboxSpec, plan: landlock.Plan, sc_filter: Any, workdir_id: tuple[int, int], lifeline: int, go_r: int,
    status_w: int,
) -> None:  # fmt: skip
    _die_with_parent(lifeline=lifeline)
    paths = namespaces.plan_paths(spec.read_only, spec.read_write, spec.uid, spec.gid)  # on the host's root
    skipped = namespaces.build_root(spec.workdir, workdir_id, paths, spec.hostname, spec.tmp_max)
    os.mkdir(PROBE_DIR, 0o700)
    os.chown(PROBE_DIR, spec.uid, spec.gid)
    info = {"skipped": skipped, "refused": list(paths.refused)}
    os.write(status_w, b"info " + json.dumps(info).encode() + b"\n")
    # Nothing of the command's exists before the supervisor's hook has returned ("G"): EOF means it gave up (a
    # hook failed: it kills stage 1, and with it this stage) or died.
    if os.read(go_r, 1) != b"G":
        os._exit(EXIT_SETUP)
    os.close(go_r)
    target = _forward_to_child()  # before the fork: PID 1 only receives signals it has handlers for
    pid = os.fork()
    if pid == 0:
        _default_signals()
        _child(status_w, _stage3, spec, plan, paths, sc_filter, status_w)
    target[0] = pid
    os.close(status_w)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    _relay(pid, reap_all=True)


def _forward_to_child() -> list[int]:
    """Install handlers that forward FORWARDED_SIGNALS to ``target[0]`` once the caller has set it."""
    target = [0]

    def forward(signum: int, _frame: object) -> None:
        if target[0] > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target[0], signum)

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)
    return target


def _default_signals() -> None:
    for s in FORWARDED_SIGNALS:
        signal.signal(s, signal.SIG_DFL)


def _relay(pid: int, reap_all: bool) -> None:
    """Wait for ``pid`` and exit with its status. As PID 1 (``reap_all``), also reap orphans."""
    while True:
        try:
            done, status = os.waitpid(-1 if reap_all else pid, 0)
        except ChildProcessError:
            os._exit(EXIT_SETUP)
        if done == pid:
            os._exit(_exit_code(status))


def _stage3(spec: SandboxSpec, plan: landlock.Plan, paths: namespaces.PathPlan, sc_filter: Any, status_w: int) -> None:
    os.setsid()  # no controlling terminal: TIOCSTI has nothing to push into (seccomp denies it too)
    os.chdir(SANDBOX_WORKDIR)
    ruleset_fd = -1
    if plan.abi >= 1:
        # Built here, as root (so every listed path can be opened) and as the process that will exec:
        # a policy entry such as /proc/self then names the command's own /proc entry. The planned targets,
        # not the policy's spellings: the same paths that were mounted, resolved the same careful way.
        ruleset_fd, missing = landlock.build_ruleset(plan.abi, paths.paths(True), paths.paths(False))
        if missing:
            os.write(status_w, b"info " + json.dumps({"skipped": missing}).encode() + b"\n")
    confine_and_exec(spec, ruleset_fd, sc_filter)


def confine_and_exec(spec: SandboxSpec, ruleset_fd: int, sc_filter: Any) -> None:
    """Become the sandbox user with no capabilities, no_new_privs, the Landlock ruleset and the seccomp filter,
    then exec ``spec.argv``. Shared by the sandbox's own start and ``clawfleet sandbox connect``."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    for cap in range(last_cap + 1):
        syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(spec.gid, spec.gid, spec.gid)
    os.setresuid(spec.uid, spec.uid, spec.uid)
    _check_credentials(spec)
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    if syscalls.prctl(syscalls.PR_GET_NO_NEW_PRIVS) != 1:
        raise SetupError("no_new_privs did not stick")
    if ruleset_fd >= 0:
        landlock.restrict_self(ruleset_fd, probe_dir=PROBE_DIR)
        os.close(ruleset_fd)
    for s in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; an exec'd program must not
        signal.signal(s, signal.SIG_DFL)
    seccomp_filter.load(sc_filter)
    # Every fd but 0-2 closes at exec (the status pipe too, which is how the supervisor learns it worked).
    syscalls.syscall("close_range", 3, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC)
    try:
        os.execvpe(spec.argv[0], list(spec.argv), dict(spec.env))  # noqa: S606 - argv, no shell
    except FileNotFoundError:
        raise SetupError(f"command not found: {spec.argv[0]}", EXIT_NOT_FOUND) from None
    except PermissionError:
        raise SetupError(f"command not executable: {spec.argv[0]}", EXIT_NOT_EXECUTABLE) from None


def _check_credentials(spec: SandboxSpec) -> None:
    """Fail closed unless we are exactly the sandbox user with no capabilities at all."""
    if os.getresuid() != (spec.uid,) * 3 or os.getresgid() != (spec.gid,) * 3 or os.getgroups():
        raise SetupError("could not switch to the sandbox user")
    with open("/proc/self/status") as f:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in f) if k.startswith("Cap")}
    nonzero = [k for k, v in caps.items() if int(v, 16) != 0]
    if len(caps) < 5 or nonzero:
        raise SetupError(f"capabilities left after dropping privileges: {', '.join(nonzero) or 'unknown'}")
