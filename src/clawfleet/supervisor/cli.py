"""The supervisor's commands: ``clawfleet sandbox run|list|status|logs|connect|forward|stop`` and
``clawfleet gateway serve|sandbox|check|run``. :mod:`clawfleet.cli` makes the ``sandbox`` and ``gateway``
parsers and calls :func:`register_sandbox` / :func:`register_gateway` (the gateway package adds ``proxy``).

Imports are deferred to the commands: `clawfleet sandbox run`'s start time is a benchmarked figure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register_gateway", "register_sandbox", "run_command"]


def register_sandbox(sub: Any) -> None:
    """``run`` (the sandbox with its gateway) and the control socket's client commands."""
    from clawfleet.sandbox.run_args import add_run_arguments

    from .control_client import register_control_subcommands

    run = sub.add_parser(
        "run",
        help="run CMD in a new sandbox (foreground; exits with CMD's status, 125 if the sandbox fails)",
        description="Run CMD as the sandbox user in fresh namespaces under Landlock and seccomp.",
    )
    add_run_arguments(run)
    run.set_defaults(func=run_command, exit_without_teardown=True)  # it closes its own files
    # list/status/logs/connect/stop talk to the gateway daemon's control socket.
    register_control_subcommands(sub)
    _register_forward(sub)


def _register_forward(sub: Any) -> None:
    from clawfleet.paths import CONTROL_SOCKET

    forward = sub.add_parser(
        "forward",
        help="expose one TCP port of a running sandbox on the host's loopback (for an SSH tunnel)",
        description="Listen on a host loopback address (127.0.0.0/8 or ::1 only) and relay each connection to "
        "127.0.0.1:PORT inside the sandbox's network namespace. Stops (exit 1) when the sandbox stops. "
        "From a laptop: ssh -L PORT:127.0.0.1:PORT HOST.",
    )
    forward.add_argument("name", metavar="NAME")
    forward.add_argument("port", metavar="PORT", help="the port a server listens on at 127.0.0.1 in the sandbox")
    forward.add_argument(
        "--listen",
        metavar="ADDR[:PORT]",
        help="host loopback address to listen on (default 127.0.0.1:PORT; 0: any free port)",
    )
    forward.add_argument("--max-connections", type=int, default=32, metavar="N",
                         help="connections relayed at once (default 32)")  # fmt: skip
    forward.add_argument("--json", action="store_true", help="print the listening address as one JSON line")
    forward.add_argument("--socket", default=CONTROL_SOCKET, help=f"control socket (default {CONTROL_SOCKET})")
    forward.set_defaults(func=_forward)


def _forward(args: argparse.Namespace) -> int:
    from .forward import forward_command

    return forward_command(args)


def register_gateway(sub: Any) -> None:
    """``serve`` (the daemon), ``sandbox`` (one sandbox of a daemon config), ``check``, ``reload`` and ``run``."""
    from clawfleet.paths import CONTROL_SOCKET
    from clawfleet.sandbox.run_args import add_run_arguments

    serve = sub.add_parser("serve", help="run the sandboxes of a daemon config, with a control socket")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.set_defaults(func=_serve)
    sandbox = sub.add_parser(
        "sandbox",
        help="run one sandbox of a daemon config; the daemon's gateway attaches to it (clawfleet-sandbox@NAME)",
        description="The sandbox keeps running when the gateway restarts: offline (fail closed) until it is back.",
    )
    sandbox.add_argument("--config", required=True, metavar="FILE", help="the gateway daemon config")
    sandbox.add_argument("name", metavar="NAME")
    sandbox.set_defaults(func=_sandbox)
    check = sub.add_parser(
        "check",
        help="validate a daemon config (and the sandbox definitions and policies it names) or one definition",
        description="Exit 2 on any problem; starts nothing. Usable as Ansible's `validate:` command.",
    )
    check.add_argument("--config", required=True, metavar="FILE", help="daemon config or sandbox definition file")
    check.set_defaults(func=_check)
    reload = sub.add_parser(
        "reload",
        help="make the running daemon read its config and definitions again (what SIGHUP does) and wait for it",
        description="Prints the outcome (--json: as one JSON object). Exit 0 when applied; 1 when the daemon kept "
        "its last good set (an invalid file, named with its line) or a daemon-wide setting needs a restart. "
        "The gateway unit's ExecReload, so `systemctl reload clawfleet-gateway` fails when the reload did.",
    )
    reload.add_argument("--socket", default=CONTROL_SOCKET, help=f"control socket (default {CONTROL_SOCKET})")
    reload.add_argument("--json", action="store_true", help="print the outcome as JSON")
    reload.set_defaults(func=_reload)
    run = sub.add_parser("run", help="the same as 'clawfleet sandbox run' (all traffic through the gateway)")
    add_run_arguments(run)
    run.set_defaults(func=run_command, exit_without_teardown=True)  # it closes its own files


