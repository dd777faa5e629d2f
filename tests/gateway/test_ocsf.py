"""OCSF output (``ocsf_log``): real requests through the in-process gateway, every line validated against the pinned
OCSF 1.8.0 schema (tests/data/ocsf-1.8.0, via tests/gateway/ocsf_schema.py) and checked for the decision it
carries. The daemon's process events and ``ocsf_logs`` setting: tests/gateway/test_daemon.py."""

from __future__ import annotations

import copy
import json
import socket

from clawfleet.gateway.ocsf import OcsfContext, events

from .ocsf_schema import problems
from .support import connect, https, request


def _ocsf(gw) -> list[dict]:
    gw.log.flush()
    return [json.loads(x) for x in (gw.tmp / "ocsf.jsonl").read_text().splitlines() if x.strip()]


def _valid(lines: list[dict]) -> None:
    bad = {i: p for i, ev in enumerate(lines) if (p := problems(ev))}
    assert not bad, json.dumps({i: (lines[i], p) for i, p in bad.items()}, indent=1)[:4000]


def _plain(gw, origins, method: str, path: str) -> int:
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        return request(sock, method, f"http://plain.test:{port}{path}", f"plain.test:{port}")[0]


def test_network_and_http_decisions(make_gateway, origins, tmp_path):
    gw = make_gateway(ocsf_log=str(tmp_path / "ocsf.jsonl"))
    hp = origins["https"].port
    assert https(gw, origins, "GET", "/ok/one?x=1")[0] == 200
    assert https(gw, origins, "DELETE", "/ok/one")[0] == 403
    assert _plain(gw, origins, "GET", "/read") == 200
    assert _plain(gw, origins, "POST", "/write") == 403
    gw.binary = "/usr/bin/git"  # not listed: denied at CONNECT
    assert connect(gw, f"origin.test:{hp}")[1] == 403

    lines = _ocsf(gw)
    _valid(lines)
    decisions = [r for r in gw.records() if "decision" in r]
    assert len(lines) == len(decisions), "one OCSF event per decision"
    assert {ev["device"]["container"]["name"] for ev in lines} == {"unit"}

    opened = [ev for ev in lines if ev["class_uid"] == 4001]
    allowed = [ev for ev in opened if ev["action"] == "Allowed"]
    assert allowed and all(ev["activity_name"] == "Open" and ev["type_uid"] == 400101 for ev in opened)
    assert allowed[0]["dst_endpoint"] == {"domain": "origin.test", "port": hp}
    assert allowed[0]["firewall_rule"] == {"name": "origin", "type": "policy", "version": gw.holder.digest}
    assert allowed[0]["actor"]["process"]["name"] == "/usr/bin/curl"
    assert allowed[0]["actor"]["process"]["parent_process"]["name"] == "/usr/bin/bash"
    git = [ev for ev in opened if ev["actor"]["process"]["name"] == "/usr/bin/git"]
    assert len(git) == 1 and git[0]["action_id"] == 2 and git[0]["disposition"] == "Blocked"
    assert git[0]["severity"] == "Medium" and git[0]["status"] == "Failure" and git[0]["status_detail"]
    assert git[0]["firewall_rule"]["name"] == "-"

    http = {(ev["activity_name"], ev["http_request"]["url"]["path"]): ev for ev in lines if ev["class_uid"] == 4002}
    get = http[("Get", "/ok/one")]
    assert get["action"] == "Allowed" and get["status"] == "Success" and get["type_uid"] == 400203
    assert get["http_request"]["url"] == {"scheme": "https", "hostname": "origin.test", "port": hp, "path": "/ok/one",
                                          "query_string": "x=1",
                                          "url_string": f"https://origin.test:{hp}/ok/one?x=1"}  # fmt: skip
    delete = http[("Delete", "/ok/one")]
    assert delete["action"] == "Denied" and delete["disposition_id"] == 2 and delete["severity_id"] == 3
    assert delete["http_request"]["http_method"] == "DELETE" and delete["status_detail"]
    assert http[("Get", "/read")]["http_request"]["url"]["scheme"] == "http"
    assert http[("Get", "/read")]["action"] == "Allowed"
    assert http[("Post", "/write")]["action"] == "Denied"


