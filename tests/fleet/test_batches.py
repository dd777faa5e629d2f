"""Batches and the failure threshold of ``clawfleet fleet push``, without any host."""

from __future__ import annotations

import base64
import json

import pytest

from clawfleet.cli import main
from clawfleet.fleet import transport
from clawfleet.fleet.batches import parse_max_fail, parse_serial, plan_batches, roll_out
from clawfleet.fleet.transport import HostRun

HOSTS = [f"h{i}" for i in range(1, 21)]


def test_serial_canary_then_ramps():
    sizes = parse_serial("1,10%,50%,100%", 20)
    assert sizes == [1, 2, 10, 20]
    assert [len(b) for b in plan_batches(HOSTS, sizes)] == [1, 2, 10, 7]
    assert [len(b) for b in plan_batches(HOSTS[:4], parse_serial("1,10%,50%,100%", 4))] == [1, 1, 2]
    assert [len(b) for b in plan_batches(HOSTS[:5], parse_serial("2", 5))] == [2, 2, 1]  # the last size repeats
    assert plan_batches([], [1]) == []
    for bad in ("0", "-1", "x", "150%", "", "1,,2"):
        with pytest.raises(ValueError):
            parse_serial(bad, 20)
    assert (parse_max_fail("0", 20), parse_max_fail("3", 20), parse_max_fail("10%", 20)) == (0, 3, 2)
    with pytest.raises(ValueError):
        parse_max_fail("-1", 20)


def _fake(results: dict[str, str], calls: list):
    def run_batch(batch):
        calls.append(batch)
        return {h: {"result": results.get(h, "applied")} for h in batch}

    return run_batch


def test_a_failing_host_stops_the_rollout_and_later_batches_stay_untouched():
    calls: list = []
    hosts = ["a", "b", "c", "d"]
    results, stopped = roll_out(plan_batches(hosts, [1, 1, 2]), _fake({"b": "rolled_back"}, calls), max_fail=0)
    assert stopped and calls == [["a"], ["b"]]
    assert [(r["target"], r["batch"], r["result"]) for r in results] == [
        ("a", 1, "applied"), ("b", 2, "rolled_back"), ("c", 3, "skipped"), ("d", 3, "skipped")]  # fmt: skip


def test_max_fail_tolerates_that_many_failures():
    calls: list = []
    results, stopped = roll_out(plan_batches(list("abcd"), [1]), _fake({"a": "failed"}, calls), max_fail=1)
    assert not stopped and len(calls) == 4
    results, stopped = roll_out(plan_batches(list("abcd"), [1]), _fake({"a": "failed", "c": "error"}, []), 1)
    assert stopped and [r["result"] for r in results] == ["failed", "applied", "error", "skipped"]
    # a host missing from the batch's answer counts as failed
    results, stopped = roll_out([["a"], ["b"]], lambda batch: {}, 0)
    assert stopped and [r["result"] for r in results] == ["error", "skipped"]
    results, stopped = roll_out([["a"], ["b"]], _fake({"b": "failed"}, []), 0)
    assert not stopped  # a failure in the last batch leaves nothing to skip


def test_push_cli_wiring_with_a_failing_canary(monkeypatch, tmp_path, capsys):
    """The CLI end to end with the transport replaced: the canary rolls back, nothing else is contacted."""
    from policy_daemon import policy_text

    policy = tmp_path / "p.yaml"
    policy.write_text(policy_text())
    seen: list = []

    def fake_run(targets, command, uploads=(), **kw):
        seen.append(([n for n, _ in targets], command, uploads))
        out = {"result": "rolled_back", "digest": "sha256:x", "error": "verify failed: timed out"}
        return {n: HostRun(connected=True, ran=True, stdout="noise\n" + json.dumps(out)) for n, _ in targets}

    monkeypatch.setattr(transport, "run_on_hosts", fake_run)
    code = main(["fleet", "push", str(policy), "--name", "agent", "--hosts", "h1,h2", "--hosts", "h3,h4",
                 "--source-commit", "abc", "--operator", "me", "--json"])  # fmt: skip
    assert code == 1
    [(names, command, uploads)] = seen
    assert names == ["h1"]
    # One round trip per host: the policy travels in the command (base64 piped to `apply -`), nothing is uploaded
    encoded = base64.b64encode(policy.read_bytes()).decode()
    assert command.startswith(f"printf '%s' {encoded} | base64 -d | /opt/clawfleet/venv/bin/clawfleet policy apply - ")
    assert "--source-commit abc" in command and "--operator me" in command
    # applied from memory on the host: no staging directory is named (nothing would read a copy there)
    assert "--staging-dir" not in command and "policy-staging" not in command and uploads == []
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x.get("target"), x.get("result")) for x in lines[:-1]] == [
        ("h1", "rolled_back"), ("h2", "skipped"), ("h3", "skipped"), ("h4", "skipped")]  # fmt: skip
    assert lines[-1]["summary"]["counts"] == {"rolled_back": 1, "skipped": 3}
    assert lines[-1]["summary"]["stopped_early"] is True


