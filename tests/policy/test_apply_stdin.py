"""``clawfleet policy apply -``: the policy from stdin, one remote command per host and sandbox (the Ansible role and
``fleet push`` use it). Applied from memory (no staged copy), refusal of bad input, check mode, the gateway unit
probe; against a real gateway daemon where verification is the point (root), on files alone otherwise."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet.policy.yamlio import MAX_BYTES
from policy_daemon import GatewayDaemon, policy_text

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a real gateway daemon and sandbox need root")
FAKE_SYSTEMCTL = Path(__file__).resolve().parent.parent / "fakes" / "fake_systemctl_show.py"


def _env(tmp_path: Path, load: str | None = None, active: str = "active") -> dict[str, str]:
    """With ``load``: a PATH whose ``systemctl`` is the fake, saying LoadState=``load``, ActiveState=``active``."""
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path / "tmp")  # a temporary copy would show up under tmp_path (see _copies)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    if load is not None:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        link = bin_dir / "systemctl"
        if not link.exists():
            link.symlink_to(FAKE_SYSTEMCTL)
        env.update({"PATH": f"{bin_dir}:{env['PATH']}", "FAKE_UNIT_LOAD": load, "FAKE_UNIT_ACTIVE": active,
                    "FAKE_SYSTEMCTL_LOG": str(tmp_path / "systemctl.log")})  # fmt: skip
    return env


def _run(tmp_path: Path, text: str | bytes, *extra: str, policy_dir: Path | None = None, socket: Path | None = None,
         ledger: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, dict, str]:  # fmt: skip
    argv = [sys.executable, "-m", "clawfleet.cli", "policy", "apply", "-", "--name", "agent",
            "--policy-dir", str(policy_dir or tmp_path / "policies"), "--socket", str(socket or tmp_path / "none.sock"),
            "--ledger", str(ledger or tmp_path / "ledger.jsonl"), "--operator", "tester",
            "--group", "nosuchgroup-xyz", *extra]  # fmt: skip
    data = text.encode() if isinstance(text, str) else text
    proc = subprocess.run(argv, input=data, capture_output=True, timeout=120, env=env or _env(tmp_path))
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr.decode()


def _copies(tmp_path: Path, text: str) -> list[str]:
    """Every file under ``tmp_path`` (its TMPDIR included) that holds ``text``, but the live policy and the kept
    previous one: the copies a run left behind."""
    live = {tmp_path / "policies" / "agent.yaml", tmp_path / "policies" / "agent.yaml.previous"}
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and p not in live and text.encode() in p.read_bytes())  # fmt: skip


# -- no gateway needed ------------------------------------------------------------------------------------


def test_stdin_first_deployment_places_the_bytes_and_reports_what_the_role_reads(tmp_path):
    text = "# from the controller\n" + policy_text()
    code, out, _ = _run(tmp_path, text, "--no-verify")
    assert (code, out["result"], out["exists"], out["needs_restart"]) == (0, "applied", False, False)
    assert "new policy" in out["diff"]
    live = tmp_path / "policies" / "agent.yaml"
    assert live.read_text() == text  # the exact bytes from stdin, comments kept
    assert oct(stat.S_IMODE((tmp_path / "policies").stat().st_mode)) == "0o750"
    assert _copies(tmp_path, text) == []  # applied from memory: the live file is the only copy

    code, again, _ = _run(tmp_path, text, "--no-verify")
    assert (code, again["result"], again["exists"]) == (0, "unchanged", True)
    assert len((tmp_path / "ledger.jsonl").read_text().splitlines()) == 1


def test_invalid_policy_on_stdin_keeps_the_last_good_one_and_names_the_line(tmp_path):
    good = policy_text()
    assert _run(tmp_path, good, "--no-verify")[1]["result"] == "applied"
    ledger_before = (tmp_path / "ledger.jsonl").read_text()
    bad = policy_text().replace("port: 8443", "port: 99999")
    code, out, err = _run(tmp_path, bad, "--stdin-label", "agent.yaml (merged for web-1)")
    assert (code, out["result"]) == (2, "invalid")
    # LABEL:LINE:COL, as for a file: the operator sees which host's policy and which line
    assert err.startswith("agent.yaml (merged for web-1):13:15: network_policies.api.endpoints[0].port: ")
    assert (tmp_path / "policies" / "agent.yaml").read_text() == good
    assert sorted(p.name for p in (tmp_path / "policies").iterdir()) == ["agent.yaml"]
    assert (tmp_path / "ledger.jsonl").read_text() == ledger_before
    assert _copies(tmp_path, "99999") == []


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xfe not utf-8", b"network_policies: [unclosed", b"!!python/object:os.system {}"],
    ids=["empty", "binary", "broken-yaml", "yaml-tag"],
)
def test_garbage_on_stdin_is_refused_and_nothing_is_touched(tmp_path, payload):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    code, out, err = _run(tmp_path, payload)
    assert (code, out["result"]) == (2, "invalid") and err.startswith("<stdin>")
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()
    assert not (tmp_path / "ledger.jsonl").exists()


def test_oversized_stdin_is_refused_before_it_is_written_anywhere(tmp_path):
    code, out, _err = _run(tmp_path, b"#" * (MAX_BYTES + 10))
    assert (code, out["result"]) == (2, "invalid") and out["error"].startswith("<stdin>: more than")
    assert not (tmp_path / "policies").exists() and _copies(tmp_path, "#" * 1024) == []


def test_check_mode_from_stdin_shows_the_diff_and_writes_nothing(tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    code, out, _ = _run(tmp_path, policy_text(port=9443), "--check")
    assert (code, out["result"], out["exists"]) == (0, "would_apply", True)
    assert "api.example.com:9443" in out["diff"]
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()
    assert sorted(p.name for p in (tmp_path / "policies").iterdir()) == ["agent.yaml"]  # no .previous
    assert not (tmp_path / "ledger.jsonl").exists() and _copies(tmp_path, "9443") == []


def test_the_deprecated_staging_option_is_accepted_with_a_warning_and_writes_nothing(tmp_path):
    """An older controller (fleet push before the removal) still passes ``--staging-dir`` to an upgraded host: the
    apply goes on from memory, one deprecation line on stderr, stdout is still the one JSON object, and nothing is
    written under the directory it names (not even the directory)."""
    staging = tmp_path / "staging"
    code, out, err = _run(tmp_path, policy_text(), "--no-verify", "--staging-dir", str(staging))
    assert (code, out["result"]) == (0, "applied")
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()
    assert [ln for ln in err.splitlines() if "--staging-dir" in ln] == [
        "clawfleet policy apply: --staging-dir is deprecated and ignored (the policy is applied from memory)"
    ]
    assert not staging.exists()
    assert "--staging-dir" not in subprocess.run([sys.executable, "-m", "clawfleet.cli", "policy", "apply", "--help"],
                                                 capture_output=True, text=True, timeout=120, env=_env(tmp_path),
                                                 check=True).stdout  # fmt: skip


def test_an_unknown_option_is_still_refused_before_anything_is_applied(tmp_path):
    """Beside the tolerated old option: any other unknown option is a usage error and nothing is applied."""
    argv = [sys.executable, "-m", "clawfleet.cli", "policy", "apply", "-", "--name", "agent",
            "--policy-dir", str(tmp_path / "policies"), "--stage-dir", str(tmp_path / "staging"),
            "--no-verify"]  # fmt: skip
    proc = subprocess.run(argv, input=policy_text().encode(), capture_output=True, timeout=120, env=_env(tmp_path))
    assert proc.returncode == 2 and b"--stage-dir" in proc.stderr
    assert not (tmp_path / "policies").exists() and not (tmp_path / "staging").exists()


def test_overlapping_runs_share_no_file_and_leave_none(tmp_path):
    """Two applies at once (two operators, a retry while a run hangs): each applies its own bytes from memory, and
    nothing of either is left anywhere afterwards, whatever the outcome (here: rolled back, no gateway)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    texts = [policy_text(port=1111), policy_text(port=2222)]
    procs = []
    for text in texts:
        argv = [sys.executable, "-m", "clawfleet.cli", "policy", "apply", "-", "--name", "agent",
                "--policy-dir", str(tmp_path / "policies"), "--socket", str(tmp_path / "none.sock"),
                "--ledger", str(tmp_path / "ledger.jsonl"), "--timeout", "3", "--group", "nosuchgroup-xyz"]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(tmp_path))  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(text.encode())
        proc.stdin.close()
        procs.append(proc)
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(json.loads(proc.stdout.read()))
        proc.wait(timeout=60)
    assert [r["result"] for r in results] == ["rolled_back", "rolled_back"]
    assert _copies(tmp_path, "1111") == [] and _copies(tmp_path, "2222") == []
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()


