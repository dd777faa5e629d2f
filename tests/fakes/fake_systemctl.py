#!/usr/bin/env python3
"""FAKE systemctl, for tests only: the few verbs restart-stale.py uses, over a JSON state file.

State ($FAKE_SYSTEMCTL_STATE): {"units": {NAME: {"active": bool, "started": USEC, "fail": "" | "restart" |
"start", "failed": bool}}, "log": [...]}; a unit neither active nor failed is stopped (inactive). "started" is
ActiveEnterTimestampMonotonic (CLOCK_MONOTONIC, usec), as systemd reports it. fail="restart": `restart` exits 1 and
the unit is failed; fail="start": `restart` exits 0 but the unit fails right after (is-active says "failed").
Every restart is appended to "log", so tests see the order.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    path = os.environ["FAKE_SYSTEMCTL_STATE"]
    with open(path, encoding="utf-8") as fh:
        state = json.load(fh)
    units = state["units"]
    verb = argv[0]
    rc = 0
    if verb == "list-units":
        pattern = argv[-1]
        for name in sorted(units):
            unit = units[name]
            if fnmatch.fnmatchcase(name, pattern) and (unit["active"] or unit.get("failed")):
                shown = "active running" if unit["active"] else "failed failed"
                print(f"{name} loaded {shown} fake unit")
    elif verb == "show":
        print(units[argv[-1]]["started"])
    elif verb == "is-active":
        unit = units.get(argv[-1])
        print("active" if unit and unit["active"] else "failed")
        rc = 0 if unit and unit["active"] else 3
    elif verb == "restart":
        name = argv[-1]
        state["log"].append(f"restart {name}")
        unit = units[name]
        unit["started"] = int(time.monotonic() * 1_000_000)
        unit["active"] = unit.get("fail", "") == ""
        unit["failed"] = not unit["active"]
        if unit.get("fail") == "restart":
            print(f"Job for {name} failed.", file=sys.stderr)
            rc = 1
    else:
        print(f"fake systemctl: unsupported verb {verb}", file=sys.stderr)
        rc = 2
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
