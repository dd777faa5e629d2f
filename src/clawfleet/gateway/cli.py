"""``clawfleet gateway proxy``: a stand-alone gateway listening in the host's own namespace (development and
benchmarks; callers are identified among all host processes). The supervisor adds the other ``gateway``
subcommands (serve, sandbox, check, run); :mod:`clawfleet.cli` composes the tree."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register_gateway"]


def register_gateway(sub) -> None:
    """Add ``proxy`` to the ``clawfleet gateway`` subparsers."""
    proxy = sub.add_parser("proxy", help="a stand-alone gateway on HOST:PORT in this network namespace")
    proxy.add_argument("--policy", required=True, metavar="FILE")
    proxy.add_argument("--listen", default="127.0.0.1:3128", metavar="HOST:PORT")
    proxy.add_argument("--mode", choices=("enforce", "monitor"), default="enforce")
    proxy.add_argument("--log", metavar="FILE", help="decision log (default: stderr)")
    proxy.add_argument("--extra-ca", metavar="FILE", help="extra CA file trusted for upstream TLS")
    proxy.add_argument("--ca-out", metavar="FILE", help="write the interception CA certificate here")
    proxy.add_argument("--static-host", action="append", default=[], metavar="NAME=IP")
    proxy.set_defaults(func=_proxy)


def _proxy(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import socket

    from clawfleet.policy import PolicyError

    from .addr import parse_authority
    from .assembly import assemble
    from .config import GatewayConfig
    from .ident import Identifier

    static = dict(item.split("=", 1) for item in args.static_host)
    config = GatewayConfig(policy=args.policy, mode=args.mode, log=args.log, extra_ca_file=args.extra_ca,
                           static_hosts=static, sandbox="host")  # fmt: skip
    identifier = Identifier(netns_pid=None, stop_at_ns_init=False)
    try:
        parts = assemble(config, identify=identifier.identify_async)
    except PolicyError as exc:
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    if args.ca_out:
        with open(args.ca_out, "wb") as f:
            f.write(parts.ca.cert_pem)
    where = parse_authority(args.listen)

    async def main() -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in where.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where.host, where.port))
        sock.listen(1024)
        await parts.gateway.serve_socket(sock)
        print(f"clawfleet gateway: listening on {where.authority}", file=sys.stderr, flush=True)
        await parts.holder.watch(config.reload_interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
