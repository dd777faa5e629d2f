"""`clawfleet router serve` and `clawfleet router classify`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any

from clawfleet.router.config import ConfigError, RouterConfig, default_config, load_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "router",
        help="privacy router: sensitive model requests stay on local models",
        description="Privacy router for model API calls (OpenAI and Anthropic APIs).",
    )
    sub = parser.add_subparsers(dest="router_command", metavar="SUBCOMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the router HTTP service")
    serve.add_argument("--config", required=True, metavar="FILE", help="router YAML config")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser(
        "check",
        help="validate a router config without starting the service (exit 2 on any problem)",
        description="Loads and validates a router config like `serve` does, but does not read provider secrets "
        "(credentials only exist inside the systemd unit): usable as Ansible's `validate:` command.",
    )
    check.add_argument("--config", required=True, metavar="FILE", help="router YAML config")
    check.set_defaults(func=cmd_check)

    classify = sub.add_parser(
        "classify",
        help="classify text or a whole OpenAI/Anthropic request body read on stdin",
        description="Reads text, or a JSON request body, on stdin and shows what the router would do with it. "
        "Entity offsets refer to the text read; for a request body, to its text parts joined by newlines.",
    )
    classify.add_argument(
        "--config",
        metavar="FILE",
        help="router YAML config (default: built-in classes, "
        "sensitive -> route 'sensitive-local', the rest -> 'default')",
    )
    classify.add_argument("--json", action="store_true", help="print one JSON object")
    classify.set_defaults(func=cmd_classify)


def _load(path: str | None, *, read_secrets: bool = True) -> RouterConfig | None:
    if path is None:
        return default_config()
    try:
        return load_config(path, read_secrets=read_secrets)
    except ConfigError as exc:
        print(f"clawfleet router: {exc}", file=sys.stderr)
        return None


def classify_input(config: RouterConfig, data: str) -> dict[str, Any]:
    from clawfleet.router.classifier import UNSCANNED
    from clawfleet.router.classify_pool import build_classifier
    from clawfleet.router.extract import ExtractError, guess_kind
    from clawfleet.router.routing import Router
    from clawfleet.router.scan import classify_request

    classifier = build_classifier(config.classifier, config.custom_classes)
    findings, opaque = None, False
    if data.lstrip().startswith("{"):
        try:
            body = json.loads(data)
            # a whole request body is classified exactly as the router classifies it: every string and key
            found = classify_request(guess_kind(body), body, classifier.classify)
            findings, opaque = found.findings, found.opaque
        except (ValueError, ExtractError):
            pass  # not a request body: classify as text
    if findings is None:
        findings = classifier.classify(data)
    classes = sorted({f.type for f in findings} | ({UNSCANNED} if opaque else set()))
    decision = Router(config).decide(classes)
    return {
        "sensitive": bool(classes),
        "classes": classes,
        "entities": [f.to_dict() for f in findings],
        "action": decision.action,
        "route": decision.rule,
        "provider": decision.provider,
    }


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config, read_secrets=False)
    if config is None:
        return 2
    print(f"{args.config}: ok ({len(config.providers)} providers, {len(config.rules)} routes)")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    config = _load(args.config, read_secrets=False)  # classifying never calls a provider
    if config is None:
        return 2
    result = classify_input(config, sys.stdin.read())
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"sensitive: {'yes' if result['sensitive'] else 'no'}")
    print(f"classes:   {', '.join(result['classes']) or '-'}")
    print(f"action:    {result['action']} (route {result['route']}, provider {result['provider'] or '-'})")
    for e in result["entities"]:
        print(f"  {e['type']:<22} [{e['start']}:{e['end']}] score {e['score']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    import uvicorn

    from clawfleet.router.app import RouterApp

    try:
        app = RouterApp(config)
    except (ImportError, ValueError) as exc:
        print(f"clawfleet router: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.host
    port = args.port if args.port is not None else config.port

    def server(asgi: Any, h: str, p: int, lifespan: str) -> Any:
        return uvicorn.Server(
            uvicorn.Config(
                asgi,
                host=h,
                port=p,
                log_level="warning",
                access_log=False,  # the decision log is the access log, without the sensitive parts
                lifespan=lifespan,
                server_header=False,
                timeout_graceful_shutdown=10,
            )
        )

    main = server(app.asgi, host, port, "on")
    servers = [main]
    if config.metrics_port is not None:
        # metrics on their own loopback port: agents reach only the main port through the gateway
        servers.append(server(app.metrics_asgi, config.metrics_host, config.metrics_port, "off"))
    run_loop(_serve_all(servers))
    return 0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the router's event loop: uvloop where it is installed (a runtime pin), else asyncio's own.

    ``asyncio.run`` alone would ignore uvicorn's ``loop`` setting (uvicorn applies it only in ``uvicorn.run``),
    and uvloop's libuv loop roughly halves the loop's own cost per request (docs/router.md, Performance)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _serve_all(servers: list[Any]) -> None:
    """Run the servers in one loop; when the main one stops (SIGTERM), stop the others."""
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    await tasks[0]
    for s in servers[1:]:
        s.should_exit = True
    await asyncio.gather(*tasks[1:], return_exceptions=True)
