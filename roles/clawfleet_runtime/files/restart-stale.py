#!/usr/bin/env python3
"""Restart the clawfleet services that still run code from before the runtime link last changed.

    restart-stale.py [--check] [--timeout SECONDS] --since LINK GROUP [GROUP ...]

A GROUP is a unit name or a systemctl pattern (``clawfleet-sandbox@*.service``). Groups are handled in the order
given (router, then gateway, then sandboxes): a gateway must not come up against a router that still runs the old
code, and a sandbox talks to its gateway. Within a group, every active unit whose start (ActiveEnterTimestampMonotonic)
is older than LINK's own mtime (the symlink, not its target) is restarted and waited for until it is active again;
so is a failed or auto-restarting unit (its last start is older too). Units stopped on purpose (inactive) are left
alone: they pick up the new code when they next start.

Prints one JSON object: {"changed", "restarted", "current", "failed"?, "error"?}. Exit 0 on success, 1 when a unit
did not come back (the caller rolls the link back and runs this again), 2 on bad usage.

Standard library only: it runs with the host's Python before and after the clawfleet runtime changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _systemctl(*args: str) -> str:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"systemctl {' '.join(args)}: exit {proc.returncode}: {detail}")
    return proc.stdout


def active_units(pattern: str) -> list[str]:
    # Failed and auto-restarting units too: after a rollback, a gateway that failed on the new code must come back
    # on the old one. A unit stopped on purpose (inactive) stays stopped.
    states = "--state=active,activating,failed"
    out = _systemctl("list-units", "--type=service", states, "--plain", "--no-legend", "--no-pager", pattern)
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def started_monotonic_usec(unit: str) -> int:
    value = _systemctl("show", "--property=ActiveEnterTimestampMonotonic", "--value", unit).strip()
    return int(value or 0)


def link_changed_monotonic_usec(link: str) -> int:
    """The link's mtime on the monotonic clock systemd stamps units with (immune to wall-clock steps after it)."""
    mtime = os.lstat(link).st_mtime
    return int((mtime - time.time() + time.monotonic()) * 1_000_000)


def wait_active(unit: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while True:
        proc = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, check=False)
        state = proc.stdout.strip()
        if state == "active":
            return state
        if state == "failed" or time.monotonic() >= deadline:
            return state or "unknown"
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="restart-stale.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--since", required=True, metavar="LINK", help="the runtime symlink whose mtime is the cut")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each unit to be active")
    parser.add_argument("--check", action="store_true", help="only report what would be restarted")
    parser.add_argument("groups", nargs="+", metavar="GROUP")
    args = parser.parse_args(argv)
    report: dict[str, object] = {"changed": False, "restarted": [], "current": []}
    restarted: list[str] = report["restarted"]  # type: ignore[assignment]
    current: list[str] = report["current"]  # type: ignore[assignment]
    try:
        cut = link_changed_monotonic_usec(args.since)
    except OSError as exc:
        report["error"] = f"{args.since}: {exc.strerror}"
        print(json.dumps(report))
        return 2
    unit = ""
    try:
        for group in args.groups:
            for unit in active_units(group):
                if started_monotonic_usec(unit) >= cut:
                    current.append(unit)
                    continue
                restarted.append(unit)
                report["changed"] = True
                if args.check:
                    continue
                _systemctl("restart", unit)
                state = wait_active(unit, args.timeout)
                if state != "active":
                    raise RuntimeError(f"{unit} is {state} after the restart")
    except RuntimeError as exc:
        report["failed"] = unit
        report["error"] = str(exc)
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
