#!/usr/bin/env python3
"""Point the runtime link (/opt/clawfleet/venv) at one digest's venv, atomically.

    venv-link.py --link LINK --target DIR [--legacy DIR] [--record FILE]

A new symlink is made beside LINK under a temporary name and renamed over it (rename(2), what `mv -T` does), so
every reader sees either the old venv or the new one, never a missing or half-written path. A LINK that is still a
real directory (a host installed before venvs were kept per digest) is first moved to --legacy and linked back at
once: its scripts name LINK in their #! line, so it keeps working as the rollback venv behind the link.

--record FILE keeps the venv LINK pointed at before a switch (the one a rollback goes back to, which pruning keeps);
a rollback itself passes no --record, so the failed venv never becomes "previous".

Prints {"changed", "previous", "current"}: previous is "" on a fresh host. Exit 0, or 1 with {"error"}.
Standard library only: it runs with the host's Python, whatever state the clawfleet runtime is in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _point(link: str, target: str) -> None:
    tmp = f"{link}.new-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise


def switch(link: str, target: str, legacy: str | None, record: str | None) -> dict[str, object]:
    target = os.path.abspath(target)
    if not os.path.isdir(target):
        raise OSError(f"{target}: no such venv")
    previous = ""
    if os.path.islink(link):
        previous = os.path.abspath(os.path.join(os.path.dirname(link), os.readlink(link)))
    elif os.path.isdir(link):
        if not legacy:
            raise OSError(f"{link} is a directory and no --legacy place was given for it")
        if os.path.lexists(legacy):
            raise OSError(f"{link} is a directory and {legacy} already exists")
        # The only moment LINK is missing: between this rename and the next (a unit starting just then fails and is
        # restarted by systemd; the ones running keep their open files).
        os.rename(link, legacy)
        _point(link, os.path.abspath(legacy))
        previous = os.path.abspath(legacy)
    elif os.path.lexists(link):
        raise OSError(f"{link} exists and is neither a symlink nor a directory")
    if previous == target:
        return {"changed": False, "previous": previous, "current": target}
    _point(link, target)
    if record and previous:
        tmp = f"{record}.new"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(previous + "\n")
        os.replace(tmp, record)
    return {"changed": True, "previous": previous, "current": target}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="venv-link.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--legacy", help="where a LINK that is still a real directory is moved to")
    parser.add_argument("--record", help="file that keeps the previous target of a switch")
    args = parser.parse_args(argv)
    try:
        result = switch(args.link, args.target, args.legacy, args.record)
    except OSError as exc:
        print(json.dumps({"changed": False, "error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
