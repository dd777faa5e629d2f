"""``python3 -m clawfleet.gpu detect|plan``: runs on hosts that only received this package (no runtime yet)."""

import argparse
import sys

from clawfleet.gpu.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m clawfleet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gpu", *sys.argv[1:]])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
