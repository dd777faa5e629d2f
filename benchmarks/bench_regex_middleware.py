"""The ``openshell/regex`` middleware's cost: RE2 (what the gateway runs, clawfleet.policy.middleware.RegexHook) vs
Python's backtracking ``re`` on the same expressions, measured in the same run.

Run:  .venv/bin/python benchmarks/bench_regex_middleware.py [--repeat 20]

Prints CPU time per body (min of 5 rounds) for typical bodies with upstream's built-in pattern, then the growth with
the length of an adversarial body (``a`` * n + ``b``) against ``(a+)+$``: ``re`` only up to a length where it still
ends in seconds (it doubles with each character), RE2 up to the 256 KiB a stage inspects.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clawfleet.policy import compile_policy, load_text
from clawfleet.policy.middleware import DEFAULT_PATTERNS, MAX_PAYLOAD_BYTES


def hook(config: str):
    text = ("version: 1\nnetwork_middlewares:\n  m:\n    middleware: openshell/regex\n"
            f"    config: {config}\n    endpoints: {{include: [x.test]}}\n")  # fmt: skip
    return compile_policy(load_text(text)).middlewares("x.test")[0]


def cpu_per_call(fn, arg: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            fn(arg)
        best = min(best, (time.process_time() - start) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}")
    redact = hook("{}")
    rx = re.compile(DEFAULT_PATTERNS[0][1].encode())
    chat = {"model": "m", "messages": [{"role": "user", "content": "lorem ipsum dolor sit amet " * 40}] * 50}
    bodies = {
        "64 KiB JSON, no match": json.dumps(chat).encode()[: 64 * 1024],
        "64 KiB JSON, 50 tokens": json.dumps({**chat, "keys": ["sk-" + "A" * 40] * 50}).encode()[-64 * 1024 :],
        "256 KiB JSON, no match": (json.dumps(chat).encode() * 6)[:MAX_PAYLOAD_BYTES],
    }
    print(f"{'body (redact, built-in pattern)':32} {'RE2 ms':>9} {'re ms':>9} {'ratio':>6}")
    for name, body in bodies.items():
        assert (redact.apply(body).body or body) == rx.sub(b"[REDACTED]", body)
        a = cpu_per_call(redact.apply, body, args.repeat) * 1e3
        b = cpu_per_call(lambda x: rx.sub(b"[REDACTED]", x), body, args.repeat) * 1e3
        print(f"{name:32} {a:9.3f} {b:9.3f} {a / b:6.2f}")
    print("\nadversarial: (a+)+$ on 'a' * n + 'b' (detect mode)")
    evil = hook("{mode: detect, patterns: ['(a+)+$']}")
    back = re.compile(rb"(a+)+$")
    print(f"{'n':>8} {'RE2 ms':>10} {'re ms':>12}")
    for n in (16, 20, 22, 24, 1024, 65536, MAX_PAYLOAD_BYTES - 1):
        body = b"a" * n + b"b"
        a = cpu_per_call(evil.apply, body, 1) * 1e3
        b = f"{cpu_per_call(back.search, body, 1) * 1e3:12.3f}" if n <= 24 else f"{'(not run)':>12}"
        print(f"{n:8} {a:10.3f} {b}")


if __name__ == "__main__":
    main()