def test_monitor_mode_would_be_denials_are_observed_not_allowed(make_gateway, origins, tmp_path):
    gw = make_gateway(mode="monitor", ocsf_log=str(tmp_path / "ocsf.jsonl"))
    assert https(gw, origins, "DELETE", "/ok/x")[0] == 200  # let through in monitor mode
    lines = _ocsf(gw)
    _valid(lines)
    delete = [ev for ev in lines if ev["class_uid"] == 4002 and ev["activity_name"] == "Delete"]
    assert len(delete) == 1
    assert (delete[0]["action"], delete[0]["disposition"], delete[0]["status"]) == ("Observed", "Logged", "Success")
    assert delete[0]["unmapped"]["mode"] == "monitor" and delete[0]["status_detail"]


def test_policy_reloads_are_config_state_change_events(make_gateway, origins, tmp_path):
    gw = make_gateway(ocsf_log=str(tmp_path / "ocsf.jsonl"))
    old = gw.holder.digest
    gw.policy.write_text(gw.policy.read_text().replace('method: GET, path: "/ok/**"', 'method: "*", path: "/ok/**"'))
    assert gw.wait_for(lambda: gw.holder.digest != old)
    new = gw.holder.digest
    gw.policy.write_text("version: 1\nnetwork_policies:\n  broken: {endpoints: [{host: 'x', port: 'nope'}]}\n")
    assert gw.wait_for(lambda: any(r.get("event") == "reload" and not r["ok"] for r in gw.records()))
    lines = _ocsf(gw)
    _valid(lines)
    config = [ev for ev in lines if ev["class_uid"] == 5019]
    assert len(config) == 2
    ok, failed = config
    assert (ok["status"], ok["state"], ok["type_uid"]) == ("Success", "Enabled", 501901)
    assert ok["unmapped"]["digest"] == new and ok["unmapped"]["old_digest"] == old
    assert new in ok["message"]
    assert (failed["status"], failed["state_id"], failed["severity"]) == ("Failure", 99, "Medium")
    assert failed["unmapped"]["kept_digest"] == new and "port" in failed["status_detail"]


def test_refused_connections_over_the_cap_are_network_refuse_events(make_gateway, origins, tmp_path):
    gw = make_gateway(max_connections=1, ocsf_log=str(tmp_path / "ocsf.jsonl"))
    held = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        assert gw.wait_for(lambda: gw.gateway.active == 1)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as extra:
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        assert gw.wait_for(lambda: any(ev["activity_name"] == "Refuse" for ev in _ocsf(gw)))
    finally:
        held.close()
    lines = _ocsf(gw)
    _valid(lines)
    refuse = next(ev for ev in lines if ev["activity_name"] == "Refuse")
    assert refuse["action"] == "Denied" and refuse["disposition"] == "Rejected"
    assert refuse["firewall_rule"] == {"name": "max_connections", "type": "limits"}
    assert refuse["unmapped"]["max_connections"] == 1


def test_every_projected_record_kind_validates():
    """The records the in-process tests above do not produce (listening, process events, timeouts, the
    destination guard), projected from the shapes the gateway writes, validate too."""
    ctx = OcsfContext("box", 3128, "host-1")
    records = [
        {"event": "listening", "netns_pid": 9, "port": 3128, "digest": "d1", "mode": "enforce"},
        {"event": "process_start", "pid": 9, "command": ["/bin/sh", "-c", "x"], "supervisor_pid": 1},
        {"event": "process_exit", "pid": 9, "command": ["/bin/sh"], "exit_code": 3, "supervisor_pid": 1},
        {"event": "process_exit", "pid": 9, "command": ["/bin/sh"], "exit_code": None},
        {"event": "address_refused", "binary": "/usr/bin/curl", "host": "x.test", "port": 443,
         "addresses": ["127.0.0.1"], "rule": "r", "reason": "loopback"},
        {"event": "idle_timeout", "binary": "/usr/bin/curl", "idle_timeout": 5},
        {"event": "tls_handshake_failed", "binary": "/usr/bin/curl", "error": "bad"},
        {"event": "bad_request", "binary": None, "error": "x"},
        {"kind": "http", "binary": None, "pid": None, "ancestors": [], "host": "10.0.0.1", "port": 80,
         "method": "BREW", "path": "/", "decision": "deny", "action": "deny", "rule": None,
         "reason": "caller not identified: gone", "digest": "d1", "mode": "enforce"},
    ]  # fmt: skip
    out = [ev for r in records for ev in events(ctx, r, 1_700_000_000_000)]
    _valid(out)
    kinds = [(ev["class_uid"], ev["activity_id"]) for ev in out]
    assert kinds == [(5019, 1), (4001, 7), (1007, 1), (1007, 2), (1007, 2), (4001, 1), (4001, 3), (4001, 4),
                     (4001, 4), (4002, 99)]  # fmt: skip
    assert out[3]["exit_code"] == 3 and out[3]["status"] == "Failure"
    assert "exit_code" not in out[4]  # the attached gateway does not know it
    assert out[-1]["firewall_rule"]["type"] == "identity" and out[-1]["unmapped"]["method"] == "BREW"
    assert "http_method" not in out[-1]["http_request"]


