"""Decision log: one JSON object per line, with classes, action, route and timings, never request text."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

# Only these keys may appear in a decision record; anything else is dropped, so no code path can
# put prompt text, secrets or headers into the log by accident.
ALLOWED_KEYS = frozenset(
    {
        "ts",
        "event",
        "request_id",
        "endpoint",
        "stream",
        "model_alias",
        "classes",
        "residual_classes",
        "entity_counts",
        "action",
        "route",
        "provider",
        "fallbacks_tried",
        "status",
        "error",
        "latency_ms",
        "overhead_ms",
        "classify_ms",
        "upstream_ms",
        "bytes_in",
        "redacted",
        "translated",
        "sandbox",
        "identity",
        "limit",
        "model",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        # reload events
        "ok",
        "digest",
        "previous",
        "trigger",
        "message",
        "needs_restart",
    }
)


class DecisionLog:
    def __init__(self, target: str = "stderr") -> None:
        self._own = False
        self._stream: IO[str] | None
        if target == "stderr":
            self._stream = sys.stderr
        elif target == "stdout":
            self._stream = sys.stdout
        elif target in ("off", "none"):
            self._stream = None
        else:
            self._stream = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the app
            self._own = True

    def write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            return
        clean = {k: v for k, v in record.items() if k in ALLOWED_KEYS}
        clean.setdefault(
            "ts", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        )
        self._stream.write(json.dumps(clean, separators=(",", ":"), sort_keys=True) + "\n")

    def close(self) -> None:
        if self._own and self._stream is not None:
            self._stream.close()