def test_a_policy_too_large_for_the_command_is_uploaded_first(monkeypatch, tmp_path, capsys):
    from clawfleet.fleet.push import INLINE_MAX_BYTES
    from policy_daemon import policy_text

    policy = tmp_path / "big.yaml"
    policy.write_text(policy_text() + "# " + "x" * INLINE_MAX_BYTES + "\n")
    seen: list = []

    def fake_run(targets, command, uploads=(), **kw):
        seen.append((command, uploads))
        return {n: HostRun(connected=True, ran=True, stdout=json.dumps({"result": "applied"})) for n, _ in targets}

    monkeypatch.setattr(transport, "run_on_hosts", fake_run)
    assert main(["fleet", "push", str(policy), "--name", "agent", "--hosts", "h1", "--json"]) == 0
    [(command, uploads)] = seen
    assert command.startswith("/opt/clawfleet/venv/bin/clawfleet policy apply /var/lib/clawfleet/policy-staging/")
    assert "rm -f" in command and uploads[0][0] == policy.read_bytes()


def test_invalid_policy_is_refused_before_any_host(monkeypatch, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnetwork_policies:\n  x:\n    endpoints: [{host: a.example, port: 0}]\n")
    monkeypatch.setattr(transport, "run_on_hosts", lambda *a, **k: pytest.fail("a host was contacted"))
    assert main(["fleet", "push", str(bad), "--name", "agent", "--hosts", "h1"]) == 2
    assert f"{bad}:4:" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\n")
    assert main(["fleet", "push", str(good), "--name", "agent"]) == 2  # no hosts at all is an error as well
    assert "no hosts" in capsys.readouterr().err


def test_targets_from_hosts_and_a_pyinfra_inventory(tmp_path):
    inv = tmp_path / "inventory.py"
    inv.write_text('web = ["web-1", ("web-2", {"ssh_user": "deploy"})]\ndb = ["web-1", "@docker/db-1"]\n')
    targets = transport.load_targets(["@local,web-2", "@local"], str(inv))
    assert [name for name, _ in targets] == ["@local", "web-2", "web-1", "@docker/db-1"]
    assert transport.load_targets([], str(inv))[1][1]["ssh_user"] == "deploy"


def test_ssh_hosts_refuse_unknown_host_keys_unless_enrolling(tmp_path):
    # pyinfra's own default (accept-new) would trust whatever key a host shows first: a first push would hand the
    # policy and sudo to a machine nobody verified. Our targets carry "yes" (strict) unless the operator opts in.
    import paramiko
    from pyinfra.connectors.sshuserclient.client import get_missing_host_key_policy

    inv = tmp_path / "inventory.py"
    inv.write_text('web = ["web-1", ("web-2", {"ssh_strict_host_key_checking": "no"})]\nlocal = ["@local"]\n')
    targets = dict(transport.load_targets(["new-host"], str(inv), known_hosts=str(tmp_path / "known")))
    assert targets["new-host"]["ssh_strict_host_key_checking"] == "yes"
    assert targets["new-host"]["ssh_known_hosts_file"] == str(tmp_path / "known")
    assert targets["web-2"]["ssh_strict_host_key_checking"] == "no"  # the inventory's explicit choice stands
    assert "ssh_strict_host_key_checking" not in targets["@local"]
    policy = get_missing_host_key_policy(targets["new-host"]["ssh_strict_host_key_checking"])
    with pytest.raises(paramiko.SSHException, match="No host key for new-host"):
        policy.missing_host_key(paramiko.SSHClient(), "new-host", paramiko.RSAKey.generate(1024))
    enrolling = dict(transport.load_targets(["new-host"], None, accept_new_host_keys=True))
    assert enrolling["new-host"]["ssh_strict_host_key_checking"] == "accept-new"


def test_push_cli_passes_the_host_key_choice(monkeypatch, tmp_path):
    seen = {}

    def fake_load(hosts, inventory, **kw):
        seen.update(kw)
        return []

    monkeypatch.setattr(transport, "load_targets", fake_load)
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\n")
    main(["fleet", "push", str(good), "--name", "agent", "--hosts", "h1", "--accept-new-host-keys",
          "--known-hosts", str(tmp_path / "kh")])  # fmt: skip
    assert seen == {"accept_new_host_keys": True, "known_hosts": str(tmp_path / "kh")}
