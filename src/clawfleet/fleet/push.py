"""``clawfleet fleet push|status``: the fast path for policy rollouts, without Ansible.

On the controller the policy is validated and digested with :mod:`clawfleet.policy` before any host is
touched. Then, batch by batch (``--serial``), each host runs its own ``clawfleet policy apply`` (validate ->
place -> hot reload -> verify -> roll back, ledger record): the same code the Ansible role runs, so both paths
behave alike. The policy travels in that one command (``apply -``, stdin; up to INLINE_MAX_BYTES), so a host
costs one round trip; a larger policy is uploaded to a staging path first. A batch with more failures than
``--max-fail`` stops the rollout; later hosts stay untouched.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from typing import Any

from clawfleet import paths

from .batches import FAILED_RESULTS, parse_max_fail, parse_serial, plan_batches, roll_out

__all__ = ["register_fleet_subcommands"]

DEFAULT_REMOTE_CLAWFLEET = paths.VENV_CLAWFLEET
DEFAULT_STAGING = paths.POLICY_STAGING_DIR
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
#: Policies up to this size travel inside the remote command (base64: 4/3 of it, below Linux's 128 KiB limit on one
#: argument, which ``docker exec sh -c`` and ``ssh`` pass the command as); larger ones are uploaded first.
INLINE_MAX_BYTES = 64 * 1024


def git_commit(path: str) -> str | None:
    """HEAD of the git work tree holding ``path`` (``-dirty`` when the file has uncommitted changes)."""
    where = os.path.dirname(os.path.abspath(path))
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--", os.path.abspath(path)],
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The last JSON object line of ``clawfleet policy apply`` output."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "result" in obj:
                return obj
    return None


def _tail(text: str, n: int = 3) -> str:
    return " | ".join(x for x in text.strip().splitlines()[-n:])


def _short(d: str | None) -> str:
    return "-" if not d else d.removeprefix("sha256:")[:12]


def _targets(args: argparse.Namespace):
    from .transport import load_targets

    targets = load_targets(
        args.hosts or (), args.inventory, accept_new_host_keys=args.accept_new_host_keys, known_hosts=args.known_hosts
    )
    if not targets:
        raise ValueError("no hosts: give --hosts and/or --inventory")
    return targets


# -- push --------------------------------------------------------------------------------------------------


def remote_apply_command(args: argparse.Namespace, staged: str, operator: str, commit: str | None,
                         inline: bytes | None = None) -> str:  # fmt: skip
    """The one command each host runs. ``inline``: the policy goes in the command itself (base64, piped to
    ``apply -``, which applies it from memory: no copy is written), so a host needs no upload and no directory or
    file facts: one round trip. Otherwise ``staged`` is the path the caller uploads it to first (``--staging-dir``,
    read by ``apply`` and removed after it)."""
    source = "-" if inline is not None else staged
    argv = [args.clawfleet, "policy", "apply", source, "--name", args.name, "--policy-dir", args.policy_dir,
            "--socket", args.socket, "--timeout", str(args.timeout), "--ledger", args.ledger, "--operator", operator,
            "--group", args.group]  # fmt: skip
    if commit:
        argv += ["--source-commit", commit]
    if args.check:
        argv.append("--check")
    if args.no_verify:
        argv.append("--no-verify")
    if inline is not None:
        argv += ["--stdin-label", args.policy]
        # base64 is shell-safe as it is: no quoting, no heredoc end marker that the policy could contain
        return f"printf '%s' {base64.b64encode(inline).decode()} | base64 -d | {shlex.join(argv)}"
    q = shlex.quote(staged)
    return f"{shlex.join(argv)}; rc=$?; rm -f {q}; exit $rc"


def _print_host(args: argparse.Namespace, batch: int, res: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(res), flush=True)
        return
    lat = res.get("enforce_latency_s")
    line = (f"[batch {batch}] {res.get('target'):<24} {res.get('result'):<12} {_short(res.get('digest')):<13}"
            f" latency={'-' if lat is None else f'{lat:.3f}s'}")  # fmt: skip
    if res.get("error"):
        line += f"  error: {res['error']}"
    print(line, flush=True)
    if args.check and res.get("diff"):
        print("\n".join(f"    {x}" for x in res["diff"].splitlines()), flush=True)


def _cmd_push(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError, digest, load_text

    try:
        with open(args.policy, "rb") as f:
            data = f.read()
        policy = load_text(data, args.policy)  # refuse before touching any host
    except OSError as exc:
        print(f"clawfleet fleet push: {args.policy}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    want = digest(policy)
    try:
        targets = _targets(args)
        sizes = parse_serial(args.serial, len(targets))
        max_fail = parse_max_fail(args.max_fail, len(targets))
    except ValueError as exc:
        print(f"clawfleet fleet push: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from clawfleet.policy.apply import default_operator

    from .transport import run_on_hosts

    operator = args.operator or default_operator()
    commit = args.source_commit if args.source_commit is not None else git_commit(args.policy)
    staged = f"{args.staging_dir.rstrip('/')}/{args.name}.{want.removeprefix('sha256:')[:16]}.yaml"
    inline = len(data) <= INLINE_MAX_BYTES
    command = remote_apply_command(args, staged, operator, commit, data if inline else None)
    uploads = [] if inline else [(data, staged)]
    data_by_name = dict(targets)

    def run_batch(batch: list[str]) -> dict[str, dict[str, Any]]:
        runs = run_on_hosts([(n, data_by_name[n]) for n in batch], command, uploads, sudo=args.sudo,
                            parallel=args.parallel, verbose=args.verbose)  # fmt: skip
        out: dict[str, dict[str, Any]] = {}
        for name, run in runs.items():
            res = parse_result(run.stdout) if run.ran else None
            if res is None:
                why = run.error or f"no result from clawfleet policy apply: {_tail(run.stderr or run.stdout)}"
                res = {"result": "error", "digest": want, "error": why}
            out[name] = {"target": name, **res}
        return out

    batches = plan_batches([n for n, _ in targets], sizes)
    if not args.json:
        print(f"policy {args.policy} {want} -> {args.name} on {len(targets)} hosts, batches "
              f"{[len(b) for b in batches]}, max-fail {max_fail}{' (check mode)' if args.check else ''}",
              file=sys.stderr)  # fmt: skip
    results, stopped = roll_out(batches, run_batch, max_fail, lambda b, r: _print_host(args, b, r))
    counts = Counter(r["result"] for r in results)
    latencies = sorted(r["enforce_latency_s"] for r in results if isinstance(r.get("enforce_latency_s"), float))
    summary = {"policy": args.policy, "digest": want, "sandbox": args.name, "hosts": len(results),
               "counts": dict(sorted(counts.items())), "stopped_early": stopped,
               "max_enforce_latency_s": latencies[-1] if latencies else None, "source_commit": commit,
               "failed": [r["target"] for r in results if r["result"] in FAILED_RESULTS]}  # fmt: skip
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(f"total {len(results)}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + (" - stopped after a failed batch" if stopped else ""))  # fmt: skip
    failed = any(r["result"] in FAILED_RESULTS for r in results)
    return EXIT_FAILED if failed or stopped else EXIT_OK


# -- status ------------------------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError, digest, load_file

    from .transport import run_on_hosts

    expect: dict[str, str] = {}
    try:
        for item in args.expect or ():
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--expect {item!r}: want NAME=FILE")
            expect[name] = digest(load_file(path))
        targets = _targets(args)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except (OSError, ValueError) as exc:
        print(f"clawfleet fleet status: {exc}", file=sys.stderr)
        return EXIT_INVALID
    argv = [args.clawfleet, "policy", "status", "--json", "--policy-dir", args.policy_dir, "--socket", args.socket,
            "--ledger", args.ledger]  # fmt: skip
    runs = run_on_hosts(targets, shlex.join(argv), sudo=args.sudo, parallel=args.parallel, verbose=args.verbose)
    rows: list[dict[str, Any]] = []
    for name, _ in targets:
        run = runs[name]
        parsed: Any = None
        if run.ran:
            try:
                parsed = json.loads(run.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                parsed = None
        if not isinstance(parsed, list):
            rows.append({"target": name, "sandbox": None, "drift": True,
                         "error": run.error or f"no status: {_tail(run.stderr or run.stdout)}"})  # fmt: skip
            continue
        seen = set()
        for r in parsed:
            seen.add(r["name"])
            expected = expect.get(r["name"])
            drift = not r.get("in_sync") or (expected is not None and r.get("file_digest") != expected)
            rows.append({"target": name, "sandbox": r["name"], "state": r.get("state"),
                         "file_digest": r.get("file_digest"), "enforced_digest": r.get("enforced_digest"),
                         "expected_digest": expected, "in_sync": r.get("in_sync"), "drift": drift,
                         "last_ledger": r.get("last_ledger"), "error": r.get("error")})  # fmt: skip
        for missing in sorted(set(expect) - seen):
            rows.append({"target": name, "sandbox": missing, "state": None, "file_digest": None,
                         "enforced_digest": None, "expected_digest": expect[missing], "in_sync": False,
                         "drift": True, "error": "no policy file for this sandbox"})  # fmt: skip
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'HOST':<24} {'SANDBOX':<16} {'STATE':<8} {'FILE':<13} {'ENFORCED':<13} {'EXPECTED':<13} DRIFT")
        for r in rows:
            print(f"{r['target']:<24} {r.get('sandbox') or '-':<16} {r.get('state') or '-':<8} "
                  f"{_short(r.get('file_digest')):<13} {_short(r.get('enforced_digest')):<13} "
                  f"{_short(r.get('expected_digest')):<13} {'YES' if r['drift'] else 'no'}"
                  + (f"  ({r['error']})" if r.get("error") else ""))  # fmt: skip
    return EXIT_FAILED if any(r["drift"] for r in rows) else EXIT_OK


# -- CLI ---------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    from clawfleet.policy.apply import DEFAULT_POLICY_DIR, DEFAULT_SOCKET
    from clawfleet.policy.ledger import DEFAULT_LEDGER

    p.add_argument("--hosts", action="append", metavar="H1,H2",
                   help="hosts (repeatable, comma-separated): NAME (SSH), @docker/CONTAINER, @local")  # fmt: skip
    p.add_argument("--inventory", metavar="FILE", help="pyinfra inventory file")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file SSH host keys are checked against")
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="trust a new SSH host's first key (enrolling hosts); default: refuse")  # fmt: skip
    p.add_argument("--clawfleet", default=DEFAULT_REMOTE_CLAWFLEET, metavar="PATH", help="clawfleet on the hosts")
    p.add_argument("--policy-dir", default=DEFAULT_POLICY_DIR, metavar="DIR")
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    p.add_argument("--ledger", default=DEFAULT_LEDGER)
    p.add_argument("--sudo", action="store_true", help="run the remote commands with sudo")
    p.add_argument("--parallel", type=int, default=20, help="hosts worked on at once within a batch")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="show pyinfra's output (on stderr)")


def register_fleet_subcommands(sub: Any) -> None:
    p = sub.add_parser("push", help="roll a policy out to hosts in batches (canary first), verified, rolled back",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    p.add_argument("policy", metavar="POLICY")
    p.add_argument("--name", required=True, help="sandbox name (the policy becomes DIR/NAME.yaml on each host)")
    _common(p)
    p.add_argument("--serial", default="1,10%,50%,100%", help="batch sizes: counts or percentages, the last repeats")
    p.add_argument("--max-fail", default="0", metavar="N", help="failed hosts tolerated (count or N%%), default 0")
    p.add_argument("--check", action="store_true", help="print each host's diff, change nothing")
    p.add_argument("--no-verify", action="store_true", help="do not wait for the gateways (first deployment)")
    p.add_argument("--timeout", type=float, default=20.0, help="per host: seconds to wait for the gateway")
    p.add_argument("--operator", help="recorded in each host's ledger (default: $SUDO_USER or the login user)")
    p.add_argument("--source-commit", metavar="SHA", help="default: git HEAD of the repository holding POLICY")
    p.add_argument("--group", default="clawfleet", help="group of the policy file on the hosts")
    p.add_argument(
        "--staging-dir",
        default=DEFAULT_STAGING,
        metavar="DIR",
        help="a policy too large to go in the command (over 64 KiB) is uploaded here, applied from there and removed",
    )
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("status", help="per host and sandbox: policy file vs enforced digest (drift)")
    _common(p)
    p.add_argument("--expect", action="append", metavar="NAME=FILE", help="sandbox NAME should run FILE's policy")
    p.set_defaults(func=_cmd_status)
