"""``clawfleet policy apply|status|ledger``: against a real gateway daemon running a real sandbox (root), and the
file/ledger logic on its own (any user)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from clawfleet.policy import ledger
from clawfleet.policy.apply import ApplyOptions, apply_policy
from policy_daemon import GatewayDaemon, clawfleet, policy_text

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a real gateway daemon and sandbox need root")


def _apply(d: GatewayDaemon, new: Path, *extra: str) -> tuple[int, dict]:
    proc = clawfleet("policy", "apply", str(new), "--name", d.name, "--policy-dir", str(d.policy_dir),
                     "--socket", str(d.socket), "--ledger", str(d.ledger), "--operator", "tester",
                     "--source-commit", "abc123", *extra)  # fmt: skip
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@needs_root
def test_apply_hot_reloads_verifies_and_rerun_is_a_no_op(daemon, tmp_path):
    before = daemon.status()["policy_digest"]
    new = tmp_path / "new.yaml"
    new.write_text("# from git\n" + policy_text(port=9443))

    code, check = _apply(daemon, new, "--check")
    assert (code, check["result"]) == (0, "would_apply")
    assert "api.example.com:9443" in check["diff"] and check["previous_digest"] == before
    assert not daemon.ledger.exists() and daemon.status()["policy_digest"] == before

    code, out = _apply(daemon, new)
    assert (code, out["result"], out["error"]) == (0, "applied", None)
    assert out["previous_digest"] == before and out["digest"] != before
    assert isinstance(out["enforce_latency_s"], float)
    assert daemon.status()["policy_digest"] == out["digest"]  # the gateway enforces it now
    assert daemon.policy.read_text() == new.read_text()  # bytes as written, comments kept
    assert (daemon.policy_dir / "agent.yaml.previous").read_text() == policy_text()
    assert oct(daemon.policy.stat().st_mode & 0o777) == "0o640"

    code, again = _apply(daemon, new)
    assert (code, again["result"], again["enforced_digest"], again["in_sync"]) == (0, "unchanged", out["digest"], True)
    records = [json.loads(x) for x in daemon.ledger.read_text().splitlines()]
    assert len(records) == 1  # re-runs write nothing
    rec = records[0]
    assert (rec["result"], rec["digest"], rec["previous_digest"]) == ("applied", out["digest"], before)
    assert (rec["operator"], rec["source_commit"], rec["prev_hash"]) == ("tester", "abc123", None)
    assert rec["enforce_latency_s"] == out["enforce_latency_s"]

    status = json.loads(clawfleet("policy", "status", "--policy-dir", str(daemon.policy_dir), "--socket",
                                  str(daemon.socket), "--ledger", str(daemon.ledger), "--json").stdout)  # fmt: skip
    assert [(r["name"], r["state"], r["in_sync"]) for r in status] == [("agent", "running", True)]
    assert status[0]["last_ledger"]["digest"] == out["digest"]


@needs_root
def test_gateway_gone_rolls_back_and_ledger_records_it(daemon, tmp_path):
    before_text = daemon.policy.read_text()
    before = daemon.status()["policy_digest"]
    daemon.stop()  # the gateway is down: the new policy can never be confirmed
    new = tmp_path / "new.yaml"
    new.write_text(policy_text(port=10443))
    code, out = _apply(daemon, new, "--timeout", "0.5")
    assert (code, out["result"]) == (1, "rolled_back")
    assert "no gateway daemon" in out["error"] and out["enforce_latency_s"] is None
    assert daemon.policy.read_text() == before_text  # previous content back in place
    [rec] = [json.loads(x) for x in daemon.ledger.read_text().splitlines()]
    assert (rec["result"], rec["digest"], rec["previous_digest"]) == ("rolled_back", out["digest"], before)
    assert "no gateway daemon" in rec["detail"]
    assert clawfleet("policy", "status", "--policy-dir", str(daemon.policy_dir), "--socket", str(daemon.socket),
                     "--ledger", str(daemon.ledger), "--fail-on-drift").returncode == 1  # fmt: skip


@needs_root
def test_unknown_sandbox_fails_fast_and_first_policy_is_taken_away(daemon, tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text(policy_text())
    proc = clawfleet("policy", "apply", str(new), "--name", "ghost", "--policy-dir", str(daemon.policy_dir),
                     "--socket", str(daemon.socket), "--ledger", str(daemon.ledger))  # fmt: skip
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["result"], out["previous_digest"]) == (1, "failed", None)
    assert "no sandbox named 'ghost'" in out["error"]
    assert not (daemon.policy_dir / "ghost.yaml").exists()  # a re-run tries again instead of "unchanged"


# -- no gateway needed ------------------------------------------------------------------------------------


def _opts(tmp_path: Path, **kw) -> ApplyOptions:
    base = {"name": "agent", "policy_dir": str(tmp_path / "policies"), "socket": str(tmp_path / "none.sock"),
            "ledger": str(tmp_path / "ledger.jsonl"), "operator": "op", "group": "nosuchgroup-xyz"}  # fmt: skip
    base.update(kw)
    return ApplyOptions(**base)


def test_invalid_file_is_refused_and_nothing_is_touched(tmp_path, write):
    live = tmp_path / "policies" / "agent.yaml"
    live.parent.mkdir()
    live.write_text(policy_text())
    bad = write("bad.yaml", policy_text().replace("port: 8443", "port: 99999"))
    proc = clawfleet("policy", "apply", str(bad), "--name", "agent", "--policy-dir", str(live.parent),
                     "--ledger", str(tmp_path / "ledger.jsonl"))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:13:15: network_policies.api.endpoints[0].port: ")  # FILE:LINE:COL
    assert json.loads(proc.stdout)["result"] == "invalid"
    assert live.read_text() == policy_text()
    assert sorted(p.name for p in live.parent.iterdir()) == ["agent.yaml"]
    assert not (tmp_path / "ledger.jsonl").exists()


def test_no_verify_first_deployment_and_check(tmp_path, write):
    new = write("new.yaml", policy_text())
    out = apply_policy(str(new), _opts(tmp_path, check=True))
    assert out["result"] == "would_apply" and not (tmp_path / "policies").exists()
    out = apply_policy(str(new), _opts(tmp_path, verify=False))
    assert (out["result"], out["previous_digest"], out["enforce_latency_s"]) == ("applied", None, None)
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()
    assert not (tmp_path / "policies" / "agent.yaml.previous").exists()
    assert apply_policy(str(new), _opts(tmp_path, verify=False))["result"] == "unchanged"
    [rec] = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert rec["detail"] == "not verified (--no-verify)"
    assert oct((tmp_path / "ledger.jsonl").stat().st_mode & 0o777) == "0o640"


def test_rollback_without_a_daemon_restores_previous(tmp_path, write):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    new = write("new.yaml", policy_text(port=1234))
    out = apply_policy(str(new), _opts(tmp_path, timeout=0.2))
    assert out["result"] == "rolled_back" and out["rollback_verified"] is False
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()


def test_sigterm_while_waiting_rolls_back(tmp_path, write):
    """An Ansible or SSH timeout kills apply while it waits for the gateway: the unproven policy goes away."""
    import signal
    import subprocess
    import sys
    import time

    live = tmp_path / "policies" / "agent.yaml"
    live.parent.mkdir()
    live.write_text(policy_text())
    new = write("new.yaml", policy_text(port=1234))
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "policy", "apply", str(new), "--name", "agent",
                             "--policy-dir", str(live.parent), "--socket", str(tmp_path / "none.sock"),
                             "--ledger", str(tmp_path / "ledger.jsonl"), "--timeout", "60"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while live.read_text() != new.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # inside the wait (the handler is set right after the rename)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out)
    assert (proc.returncode, result["result"]) == (1, "rolled_back")
    assert "interrupted by SIGTERM" in result["error"]
    assert live.read_text() == policy_text()
    assert json.loads((tmp_path / "ledger.jsonl").read_text())["result"] == "rolled_back"


def _ledger_with(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "ledger.jsonl"
    for i in range(n):
        ledger.append(str(path), {"host": "h", "sandbox": f"s{i % 2}", "digest": f"sha256:{i}", "result": "applied"})
    return path


def _verify(path: Path) -> tuple[int, str]:
    proc = clawfleet("policy", "ledger", "--ledger", str(path), "--verify")
    return proc.returncode, proc.stdout + proc.stderr


def test_ledger_chain_detects_edits_deletions_and_truncation(tmp_path):
    path = _ledger_with(tmp_path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    assert _verify(path) == (0, f"{path}: chain intact (4 records)\n")
    assert ledger.last_records(str(path))["s1"]["digest"] == "sha256:3"
    listing = clawfleet("policy", "ledger", "--ledger", str(path), "--sandbox", "s0", "--json").stdout.splitlines()
    assert [json.loads(x)["digest"] for x in listing] == ["sha256:0", "sha256:2"]

    path.write_bytes(b"".join([lines[0], lines[1].replace(b"sha256:1", b"sha256:X"), *lines[2:]]))
    code, text = _verify(path)
    assert code == 1 and "line 3: prev_hash does not match line 2" in text

    path.write_bytes(b"".join([lines[0], *lines[2:]]))  # a record deleted
    code, text = _verify(path)
    assert code == 1 and "line 2: prev_hash does not match" in text

    path.write_bytes(b"".join(lines[:3]))  # the newest record deleted: only the head file can tell
    code, text = _verify(path)
    assert code == 1 and "head file records 4 lines, the ledger has 3" in text

    path.write_bytes(b"".join([*lines[:3], lines[3].replace(b"rolled", b"x").replace(b"applied", b"rolled_back")]))
    code, text = _verify(path)
    assert code == 1 and "the last record does not match the head file" in text


def test_ledger_append_is_chained_and_survives_a_torn_line(tmp_path):
    path = _ledger_with(tmp_path, 2)
    with open(path, "ab") as f:
        f.write(b'{"torn": ')  # a crash in the middle of a write (not by clawfleet: one write() per record)
    ledger.append(str(path), {"sandbox": "s0", "result": "applied"})
    raw = path.read_bytes().splitlines()
    assert len(raw) == 4 and json.loads(raw[3])["prev_hash"] == ledger.line_hash(raw[2])
    _count, breaks = ledger.verify(str(path))
    assert [b.line for b in breaks] == [3]  # the torn line is named; the chain goes on after it


@needs_root
def test_a_static_change_is_not_in_sync_until_the_sandbox_restarts(daemon, tmp_path):
    # Twin: a network change is hot-reloaded, nothing waits for a restart.
    net = tmp_path / "net.yaml"
    net.write_text(policy_text(port=9443))
    code, out = _apply(daemon, net)
    assert (code, out["result"], out["needs_restart"]) == (0, "applied", False)
    assert daemon.status()["restart_pending"] is False

    # A filesystem change: the gateway reports the new digest (its network part is live), but the running sandbox
    # keeps the mounts it started with. Status must not call that "in sync".
    static = tmp_path / "static.yaml"
    old_ro = "read_only: [/usr, /lib, /lib64, /bin, /etc, /proc]"
    static.write_text(policy_text(port=9443).replace(old_ro, old_ro[:-1] + ", /sbin]"))
    code, out = _apply(daemon, static)
    assert (code, out["result"], out["needs_restart"]) == (0, "applied", True)
    running = daemon.status()
    assert running["policy_digest"] == out["digest"] and running["restart_pending"] is True
    proc = clawfleet("policy", "status", "--policy-dir", str(daemon.policy_dir), "--socket", str(daemon.socket),
                     "--ledger", str(daemon.ledger), "--json", "--fail-on-drift")  # fmt: skip
    [row] = json.loads(proc.stdout)
    assert (proc.returncode, row["in_sync"], row["restart_pending"]) == (1, False, True)

    # The sandbox exits (as a restart would stop it); the daemon starts it again with the new static sections.
    os.kill(running["pid"], 9)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = daemon.status()
        if st and st["state"] == "running" and st["pid"] != running["pid"]:
            break
        time.sleep(0.2)
    assert st["state"] == "running" and st["pid"] != running["pid"], st
    assert st["restart_pending"] is False
    [row] = json.loads(clawfleet("policy", "status", "--policy-dir", str(daemon.policy_dir), "--socket",
                                 str(daemon.socket), "--json").stdout)  # fmt: skip
    assert (row["in_sync"], row["restart_pending"]) == (True, False)
