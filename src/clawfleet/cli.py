"""The `clawfleet` command.

This module alone composes the command tree. A package that owns a whole command offers ``register(subparsers)``;
the ``sandbox`` and ``gateway`` commands are shared (the supervisor runs sandboxes with their gateways, the gateway
package adds its stand-alone proxy), so they are made here and each package adds its subcommands with
``register_<command>(subparsers)``. Only the components of the command being run are imported: `clawfleet sandbox
run` starts agents, and its start time should not pay for the router's imports. argparse is the standard library's
well-kept CLI parser: no extra dependency on hosts that install from an offline wheelhouse.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
from collections.abc import Sequence

from clawfleet import __version__

# command -> modules exposing ``register(subparsers)``, in help order.
COMMANDS: dict[str, tuple[str, ...]] = {
    "policy": ("clawfleet.policy.cli",),
    "sandbox": ("clawfleet.supervisor.cli",),
    "host": ("clawfleet.host.cli",),
    "gpu": ("clawfleet.gpu.cli",),
    "bundle": ("clawfleet.bundle.cli",),
    "gateway": ("clawfleet.supervisor.cli", "clawfleet.gateway.cli"),
    "router": ("clawfleet.router.cli",),
    "fleet": ("clawfleet.fleet.cli",),
    "agent": ("clawfleet.agent.cli",),
}

# Shared commands: made here; each module of COMMANDS[name] offers ``register_<name>(subparsers)``.
SHARED: dict[str, dict[str, str]] = {
    "sandbox": {"help": "run a command in the kernel sandbox"},
    "gateway": {"help": "egress gateway: the sandbox's only way out"},
}


def _commands_for(argv: Sequence[str]) -> list[str]:
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        return [command]
    return list(COMMANDS)  # help, typos: show everything


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # A component still being built is left out; a missing third-party dependency is a real error.
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawfleet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"clawfleet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in _commands_for(argv):
        modules = [m for m in map(_import, COMMANDS[command]) if m is not None]
        if command not in SHARED:
            for module in modules:
                module.register(subparsers)
            continue
        if not modules:
            continue
        shared = subparsers.add_parser(command, **SHARED[command])
        sub = shared.add_subparsers(dest=f"{command}_command", metavar="SUBCOMMAND")
        sub.required = True
        for module in modules:
            getattr(module, f"register_{command}")(sub)
    return parser


def _run(argv: Sequence[str] | None) -> tuple[int, argparse.Namespace]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0), args


def main(argv: Sequence[str] | None = None) -> int:
    return _run(argv)[0]


def entry(argv: Sequence[str] | None = None) -> int:
    """The ``clawfleet`` script: :func:`main`, then, for a command that asks for it (``exit_without_teardown``
    among its parser defaults: ``sandbox run``), leave without tearing the interpreter down."""
    code, args = _run(argv)
    if getattr(args, "exit_without_teardown", False):
        exit_without_teardown(code)
    return code


def exit_without_teardown(code: int) -> None:
    """Exit now: atexit handlers run and the standard streams are flushed, but the ~350 loaded modules are not
    torn down one by one, which took ~40 ms of every `clawfleet sandbox run` after its sandbox had exited. Only for
    commands that close their own files (an unclosed file's buffer would be lost); with another thread still
    running, which a normal exit waits for, it returns and the caller exits the normal way."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            code = code or 120  # what the interpreter's own exit does when a standard stream cannot be flushed
    os._exit(code)


if __name__ == "__main__":
    sys.exit(entry())
