"""`clawfleet sandbox list|status|logs|connect|stop`: the client side of the supervisor's control socket
(protocol: :mod:`clawfleet.control_protocol`).

Registering these subcommands costs no imports: `clawfleet sandbox run` shares the parser and its start time
counts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clawfleet.paths import CONTROL_SOCKET

__all__ = ["client_command", "connect_command", "register_control_subcommands"]


def register_control_subcommands(sub: Any) -> None:
    """Add ``list``, ``status``, ``logs``, ``connect``, ``stop`` to the ``clawfleet sandbox`` subparsers."""
    for name, help_text in (("list", "sandboxes the gateway daemon runs"), ("status", "one sandbox's state"),
                            ("logs", "a sandbox's output"), ("connect", "run a command inside a running sandbox"),
                            ("stop", "stop a sandbox")):  # fmt: skip
        p = sub.add_parser(name, help=help_text)
        if name != "list":
            p.add_argument("name", metavar="NAME")
        if name == "connect":
            p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD", help="options go before NAME")
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true")
            p.add_argument("--lines", "-n", type=int, default=100)
        p.add_argument("--socket", default=CONTROL_SOCKET, help=f"control socket (default {CONTROL_SOCKET})")
        p.set_defaults(func=connect_command if name == "connect" else client_command)


def client_command(args: argparse.Namespace) -> int:
    import json

    from clawfleet.control_protocol import request

    req: dict[str, Any] = {"cmd": args.sandbox_command}
    if getattr(args, "name", None):
        req["name"] = args.name
    if args.sandbox_command == "logs":
        req.update(follow=args.follow, lines=args.lines)
    try:
        for answer in request(req, args.socket):
            if isinstance(answer, dict) and "error" in answer:
                print(f"clawfleet sandbox: {answer['error']}", file=sys.stderr)
                return 1
            if args.sandbox_command == "logs":
                print(answer["line"])
            elif args.sandbox_command == "list":
                for s in answer:
                    print(f"{s['name']:<20} {s['state']:<8} pid={s['pid']} exit={s['exit_code']}")
            else:
                print(json.dumps(answer, indent=1))
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"clawfleet sandbox: no gateway daemon at {args.socket}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def connect_command(args: argparse.Namespace) -> int:
    """Run a command inside a running sandbox: its namespaces, user and confinement (:mod:`clawfleet.sandbox.join`)."""
    import dataclasses
    import os

    from clawfleet.control_protocol import request
    from clawfleet.sandbox.definition import load_definition
    from clawfleet.sandbox.join import command_process, environ, join
    from clawfleet.sandbox.launcher import SetupError

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        status = next(request({"cmd": "status", "name": args.name}, args.socket))
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"clawfleet sandbox: no gateway daemon at {args.socket}", file=sys.stderr)
        return 1
    if "error" in status or status.get("state") != "running":
        print(f"clawfleet sandbox connect: {status.get('error') or args.name + ' is not running'}", file=sys.stderr)
        return 1
    try:
        spec = load_definition(status["definition"]).to_spec({})
        target = command_process(status["pid"], spec.uid)
        if target is None:
            print(f"clawfleet sandbox connect: no process of {args.name} runs as uid {spec.uid}", file=sys.stderr)
            return 1
        ca_bundle = environ(target).get("SSL_CERT_FILE")
        if ca_bundle:  # the gateway's CA bundle directory, mounted read-only at the sandbox's own start
            spec = dataclasses.replace(spec, read_only=(*spec.read_only, os.path.dirname(ca_bundle)))
        return join(target, dataclasses.replace(spec, argv=tuple(argv or ["/bin/sh"])), display=os.environ)
    except SetupError as exc:
        print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
        return exc.code
    except (OSError, ValueError) as exc:
        print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
        return 1
