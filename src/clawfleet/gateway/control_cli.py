"""`clawfleet sandbox list|status|logs|connect|stop`: the client side of the gateway daemon's control socket.

Kept apart from :mod:`clawfleet.gateway.control` so that registering these subcommands costs no imports:
`clawfleet sandbox run` shares the parser and its start time counts.
"""

from __future__ import annotations

import argparse

from clawfleet.paths import CONTROL_SOCKET as DEFAULT_SOCKET


def _client(args: argparse.Namespace) -> int:
    from clawfleet.gateway.control import _client as client

    return client(args)


def register_sandbox_subcommands(sub) -> None:
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
        p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})")
        p.set_defaults(func=_client)
