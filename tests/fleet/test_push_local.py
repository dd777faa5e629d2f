"""``clawfleet fleet push|status`` through pyinfra's ``@local`` connector against this machine's real gateway
daemon and sandbox (root): the same ``clawfleet policy apply`` runs on the host as with Ansible."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from policy_daemon import GatewayDaemon, clawfleet, policy_text

pytest.importorskip("pyinfra", reason="the fleet extra (pyinfra) is not installed")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real gateway daemon and sandbox need root")

REMOTE_CLAWFLEET = shutil.which("clawfleet", path=str(Path(sys.executable).parent)) or "clawfleet"


def _common(d: GatewayDaemon) -> list[str]:
    return ["--hosts", "@local", "--clawfleet", REMOTE_CLAWFLEET, "--policy-dir", str(d.policy_dir),
            "--socket", str(d.socket), "--ledger", str(d.ledger)]  # fmt: skip


def _push(d: GatewayDaemon, policy: Path, *extra: str):
    proc = clawfleet("fleet", "push", str(policy), "--name", d.name, *_common(d), "--staging-dir",
                     str(d.root / "staging"), "--operator", "ci", "--json", *extra)  # fmt: skip
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines, proc.stderr
    return proc.returncode, lines[:-1], lines[-1]["summary"]


def test_push_check_apply_rerun_and_status(daemon, tmp_path):
    before = daemon.status()["policy_digest"]
    new = tmp_path / "new.yaml"
    new.write_text(policy_text(port=9443))

    code, [host], summary = _push(daemon, new, "--check")
    assert (code, host["result"], host["target"]) == (0, "would_apply", "@local")
    assert "api.example.com:9443" in host["diff"] and daemon.status()["policy_digest"] == before

    code, [host], summary = _push(daemon, new, "--source-commit", "deadbeef")
    assert (code, host["result"], summary["counts"]) == (0, "applied", {"applied": 1})
    assert isinstance(host["enforce_latency_s"], float)
    assert daemon.status()["policy_digest"] == host["digest"] == summary["digest"]
    assert not (daemon.root / "staging").exists()  # a policy that fits the command is never staged
    [rec] = [json.loads(x) for x in daemon.ledger.read_text().splitlines()]
    assert (rec["result"], rec["operator"], rec["source_commit"]) == ("applied", "ci", "deadbeef")

    code, [host], _ = _push(daemon, new)
    assert (code, host["result"]) == (0, "unchanged")

    status = clawfleet("fleet", "status", *_common(daemon), "--expect", f"agent={new}", "--json")
    [row] = json.loads(status.stdout)
    assert (status.returncode, row["drift"], row["state"]) == (0, False, "running")
    old = daemon.policy_dir / "agent.yaml.previous"
    status = clawfleet("fleet", "status", *_common(daemon), "--expect", f"agent={old}")
    assert status.returncode == 1 and "YES" in status.stdout  # the file differs from what was expected


def test_push_rolls_back_when_the_gateway_is_down(daemon, tmp_path):
    before_text = daemon.policy.read_text()
    daemon.stop()
    new = tmp_path / "new.yaml"
    new.write_text(policy_text(port=10443))
    code, [host], summary = _push(daemon, new, "--timeout", "0.5")
    assert (code, host["result"], summary["counts"]) == (1, "rolled_back", {"rolled_back": 1})
    assert daemon.policy.read_text() == before_text
    assert json.loads(daemon.ledger.read_text())["result"] == "rolled_back"
