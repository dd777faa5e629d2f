"""The policy role's host part against this machine (connection local): one `clawfleet policy apply -` per sandbox
with the merged policy on stdin (issue 16). Check mode shows the diff and writes nothing, a real run places the
policy and records it, a re-run changes nothing, a change that cannot be verified is rolled back and fails the host
naming host and sandbox. The gateway's unit state comes from a fake systemctl (tests/fakes/fake_systemctl_show.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FAKE_SYSTEMCTL = Path(__file__).resolve().parent.parent / "fakes" / "fake_systemctl_show.py"


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch):
    """systemctl on PATH is the fake; returns a function to set the gateway unit's LoadState and ActiveState."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").symlink_to(FAKE_SYSTEMCTL)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin")
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")  # messages on one line, not folded as YAML

    def _set(load: str, active: str) -> None:
        monkeypatch.setenv("FAKE_UNIT_LOAD", load)
        monkeypatch.setenv("FAKE_UNIT_ACTIVE", active)

    _set("not-found", "inactive")
    return _set


def _vars(tmp_path: Path, extra_rule: bool = False, **kw) -> dict:
    rules = {"origin": {"name": "origin", "endpoints": [{"host": "origin.test", "port": 18080}],
                        "binaries": [{"path": "/usr/bin/curl"}]}}  # fmt: skip
    if extra_rule:
        rules["role_test_extra"] = {"name": "role-test-extra", "endpoints": [{"host": "extra.test", "port": 443}],
                                    "binaries": [{"path": "/usr/bin/curl"}]}  # fmt: skip
    return {
        "clawfleet_sandboxes": [{"name": "agent", "inference": False, "network_policies": rules}],
        "clawfleet_venv": str(Path(sys.executable).parent.parent),
        "clawfleet_policy_dir": str(tmp_path / "policies"),
        "clawfleet_control_socket": str(tmp_path / "none.sock"),
        "policy_ledger": str(tmp_path / "ledger.jsonl"),
        "policy_operator": "role-test",
        "policy_source_commit": "abc123",
        "policy_reload_timeout": 1,
        **kw,
    }


def _ledger(tmp_path: Path) -> list[dict]:
    path = tmp_path / "ledger.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_check_apply_rerun_and_a_rolled_back_change(tmp_path, run_role, fake_systemctl):
    live = tmp_path / "policies" / "agent.yaml"

    # Check mode on a host without a policy yet: the diff is shown, nothing is written anywhere.
    run = run_role("policy", _vars(tmp_path), check=True)
    assert run.rc == 0, run.output
    assert "agent: would_apply none -> sha256:" in run.output and "new policy" in run.output
    assert not live.exists() and _ledger(tmp_path) == []

    # First placement (the gateway unit is not installed: nothing to verify against, said in the ledger).
    run = run_role("policy", _vars(tmp_path))
    assert (run.rc, run.changed) == (0, 1), run.output
    assert live.read_text().startswith("# Managed by Ansible (clawfleet policy role)")
    [rec] = _ledger(tmp_path)
    assert (rec["result"], rec["host"], rec["operator"], rec["source_commit"]) == (
        "applied", "localhost", "role-test", "abc123")  # fmt: skip
    assert rec["detail"] == "not verified (clawfleet-gateway.service not installed)"
    placed = live.read_text()

    # The same policy again: nothing changes, nothing is recorded.
    run = run_role("policy", _vars(tmp_path))
    assert (run.rc, run.changed) == (0, 0), run.output
    assert len(_ledger(tmp_path)) == 1

    # Check mode with a new rule: the host's diff names it; the live file and the ledger stay.
    run = run_role("policy", _vars(tmp_path, extra_rule=True), check=True)
    assert run.rc == 0, run.output
    assert "agent: would_apply sha256:" in run.output and "role_test_extra" in run.output
    assert live.read_text() == placed and len(_ledger(tmp_path)) == 1

    # A deployed gateway that does not confirm the change (stopped): rolled back, the host fails naming itself
    # and the sandbox, the last good policy stays.
    fake_systemctl("loaded", "inactive")
    run = run_role("policy", _vars(tmp_path, extra_rule=True))
    assert run.rc != 0 and run.failed == 1, run.output
    assert "localhost: sandbox agent: rolled_back (verify failed: no gateway daemon at" in run.output
    assert live.read_text() == placed
    assert [r["result"] for r in _ledger(tmp_path)] == ["applied", "rolled_back"]
