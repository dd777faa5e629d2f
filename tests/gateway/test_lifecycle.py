"""Hot reload, approvals round trip and learn mode, against the in-process gateway."""

from __future__ import annotations

import json

from clawfleet.policy import approvals, compile_policy, digest, load_file, load_text

from .support import connect, https, unit_policy


def _reloads(gw) -> list[dict]:
    return [r for r in gw.records() if r.get("event") == "reload"]


def test_hot_reload_valid_change_applies(gw, origins):
    assert https(gw, origins, "DELETE", "/ok/x")[0] == 403
    old = gw.holder.digest
    gw.policy.write_text(gw.policy.read_text().replace('method: GET, path: "/ok/**"', 'method: "*", path: "/ok/**"'))
    assert gw.wait_for(lambda: gw.holder.digest != old)
    assert https(gw, origins, "DELETE", "/ok/x")[0] == 200
    rec = _reloads(gw)[-1]
    assert rec["ok"] and rec["old_digest"] == old and rec["digest"] == gw.holder.digest
    assert "needs_restart" not in rec
    last = [r for r in gw.records() if r.get("kind") == "tls_request"][-1]
    assert last["digest"] == gw.holder.digest  # every decision names the policy it used


def test_hot_reload_invalid_file_keeps_last_good(gw, origins):
    good = gw.holder.digest
    gw.policy.write_text("version: 1\nnetwork_policies:\n  broken: {endpoints: [{host: 'x', port: 'nope'}]}\n")
    assert gw.wait_for(lambda: any(not r["ok"] for r in _reloads(gw)))
    assert gw.holder.digest == good
    assert https(gw, origins, "GET", "/ok/still")[0] == 200
    bad = [r for r in _reloads(gw) if not r["ok"]][-1]
    assert bad["kept_digest"] == good and bad["error"]


def test_hot_reload_static_change_is_flagged(gw, origins):
    text = gw.policy.read_text() + "filesystem_policy:\n  read_only: [/usr]\n"
    gw.policy.write_text(text)
    assert gw.wait_for(lambda: any(r.get("needs_restart") for r in _reloads(gw)))
    rec = [r for r in _reloads(gw) if r.get("needs_restart")][-1]
    assert rec["ok"] and "filesystem_policy" in rec["static_changed"]


def test_approvals_round_trip(gw, origins):
    gw.binary = "/usr/bin/git"
    assert https(gw, origins, "GET", "/ok/x")[0] == 403  # git is not listed
    gw.binary = "/usr/bin/curl"
    assert https(gw, origins, "PUT", "/ok/y")[0] == 403  # curl may not PUT
    items = approvals.pending(str(gw.log_path))
    assert {(p.binary, p.method) for p in items} == {("/usr/bin/git", None), ("/usr/bin/curl", "PUT")}
    old = gw.holder.digest
    for p in items:
        approvals.approve(str(gw.log_path), str(gw.policy), p.id)
    assert approvals.pending(str(gw.log_path)) == []
    final = digest(load_file(str(gw.policy)))
    assert final != old
    assert gw.wait_for(lambda: gw.holder.digest == final)
    assert https(gw, origins, "PUT", "/ok/y")[0] == 200
    assert https(gw, origins, "PUT", "/ok/other")[0] == 403  # exactly what was approved
    gw.binary = "/usr/bin/git"
    assert https(gw, origins, "GET", "/ok/x")[0] == 200


def test_learn_mode_suggests_exactly_what_was_observed(make_gateway, origins):
    gw = make_gateway(mode="monitor", policy_text=unit_policy(origins))
    observed = [("/usr/bin/node", "GET", "/v1/models"), ("/usr/bin/node", "POST", "/v1/chat"),
                ("/usr/bin/curl", "GET", "/ok/z")]  # fmt: skip
    for binary, method, path in observed:
        gw.binary = binary
        assert https(gw, origins, method, path)[0] == 200
    gw.binary = "/usr/bin/pip"
    sock, status, _ = connect(gw, f"pass.test:{origins['https'].port}")  # L4 passthrough
    sock.close()
    assert status == 200
    gw.log.flush()
    text = approvals.suggest(approvals.read_log(str(gw.log_path)))
    engine = compile_policy(load_text(text))  # validates
    port = origins["https"].port
    for binary, method, path in observed:
        assert engine.decide(binary, (), "origin.test", port, method=method, path=path).allowed, (binary, path)
    assert not engine.decide("/usr/bin/node", (), "origin.test", port, method="DELETE", path="/v1/models").allowed
    assert not engine.decide("/usr/bin/node", (), "origin.test", port, method="GET", path="/ok/z").allowed
    assert not engine.decide("/usr/bin/curl", (), "origin.test", port, method="GET", path="/v1/models").allowed
    assert not engine.decide("/usr/bin/node", (), "elsewhere.test", port).allowed
    # the L4 passthrough host was learned at L4, for the binary that used it
    assert engine.decide("/usr/bin/pip", (), "pass.test", port).allowed
    assert not engine.decide("/usr/bin/node", (), "pass.test", port).allowed


def test_learned_rule_is_the_decoded_path_the_engine_judges(make_gateway, origins):
    gw = make_gateway(mode="monitor", policy_text=unit_policy(origins))
    gw.binary = "/usr/bin/node"
    assert https(gw, origins, "GET", "/v1/caf%c3%a9?q=1")[0] == 200
    gw.log.flush()
    text = approvals.suggest(approvals.read_log(str(gw.log_path)))
    assert "/v1/caf\u00e9" in text or "/v1/café" in text
    engine = compile_policy(load_text(text))
    port = origins["https"].port
    assert engine.decide("/usr/bin/node", (), "origin.test", port, method="GET", path="/v1/caf%C3%A9").allowed
    assert not engine.decide("/usr/bin/node", (), "origin.test", port, method="GET", path="/v1/cafe").allowed


def test_pending_cli_output(gw, origins, capsys):
    import argparse

    gw.binary = "/usr/bin/wget"
    https(gw, origins, "GET", "/ok/x")
    parser = argparse.ArgumentParser()
    approvals.register_policy_subcommands(parser.add_subparsers())
    args = parser.parse_args(["pending", "--log", str(gw.log_path), "--json"])
    assert args.func(args) == 0
    items = json.loads(capsys.readouterr().out)
    assert items[0]["binary"] == "/usr/bin/wget" and items[0]["count"] == 1