def test_the_daemons_definition_reloads_validate():
    ctx = OcsfContext(None, 3128, "host-1")  # the daemon's own events concern no one sandbox
    ok = list(events(ctx, {"event": "reloaded", "added": ["a"], "removed": [], "changed": ["b"], "unchanged": [],
                           "restart_needed_for": None}, 1))  # fmt: skip
    failed = list(events(ctx, {"event": "reload_failed", "error": "x.yaml:3:1: no_such_key: unknown key",
                               "kept": ["a"]}, 2))  # fmt: skip
    _valid(ok + failed)
    assert ok[0]["status"] == "Success" and "added:1" in ok[0]["message"] and ok[0]["unmapped"]["changed"] == ["b"]
    assert failed[0]["status"] == "Failure" and failed[0]["status_detail"].startswith("x.yaml:3:1")
    assert "container" not in ok[0]["device"]


def test_the_validator_refuses_what_the_schema_forbids():
    """The check is not vacuous: each mutation of a valid event is caught, the event itself passes."""
    ctx = OcsfContext("box", 3128, "host-1")
    record = {"kind": "connect", "binary": "/usr/bin/curl", "pid": 5, "ancestors": [], "host": "a.test", "port": 443,
              "method": None, "path": None, "decision": "allow", "action": "allow", "rule": "r", "reason": "",
              "digest": "d", "mode": "enforce"}  # fmt: skip
    good = next(events(ctx, record, 1))
    assert problems(good) == []

    def broken(change) -> list[str]:
        ev = copy.deepcopy(good)
        change(ev)
        return problems(ev)

    assert broken(lambda ev: ev.update(severity="High"))  # caption of severity_id 1 is Informational
    assert broken(lambda ev: ev.update(type_uid=400102))  # not class_uid * 100 + activity_id
    assert broken(lambda ev: ev.update(container={"name": "box"}))  # no top-level container in 1.8.0
    assert broken(lambda ev: ev.update(activity_id=42))  # not in the enum
    assert broken(lambda ev: ev["metadata"].update(profiles=["host"]))  # action_id needs security_control
    assert broken(lambda ev: ev.pop("metadata"))  # required
    assert broken(lambda ev: ev["dst_endpoint"].update(port="443"))  # port_t is an integer
    assert broken(lambda ev: ev.update(dst_endpoint={}))  # network_endpoint: at least one of ip, domain, ...
    assert broken(lambda ev: ev["device"].pop("type_id"))  # required in device
    assert broken(lambda ev: ev.update(class_uid=4002))  # class_uid of the class validated against


def test_websocket_message_decisions_validate():
    """One client WebSocket message (allowed, denied, refused by the frame parser): Network Activity, Other."""
    ctx = OcsfContext("box", 3128, "host-1")
    base = {"kind": "websocket_message", "binary": "/usr/bin/node", "pid": 5, "ancestors": [], "host": "rt.test",
            "port": 443, "path": "/graphql", "rule": "rt", "digest": "d", "mode": "enforce", "tls": True}  # fmt: skip
    allowed = {**base, "method": "WEBSOCKET_TEXT", "decision": "allow", "action": "allow", "reason": "ok",
               "message_bytes": 12}  # fmt: skip
    denied = {**allowed, "decision": "deny", "action": "deny", "reason": "denied by policy rt: deny rule mutation"}
    refused = {**base, "method": None, "decision": "deny", "action": "deny", "reason": "not UTF-8", "close_code": 1007}
    evs = [next(events(ctx, r, 1)) for r in (allowed, denied, refused)]
    assert [problems(ev) for ev in evs] == [[], [], []]
    assert [ev["class_uid"] for ev in evs] == [4001] * 3 and all(ev["activity_id"] == 99 for ev in evs)
    assert evs[1]["action"] == "Denied" and evs[1]["firewall_rule"]["name"] == "rt"
    assert evs[1]["message"] == "WEBSOCKET_L7_REQUEST denied WEBSOCKET_TEXT rt.test:443/graphql"
    assert evs[2]["unmapped"]["close_code"] == 1007
