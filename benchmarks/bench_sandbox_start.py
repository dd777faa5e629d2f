"""Sandbox start time, side by side with bubblewrap, unshare and a bare Python start, in one run.

    sudo .venv/bin/python benchmarks/bench_sandbox_start.py [-n 30] [--baseline-src DIR]

Runs are interleaved round-robin, each round starting one row further on, so load changes on a shared machine and
the order hit every command alike. Prints
median and p90 wall time per command, the ratio of each median to bwrap's and the median CPU time of each command's
process tree (user + system: the load of other jobs moves it much less than the wall time, so it is the figure for
a before/after of work removed); on a shared machine compare ratios within one run only. Goal (issue 16):
`clawfleet sandbox run` (with its gateway) at most 10x bwrap.
Needs root (the sandbox launcher does), bwrap (Debian: bubblewrap) and the user clawfleet-sbx (made if missing).

The clawfleet rows run ``python -m clawfleet.cli`` (the `clawfleet` script's entry, from the tree this interpreter
imports: ``PYTHONPATH=$PWD/src`` measures a worktree rather than the venv's editable install, whose script may
name an older entry). ``--baseline-src DIR`` adds the two `clawfleet sandbox run` rows again for another source
tree (``git archive main src | tar -x -C /tmp/base`` gives ``/tmp/base/src``), interleaved with the others: a
before/after comparison from one run. Every child gets compiled bytecode (PYTHONDONTWRITEBYTECODE is dropped,
the cache goes to a temporary PYTHONPYCACHEPREFIX), as an installed wheel has: without it each run compiles
every clawfleet module again.

``clawfleet sandbox run`` goes through the top-level CLI, which imports only the ``sandbox`` command's modules;
``python -m clawfleet.sandbox run`` is the same command. ``--no-gateway`` leaves out the egress gateway: the
difference between the two rows is the gateway's imports (asyncio, h11, cryptography for the per-sandbox CA,
which the sandbox must trust before its command starts: a hot reload may add L7 endpoints) and its attach.

The last two rows run inside this process, imports done: ``Launcher.run()`` is the sandbox alone;
``run_sandbox()`` is the sandbox with its embedded gateway, what a pre-started supervisor forking sandboxes for a
thin client would pay per launch (that client would add its own interpreter start, the ``python3 -c pass`` row).
"""

from __future__ import annotations

import argparse
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "clawfleet-sbx"
POLICY = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /proc, /dev/urandom, /app, /etc, /var/log]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: best_effort
process:
  run_as_user: {user}
