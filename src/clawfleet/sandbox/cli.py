"""``clawfleet sandbox run``: the policy file and flags in, a SandboxSpec out, the launcher runs it.

The only module of the sandbox that reads a policy. Imports are deferred to the command itself so that
``clawfleet`` starts fast (the sandbox start time is a benchmarked figure).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawfleet.sandbox.spec import SandboxSpec

EXIT_SETUP = 125
#: Test knob: cap the Landlock ABI to simulate an older kernel. It can only lower protection, is read
#: from the supervisor's environment (never the sandbox's), and is announced on stderr when used.
MAX_ABI_VARIABLE = "CLAWFLEET_LANDLOCK_MAX_ABI"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sandbox", help="run a command in the kernel sandbox")
    sub = parser.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="run CMD in a new sandbox (foreground; exits with CMD's status, 125 if the sandbox fails)",
        description="Run CMD as the sandbox user in fresh namespaces under Landlock and seccomp.",
    )
    add_run_arguments(run)
    run.set_defaults(func=run_command)
    # list/status/logs/connect/stop talk to the gateway daemon's control socket.
    from clawfleet.gateway.control_cli import register_sandbox_subcommands

    register_sandbox_subcommands(sub)


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """The flags of `clawfleet sandbox run` (shared with its alias `clawfleet gateway run`)."""
    run.add_argument("--policy", required=True, metavar="FILE", help="OpenShell-compatible policy YAML")
    run.add_argument(
        "--workdir",
        default="/sandbox",
        metavar="DIR",
        help="host directory mounted read-write at /sandbox; CMD starts there (default /sandbox)",
    )
    run.add_argument("--user", metavar="NAME", help="sandbox user (default: the policy's process.run_as_user)")
    run.add_argument("--group", metavar="NAME", help="sandbox group (default: the policy's, else the user's)")
    run.add_argument("--mode", choices=("enforce", "monitor"), default="enforce",
                     help="gateway mode for network policy; kernel restrictions apply in both")  # fmt: skip
    run.add_argument("--log", metavar="FILE", help="append JSON records of the sandbox's start and exit")
    run.add_argument("--memory-max", metavar="BYTES", type=_size, help="memory limit (e.g. 4G)")
    run.add_argument("--pids-max", metavar="N", type=int, default=4096, help="process/thread limit (4096)")
    run.add_argument("--tmp-max", metavar="BYTES", type=_size, default=1 << 30, help="size of /tmp (1G)")
    run.add_argument("--env", metavar="NAME=VALUE", action="append", default=[], help="set a variable")
    run.add_argument("--credential", metavar="NAME", action="append", default=[],
                     help="set NAME to a placeholder the egress gateway resolves (never the real value)")  # fmt: skip
    run.add_argument("--gateway-config", metavar="FILE",
                     help="gateway settings: extra CA, secrets, static hosts, pins (docs/gateway.md)")  # fmt: skip
    run.add_argument("--gateway-log", metavar="FILE", help="append the gateway's JSON decision lines here")
    run.add_argument("--no-gateway", action="store_true",
                     help="no egress gateway: the sandbox has no network at all (no proxy, no hot reload)")  # fmt: skip
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...")


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def _fail(reason: str) -> int:
    print(f"clawfleet sandbox: {reason}", file=sys.stderr)
    return EXIT_SETUP


def build_spec(args: argparse.Namespace, environ: dict[str, str]) -> SandboxSpec:
    """Policy + flags -> SandboxSpec. Raises ValueError (PolicyError, SpecError) with a one-line reason."""
    from clawfleet.policy import load_file
    from clawfleet.sandbox import environment
    from clawfleet.sandbox.spec import SANDBOX_WORKDIR, SandboxSpec, resolve_user

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    policy = load_file(args.policy)
    fs = policy.filesystem
    read_write = tuple(fs.read_write)
    if fs.include_workdir and SANDBOX_WORKDIR not in read_write:
        read_write += (SANDBOX_WORKDIR,)
    user = args.user or policy.process.run_as_user or "sandbox"
    group = args.group or (None if args.user else policy.process.run_as_group)
    name, uid, gid = resolve_user(user, group)
    explicit = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env needs NAME=VALUE, got {item!r}")
        explicit[key] = value
    env = environment.build(environ, name, explicit=explicit, credentials=args.credential)
    max_abi = environ.get(MAX_ABI_VARIABLE)
    return SandboxSpec(
        argv=tuple(argv),
        workdir=os.path.abspath(args.workdir),
        uid=uid,
        gid=gid,
        user=name,
        read_only=tuple(fs.read_only),
        read_write=read_write,
        landlock_compat=policy.landlock.compatibility,
        landlock_max_abi=int(max_abi) if max_abi else None,
        memory_max=args.memory_max,
        pids_max=args.pids_max,
        tmp_max=args.tmp_max,
        env=env,
        mode=args.mode,
        log=args.log,
    )


def run_command(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError

    try:
        spec = build_spec(args, dict(os.environ))
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
        from clawfleet.gateway.config import ConfigError
        from clawfleet.gateway.embedded import config_from_args, run_sandbox

        try:
            gateway = config_from_args(args.policy, args.gateway_config, args.mode, args.gateway_log)
        except (ConfigError, OSError, ValueError) as exc:
            return _fail(f"gateway: {exc}")
        code, launcher = run_sandbox(spec, gateway)
    if launcher.report.error:
        print(f"clawfleet sandbox: {launcher.report.error}", file=sys.stderr)
    return code
