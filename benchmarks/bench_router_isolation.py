"""Does one hostile client slow the router for everyone else? Idle vs under adversarial load, in one run.

    .venv/bin/python benchmarks/bench_router_isolation.py [--probes 200] [--size 102400] [--attackers 2] [--json]

Starts the fake upstream and the router as separate processes (benchmarks/bench_router.py `servers`), then
measures a victim's latency twice: `GET /healthz` and a small non-sensitive chat request, alternately, first with
the router idle, then while ``--attackers`` clients send, back to back, request bodies built to be slow to
classify (each classifier trigger word followed by ``--size`` characters of the filler that made its pattern
backtrack, plus 4 MB-class prose scaled to ``--size``). Prints p50/p99 of each, the loaded/idle ratio, and the
attack requests' own latency and status (the router answers them 503 here: they are unscanned or sensitive, and
the benchmark's local route is deliberately down). Goal (issue 19): health and other clients unaffected, i.e. a
p99 ratio well under 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_router import clean_text, pct, servers

# (trigger, filler, tail): the shapes that made the classifier's regexes backtrack before they were made linear
ADVERSARIAL = (
    ("icd10", " ", "!"),
    ("MRN", " ", "!"),
    ("patient id", "0", "x"),
    ("password", "a", "\n"),
    ("api_key", "A", " "),
    ("-----BEGIN PRIVATE KEY-----\n", "A", "\n"),
    ("Dr. ", "A", "."),
    ("12 ", "Main ", "x"),
)


def attack_bodies(size: int) -> list[bytes]:
    bodies = []
    for trigger, filler, tail in ADVERSARIAL:
        text = trigger + filler * (size // len(filler)) + tail
        bodies.append(json.dumps({"model": "default", "messages": [{"role": "user", "content": text}]}).encode())
    bodies.append(
        json.dumps({"model": "default", "messages": [{"role": "user", "content": clean_text(size)}]}).encode()
    )
    return bodies


def probe(client: httpx.Client, n: int) -> dict[str, list[float]]:
    small = {"model": "default", "messages": [{"role": "user", "content": "What is a thread? One sentence."}]}
    out: dict[str, list[float]] = {"healthz": [], "chat": []}
    for _ in range(n):
        t = time.perf_counter()
        client.get("/healthz").raise_for_status()
        out["healthz"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        client.post("/v1/chat/completions", json=small).raise_for_status()
        out["chat"].append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--size", type=int, default=100 * 1024)
    ap.add_argument("--attackers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bodies = attack_bodies(args.size)
    with servers() as (_up, port, _pid):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            probe(client, 20)  # warm-up
            idle = probe(client, args.probes)
            stop = threading.Event()
            attacks: list[tuple[float, int]] = []

            def attacker(offset: int) -> None:
                with httpx.Client(base_url=base, timeout=300) as c:
                    i = offset
                    while not stop.is_set():
                        t = time.perf_counter()
                        r = c.post("/v1/chat/completions", content=bodies[i % len(bodies)],
                                   headers={"content-type": "application/json"})  # fmt: skip
                        attacks.append(((time.perf_counter() - t) * 1000, r.status_code))
                        i += 1

            threads = [threading.Thread(target=attacker, args=(k,), daemon=True) for k in range(args.attackers)]
            for th in threads:
                th.start()
            time.sleep(0.5)
            loaded = probe(client, args.probes)
            stop.set()
            for th in threads:
                th.join(timeout=600)
    result = {
        "host": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "attack_body_bytes": max(len(b) for b in bodies),
        "attack_requests": len(attacks),
        "attack_ms_p50": round(pct([a for a, _ in attacks], 50), 2) if attacks else None,
        "attack_ms_max": round(max(a for a, _ in attacks), 2) if attacks else None,
        "attack_statuses": sorted({s for _, s in attacks}),
    }
    for name in ("healthz", "chat"):
        for q in (50, 99):
            i, lo = pct(idle[name], q), pct(loaded[name], q)
            result[f"{name}_p{q}_idle_ms"] = round(i, 3)
            result[f"{name}_p{q}_loaded_ms"] = round(lo, 3)
            result[f"{name}_p{q}_ratio"] = round(lo / i, 2) if i else None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"router isolation ({result['host']}), {args.attackers} attackers x {result['attack_body_bytes']} B")
        for name in ("healthz", "chat"):
            print(
                f"  {name:8} p50 {result[f'{name}_p50_idle_ms']:8.2f} -> {result[f'{name}_p50_loaded_ms']:8.2f} ms"
                f" (x{result[f'{name}_p50_ratio']})   p99 {result[f'{name}_p99_idle_ms']:8.2f} ->"
                f" {result[f'{name}_p99_loaded_ms']:8.2f} ms (x{result[f'{name}_p99_ratio']})"
            )
        print(
            f"  attack requests: {result['attack_requests']}, p50 {result['attack_ms_p50']} ms, max"
            f" {result['attack_ms_max']} ms, statuses {result['attack_statuses']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
