"""``clawfleet gateway ...``: ``serve`` (the daemon running defined sandboxes) and ``proxy`` (a stand-alone
gateway listening in the host's own namespace: development and benchmarks; callers are identified among
all host processes)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers) -> None:
    parser = subparsers.add_parser("gateway", help="egress gateway: the sandbox's only way out")
    sub = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND")
    sub.required = True
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
    run = sub.add_parser("run", help="the same as 'clawfleet sandbox run' (all traffic through the gateway)")
    from clawfleet.sandbox.cli import add_run_arguments, run_command

    add_run_arguments(run)
    run.set_defaults(func=run_command)
    proxy = sub.add_parser("proxy", help="a stand-alone gateway on HOST:PORT in this network namespace")
    proxy.add_argument("--policy", required=True, metavar="FILE")
    proxy.add_argument("--listen", default="127.0.0.1:3128", metavar="HOST:PORT")
    proxy.add_argument("--mode", choices=("enforce", "monitor"), default="enforce")
    proxy.add_argument("--log", metavar="FILE", help="decision log (default: stderr)")
    proxy.add_argument("--extra-ca", metavar="FILE", help="extra CA file trusted for upstream TLS")
    proxy.add_argument("--ca-out", metavar="FILE", help="write the interception CA certificate here")
    proxy.add_argument("--static-host", action="append", default=[], metavar="NAME=IP")
    proxy.set_defaults(func=_proxy)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from .control import Daemon

    try:
        daemon = Daemon(args.config)
    except (OSError, ValueError) as exc:
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    asyncio.run(daemon.serve())
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    import os

    from .attach import DEFAULT_RUNTIME_DIR, run_attached_sandbox
    from .control import _load_yaml, load_definition

    try:
        cfg = _load_yaml(args.config)
        base = os.path.dirname(os.path.abspath(args.config))
        for item in cfg.get("sandboxes") or []:
            path = os.path.join(base, item)
            if load_definition(path)["name"] == args.name:
                return run_attached_sandbox(path, os.path.join(base, cfg.get("runtime_dir", DEFAULT_RUNTIME_DIR)))
    except (OSError, ValueError) as exc:
        print(f"clawfleet gateway sandbox: {exc}", file=sys.stderr)
        return 2
    print(f"clawfleet gateway sandbox: {args.config} defines no sandbox named {args.name!r}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError
    from clawfleet.sandbox.environment import EnvError

    from .control import check_file

    try:
        names = check_file(args.config)
    except (OSError, ValueError, PolicyError, EnvError) as exc:
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({', '.join(names) or 'no sandboxes'})")
    return 0


def _proxy(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import socket

    from clawfleet.policy import PolicyError

    from .addr import parse_authority
    from .ca import SandboxCA
    from .config import DecisionLog, GatewayConfig
    from .ident import Identifier
    from .proxy import Gateway
    from .reload import PolicyHolder

    static = dict(item.split("=", 1) for item in args.static_host)
    config = GatewayConfig(policy=args.policy, mode=args.mode, log=args.log, extra_ca_file=args.extra_ca,
                           static_hosts=static, sandbox="host")  # fmt: skip
    log = DecisionLog(config.log, sandbox=config.sandbox)
    try:
        holder = PolicyHolder(config.policy, log)
    except PolicyError as exc:
        print(f"clawfleet gateway: {exc}", file=sys.stderr)
        return 2
    ca = SandboxCA("host")
    if args.ca_out:
        with open(args.ca_out, "wb") as f:
            f.write(ca.cert_pem)
    where = parse_authority(args.listen)
    identifier = Identifier(netns_pid=None, stop_at_ns_init=False)
    gateway = Gateway(config, holder, log, identifier.identify_async, ca)

    async def main() -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in where.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where.host, where.port))
        sock.listen(1024)
        await gateway.serve_socket(sock)
        print(f"clawfleet gateway: listening on {where.authority}", file=sys.stderr, flush=True)
        await holder.watch(config.reload_interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
