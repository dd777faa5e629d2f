"""Cost of the OCSF file and the metrics on the decision log's write path (what every decision pays).

Run:  .venv/bin/python benchmarks/bench_observability.py [--records 20000] [--rounds 5]

Writes the same mix of decision records (80 % allowed TLS requests, 20 % denied CONNECTs) through a
``DecisionLog`` to a file, four ways: the native log alone (as before), plus the OCSF file (``ocsf_log``), plus the
metrics observer (``metrics_listen``), plus both. Prints the median time per record of each and its ratio to the
native log alone (ratios, not absolute times, are what compare across machines).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clawfleet.gateway.config import DecisionLog
from clawfleet.gateway.metrics import GatewayMetrics
from clawfleet.gateway.ocsf import OcsfContext, OcsfLog


def records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        if i % 5:
            out.append(
                {
                    "kind": "tls_request",
                    "binary": "/usr/bin/node",
                    "pid": 4000 + i % 7,
                    "ancestors": ["/usr/bin/bash"],
                    "host": "api.github.com",
                    "port": 443,
                    "method": "GET",
                    "path": f"/repos/o/r/issues/{i}",
                    "decision": "allow",
                    "action": "allow",
                    "rule": "github",
                    "reason": "allowed by policy github",
                    "digest": "sha256:0efb619d",
                    "mode": "enforce",
                }
            )
        else:
            out.append(
                {
                    "kind": "connect",
                    "binary": "/usr/bin/curl",
                    "pid": 77,
                    "ancestors": [],
                    "host": f"host{i % 50}.example.com",
                    "port": 443,
                    "method": None,
                    "path": None,
                    "decision": "deny",
                    "action": "deny",
                    "rule": None,
                    "reason": "no matching policy",
                    "digest": "sha256:0efb619d",
                    "mode": "enforce",
                }
            )
    return out


def run(kind: str, recs: list[dict], tmp: Path) -> float:
    log = DecisionLog(str(tmp / f"{kind}.decisions.jsonl"), sandbox="bench")
    if kind in ("ocsf", "both"):
        log.observers.append(OcsfLog(str(tmp / f"{kind}.ocsf.jsonl"), OcsfContext("bench", 3128, "bench-host")))
    if kind in ("metrics", "both"):
        gateway = SimpleNamespace(active=0, config=SimpleNamespace(mode="enforce"))
        holder = SimpleNamespace(generation=0, digest="sha256:0efb619d")
        log.observers.append(GatewayMetrics().add("bench", gateway, holder))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for rec in recs:
        log.write(rec)
    log.flush()
    elapsed = time.perf_counter() - t0
    log.close()
    return elapsed / len(recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    recs = records(args.records)
    kinds = ("native", "ocsf", "metrics", "both")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            where = Path(d) / str(r)
            where.mkdir()
            for kind in kinds:  # interleaved, so that drift in the machine's speed hits every kind alike
                times[kind].append(run(kind, recs, where))
    base = statistics.median(times["native"])
    print(f"python {platform.python_version()}, {args.records} records x {args.rounds} rounds (median per record)")
    for kind in kinds:
        med = statistics.median(times[kind])
        print(f"  {kind:8s} {med * 1e6:7.2f} us/record   x{med / base:.2f} of the native log alone")


if __name__ == "__main__":
    main()
