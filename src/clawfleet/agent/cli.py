"""`clawfleet agent install|config`: one implementation for operators and the roles."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("agent", help="install and configure the agent runtime (OpenClaw)")
    sub = parser.add_subparsers(dest="agent_command", metavar="SUBCOMMAND")
    sub.required = True

    install = sub.add_parser("install", help="install Node and the pinned OpenClaw under a prefix (idempotent)")
    install.add_argument("agent", choices=("openclaw",))
    install.add_argument("--version", help="refuse unless this is the pinned (or bundled) OpenClaw version")
    install.add_argument(
        "--prefix", required=True, metavar="DIR", help="install under DIR (e.g. /opt/clawfleet/openclaw)"
    )
    install.add_argument("--from", dest="bundle", metavar="BUNDLE_DIR",
                         help="install from this verified bundle, with no network (default: PyPI and npm)")  # fmt: skip
    install.add_argument("--digest", metavar="sha256:...", help="the bundle digest expected (with --from)")
    install.add_argument("--cache-dir", metavar="DIR", help="download cache without --from (~/.cache/clawfleet)")
    install.add_argument("--json", action="store_true", help="print the result as one JSON object")
    install.set_defaults(func=_install)

    config = sub.add_parser("config", help="write the agent's configuration for a sandbox home")
    config.add_argument("agent", choices=("openclaw",))
    config.add_argument("--home", required=True, metavar="HOSTDIR", help="the sandbox's workdir on the host")
    config.add_argument("--sandbox-home", default="/sandbox", metavar="PATH",
                        help="where the sandbox sees HOSTDIR (default: /sandbox)")  # fmt: skip
    config.add_argument("--owner", metavar="USER", help="the sandbox user, who must own the agent's state")
    config.add_argument("--base-url", required=True, metavar="URL", help="OpenAI-compatible endpoint, e.g. .../v1")
    config.add_argument("--model", required=True, metavar="NAME", help="the model name the endpoint serves")
    config.add_argument("--api-key-env", metavar="VAR",
                        help="the sandbox variable holding the API key (a gateway credential placeholder)")  # fmt: skip
    config.add_argument("--json", action="store_true", help="print the result as one JSON object")
    config.set_defaults(func=_config)


def _progress(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            print(f"clawfleet agent: {message}", file=sys.stderr, flush=True)

    return say


def _install(args: argparse.Namespace) -> int:
    from clawfleet.agent import AgentError
    from clawfleet.agent.install import install

    if args.digest and not args.bundle:
        print("clawfleet agent install: --digest needs --from BUNDLE_DIR", file=sys.stderr)
        return 2
    try:
        result = install(args.prefix, args.version, args.bundle, args.digest, args.cache_dir,
                         _progress(not args.json and sys.stderr.isatty()))  # fmt: skip
    except AgentError as exc:
        print(f"clawfleet agent install: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        state = "installed" if result.changed else "already installed, nothing changed"
        print(f"openclaw {result.version}: {state}; run it with {result.entry}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from clawfleet.agent import AgentError
    from clawfleet.agent.config import write_config

    try:
        written = write_config(args.home, args.base_url, args.model, args.sandbox_home, args.owner, args.api_key_env)
    except AgentError as exc:
        print(f"clawfleet agent config: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"agent": "openclaw", "config": str(written.path), "changed": written.changed}))
    else:
        print(f"{written.path}: {'written' if written.changed else 'unchanged'}")
    return 0
