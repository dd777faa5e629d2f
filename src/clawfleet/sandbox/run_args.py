"""The flags of ``clawfleet sandbox run`` (and its alias ``clawfleet gateway run``) and the SandboxSpec they make.

The command itself (which also starts the gateway) is the supervisor's: :mod:`clawfleet.supervisor.cli`.
Imports are deferred to the functions so that ``clawfleet`` starts fast (the sandbox start time is a benchmarked
figure).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clawfleet.policy.model import Policy
    from clawfleet.sandbox.spec import SandboxSpec

__all__ = ["EXIT_SETUP", "MAX_ABI_VARIABLE", "add_run_arguments", "size_arg", "spec_from_args"]

EXIT_SETUP = 125
#: Test knob: cap the Landlock ABI to simulate an older kernel. It can only lower protection, is read
#: from the supervisor's environment (never the sandbox's), and is announced on stderr when used.
MAX_ABI_VARIABLE = "CLAWFLEET_LANDLOCK_MAX_ABI"


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
    run.add_argument("--memory-max", metavar="BYTES", type=size_arg, help="memory limit (e.g. 4G)")
    run.add_argument("--pids-max", metavar="N", type=int, default=4096, help="process/thread limit (4096)")
    run.add_argument("--tmp-max", metavar="BYTES", type=size_arg, default=1 << 30, help="size of /tmp (1G)")
    run.add_argument("--env", metavar="NAME=VALUE", action="append", default=[], help="set a variable")
    run.add_argument("--credential", metavar="NAME", action="append", default=[],
                     help="set NAME to a placeholder the egress gateway resolves (never the real value)")  # fmt: skip
    run.add_argument("--gateway-config", metavar="FILE",
                     help="gateway settings: extra CA, secrets, static hosts, pins (docs/gateway.md)")  # fmt: skip
    run.add_argument("--gateway-log", metavar="FILE", help="append the gateway's JSON decision lines here")
    run.add_argument("--no-gateway", action="store_true",
                     help="no egress gateway: the sandbox has no network at all (no proxy, no hot reload)")  # fmt: skip
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...")


def size_arg(text: str) -> int:
    """argparse ``type=``: a size (``4G``) in bytes."""
    from clawfleet.sandbox.spec import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def spec_from_args(args: argparse.Namespace, environ: Mapping[str, str], policy: Policy | None = None) -> SandboxSpec:
    """Policy + flags -> SandboxSpec. Raises ValueError (PolicyError, SpecError) with a one-line reason.
    ``policy``: ``args.policy`` already loaded by the caller (which hands the same parse to the gateway)."""
    from clawfleet.sandbox.from_policy import spec_from_policy

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if policy is None:
        from clawfleet.policy import load_file

        policy = load_file(args.policy)
    explicit = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env needs NAME=VALUE, got {item!r}")
        explicit[key] = value
    max_abi = environ.get(MAX_ABI_VARIABLE)
    return spec_from_policy(
        policy,
        argv=argv,
        workdir=os.path.abspath(args.workdir),
        environ=environ,
        user=args.user,
        group=args.group or (None if args.user else policy.process.run_as_group),
        explicit_env=explicit,
        credentials=args.credential,
        memory_max=args.memory_max,
        pids_max=args.pids_max,
        tmp_max=args.tmp_max,
        landlock_max_abi=int(max_abi) if max_abi else None,
        mode=args.mode,
        log=args.log,
    )
