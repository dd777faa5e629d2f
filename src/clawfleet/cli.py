"""The `clawfleet` command.

Each component registers its own subcommands (``register(subparsers)``) so the
top level stays a thin dispatcher and components can be read on their own.
argparse is the standard library's well-kept CLI parser: no extra dependency
on hosts that install from an offline wheelhouse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clawfleet import __version__

# Modules that expose ``register(subparsers)``; a missing one is skipped so the
# CLI keeps working while a component is being built.
_COMPONENTS = (
    "clawfleet.policy.cli",
    "clawfleet.sandbox.cli",
    "clawfleet.host.cli",
    "clawfleet.gpu.cli",
    "clawfleet.bundle.cli",
    "clawfleet.gateway.cli",
    "clawfleet.router.cli",
    "clawfleet.fleet.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawfleet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"clawfleet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMPONENTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
