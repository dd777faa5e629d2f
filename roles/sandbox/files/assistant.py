#!/usr/bin/env python3
"""my-assistant: a small agent-like workload for a clawfleet sandbox (standard library only).

Every ASSISTANT_INTERVAL seconds it does what an always-on assistant does, through the egress gateway only:
asks the model (the privacy router, $OPENAI_BASE_URL = http://inference.local:8484/v1) a plain question and one
that quotes a customer's contact details (which must stay on a local model, or be refused), fetches a page from
an allowed host (ASSISTANT_FETCH_URL), tries a host the policy does not allow (ASSISTANT_DENIED_URL, expected
403) and tries to read the host's secrets directory (expected to fail). One JSON line per step on stdout
(`clawfleet sandbox logs my-assistant`). It never prints response bodies beyond a short excerpt.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ.get("OPENAI_BASE_URL", "http://inference.local:8484/v1").rstrip("/")
FETCH = os.environ.get("ASSISTANT_FETCH_URL", "https://pypi.org/simple/pip/")
DENIED = os.environ.get("ASSISTANT_DENIED_URL", "https://example.com/")
INTERVAL = float(os.environ.get("ASSISTANT_INTERVAL", "300"))
PROMPTS = {
    "plain": "Summarise in one sentence why tests should be deterministic.",
    "pii": "Draft a reply to our customer Jane Roe, jane.roe@example.org, phone +44 20 7946 0958, about her order.",
}


def emit(step: str, **fields) -> None:
    print(json.dumps({"time": round(time.time(), 3), "step": step, **fields}, sort_keys=True), flush=True)


def http(url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310 - http(s) from config
    if data:
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer sandbox-has-no-key")  # the router drops it and uses its own
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) URLs from config
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except OSError as exc:  # e.g. an HTTPS tunnel refused by the gateway: "Tunnel connection failed: 403"
        text = str(exc)
        return (403 if " 403" in text else 0), text


def ask(kind: str) -> None:
    status, text = http(f"{BASE}/chat/completions",
                        {"model": "default", "messages": [{"role": "user", "content": PROMPTS[kind]}]})  # fmt: skip
    answer = ""
    try:
        answer = json.loads(text)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        answer = text
    emit("ask", prompt=kind, status=status, answer=answer[:200])


def cycle() -> None:
    ask("plain")
    ask("pii")
    status, text = http(FETCH)
    emit("fetch", url=FETCH, status=status, excerpt=text[:120])
    status, text = http(DENIED)
    emit("denied", url=DENIED, status=status, excerpt=text[:200])
    try:
        os.listdir("/etc/clawfleet/secrets")
        emit("secrets", readable=True)
    except OSError as exc:
        emit("secrets", readable=False, error=type(exc).__name__)


def main() -> int:
    emit("start", base=BASE, interval=INTERVAL)
    while True:
        try:
            cycle()
        except Exception as exc:  # an assistant keeps running; the log says what went wrong
            emit("error", error=f"{type(exc).__name__}: {exc}")
        time.sleep(INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
