"""Glob matching cost: the engine's linear matcher (clawfleet.policy.globmatch) vs the backtracking regex it
replaced (clawfleet.policy.matching.glob_to_regex), measured in the same run.

Run:  .venv/bin/python benchmarks/bench_globmatch.py [--repeat 2000]

Prints CPU time per match (min of 5 rounds) for typical path globs and paths, then the growth with the length
of an adversarial path (``/files/`` + n ``-`` against ``/files/*-*-*.txt``): the regex only up to a length
where it still ends in seconds, the linear matcher up to the gateway's 8,192-character target limit.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clawfleet.policy.globmatch import Glob
from clawfleet.policy.matching import glob_to_regex

TYPICAL = [
    ("/repos/**", "/repos/NVIDIA/OpenShell/pulls/123/comments"),
    ("/**/info/refs*", "/NVIDIA/OpenShell.git/info/refs"),
    ("/v1/*/completions", "/v1/chat/completions"),
    ("/simple/*/", "/simple/requests/"),
    ("/api/v1/**/secret*", "/api/v1/projects/42/env/public.txt"),
    ("/files/*-*-*.txt", "/files/2026-12-05.txt"),
]


def cpu_per_call(fn, arg: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            fn(arg)
        best = min(best, (time.process_time() - start) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}")
    print("Glob: the engine's matcher (its regex for single-quantifier globs, else the DFA); regex: the old one")
    print(f"{'glob':24} {'path':45} {'Glob us':>10} {'regex us':>10} {'ratio':>6}")
    for pattern, path in TYPICAL:
        glob, rx = Glob(pattern), re.compile(glob_to_regex(pattern))
        assert glob.match(path) == (rx.match(path) is not None)
        glob.match(path)  # warm the DFA cache, as a running gateway has it
        a = cpu_per_call(glob.match, path, args.repeat) * 1e6
        b = cpu_per_call(rx.match, path, args.repeat) * 1e6
        print(f"{pattern:24} {path:45} {a:10.2f} {b:10.2f} {a / b:6.1f}")
    pattern = "/files/*-*-*.txt"
    glob, rx = Glob(pattern), re.compile(glob_to_regex(pattern))
    print(f"\nadversarial: {pattern} against /files/ + n '-' (CPU ms per match)")
    print(f"{'n':>6} {'Glob ms':>10} {'regex ms':>10}")
    for n in (100, 200, 400, 800, 1600, 3000, 6000, 8000):
        text = "/files/" + "-" * n
        glob.match(text)
        a = cpu_per_call(glob.match, text, 20) * 1e3
        b = cpu_per_call(rx.match, text, 1) * 1e3 if n <= 400 else float("nan")
        print(f"{n:6} {a:10.3f} {b:10.1f}")


if __name__ == "__main__":
    main()