def test_verify_if_deployed_skips_verification_where_the_gateway_unit_is_not_installed(tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    env = _env(tmp_path, load="not-found", active="inactive")
    code, out, _ = _run(tmp_path, policy_text(port=9443), "--verify-if-deployed", env=env)
    assert (code, out["result"], out["gateway_installed"], out["gateway_running"]) == (0, "applied", False, False)
    [rec] = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert rec["detail"] == "not verified (clawfleet-gateway.service not installed)"
    assert (
        "show --property=LoadState --property=ActiveState clawfleet-gateway.service"
        in (tmp_path / "systemctl.log").read_text()
    )


def test_verify_if_deployed_skips_a_sandbox_s_first_policy(tmp_path):
    """Installed gateway, new sandbox: the gateway cannot know it before it starts (the gateway role verifies)."""
    env = _env(tmp_path, load="loaded", active="active")
    code, out, _ = _run(tmp_path, policy_text(), "--verify-if-deployed", env=env)
    assert (code, out["result"], out["exists"], out["gateway_running"]) == (0, "applied", False, True)
    [rec] = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert rec["detail"] == "not verified (first policy of this sandbox)"


def test_a_stopped_gateway_on_a_deployed_host_fails_the_apply_and_rolls_back(tmp_path):
    """Installed but stopped (or masked, failed): not a first deployment, so the change must be proven; it cannot
    be, and the last good policy is put back."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "agent.yaml").write_text(policy_text())
    env = _env(tmp_path, load="masked", active="inactive")
    code, out, _ = _run(tmp_path, policy_text(port=9443), "--verify-if-deployed", "--timeout", "0.3", env=env)
    assert (code, out["result"], out["gateway_installed"], out["gateway_running"]) == (1, "rolled_back", True, False)
    assert (tmp_path / "policies" / "agent.yaml").read_text() == policy_text()


# -- against a real gateway daemon -------------------------------------------------------------------------


@needs_root
def test_stdin_apply_is_verified_by_the_gateway_where_deployed(daemon: GatewayDaemon, tmp_path):
    before = daemon.status()["policy_digest"]
    env = _env(tmp_path, load="loaded", active="active")
    kw = {"policy_dir": daemon.policy_dir, "socket": daemon.socket, "ledger": daemon.ledger, "env": env}
    code, out, _ = _run(tmp_path, policy_text(port=9443), "--verify-if-deployed", **kw)
    assert (code, out["result"], out["previous_digest"], out["exists"]) == (0, "applied", before, True)
    assert isinstance(out["enforce_latency_s"], float)
    assert daemon.status()["policy_digest"] == out["digest"]
    assert daemon.policy.read_text() == policy_text(port=9443)
    code, again, _ = _run(tmp_path, policy_text(port=9443), "--verify-if-deployed", **kw)
    assert (code, again["result"], again["in_sync"]) == (0, "unchanged", True)
