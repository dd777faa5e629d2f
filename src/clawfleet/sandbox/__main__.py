"""``python -m clawfleet.sandbox run ...``: the same command as ``clawfleet sandbox run`` (an entry point, like
:mod:`clawfleet.cli`, which it calls: only the ``sandbox`` command's modules are loaded)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from clawfleet.cli import main as clawfleet

    return clawfleet(["sandbox", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    from clawfleet.cli import entry  # the script's exit (see clawfleet.cli.exit_without_teardown)

    sys.exit(entry(["sandbox", *sys.argv[1:]]))
