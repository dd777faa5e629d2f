#!/usr/bin/env python3
"""FAKE systemctl, for tests only: answers `systemctl show --property=LoadState --property=ActiveState UNIT` as
systemd would, from $FAKE_UNIT_LOAD (loaded, not-found, masked) and $FAKE_UNIT_ACTIVE (active, inactive, failed).
Every call is appended to $FAKE_SYSTEMCTL_LOG when set, so tests see what was asked."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    log = os.environ.get("FAKE_SYSTEMCTL_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(" ".join(argv) + "\n")
    if not argv or argv[0] != "show":
        print(f"fake systemctl: {argv[:1]} not faked", file=sys.stderr)
        return 1
    print(f"LoadState={os.environ.get('FAKE_UNIT_LOAD', 'not-found')}")
    print(f"ActiveState={os.environ.get('FAKE_UNIT_ACTIVE', 'inactive')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
