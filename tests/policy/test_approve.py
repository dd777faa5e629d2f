"""``clawfleet policy approve`` takes the path of ``clawfleet policy apply``: the policy directory's lock, the
previous policy kept as ``FILE.previous``, the policy it was computed from verified by digest (a change made in
between is never overwritten), and a ledger record. No gateway needed: the decision log is written here."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import pytest

from clawfleet.policy import apply as apply_mod
from clawfleet.policy import approvals, digest, ledger, load_file, load_text
from policy_daemon import clawfleet, policy_text

DENIED = {"time": "2026-12-05T12:00:00Z", "sandbox": "agent", "kind": "connect", "binary": "/usr/bin/curl",
          "host": "api.github.com", "port": 443, "action": "deny", "decision": "deny",
          "reason": "no rule allows api.github.com:443 for /usr/bin/curl"}  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = policies / "agent.yaml"
    policy.write_text("# the operator's comment\n" + policy_text())
    policy.chmod(0o600)
    log = tmp_path / "agent.decisions.jsonl"
    log.write_text(json.dumps(DENIED) + "\n")
    [item] = approvals.pending(str(log))
    return {"policy": policy, "log": log, "id": item.id, "ledger": tmp_path / "ledger.jsonl", "dir": policies}


def _approve(s: dict, *extra: str):
    return clawfleet("policy", "approve", s["id"], "--log", str(s["log"]), "--policy", str(s["policy"]),
                     "--ledger", str(s["ledger"]), "--operator", "tester", *extra)  # fmt: skip


@contextlib.contextmanager
def _held(directory: Path):
    """What a running `policy apply` holds: the policy directory's flock."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_approve_keeps_the_previous_policy_and_leaves_a_ledger_record(setup):
    before = setup["policy"].read_text()
    proc = _approve(setup)
    assert proc.returncode == 0, proc.stderr
    assert f"added to {setup['policy']}: approved {setup['id']}" in proc.stdout

    after = setup["policy"].read_text()
    assert after.startswith("# the operator's comment\n")  # edited in place, layout and comments kept
    rule = load_file(str(setup["policy"])).network_policies[f"approved_{setup['id']}"]
    assert [(e.host, e.ports) for e in rule.endpoints] == [("api.github.com", (443,))]
    assert Path(f"{setup['policy']}.previous").read_text() == before
    assert oct(setup["policy"].stat().st_mode & 0o777) == "0o600"  # the operator's mode, as before

    [record] = [json.loads(x) for x in setup["ledger"].read_text().splitlines()]
    assert (record["result"], record["operator"], record["sandbox"]) == ("applied", "tester", "agent")
    assert record["previous_digest"] == digest(load_text(before, "before"))
    assert record["digest"] == digest(load_text(after, "after"))
    assert ledger.verify(str(setup["ledger"])) == (1, [])
    assert approvals.pending(str(setup["log"])) == []  # approved: no longer pending


def test_approve_waits_for_a_running_apply_and_fails_clearly_when_it_lasts(setup):
    before = setup["policy"].read_text()
    with _held(setup["dir"]):
        proc = _approve(setup, "--lock-timeout", "0.3")
    assert proc.returncode == 1
    assert "another policy change holds the lock" in proc.stderr and "nothing written" in proc.stderr
    assert setup["policy"].read_text() == before
    assert not Path(f"{setup['policy']}.previous").exists() and not setup["ledger"].exists()
    assert [p.id for p in approvals.pending(str(setup["log"]))] == [setup["id"]]  # still pending

    proc = _approve(setup, "--lock-timeout", "30")  # the lock is free again: the same approval goes through
    assert proc.returncode == 0, proc.stderr
    assert setup["policy"].read_text() != before


def test_approve_never_overwrites_a_change_made_while_it_waited_for_the_lock(setup, monkeypatch):
    # Another apply wins the lock after approve computed its edit: approve must notice (digest) and write nothing.
    other = policy_text(port=9443)
    real_locked = apply_mod.locked

    @contextlib.contextmanager
    def lost_the_race(directory, timeout=None):
        with real_locked(directory, timeout):
            setup["policy"].write_text(other)  # what the other apply wrote while we waited
        with real_locked(directory, timeout):
            yield

    monkeypatch.setattr(apply_mod, "locked", lost_the_race)
    with pytest.raises(approvals.ApproveError, match="changed meanwhile"):
        approvals.approve(str(setup["log"]), str(setup["policy"]), setup["id"], ledger=str(setup["ledger"]))
    assert setup["policy"].read_text() == other  # the other change stays
    assert not Path(f"{setup['policy']}.previous").exists() and not setup["ledger"].exists()
    assert [p.id for p in approvals.pending(str(setup["log"]))] == [setup["id"]]

    monkeypatch.setattr(apply_mod, "locked", real_locked)  # without the race, the approval applies on top of it
    approvals.approve(str(setup["log"]), str(setup["policy"]), setup["id"], ledger=str(setup["ledger"]))
    assert "9443" in setup["policy"].read_text() and f"approved_{setup['id']}" in setup["policy"].read_text()
