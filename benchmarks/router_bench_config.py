"""The router configuration the router benchmarks run (bench_router.py, its limits variant, profile_router.py):
one module, so that they measure the same routes. It imports nothing of clawfleet, so that profile_router.py's
``--src`` can still choose which checkout's router is imported after it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def router_config(tmp: Path, up_port: int, port: int) -> dict[str, Any]:
    """The router on ``port``: its cloud route the fake upstream on ``up_port`` (a throwaway key written to
    ``tmp``), its local route a closed port (a request kept local is answered 503 at once, the benchmarks measure
    the router, not a model). Sensitive classes and unscanned content go local, the rest to the cloud."""
    (tmp / "key").write_text("sk-bench-not-a-real-key")
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics_listen": {"host": "127.0.0.1", "port": free_port()},
        "decision_log": str(tmp / "decisions.jsonl"),
        "providers": {
            "local": {"type": "vllm", "base_url": f"http://127.0.0.1:{free_port()}/v1", "models": {"default": "m"}},
            "cloud": {"type": "openai", "base_url": f"http://127.0.0.1:{up_port}/v1", "api_key_file": str(tmp / "key"),
                      "models": {"default": "fake-model"}},
        },
        "routes": [
            {"name": "sensitive-local", "classes": ["any", "unscanned_content"], "action": "local",
             "provider": "local"},
            {"name": "default", "action": "cloud", "provider": "cloud"},
        ],
    }  # fmt: skip
