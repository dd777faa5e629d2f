"""``clawfleet policy ...``: validate, check, merge, diff, digest, normalize, schema (provider profiles and
credential bindings: :mod:`.profile_cli`).

``check``, ``digest`` and ``normalize`` take ``--provider NAME=PROFILE`` (repeatable): the policy then is the
effective one a gateway with those provider instances enforces (its ``_provider_*`` rules composed in).

Exit codes: 0 success (``check``: allow or audit; ``diff``: no change), 1 ``check``
deny or ``diff`` found changes, 2 invalid input (every problem printed on stderr as
``FILE:LINE:COL: path: message``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clawfleet.atomicfile import write_atomic

from .canonical import digest, normalize
from .differ import diff
from .engine import compile_policy
from .errors import PolicyError, Problem
from .json_schema import JSON_SCHEMA
from .loader import load_any_file, load_file
from .matching import normalize_request_host
from .merging import merge
from .model import Policy, Preset
from .profile_cli import effective_policy
from .yamlio import dump_yaml

__all__ = ["register"]

EXIT_OK = 0
EXIT_DENY = 1
EXIT_INVALID = 2

_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def _print_problems(problems: Sequence[Problem]) -> None:
    for p in problems:
        print(p, file=sys.stderr)


def _warn(obj: Policy | Preset, quiet: bool) -> None:
    if not quiet:
        _print_problems(obj.warnings)


def _write(text: str, out: str | None) -> None:
    if out in (None, "-"):
        sys.stdout.write(text)
        return
    assert out is not None
    write_atomic(out, text, 0o644)


def _cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        try:
            obj = load_any_file(name)
        except PolicyError as exc:
            _print_problems(exc.problems)
            status = EXIT_INVALID
            continue
        _warn(obj, args.quiet)
        kind = "preset" if isinstance(obj, Preset) else "policy"
        if not args.quiet:
            print(f"{name}: ok ({kind}, {len(obj.network_policies)} network rules, {digest(obj)})")
    return status


def _load_merged(policy: str, presets: Sequence[str], quiet: bool) -> Policy:
    base = load_file(policy)
    _warn(base, quiet)
    overlays = []
    for name in presets:
        obj = load_any_file(name)
        _warn(obj, quiet)
        overlays.append(obj)
    merged, _report = merge(base, overlays)
    return merged


def _check_request_args(args: argparse.Namespace) -> str:
    """Why the request described on the command line is malformed ('' when it is fine)."""
    if not 0 < args.port < 65536:
        return f"--port must be 1..65535, got {args.port}"
    if normalize_request_host(args.host) is None:
        return f"--host {args.host!r} is not a host name or IP address"
    if args.method is not None and not _METHOD.match(args.method):
        return f"--method {args.method!r} is not an HTTP method"
    if args.method is None and (args.path is not None or args.query is not None):
        return "--path/--query need --method (an L7 check)"
    if args.path is not None and not args.path.startswith("/"):
        return f"--path must start with '/', got {args.path!r}"
    if args.resolved_ip is not None:
        try:
            ipaddress.ip_address(args.resolved_ip)
        except ValueError:
            return f"--resolved-ip {args.resolved_ip!r} is not an IP address"
    return ""


def _cmd_check(args: argparse.Namespace) -> int:
    invalid = _check_request_args(args)
    if invalid:
        print(f"clawfleet policy check: {invalid}", file=sys.stderr)
        return EXIT_INVALID
    try:
        policy = effective_policy(_load_merged(args.policy, args.preset or (), quiet=True), args.provider)
    except PolicyError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
    except ValueError as exc:
        print(f"clawfleet policy check: {exc}", file=sys.stderr)
        return EXIT_INVALID
    body = b"" if args.method else None  # a request without --body has an empty body
    if args.body is not None:
        try:
            body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
        except OSError as exc:
            print(f"clawfleet policy check: --body: {exc}", file=sys.stderr)
            return EXIT_INVALID
    engine = compile_policy(policy)
    decision = engine.decide(
        args.binary,
        tuple(args.ancestor or ()),
        args.host,
        args.port,
        method=args.method,
        path=args.path,
        query=args.query,
        resolved_ip=args.resolved_ip,
        body=body,
        content_type=args.content_type,
    )
    if args.json:
        print(json.dumps(decision.to_dict()))
    else:
        print(f"{decision.decision.upper()} policy={decision.policy_key or '-'} reason: {decision.reason}")
    return EXIT_OK if decision.allowed else EXIT_DENY


def _cmd_merge(args: argparse.Namespace) -> int:
    try:
        base = load_file(args.base)
        overlays = [load_any_file(name) for name in args.presets]
    except PolicyError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
    merged, report = merge(base, overlays)
    if not args.quiet:
        for entry in report.entries:
            print(f"merge: {entry.render()}", file=sys.stderr)
    header = f"Merged by clawfleet policy merge from {', '.join([args.base, *args.presets])}.\ndigest: {digest(merged)}"
    _write(dump_yaml(normalize(merged), header=header), args.output)
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    try:
        old = load_any_file(args.old)
        new = load_any_file(args.new)
    except PolicyError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
    result = diff(old, new)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.render())
    return EXIT_DENY if result.changed else EXIT_OK


def _load_effective(name: str, providers: list[str] | None) -> Policy | Preset:
    """A policy or preset file; with ``--provider``: the effective policy (PolicyError/ValueError)."""
    obj = load_any_file(name)
    if not providers:
        return obj
    if not isinstance(obj, Policy):
        raise ValueError(f"{name}: --provider composes a policy, not a preset")
    return effective_policy(obj, providers)


def _cmd_digest(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        try:
            obj = _load_effective(name, args.provider)
        except PolicyError as exc:
            _print_problems(exc.problems)
            status = EXIT_INVALID
            continue
        except ValueError as exc:
            print(f"clawfleet policy digest: {exc}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        print(digest(obj) if len(args.files) == 1 else f"{digest(obj)}  {name}")
    return status


def _cmd_normalize(args: argparse.Namespace) -> int:
    try:
        obj = _load_effective(args.file, args.provider)
    except PolicyError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
    except ValueError as exc:
        print(f"clawfleet policy normalize: {exc}", file=sys.stderr)
        return EXIT_INVALID
    data: Any = normalize(obj)
    if args.json:
        _write(json.dumps(data, indent=2) + "\n", args.output)
    else:
        _write(dump_yaml(data, header=f"Canonical form of {args.file}\ndigest: {digest(obj)}"), args.output)
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(JSON_SCHEMA, indent=2))
    return EXIT_OK


def _provider_option(p: argparse.ArgumentParser) -> None:
    help_text = "a provider instance of the gateway (repeatable): its profile's rules are composed in"
    p.add_argument("--provider", action="append", metavar="NAME=PROFILE", help=help_text)


def register(subparsers: Any) -> None:
    """Add ``policy`` and its subcommands to the top-level ``clawfleet`` parser."""
    parser = subparsers.add_parser(
        "policy",
        help="validate, merge, diff, digest and test sandbox network policies",
        description="OpenShell-compatible sandbox policies: validate, merge, diff, digest, check decisions.",
    )
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    sub.required = True
    # pending/approve/suggest work on the gateway's decision log.
    from .approvals import register_policy_subcommands

    register_policy_subcommands(sub)
    # apply/status/ledger: fleet rollouts on a host (docs/fleet.md).
    from .apply import register_apply_subcommands

    register_apply_subcommands(sub)
    # profile/bindings: Providers v2 (docs/policy.md, Providers).
    from .profile_cli import register_profile_subcommands

    register_profile_subcommands(sub)

    p = sub.add_parser("validate", help="validate policy or preset files (exit 2 on any problem)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid files, no warnings")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("check", help="decide one connection or request against a policy")
    p.add_argument("--policy", required=True, metavar="FILE")
    p.add_argument("--preset", action="append", metavar="FILE", help="merge this preset first (repeatable)")
    p.add_argument("--binary", required=True, metavar="PATH", help="executable of the calling process")
    p.add_argument("--ancestor", action="append", metavar="PATH", help="an ancestor's executable (repeatable)")
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--method", help="HTTP method (L7 check); omit for a connection-level (L4) check")
    p.add_argument("--path", help="request path, may include ?query")
    p.add_argument("--query", help="query string (a=1&b=2)")
    p.add_argument("--resolved-ip", metavar="IP", help="address the host resolved to (SSRF checks)")
    p.add_argument("--body", metavar="FILE", help="request body for endpoints with body selectors ('-': stdin)")
    p.add_argument("--content-type", metavar="TYPE", help="the request's Content-Type (GraphQL bodies)")
    p.add_argument("--json", action="store_true", help='print {"decision", "policy", "reason"}')
    _provider_option(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("merge", help="merge presets into a base policy (later wins, overrides reported)")
    p.add_argument("base", metavar="BASE")
    p.add_argument("presets", nargs="*", metavar="PRESET")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the merge report")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("diff", help="compare two policies (exit 1 when they differ)")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser("digest", help="print sha256 of the canonical form")
    p.add_argument("files", nargs="+", metavar="FILE")
    _provider_option(p)
    p.set_defaults(func=_cmd_digest)

    p = sub.add_parser("normalize", help="print the canonical form")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT")
    p.add_argument("--json", action="store_true")
    _provider_option(p)
    p.set_defaults(func=_cmd_normalize)

    p = sub.add_parser("schema", help="print the JSON Schema of policy files (for editors)")
    p.set_defaults(func=_cmd_schema)
