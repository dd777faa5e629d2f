"""``python -m clawfleet.sandbox run ...``: the same command as ``clawfleet sandbox run``, without loading the
other components' command lines (a shorter start for supervisors that launch many sandboxes)."""

from __future__ import annotations

import argparse
import sys

from clawfleet.sandbox import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clawfleet.sandbox")
    cli.register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
