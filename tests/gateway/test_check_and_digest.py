"""`clawfleet gateway check` (validation of daemon configs and sandbox definitions, used by the Ansible gateway
role's `validate:`) and the policy digest that `clawfleet sandbox status` reports from the decision log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet.gateway.config import current_digest
from clawfleet.policy import digest, load_file
from clawfleet.supervisor.check import check_file

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "policies" / "base.yaml"


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def definition(tmp_path: Path, **extra) -> Path:
    return write(tmp_path / "agent.yaml", {"name": "agent", "command": ["/usr/bin/python3", "/sandbox/a.py"],
                                            "policy": str(BASE), **extra})  # fmt: skip


def run_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", "gateway", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_valid_definition_and_daemon_config(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("value\n")
    d = definition(tmp_path, credentials=["TOKEN"], secrets={"TOKEN": {"file": str(secret), "hosts": ["api.x"]}},
                   limits={"memory_max": "1G", "pids_max": 64}, inference={"route": "http://inference.local:8484/v1"},
                   gateway={"static_hosts": {"inference.local": "127.0.0.1"}})  # fmt: skip
    assert check_file(str(d)) == ["agent"]
    daemon = write(tmp_path / "daemon.yaml", {"state_dir": str(tmp_path / "s"), "sandboxes": [str(d)]})
    assert check_file(str(daemon)) == ["agent"]
    proc = run_check(daemon)
    assert proc.returncode == 0 and "ok (agent)" in proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bogus": 1}, "unknown keys: bogus"),
        ({"mode": "audit"}, "mode must be enforce or monitor"),
        ({"gateway": {"nonsense": True}}, "unknown gateway settings: nonsense"),
        ({"credentials": ["TOKEN"]}, "credentials without a secrets binding: TOKEN"),
        ({"secrets": {"TOKEN": {"file": "/nonexistent/token", "hosts": ["a"]}}}, "no file /nonexistent/token"),
        ({"limits": {"cpu": 2}}, "unknown limits: cpu"),
        ({"env": {"GITHUB_TOKEN": "ghp_realvalue"}}, "looks like a credential"),
        ({"policy": "/nonexistent/policy.yaml"}, "policy.yaml"),
    ],
)
def test_invalid_definitions_are_refused_with_a_reason(tmp_path, extra, message):
    proc = run_check(definition(tmp_path, **extra))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_invalid_policy_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnetwork_policies: {x: {endpoints: [{host: a, port: 99999}]}}\n")
    proc = run_check(definition(tmp_path, policy=str(bad)))
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr


def test_daemon_config_refuses_unknown_keys_and_duplicates(tmp_path):
    d = definition(tmp_path)
    assert run_check(write(tmp_path / "d1.yaml", {"sandboxes": [str(d)], "extra": 1})).returncode == 2
    proc = run_check(write(tmp_path / "d2.yaml", {"sandboxes": [str(d), str(d)]}))
    assert proc.returncode == 2 and "duplicate sandbox name 'agent'" in proc.stderr


def test_current_digest_is_the_last_one_logged(tmp_path):
    log = tmp_path / "agent.decisions.jsonl"
    assert current_digest(str(log)) is None  # no log yet
    lines = [
        {"event": "listening", "digest": "sha256:aaa"},
        {"kind": "connect", "decision": "allow", "digest": "sha256:aaa"},
        {"event": "reload", "ok": True, "old_digest": "sha256:aaa", "digest": "sha256:bbb"},
        {"event": "reload", "ok": False, "error": ["bad"], "kept_digest": "sha256:bbb"},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"event": "reload", "digest": "sha256:cc')
    assert current_digest(str(log)) == "sha256:bbb"  # a failed reload keeps the last good one; partial line ignored


def test_current_digest_reads_only_the_tail(tmp_path):
    log = tmp_path / "big.jsonl"
    filler = json.dumps({"kind": "connect", "decision": "deny", "digest": "sha256:old"}) + "\n"
    log.write_text(filler * 20000 + json.dumps({"event": "reload", "ok": True, "digest": "sha256:new"}) + "\n")
    assert current_digest(str(log), tail_bytes=4096) == "sha256:new"


def test_digest_matches_the_policy_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clawfleet.cli", "policy", "digest", str(BASE)],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == digest(load_file(str(BASE)))
