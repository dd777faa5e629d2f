"""benchmarks/bench_gateway_isolation.py at a tiny scale: its JSON shape, and that what it reports about sandbox A
is what the daemon did (A's idle connections held up to its cap, the rest refused with 503; the glob attack denied,
the fd load's requests allowed). No timing is asserted. Root only (real sandboxes under one daemon)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root; CI runs as root"),
    pytest.mark.slow,
]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gateway_isolation.py"
TINY = ["--requests", "5", "--procs", "3", "--fds", "20", "--redos-len", "300", "--workers", "1", "--settle", "0"]


def run(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--json", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rows_and_what_a_achieved(user):
    result = run("--conns", "30", "--a-max-connections", "20")
    rows = {r["scenario"]: r for r in result["rows"]}
    assert list(rows) == ["idle", "busy", "redos", "fds", "conns", "all", "idle again"]
    for r in rows.values():
        assert r["b_requests"] == 5 and not r["b_failed"], r  # B's allowed requests all answered 200
        assert r["verdict"] == ("PASS" if r["p99_ratio"] <= 2.0 else "MISS")
    assert set(rows["busy"]["a"]["busy"]["statuses"]) == {"200"}
    assert set(rows["redos"]["a"]["redos"]["statuses"]) == {"403"}  # the glob attack is denied, not forwarded
    assert set(rows["fds"]["a"]["fds"]["statuses"]) == {"200"}
    conns = rows["conns"]["a"]["conns"]
    assert (conns["held"], conns["refused_503"], conns["closed"]) == (20, 10, 0), conns  # the cap at work


def test_unknown_scenario_is_refused():
    out = subprocess.run([sys.executable, str(SCRIPT), "--scenarios", "redos,nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown scenarios: nope" in out.stderr