def _fail(reason: str) -> int:
    from clawfleet.sandbox.run_args import EXIT_SETUP

    print(f"clawfleet sandbox: {reason}", file=sys.stderr)
    return EXIT_SETUP


def run_command(args: argparse.Namespace) -> int:
    """``clawfleet sandbox run``: the sandbox, and (unless ``--no-gateway``) its gateway in the same process."""
    import os

    from clawfleet.policy import PolicyError
    from clawfleet.policy.loader import load_file_and_stat
    from clawfleet.sandbox.run_args import MAX_ABI_VARIABLE, spec_from_args

    try:
        # Parsed once, for the sandbox and its gateway (the gateway's hot reload compares the file with this stat).
        loaded = load_file_and_stat(args.policy)
        spec = spec_from_args(args, dict(os.environ), policy=loaded[0])
    except (PolicyError, ValueError, OSError) as exc:  # SpecError and EnvError are ValueErrors
        lines = str(exc).splitlines() or [type(exc).__name__]
        return _fail(lines[0] + (f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""))
    if spec.landlock_max_abi is not None:
        print(f"clawfleet sandbox: WARNING: {MAX_ABI_VARIABLE}={spec.landlock_max_abi} caps the Landlock ABI",
              file=sys.stderr)  # fmt: skip
    if args.no_gateway:
        from clawfleet.sandbox.launcher import Launcher

        launcher = Launcher(spec)
        code = launcher.run()
    else:
        # The gateway is the sandbox's only door: its proxy listens inside the sandbox's network namespace.
        from clawfleet.gateway.config import ConfigError, config_from_args

        from .embedded import run_sandbox

        try:
            gateway = config_from_args(args.policy, args.gateway_config, args.mode, args.gateway_log)
        except (ConfigError, OSError, ValueError) as exc:
            return _fail(f"gateway: {exc}")
        code, launcher = run_sandbox(spec, gateway, policy=loaded)
    if launcher.report.error:
        print(f"clawfleet sandbox: {launcher.report.error}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from .daemon import Daemon

    try:
        daemon = Daemon(args.config)
    except (OSError, ValueError) as exc:
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    asyncio.run(daemon.serve())
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from clawfleet.sandbox.definition import load_definition

    from .attach import run_attached_sandbox
    from .config import load_daemon_config

    try:
        cfg = load_daemon_config(args.config)
        for path in cfg.sandboxes:
            if load_definition(path).name == args.name:
                return run_attached_sandbox(path, cfg.runtime_dir)
    except (OSError, ValueError) as exc:
        print(f"clawfleet gateway sandbox: {exc}", file=sys.stderr)
        return 2
    print(f"clawfleet gateway sandbox: {args.config} defines no sandbox named {args.name!r}", file=sys.stderr)
    return 2


def _reload(args: argparse.Namespace) -> int:
    import json

    from clawfleet.control_protocol import request

    try:
        outcome = next(request({"cmd": "reload"}, args.socket))
    except (FileNotFoundError, ConnectionRefusedError, StopIteration):
        print(f"clawfleet gateway: no gateway daemon at {args.socket}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(outcome))
    failed = outcome.get("event") != "reloaded"
    if failed:
        print(f"clawfleet gateway: reload failed, the last good set stays: {outcome.get('error')}", file=sys.stderr)
    elif outcome.get("restart_needed_for"):
        print(f"clawfleet gateway: reloaded, but {outcome['restart_needed_for']} changed: restart the daemon "
              "(systemctl restart clawfleet-gateway)", file=sys.stderr)  # fmt: skip
    elif not args.json:
        print(", ".join(f"{k}: {' '.join(outcome[k]) or '-'}" for k in ("added", "removed", "changed", "unchanged")))
    return 1 if failed or outcome.get("restart_needed_for") else 0


def _check(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError

    from .check import check_file

    try:
        names = check_file(args.config)
    except (OSError, ValueError, PolicyError) as exc:  # EnvError, ConfigError and DefinitionError are ValueErrors
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({', '.join(names) or 'no sandboxes'})")
    return 0
