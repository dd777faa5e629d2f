"""``clawfleet policy profile`` and ``clawfleet policy bindings``: provider profiles and credential bindings
checked offline, as the gateway checks them at start (docs/policy.md, "Providers").

``profile FILE...``: validate provider profiles (upstream's ``openshell provider profile lint``); each valid one
prints its digest, ``--normalize`` its canonical form as JSON. ``bindings --policy FILE --provider NAME=PROFILE``:
refuse the policy's ``credential_binding`` entries that the given provider instances cannot serve. Exit 0 valid,
2 invalid (every problem on stderr as ``FILE:LINE:COL: path: message``).

:func:`effective_policy` gives ``policy check``, ``digest`` and ``normalize`` their ``--provider NAME=PROFILE``
option: the policy the gateway enforces with those providers (upstream's ``openshell policy get --full``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import PolicyError
from .loader import load_file
from .model import Policy
from .profiles import ProviderProfile, load_profile_file, normalize_profile, profile_digest
from .providers import check_bindings, compose_checked, instance_name_problem

__all__ = ["effective_policy", "load_provider_args", "register_profile_subcommands"]

EXIT_OK, EXIT_INVALID = 0, 2


def _cmd_profile(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        try:
            profile = load_profile_file(name)
        except PolicyError as exc:
            for p in exc.problems:
                print(p, file=sys.stderr)
            status = EXIT_INVALID
            continue
        if args.normalize:
            print(json.dumps(normalize_profile(profile), indent=2))
        else:
            print(f"{profile_digest(profile)}  {name}")
    return status


def load_provider_args(items: list[str] | None) -> dict[str, ProviderProfile]:
    """``--provider NAME=PROFILE_FILE`` options: provider instance name -> its profile. Raises ValueError for a
    malformed option or two names deriving one rule, PolicyError with every profile problem."""
    providers: dict[str, ProviderProfile] = {}
    problems = []
    for item in items or ():
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise ValueError(f"--provider {item!r}: expected NAME=PROFILE_FILE")
        problem = instance_name_problem(name, providers)
        if problem is not None:
            raise ValueError(f"--provider {item!r}: {problem}")
        try:
            providers[name] = load_profile_file(path)
        except PolicyError as exc:
            problems.extend(exc.problems)
    if problems:
        raise PolicyError(problems)
    return providers


def effective_policy(policy: Policy, items: list[str] | None) -> Policy:
    """``policy`` as a gateway with the ``--provider`` instances enforces it: its bindings checked, the providers'
    ``_provider_*`` rules added (upstream's effective policy; without ``--provider``: ``policy`` itself)."""
    providers = load_provider_args(items)
    if not providers:
        return policy
    return compose_checked(policy, providers)


def _cmd_bindings(args: argparse.Namespace) -> int:
    problems = []
    try:
        providers = load_provider_args(args.provider)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except PolicyError as exc:
        providers = {}
        problems.extend(exc.problems)
    try:
        policy = load_file(args.policy)
    except PolicyError as exc:
        problems.extend(exc.problems)
    else:
        problems.extend(check_bindings(policy, providers))
    for p in problems:
        print(p, file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


def register_profile_subcommands(sub: Any) -> None:
    p = sub.add_parser("profile", help="validate provider profiles (Providers v2) and print their digests")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--normalize", action="store_true", help="print each canonical form (JSON) instead")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("bindings", help="check a policy's credential_binding entries against provider instances")
    p.add_argument("--policy", required=True, metavar="FILE")
    p.add_argument("--provider", action="append", metavar="NAME=PROFILE", help="a provider instance (repeatable)")
    p.set_defaults(func=_cmd_bindings)
