"""``python3 -m clawfleet.host check``: the preflight role runs this on hosts that have no runtime yet."""

import argparse
import sys

from clawfleet.host.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m clawfleet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["host", *sys.argv[1:]])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
