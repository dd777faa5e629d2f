"""Fleet policy rollout: Ansible with defaults, Ansible tuned, and the pyinfra fast path, side by side in one run.

    .venv/bin/python benchmarks/bench_rollout.py [--hosts 20 | --hosts 5,10,20] [--keep] [--rounds 1] [--no-noop]
        [--baseline-repo DIR]

Creates HOSTS systemd containers (Debian 12, the shared test image) running the clawfleet gateway with one
sandbox ("agent", the sample assistant, loopback traffic only), all from one image this script converges once with
the repository's roles (runtime + policy + sandbox + gateway) and commits (``clawfleet/bench-rollout``, rebuilt with
``--rebuild``). Then, per round and path, it rolls out one new policy (canary 1, 10 %, 50 %, 100 %) and runs the
same rollout again (a no-op), timing each wall to wall:

* ``ansible defaults``: playbooks/policy_rollout.yml with an ansible.cfg that sets only the roles and filter paths
  (forks 5, no pipelining, interpreter discovery);
* ``ansible tuned``: the same playbook with the settings the README recommends (forks >= hosts, pipelining, a fixed
  interpreter, no fact gathering, fact cache, short poll interval);
* ``clawfleet fleet push``: the same host command (``clawfleet policy apply``) through pyinfra.

``--hosts 5,10,20`` measures every path at each fleet size in one run (on the first N of the largest set of
containers) and prints a scaling table with each path's ratio to Ansible defaults at the same size.
``--baseline-repo DIR`` adds that checkout's tuned Ansible and fleet push at the largest size, against the same
hosts in the same run: a before/after comparison under the same load (the hosts run this checkout's runtime, which
still serves the older role's and fast path's host commands). ``--no-noop`` skips the repeated runs.

Enforcement latency is read from every host's ledger afterwards: ``enforce_latency_s`` of each ``applied`` record,
the time from the policy file landing to the gateway reporting the new digest. Containers are removed at the end
(``--keep`` leaves them). Goals (issue 16): 20 hosts <= 20 s with tuned Ansible, <= 8 s on the fast path,
enforcement < 1 s.
Needs root, a Docker engine and the base images (tests/infra/docker-engine.sh, tests/infra/base-images.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
BASE_IMAGE = "clawfleet/systemd-debian:bookworm"
IMAGE = "clawfleet/bench-rollout:latest"
PREFIX = "clawfleet-bench-rollout"
RUN_FLAGS = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE",
             "--cap-add", "DAC_READ_SEARCH", "--security-opt", "seccomp=unconfined", "--cgroupns=host",
             "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
             "--stop-signal", "SIGRTMIN+3"]  # fmt: skip

GROUP_VARS = {
    "ansible_connection": "community.docker.docker",
    "bench_extra_policies": {},
    "clawfleet_sandboxes": [
        {
            "name": "agent",
            "inference": False,
            "network_policies": "{{ bench_base_policies | combine(bench_extra_policies) }}",
            "env": {
                "ASSISTANT_INTERVAL": "30",
                "ASSISTANT_FETCH_URL": "http://origin.test:18080/data",
                "ASSISTANT_DENIED_URL": "http://learn.test:18080/new",
            },
            "gateway": {"static_hosts": {"origin.test": "127.0.0.1", "learn.test": "127.0.0.1"}},
        }
    ],
    "bench_base_policies": {
        "origin": {
            "name": "origin",
            "endpoints": [
                {
                    "host": "origin.test",
                    "port": 18080,
                    "protocol": "rest",
                    "rules": [{"allow": {"method": "GET", "path": "/data"}}],
                }
            ],
            "binaries": [{"path": "/usr/bin/python3*"}],
        },
    },
    "gateway_report_security": False,
    "sandbox_report_security": False,
}

# The roles use the collection's FQCN filters (clawfleet.fleet.*): this clone as that collection, as ansible.cfg does.
DEFAULTS_CFG = """[defaults]
roles_path = {repo}/roles
filter_plugins = {repo}/filter_plugins
collections_path = {repo}/.cache/collections-dev
retry_files_enabled = false
"""

# What the README's "Scale" section recommends for rollouts (docs/fleet.md "Scale").
TUNED_CFG = """[defaults]
roles_path = {repo}/roles
filter_plugins = {repo}/filter_plugins
collections_path = {repo}/.cache/collections-dev
retry_files_enabled = false
forks = {forks}
interpreter_python = /usr/bin/python3
gathering = explicit
fact_caching = jsonfile
fact_caching_connection = {tmp}/facts
internal_poll_interval = 0.005
[ssh_connection]
pipelining = true
ssh_args = -o ControlMaster=auto -o ControlPersist=300s -o PreferredAuthentications=publickey
[connection]
pipelining = true
"""


def sh(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


def log(msg: str) -> None:
    print(f"[bench-rollout] {msg}", file=sys.stderr, flush=True)


def start_container(name: str, image: str) -> None:
    sh(["docker", "rm", "-f", name], check=False)
    sh(["docker", "run", "-d", "--name", name, "--hostname", name, *RUN_FLAGS, image, "/lib/systemd/systemd"])
    # As in molecule/*/prepare.yml: systemd on a real host makes / shared at boot; Docker starts it as a slave.
    for _ in range(50):
        if sh(["docker", "exec", name, "mount", "--make-rshared", "/"], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"{name}: container did not start")


def write_inventory(path: Path, names: list[str]) -> None:
    inv = {"all": {"hosts": {n: {} for n in names}, "vars": GROUP_VARS}}
    path.write_text(json.dumps(inv, indent=1))


def ansible_env(cfg: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "CLAWFLEET_OPERATOR": "bench-rollout", "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    env.update(extra or {})
    return env


def build_image(tmp: Path, rebuild: bool) -> None:
    if not rebuild and sh(["docker", "image", "inspect", IMAGE], check=False).returncode == 0:
        log(f"{IMAGE} cached (--rebuild to converge it again)")
        return
    name = f"{PREFIX}-golden"
    log(f"converging {name} (runtime + policy + sandbox + gateway) for {IMAGE}")
    start_container(name, BASE_IMAGE)
    inv = tmp / "golden.json"
    write_inventory(inv, [name])
    play = tmp / "golden.yml"
    # Same order as playbooks/services.yml: the sandboxes start once the gateway runs with their definitions.
    play.write_text(
        "- hosts: all\n  become: true\n  roles: [base, clawfleet_runtime, policy, sandbox, gateway]\n"
        "  tasks:\n    - name: Start the sandboxes\n"
        "      ansible.builtin.include_role: {name: sandbox, tasks_from: start}\n"
    )
    cfg = tmp / "golden.cfg"
    cfg.write_text(TUNED_CFG.format(repo=REPO, forks=5, tmp=tmp).replace("gathering = explicit", "gathering = smart"))
    run = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(play),
                          "-e", f"clawfleet_runtime_bundle_dir={REPO}/.cache/bundle"],
                         env=ansible_env(cfg), text=True, capture_output=True)  # fmt: skip
    if run.returncode != 0:
        sys.stderr.write((run.stdout + run.stderr)[-6000:])
        raise SystemExit("converging the golden container failed")
    # Leave no ledger and no host identity behind: every bench host starts from the same state.
    sh(["docker", "exec", name, "sh", "-c", "rm -f /var/lib/clawfleet/policy-ledger.jsonl*"])
    sh(["docker", "stop", name])
    sh(["docker", "commit", name, IMAGE])
    sh(["docker", "rm", "-f", name])


def wait_running(names: list[str], timeout: float = 600) -> None:
    start = time.monotonic()
    deadline = start + timeout
    pending = set(names)
    restarted: set[str] = set()
    while pending and time.monotonic() < deadline:
        for n in sorted(pending):
            out = sh(["docker", "exec", n, "clawfleet", "sandbox", "status", "agent"], check=False)
            if out.returncode == 0 and json.loads(out.stdout).get("state") == "running":
                pending.discard(n)
                continue
            # On a loaded machine a container's systemd now and then stalls its boot (every job "waiting", the
            # gateway never started): boot it once more. Only after a while: a young boot may idle a moment too.
            if time.monotonic() - start < 90:
                continue
            stalled = sh(["docker", "exec", n, "sh", "-c", "systemctl list-jobs | grep -q running || echo stalled"],
                         check=False).stdout.strip() == "stalled"  # fmt: skip
            booting = sh(["docker", "exec", n, "systemctl", "is-system-running"], check=False).stdout.strip()
            if n not in restarted and stalled and booting in ("initializing", "starting"):
                time.sleep(5)  # a stall, not a slow step: still stalled a moment later
                if sh(["docker", "exec", n, "systemctl", "is-system-running"], check=False).stdout.strip() == booting:
                    log(f"{n}: systemd boot stalled; restarting the container")
                    restarted.add(n)
                    sh(["docker", "restart", "-t", "5", n])
                    for _ in range(50):
                        if sh(["docker", "exec", n, "mount", "--make-rshared", "/"], check=False).returncode == 0:
                            break
                        time.sleep(0.2)
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"sandbox not running on {sorted(pending)}")


def change(n: int) -> dict:
    """A new rule per rollout, so that every timed rollout really changes every host."""
    return {"bench_extra_policies": {f"bench_{n}": {
        "name": f"bench-{n}", "endpoints": [{"host": f"api{n}.bench.test", "port": 443, "protocol": "rest",
                                             "access": "read-only"}],
        "binaries": [{"path": "/usr/bin/python3*"}]}}}  # fmt: skip


def run_ansible(cfg: Path, inv: Path, extra: dict, serial: str, repo: Path = REPO) -> tuple[float, int, str]:
    batches = [int(x) if x.isdigit() else x for x in serial.split(",")]
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(repo / "playbooks/policy_rollout.yml"),
            "-e", json.dumps({**extra, "clawfleet_rollout_batches": batches})]  # fmt: skip
    t0 = time.monotonic()
    run = subprocess.run(argv, env=ansible_env(cfg), text=True, capture_output=True)
    wall = time.monotonic() - t0
    changed = sum(int(x.split("=")[1]) for x in run.stdout.split() if x.startswith("changed="))
    if run.returncode != 0:
        sys.stderr.write(run.stdout[-4000:])
    return wall, changed, "ok" if run.returncode == 0 else f"rc {run.returncode}"


def merged_policy(extra: dict, out: Path) -> None:
    """The policy the Ansible role would place for ``extra`` (same merge, through the filter plugin's code)."""
    sys.path.insert(0, str(REPO / "filter_plugins"))
    import yaml  # PyYAML ships with ansible-core

    from clawfleet_policy import clawfleet_policy_merge

    rules = {**GROUP_VARS["bench_base_policies"], **extra["bench_extra_policies"]}
    preset = {"preset": {"name": "agent-host-additions", "description": "per-host additions"},
              "network_policies": rules}  # fmt: skip
    policy = clawfleet_policy_merge(str(REPO / "policies/base.yaml"), [preset])
    out.write_text(yaml.safe_dump(json.loads(json.dumps(policy)), sort_keys=False))


def run_push(names: list[str], policy: Path, serial: str, repo: Path = REPO) -> tuple[float, int, str]:
    argv = [str(VENV_BIN / "clawfleet"), "fleet", "push", str(policy), "--name", "agent", "--json",
            "--hosts", ",".join(f"@docker/{n}" for n in names), "--serial", serial,
            "--max-fail", "0", "--operator", "bench-rollout"]  # fmt: skip
    t0 = time.monotonic()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": str(repo / "src")}
    run = subprocess.run(argv, text=True, capture_output=True, env=env)
    wall = time.monotonic() - t0
    results = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{") and '"summary"' not in x]
    changed = sum(1 for r in results if r.get("result") == "applied")
    if run.returncode != 0:
        sys.stderr.write((run.stdout + run.stderr)[-4000:])
    return wall, changed, "ok" if run.returncode == 0 else f"rc {run.returncode}"


def ledger_length(name: str) -> int:
    return len(sh(["docker", "exec", name, "clawfleet", "policy", "ledger", "--json"]).stdout.splitlines())


def latencies(names: list[str], since: dict[str, int]) -> dict[str, list[float]]:
    """enforce_latency_s of the applied records per operator path, from every host's ledger."""
    out: dict[str, list[float]] = {}
    for n in names:
        text = sh(["docker", "exec", n, "clawfleet", "policy", "ledger", "--json"], check=False).stdout
        for line in text.splitlines()[since.get(n, 0) :]:
            rec = json.loads(line)
            if rec.get("result") == "applied" and isinstance(rec.get("enforce_latency_s"), (int, float)):
                out.setdefault(rec.get("source_commit") or "?", []).append(rec["enforce_latency_s"])
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def host_counts(text: str) -> list[int]:
    counts = sorted({int(x) for x in text.split(",") if x.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"--hosts {text!r}: want N or N1,N2,... (each >= 1)")
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--hosts",
        type=host_counts,
        default=[20],
        help="fleet size, or sizes to measure in one run (5,10,20: the containers of the largest)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="rollout + no-op pairs per path")
    ap.add_argument("--keep", action="store_true", help="leave the containers running")
    ap.add_argument("--rebuild", action="store_true", help="converge the image again")
    ap.add_argument("--skip", action="append", default=[], choices=["defaults", "tuned", "push"])
    ap.add_argument("--serial", default="1,10%,50%,100%", help="batches, for Ansible (serial) and fleet push")
    ap.add_argument("--no-noop", action="store_true", help="skip the repeated (no-op) run of each path")
    ap.add_argument(
        "--baseline-repo",
        type=Path,
        metavar="DIR",
        help="another checkout (e.g. `git worktree add /tmp/base main`): its tuned Ansible and fleet push "
        "run too, at the largest fleet size, against the same hosts (whose runtime is this one's)",
    )
    args = ap.parse_args()
    if shutil.which("docker") is None or os.geteuid() != 0:
        raise SystemExit("needs root and a Docker engine (bash tests/infra/docker-engine.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    biggest = args.hosts[-1]
    all_names = [f"{PREFIX}-{i:02d}" for i in range(1, biggest + 1)]
    labels = {"defaults": "ansible defaults", "tuned": "ansible tuned", "push": "clawfleet fleet push",
              "base-tuned": "ansible tuned (base)", "base-push": "fleet push (base)"}  # fmt: skip
    base = args.baseline_repo.resolve() if args.baseline_repo else None
    try:
        build_image(tmp, args.rebuild)
        log(f"starting {len(all_names)} hosts from {IMAGE}")
        for n in all_names:
            start_container(n, IMAGE)
        wait_running(all_names)
        inv_all = tmp / "inventory-all.json"
        write_inventory(inv_all, all_names)
        cfgs = {"defaults": tmp / "defaults.cfg", "tuned": tmp / "tuned.cfg"}
        cfgs["defaults"].write_text(DEFAULTS_CFG.format(repo=REPO))
        cfgs["tuned"].write_text(TUNED_CFG.format(repo=REPO, forks=max(20, biggest), tmp=tmp))
        if base is not None:
            cfgs["base-tuned"] = tmp / "base-tuned.cfg"
            cfgs["base-tuned"].write_text(TUNED_CFG.format(repo=base, forks=max(20, biggest), tmp=tmp))
        have_push = sh([str(VENV_BIN / "clawfleet"), "fleet", "push", "--help"], check=False).returncode == 0
        rows: list[tuple[int, str, str, float, int, str]] = []
        lat: dict[str, list[float]] = {}
        n = 0
        # The first rollout (a "warm-up", not reported) brings every host to the Ansible role's staged state.
        run_ansible(cfgs["tuned"], inv_all, change(0), args.serial)
        for count in args.hosts:
            names = all_names[:count]
            inv = tmp / f"inventory-{count}.json"
            write_inventory(inv, names)
            for r in range(args.rounds):
                paths = ["defaults", "tuned", "push"]
                if base is not None and count == biggest:
                    paths += ["base-tuned", "base-push"]
                for path in paths:
                    if path.removeprefix("base-") in args.skip or (path.endswith("push") and not have_push):
                        continue
                    repo = base if path.startswith("base-") and base is not None else REPO
                    runs = ("rollout",) if args.no_noop else ("rollout", "no-op")
                    n += 1
                    label = labels[path]
                    since = {h: ledger_length(h) for h in names}
                    if path.endswith("push"):
                        pol = tmp / f"agent-{n}.yaml"
                        merged_policy(change(n), pol)
                        for what in runs:
                            rows.append((count, label, what, *run_push(names, pol, args.serial, repo)))
                    else:
                        for what in runs:
                            rows.append(
                                (count, label, what, *run_ansible(cfgs[path], inv, change(n), args.serial, repo))
                            )
                    log(f"{count} hosts, round {r + 1}: {label}: " + ", ".join(
                        f"{row[3]:.1f} s {row[2]}" for row in rows[-len(runs):]))  # fmt: skip
                    for values in latencies(names, since).values():
                        lat.setdefault(label, []).extend(values)
        load = os.getloadavg()
        print(f"\nPolicy rollout on {', '.join(map(str, args.hosts))} hosts (systemd containers on this machine, "
              f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end), batches "
              f"{args.serial}; {args.rounds} round(s)")  # fmt: skip
        print(f"{'hosts':>5} {'path':<22} {'run':<8} {'wall s':>8} {'changed':>8}  status")
        for count, label, what, wall, changed, ok in rows:
            print(f"{count:>5} {label:<22} {what:<8} {wall:>8.1f} {changed:>8}  {ok}")
        print("\nRollout wall time (median of the rounds) by fleet size, and its ratio to Ansible defaults")
        print(f"{'path':<22} " + " ".join(f"{c:>7} h" for c in args.hosts) + "   " +
              " ".join(f"{'x@' + str(c):>6}" for c in args.hosts))  # fmt: skip
        med = {(label, c): statistics.median(w for cc, lab, what, w, _ch, _ok in rows
                                             if cc == c and lab == label and what == "rollout")
               for label in dict.fromkeys(r[1] for r in rows) for c in args.hosts
               if any(cc == c and lab == label for cc, lab, *_ in rows)}  # fmt: skip
        for label in dict.fromkeys(r[1] for r in rows):
            walls = " ".join(f"{med[(label, c)]:>7.1f} s" if (label, c) in med else f"{'-':>9}" for c in args.hosts)
            ratios = " ".join(
                f"{med[(label, c)] / med[(labels['defaults'], c)]:>6.2f}"
                if (label, c) in med and (labels["defaults"], c) in med
                else f"{'-':>6}"
                for c in args.hosts
            )
            print(f"{label:<22} {walls}   {ratios}")
        print("\nTime from the policy landing on a host to its gateway enforcing it (ledger enforce_latency_s)")
        print(f"{'path':<22} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for label, values in lat.items():
            print(f"{label:<22} {len(values):>4} {pct(values, 0.5) * 1000:>8.0f} {pct(values, 0.99) * 1000:>8.0f} "
                  f"{max(values) * 1000:>8.0f}")  # fmt: skip
        if not have_push:
            print("\n(clawfleet fleet push not available: fast path not measured)")
        allv = [v for vs in lat.values() for v in vs]
        if allv:
            print(f"\nall paths: n={len(allv)} p50 {statistics.median(allv) * 1000:.0f} ms, "
                  f"p99 {pct(allv, 0.99) * 1000:.0f} ms")  # fmt: skip
        print("goals (issue 16): 20 hosts <= 20 s with tuned Ansible, <= 8 s on the fast path, enforcement < 1 s")
        return 0
    finally:
        if not args.keep:
            for n in all_names:
                sh(["docker", "rm", "-f", n], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
