"""benchmarks/bench_scaling.py at tiny sizes: the shape of its JSON (a row per size, growth per pair of rows, every
metric present), and that the daemon section stops everything it started. No timing is asserted."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scaling.py"


def run(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), "--json", "-", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_growth(growth: list[dict], sizes: list[int], metrics: set[str]) -> None:
    assert {g["metric"] for g in growth} == metrics
    assert {(g["from"], g["to"]) for g in growth} == set(itertools.pairwise(sizes))
    for g in growth:
        assert g["verdict"] == ("super-linear" if g["k"] > 1.2 else "ok")
        assert g["per_10x"] > 0


def test_policy_rows_and_growth():
    result = run("--sections", "policy", "--rules", "5,50", "--requests", "200", "--repeat", "1")
    assert set(result) >= {"host", "policy", "super_linear"} and "daemon" not in result
    rows = result["policy"]["rows"]
    assert [r["rules"] for r in rows] == [5, 50]
    for r in rows:
        assert r["requests"] == 200 and r["hits"] + r["misses"] == 200 and r["hits"] and r["misses"]
        for key in ("load_ms", "validate_ms", "compile_ms", "decide_median_us", "decide_p99_us",
                    "decide_hit_median_us", "decide_miss_median_us", "decisions_per_s"):  # fmt: skip
            assert r[key] > 0, key
    check_growth(result["policy"]["growth"], [5, 50], {"load_ms", "validate_ms", "compile_ms", "decide_median_us",
                                                       "decide_hit_median_us", "decide_miss_median_us"})  # fmt: skip


@pytest.mark.slow
def test_gateway_cells_answered_through_the_gateway():
    result = run("--sections", "gateway", "--connections", "1,3", "--gw-requests", "30")
    cells = result["gateway"]["cells"]
    assert [(c["mode"], c["concurrency"]) for c in cells] == [
        (m, n) for n in (1, 3) for m in ("direct-plain", "plain", "direct", "inspected")
    ]
    for c in cells:
        assert c["requests"] == 30 and c["rps"] > 0 and c["p99_ms"] >= c["p50_ms"] > 0
        assert ("proxy_cpu_us_per_req" in c) == (not c["mode"].startswith("direct")), c
        if c["mode"].startswith("direct"):
            assert c["rps_vs_direct"] == 1.0
    assert set(result["gateway"]["growth"]) == {"direct-plain", "plain", "direct", "inspected"}
    check_growth(result["gateway"]["growth"]["inspected"], [1, 3], {"wall_us_per_req", "proxy_cpu_us_per_req"})


def test_unknown_section_is_refused():
    out = subprocess.run([sys.executable, str(SCRIPT), "--sections", "policy,nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown sections: nope" in out.stderr


def _sleepers() -> set[int]:
    """Processes running a sleep of this benchmark's durations (3600-6599 s)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"/bin/sleep" and len(argv) > 1 and argv[1].isdigit() and 3600 <= int(argv[1]) < 6600:
                found.add(int(entry))
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root; CI runs as root")
@pytest.mark.slow
def test_daemon_rows_and_nothing_left_behind(user):
    before = _sleepers()
    result = run("--sections", "daemon", "--sandboxes", "1,2", "--settle", "0.5")
    rows = result["daemon"]["rows"]
    assert [r["sandboxes"] for r in rows] == [1, 2]
    for r in rows:
        n = r["sandboxes"]
        assert r["parsers"] == n and r["attached_by_status"] == n, r  # one parser per sandbox, every one attached
        assert r["ready_all_s"] >= r["attach_all_s"] > 0 and r["gateway_rss_mib"] > r["daemon_rss_mib"] > 0
        assert r["sandbox_procs"] >= n and r["killed_at_cleanup"] == 0, r  # the daemon stopped its sandboxes
    assert _sleepers() == before
