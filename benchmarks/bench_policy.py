"""Decision speed of the compiled policy engine vs a naive linear scan, on a 1,000-rule policy.

Run:  .venv/bin/python benchmarks/bench_policy.py [--rules 1000] [--requests 20000] [--seed 1]

Prints median / p99 time per decision and decisions per second for:
  * compiled engine (host -> port index, binary-chain LRU warm);
  * compiled engine with the binary-chain cache disabled (every decision matches binaries again);
  * naive linear scan (clawfleet.policy.reference: every rule, endpoint and binary, in file order).
Both engines answer every request identically (checked before timing).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clawfleet.policy import compile_policy, load_data
from clawfleet.policy.reference import reference_decide

WORDS = ["api", "cdn", "auth", "data", "files", "hooks", "uploads", "edge", "svc", "static"]
TLDS = ["com", "io", "net", "org", "dev"]
BINARIES = [f"/usr/bin/tool{i}" for i in range(40)] + ["/usr/bin/node", "/usr/bin/git", "/usr/bin/curl"]
GLOBS = ["/usr/bin/python3*", "/opt/agent/**", "/home/*/.local/bin/*"]


def build_policy(n_rules: int, rnd: random.Random) -> dict:
    rules = {}
    for i in range(n_rules):
        domain = f"{rnd.choice(WORDS)}{i}.example{i % 97}.{rnd.choice(TLDS)}"
        kind = rnd.random()
        host = domain if kind < 0.8 else (f"*.{domain}" if kind < 0.9 else f"**.{domain}")
        ep: dict = {"host": host}
        if rnd.random() < 0.8:
            ep["port"] = 443
        else:
            ep["ports"] = [443, 8443, rnd.choice([80, 9000, 5432])]
        style = rnd.random()
        if style < 0.4:
            ep.update(protocol="rest", access=rnd.choice(["read-only", "read-write", "full"]))
        elif style < 0.8:
            ep.update(
                protocol="rest",
                rules=[
                    {"allow": {"method": "GET", "path": f"/v{rnd.randint(1, 3)}/**"}},
                    {"allow": {"method": "POST", "path": "/api/*/items", "query": {"page": "*"}}},
                ],
                deny_rules=[{"path": "/admin/**"}],
            )
        if rnd.random() < 0.1:
            ep["enforcement"] = "audit"
        bins = rnd.sample(BINARIES, rnd.randint(1, 3))
        if rnd.random() < 0.1:
            bins.append(rnd.choice(GLOBS))
        rules[f"rule_{i}"] = {"endpoints": [ep], "binaries": [{"path": b} for b in bins]}
    return {"version": 1, "network_policies": rules}


def build_requests(policy: dict, n: int, rnd: random.Random) -> list[tuple]:
    rules = list(policy["network_policies"].values())
    out = []
    for _ in range(n):
        rule = rnd.choice(rules)
        ep = rule["endpoints"][0]
        host = ep["host"].replace("**.", "a.b.").replace("*.", "x.")
        if rnd.random() < 0.2:
            host = "unknown-" + host  # miss
        port = ep.get("port") or rnd.choice(ep["ports"])
        binary = rnd.choice(rule["binaries"])["path"].replace("**", "x/y").replace("*", "3.12")
        ancestors = ("/usr/bin/bash", "/sbin/init") if rnd.random() < 0.5 else ()
        if rnd.random() < 0.5:
            out.append((binary, ancestors, host, port, None, None, None))
        else:
            method = rnd.choice(["GET", "POST", "DELETE"])
            path = rnd.choice(["/v1/models", "/api/x/items?page=2", "/admin/users", "/v2/a/b"])
            out.append((binary, ancestors, host, port, method, path, None))
    return out


def time_calls(fn, requests: list[tuple], repeat: int = 1) -> tuple[float, float, float]:
    """(median ns, p99 ns, decisions/s) from per-call timings and a separate throughput loop."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        for req in requests:
            t0 = clock()
            fn(*req)
            samples.append(clock() - t0)
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    t0 = time.perf_counter()
    for _ in range(repeat):
        for req in requests:
            fn(*req)
    elapsed = time.perf_counter() - t0
    return median, p99, repeat * len(requests) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--naive-requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    data = build_policy(args.rules, rnd)
    policy = load_data(data)
    t0 = time.perf_counter()
    engine = compile_policy(policy)
    compile_ms = (time.perf_counter() - t0) * 1000
    cold = compile_policy(policy, cache_size=0)
    requests = build_requests(data, args.requests, rnd)
    naive_requests = requests[: args.naive_requests]

    def naive(*req):
        return reference_decide(policy, *req)

    # Same answers first: a fast wrong engine is worthless.
    for req in naive_requests:
        a, b = engine.decide(*req), naive(*req)
        assert (a.decision, a.policy_key) == (b.decision, b.policy_key), (req, a, b)
    counts: dict[str, int] = {}
    for req in requests:
        d = engine.decide(*req).decision
        counts[d] = counts.get(d, 0) + 1

    rows = [
        ("compiled engine (binary cache warm)", *time_calls(engine.decide, requests, repeat=3)),
        ("compiled engine (binary cache off)", *time_calls(cold.decide, requests)),
        ("naive linear scan", *time_calls(naive, naive_requests)),
    ]
    print(f"clawfleet policy engine benchmark - Python {platform.python_version()} on {platform.machine()}")
    print(
        f"policy: {args.rules} rules, compiled in {compile_ms:.1f} ms; requests: {len(requests)} "
        f"(naive: {len(naive_requests)}), outcomes {counts}; engines agree on all naive requests"
    )
    print()
    print(f"{'engine':40} {'median':>12} {'p99':>12} {'decisions/s':>14}")
    for name, median, p99, rate in rows:
        print(f"{name:40} {median / 1000:>9.2f} us {p99 / 1000:>9.2f} us {rate:>14,.0f}")
    speedup = rows[2][1] / rows[0][1]
    print()
    print(f"median speed-up of the compiled engine over the linear scan: {speedup:,.0f}x")
    goal = rows[0][1] / 1000 < 5
    print(f"goal (median < 5 us with {args.rules} rules): {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
