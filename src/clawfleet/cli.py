"""The `clawfleet` command.

Each component registers its own subcommands (``register(subparsers)``) so the top level stays a thin
dispatcher. Only the component of the command being run is imported: `clawfleet sandbox run` starts agents,
and its start time should not pay for the router's or the gateway's imports. argparse is the standard
library's well-kept CLI parser: no extra dependency on hosts that install from an offline wheelhouse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clawfleet import __version__

# command -> modules exposing ``register(subparsers)``, in help order.
COMMANDS: dict[str, tuple[str, ...]] = {
    "policy": ("clawfleet.policy.cli",),
    "sandbox": ("clawfleet.sandbox.cli",),
    "host": ("clawfleet.host.cli",),
    "gpu": ("clawfleet.gpu.cli",),
    "bundle": ("clawfleet.bundle.cli",),
    "gateway": ("clawfleet.gateway.cli",),
    "router": ("clawfleet.router.cli",),
    "fleet": ("clawfleet.fleet.cli",),
    "agent": ("clawfleet.agent.cli",),
}


def _modules_for(argv: Sequence[str]) -> list[str]:
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        return list(COMMANDS[command])
    return [m for modules in COMMANDS.values() for m in modules]  # help, typos: show everything


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawfleet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"clawfleet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _modules_for(argv):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A component still being built is left out; a missing third-party dependency is a real error.
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