"""


IN_PROCESS = "Launcher.run() in-process"
IN_PROCESS_GW = "run_sandbox() in-process (with gateway)"


def _in_process_launch(policy: Path, work: Path):
    """The sandbox itself (3 forks, mounts, Landlock, seccomp, exec /bin/true) without the interpreter start
    and the imports a CLI run pays: what the kernel-facing code costs, next to bwrap."""
    import argparse as ap

    from clawfleet.sandbox.launcher import Launcher
    from clawfleet.sandbox.run_args import add_run_arguments, spec_from_args

    parser = ap.ArgumentParser()
    add_run_arguments(parser)  # the CLI's own flags and defaults, so this stays in step with `sandbox run`
    ns = parser.parse_args(["--policy", str(policy), "--workdir", str(work), "--", "/bin/true"])
    spec = spec_from_args(ns, {})

    def launch() -> None:
        if Launcher(spec).run() != 0:
            raise SystemExit("in-process launch failed")

    return launch


def _in_process_gateway_launch(policy: Path, work: Path):
    """What `clawfleet sandbox run` does once its modules are loaded: the policy parsed (once, for both), the
    embedded gateway (policy holder, CA, loop thread, listener in the sandbox's namespace) and the sandbox. The
    floor for a pre-started supervisor that would launch sandboxes for a thin client: that client would still pay
    an interpreter start."""
    import argparse as ap

    from clawfleet.gateway.config import config_from_args
    from clawfleet.policy.loader import load_file_and_stat
    from clawfleet.sandbox.run_args import add_run_arguments, spec_from_args
    from clawfleet.supervisor.embedded import run_sandbox

    parser = ap.ArgumentParser()
    add_run_arguments(parser)
    ns = parser.parse_args(["--policy", str(policy), "--workdir", str(work), "--", "/bin/true"])
    gateway = config_from_args(ns.policy, ns.gateway_config, ns.mode, ns.gateway_log)

    def launch() -> None:
        loaded = load_file_and_stat(ns.policy)  # as supervisor.cli.run_command does, on every launch
        if run_sandbox(spec_from_args(ns, {}, policy=loaded[0]), gateway, policy=loaded)[0] != 0:
            raise SystemExit("in-process launch with the gateway failed")

    return launch


def _children_cpu_ms() -> float:
    """User + system time of the reaped children so far: a run's delta is its whole process tree's CPU (every
    stage of the sandbox included), which other jobs on a shared machine disturb far less than its wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs per command (default 30)")
    parser.add_argument(
        "--baseline-src", metavar="DIR", help="also run `clawfleet sandbox run` with PYTHONPATH=DIR (a tree to compare)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox launcher needs it")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", USER], check=True)
    # What the `clawfleet` script runs (clawfleet.cli's entry), from the tree this interpreter imports.
    clawfleet = [sys.executable, "-m", "clawfleet.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        policy = Path(tmp, "policy.yaml")
        policy.write_text(POLICY.format(user=USER))
        work = Path(tmp, "work")
        work.mkdir()
        shutil.chown(work, USER, USER)
        os.chmod(tmp, 0o755)
        run_args = ["--policy", str(policy), "--workdir", str(work), "--", "/bin/true"]
        commands = {
            "clawfleet sandbox run": [*clawfleet, "sandbox", "run", *run_args],
            "clawfleet sandbox run --no-gateway": [*clawfleet, "sandbox", "run", "--no-gateway", *run_args],
            "python -m clawfleet.sandbox": [
                sys.executable,
                "-m",
                "clawfleet.sandbox",
                "run",
                "--policy",
                str(policy),
                "--workdir",
                str(work),
                "--",
                "/bin/true",
            ],
            "bwrap --unshare-all": [
                "bwrap",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--unshare-all",
                "--new-session",
                "--die-with-parent",
                "true",
            ],
            "unshare -Urnmpf": ["unshare", "-Urnmpf", "true"],
            "python3 -c pass": [sys.executable, "-c", "pass"],
        }
        envs = {name: env for name in commands}
        if args.baseline_src:
            base_env = {**env, "PYTHONPATH": os.path.abspath(args.baseline_src)}
            for name in ("clawfleet sandbox run", "clawfleet sandbox run --no-gateway"):
                commands[f"{name} [baseline]"] = commands[name]
                envs[f"{name} [baseline]"] = base_env
        for name, argv in list(commands.items()):
            if shutil.which(argv[0]) is None:
                print(f"{name}: {argv[0]} not installed, left out")
                del commands[name]
                continue
            subprocess.run(argv, check=True, env=envs[name])  # warm caches; fail loudly if something does not work
        times: dict[str, list[float]] = {name: [] for name in commands}
        launch = _in_process_launch(policy, work)
        launch_gw = _in_process_gateway_launch(policy, work)
        launch_gw()  # warm
        times[IN_PROCESS] = []
        times[IN_PROCESS_GW] = []
        cpu: dict[str, list[float]] = {}
        in_process = {IN_PROCESS: launch, IN_PROCESS_GW: launch_gw}
        order = [*commands, *in_process]
        for i in range(args.n):
            # Each round starts one row further on, so no row is always the one run right after the in-process
            # launches (the first row of a fixed order, the new tree's, read slower than the same command elsewhere).
            for name in order[i % len(order) :] + order[: i % len(order)]:
                start = time.perf_counter()
                if name in in_process:
                    in_process[name]()
                else:
                    before = _children_cpu_ms()
                    subprocess.run(commands[name], check=True, env=envs[name])
                    cpu.setdefault(name, []).append(_children_cpu_ms() - before)
                times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["bwrap --unshare-all"]) if "bwrap --unshare-all" in times else float("nan")
    load = os.getloadavg()[0]
    header = f"{'command':<47} {'median ms':>10} {'p90 ms':>8} {'x bwrap':>8} {'CPU ms':>7}"
    print(f"{header}   (n={args.n}, {os.cpu_count()} CPUs, load average {load:.1f})")
    for name, samples in times.items():
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        used = f"{statistics.median(cpu[name]):>7.1f}" if name in cpu else f"{'-':>7}"
        print(f"{name:<47} {med:>10.1f} {p90:>8.1f} {med / base:>8.1f} {used}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
