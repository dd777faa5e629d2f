"""The router and the gateway daemon run as hardened services; my-assistant runs in its sandbox through them.

The sample assistant repeats one cycle every 2 s (plain prompt, PII prompt, allowed fetch, denied fetch, secrets
directory) and logs one JSON line per step to the daemon's state dir; the FAKE upstreams (prepare.yml) record
every request they receive.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

ROUTER_KEY = "molecule-cloud-key-3f9a7c1e"
ORIGIN_SECRET = "molecule-origin-secret-8d2b41aa"
STATE = "/var/lib/clawfleet/gateway"


def has_local_model(host) -> bool:
    return host.backend.get_hostname().endswith("bookworm")


def records(host, name: str) -> list[dict]:
    text = (
        host.file(f"/opt/clawfleet-test-fakes/{name}.jsonl").content_string
        if host.file(f"/opt/clawfleet-test-fakes/{name}.jsonl").exists
        else ""
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assistant_steps(host, wait_for: int = 2) -> list[dict]:
    """The assistant's log lines, after at least `wait_for` complete cycles since now."""
    deadline = time.time() + 60
    start = len(host.file(f"{STATE}/my-assistant.out").content_string.splitlines())
    while True:
        lines = host.file(f"{STATE}/my-assistant.out").content_string.splitlines()
        steps = [json.loads(line) for line in lines[start:] if line.startswith("{")]
        if sum(1 for s in steps if s.get("step") == "secrets") >= wait_for or time.time() > deadline:
            return steps
        time.sleep(1)


@pytest.mark.parametrize(
    "unit", ["clawfleet-router.service", "clawfleet-gateway.service", "clawfleet-sandbox@my-assistant.service"]
)
def test_services_active_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_router_runs_unprivileged(host):
    show = host.check_output(
        "systemctl show clawfleet-router.service -p MainPID -p DynamicUser -p CapabilityBoundingSet -p ProtectSystem"
    )
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["DynamicUser"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["CapabilityBoundingSet"] == ""
    status = host.file(f"/proc/{props['MainPID']}/status").content_string
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid != "0"
    cap_eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_eff, 16) == 0


def test_router_key_is_a_credential_not_in_the_config(host):
    assert ROUTER_KEY not in host.file("/etc/clawfleet/router.yaml").content_string
    assert ROUTER_KEY not in host.file("/etc/systemd/system/clawfleet-router.service").content_string
    key_file = host.file("/etc/clawfleet/secrets/router-fakecloud")
    assert key_file.mode == 0o600 and key_file.user == "root"
    pid = host.check_output("systemctl show -p MainPID --value clawfleet-router.service")
    assert ROUTER_KEY not in host.file(f"/proc/{pid}/cmdline").content_string
    assert ROUTER_KEY not in host.file(f"/proc/{pid}/environ").content_string


def test_router_routes_pii_locally_and_plain_prompts_to_the_cloud(host):
    def ask(text: str):
        body = json.dumps({"model": "default", "messages": [{"role": "user", "content": text}]})
        out = host.run(
            "curl -s -o /dev/stdout -w '\\n%{http_code}' -H 'Content-Type: application/json' "
            f"-H 'Authorization: Bearer caller-key' --data '{body}' http://127.0.0.1:8484/v1/chat/completions"
        )
        text, _, code = out.stdout.rpartition("\n")
        return int(code), text

    cloud_before, local_before = len(records(host, "cloud")), len(records(host, "local-llm"))
    code, text = ask("What is a good name for a test fixture?")
    assert code == 200 and "answered by cloud" in text
    cloud = records(host, "cloud")[cloud_before:]
    assert cloud and cloud[-1]["authorization"] == f"Bearer {ROUTER_KEY}"  # the host's key, via the credential
    assert "caller-key" not in json.dumps(cloud)

    # The assistant in the sandbox sends its own prompts meanwhile: look for this one by its unique text.
    code, text = ask("Email the verify-results to jane.roe@example.org, card 4111 1111 1111 1111.")
    local = [r for r in records(host, "local-llm")[local_before:] if "verify-results" in r["body"]]
    if has_local_model(host):
        assert code == 200 and "answered by local-llm" in text
        assert len(local) == 1 and "jane.roe@example.org" in local[0]["body"]
    else:
        assert code == 403 and "policy_blocked" in text  # fail closed: no local model on this host
        assert local == []
    assert not any("jane.roe@example.org" in r["body"] for r in records(host, "cloud"))


def test_routing_table_fails_closed_without_local_model(host):
    config = host.file("/etc/clawfleet/router.yaml").content_string
    if has_local_model(host):
        assert "action: local" in config
    else:
        assert "action: local" not in config and "sensitive-blocked-no-local-model" in config


def test_sandbox_running_under_its_policy(host):
    status = json.loads(host.check_output("clawfleet sandbox status my-assistant"))
    assert status["state"] == "running"
    digest = host.check_output("clawfleet policy digest /etc/clawfleet/policies/my-assistant.yaml")
    assert status["policy_digest"] == digest


def test_assistant_cycle_through_router_and_gateway(host):
    steps = assistant_steps(host)
    asks = {s["prompt"]: s for s in steps if s["step"] == "ask"}
    assert asks["plain"]["status"] == 200 and "answered by cloud" in asks["plain"]["answer"]
    if has_local_model(host):
        assert asks["pii"]["status"] == 200 and "answered by local-llm" in asks["pii"]["answer"]
    else:
        assert asks["pii"]["status"] == 403
    fetch = [s for s in steps if s["step"] == "fetch"][-1]
    assert fetch["status"] == 200 and "hello from fake origin: /data" in fetch["excerpt"]
    denied = [s for s in steps if s["step"] == "denied"][-1]
    assert denied["status"] == 403 and "policy_denied" in denied["excerpt"]
    secrets = [s for s in steps if s["step"] == "secrets"][-1]
    assert secrets["readable"] is False


def test_denied_request_never_left_the_host(host):
    assert not any(r["path"] == "/steal" for r in records(host, "origin"))
    decisions = host.file(f"{STATE}/my-assistant.decisions.jsonl").content_string
    denials = [json.loads(x) for x in decisions.splitlines() if '"deny"' in x]
    assert any(d.get("host") == "denied.test" and d["action"] == "deny" for d in denials)


def test_secrets_absent_from_the_sandbox(host):
    # The sandboxed command itself (not a shell that mentions it): pid as seen from the host.
    pids = host.check_output("pgrep -f '^/usr/bin/python3 /sandbox/assistant[.]py'").split()
    assert pids
    for pid in pids:
        environ = host.file(f"/proc/{pid}/environ").content_string
        cmdline = host.file(f"/proc/{pid}/cmdline").content_string
        assert ORIGIN_SECRET not in environ and ORIGIN_SECRET not in cmdline
        assert ROUTER_KEY not in environ and ROUTER_KEY not in cmdline
        assert (
            "ORIGIN_TOKEN=clawfleet:secret:ORIGIN_TOKEN" in environ
            or "ORIGIN_TOKEN=openshell:resolve:env:ORIGIN_TOKEN" in environ
        )
        assert "OPENAI_BASE_URL=http://inference.local:8484/v1" in environ
    out = host.file(f"{STATE}/my-assistant.out").content_string
    assert ORIGIN_SECRET not in out and ROUTER_KEY not in out
    secret = host.file("/etc/clawfleet/secrets/sandbox-my-assistant-ORIGIN_TOKEN")
    assert secret.mode == 0o600 and secret.user == "root"


def test_policy_edit_was_hot_reloaded(host):
    # side_effect.yml re-converged with the github preset: the gateway reloaded without a restart.
    policy = host.file("/etc/clawfleet/policies/my-assistant.yaml").content_string
    assert "github" in policy
    previous = host.file("/etc/clawfleet/policies/my-assistant.yaml.previous")
    assert previous.exists and "github" not in previous.content_string
    decisions = host.file(f"{STATE}/my-assistant.decisions.jsonl").content_string.splitlines()
    reloads = [json.loads(x) for x in decisions if '"event":"reload"' in x]
    assert reloads and reloads[-1]["ok"] is True
    digest = host.check_output("clawfleet policy digest /etc/clawfleet/policies/my-assistant.yaml")
    assert reloads[-1]["digest"] == digest
    assert json.loads(host.check_output("clawfleet sandbox status my-assistant"))["policy_digest"] == digest
    assert not any(x.get("needs_restart") for x in reloads)
    # One attachment from the converge until the policy edit was in force: no restart of the gateway or the sandbox.
    events = [json.loads(x) for x in decisions if '"event":"listening"' in x or '"event":"reload"' in x]
    in_force = next(i for i, e in enumerate(events) if e["event"] == "reload" and e.get("digest") == digest)
    assert [e["event"] for e in events[:in_force]].count("listening") == 1
    # Then side_effect's definition edit: the reloaded gateway made this sandbox's listener again (for the running
    # sandbox, and for the restarted one); the gateway process stayed (side_effect compares its MainPID).
    assert [e["event"] for e in events[in_force:]].count("listening") in (1, 2)
    assert show(host, "clawfleet-sandbox@my-assistant.service", "NRestarts")["NRestarts"] == "0"


def show(host, unit: str, *props: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines())


def test_gateway_unit_hardening(host):
    props = show(host, "clawfleet-gateway.service", "ProtectSystem", "ProtectHome", "NoNewPrivileges", "Delegate",
                 "Restart", "RestrictNamespaces", "MemoryDenyWriteExecute", "PrivateDevices",
                 "ProtectControlGroups", "CapabilityBoundingSet", "AmbientCapabilities", "MemoryMax", "LimitNOFILE",
                 "InaccessiblePaths", "User", "CPUWeight")  # fmt: skip
    caps = set(props.pop("CapabilityBoundingSet").split())
    assert caps == {"cap_sys_admin", "cap_sys_ptrace", "cap_dac_read_search", "cap_setuid", "cap_setgid", "cap_kill",
                    "cap_chown"}  # fmt: skip
    assert props.pop("AmbientCapabilities") == ""
    assert props.pop("User") == ""  # root: the daemon drops the parsers' uid itself
    assert int(props.pop("MemoryMax")) == 2 * 1024**3
    assert int(props.pop("LimitNOFILE")) == 65536
    hidden = {p.lstrip("-") for p in props.pop("InaccessiblePaths").split()}
    assert {"/etc/clawfleet/router-keys", "/etc/clawfleet/vllm"} <= hidden, hidden
    assert props == {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "Delegate": "no",
        "Restart": "always",
        "RestrictNamespaces": "net",
        "MemoryDenyWriteExecute": "yes",
        "PrivateDevices": "yes",
        "ProtectControlGroups": "yes",
        "CPUWeight": "400",  # gateway_cpu_weight: four sandboxes' share under contention
    }


def test_gateway_parser_runs_without_privileges(host):
    """The process that parses my-assistant's traffic: clawfleet-gateway, no capability; the daemon keeps them.
    Parsers are forked from the daemon's parser forkserver (a root interpreter that reads no sandbox's setup)."""
    daemon = show(host, "clawfleet-gateway.service", "MainPID")["MainPID"]
    children = host.check_output(f"cat /proc/{daemon}/task/*/children").split()
    forkservers = [p for p in children if "gateway-parser-forkserver" in host.file(f"/proc/{p}/cmdline").content_string]
    assert len(forkservers) == 1, children
    parsers = host.check_output(f"cat /proc/{forkservers[0]}/task/*/children").split()
    assert len(parsers) == 1, parsers  # one sandbox, one parser
    status = dict(line.split(":\t", 1) for line in host.file(f"/proc/{parsers[0]}/status").content_string.splitlines()
                  if ":\t" in line)  # fmt: skip
    uid = host.user("clawfleet-gateway").uid
    assert status["Uid"].split() == [str(uid)] * 4
    assert all(int(status[c], 16) == 0 for c in ("CapInh", "CapPrm", "CapEff", "CapAmb")), status
    assert status["NoNewPrivs"] == "1"
    daemon_status = host.file(f"/proc/{daemon}/status").content_string
    assert "\nUid:\t0\t" in daemon_status and "\nCapEff:\t0000000000000000" not in daemon_status


def test_sandbox_unit_hardening(host):
    props = show(host, "clawfleet-sandbox@my-assistant.service", "ProtectSystem", "ProtectHome", "NoNewPrivileges",
                 "Delegate", "Restart", "KillMode", "DevicePolicy", "BindsTo", "PartOf", "CPUWeight",
                 "CPUQuotaPerSecUSec")  # fmt: skip
    # molecule.yml gives the Debian 13 host sandbox_cpu_quota 150%; the other keeps the default (no quota)
    quota = "infinity" if host.backend.get_hostname().endswith("bookworm") else "1.500000s"
    assert props == {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "Delegate": "yes",
        "Restart": "on-failure",
        "KillMode": "mixed",
        "DevicePolicy": "closed",
        "BindsTo": "",  # a gateway restart must not take the sandbox with it
        "PartOf": "",
        "CPUWeight": "100",  # sandbox_cpu_weight: one share per sandbox, however many processes it runs
        "CPUQuotaPerSecUSec": quota,
    }


def test_config_files_have_tight_modes(host):
    assert host.file("/etc/clawfleet/secrets").mode == 0o700
    assert host.file("/etc/clawfleet/gateway.yaml").mode == 0o640
    assert host.file("/etc/clawfleet/sandboxes/my-assistant.yaml").mode == 0o640
    assert host.file("/etc/clawfleet/policies/my-assistant.yaml").mode == 0o640
    assert host.file(STATE).mode == 0o700
    assert host.socket("unix:///run/clawfleet/gateway.sock").is_listening
    sock = host.file("/run/clawfleet/gateway.sock")
    assert sock.user == "root" and sock.mode & 0o077 == 0  # root only (created under umask 077)


def test_sandbox_cannot_read_clawfleet_configs_under_etc(host):
    # The sandbox's policy reads /etc (allowed twin: /etc/hostname); clawfleet's own files there are kept out by mode.
    router = host.file("/etc/clawfleet/router.yaml")
    assert router.mode == 0o640 and router.user == "root" and router.group == "root"
    pid = host.check_output("pgrep -f '^/usr/bin/python3 /sandbox/assistant[.]py'").split()[0]
    uid, gid = host.user("sandbox").uid, host.user("sandbox").gid
    inside = f"nsenter --target={pid} --mount --setuid={uid} --setgid={gid} -- /bin/cat"
    assert host.run(f"{inside} /etc/hostname").rc == 0
    for path in (
        "/etc/clawfleet/router.yaml",
        "/etc/clawfleet/gateway.yaml",
        "/etc/clawfleet/policies/my-assistant.yaml",
    ):
        denied = host.run(f"{inside} {path}")
        assert denied.rc != 0 and "Permission denied" in denied.stderr, path


PROBE = (Path(__file__).parents[3] / "playbooks" / "files" / "sandbox_probe.py").read_text()


def probe_from_sandbox(host, pid: int, url: str) -> dict:
    """One GET from inside the running sandbox's network namespace, as its user, through the gateway there."""
    uid, gid = host.user("sandbox").uid, host.user("sandbox").gid
    cmd = (f"nsenter --target={pid} --net --setuid={uid} --setgid={gid} -- /usr/bin/python3 -c "
           f"{shlex.quote(PROBE)} GET {shlex.quote(url)} 3128")  # fmt: skip
    return json.loads(host.check_output(cmd))


# Near the end: it restarts the gateway (the tests above count its attachments).
def test_gateway_crash_fails_closed_then_systemd_restarts_it_and_traffic_resumes(host):
    sandbox_unit = "clawfleet-sandbox@my-assistant.service"
    before = show(host, sandbox_unit, "MainPID", "NRestarts")
    gw_before = show(host, "clawfleet-gateway.service", "MainPID", "NRestarts")
    pid = json.loads(host.check_output("clawfleet sandbox status my-assistant"))["pid"]
    url = "http://origin.test:18080/data"
    assert probe_from_sandbox(host, pid, url)["status"] == 200

    host.run_expect([0], "systemctl kill --signal=SIGKILL clawfleet-gateway.service")
    down = probe_from_sandbox(host, pid, url)  # systemd waits RestartSec=2 before the restart
    assert down["status"] is None and "refused" in down["body"].lower(), down

    deadline = time.time() + 60
    while (result := probe_from_sandbox(host, pid, url))["status"] != 200:
        assert time.time() < deadline, f"traffic did not resume: {result}"
        time.sleep(0.5)
    gw_after = show(host, "clawfleet-gateway.service", "MainPID", "NRestarts")
    assert gw_after["MainPID"] != gw_before["MainPID"]
    assert int(gw_after["NRestarts"]) == int(gw_before["NRestarts"]) + 1
    assert show(host, sandbox_unit, "MainPID", "NRestarts") == before, "the sandbox was restarted"
    status = json.loads(host.check_output("clawfleet sandbox status my-assistant"))
    assert status["pid"] == pid and status["gateway_attached"] is True


# After the gateway test: a forced rotation truncates the logs the tests above read from their start.
def test_sandbox_output_and_decision_logs_rotate_and_keep_being_written(host):
    conf = host.file("/etc/logrotate.d/clawfleet")
    assert conf.exists and f"{STATE}/*.out" in conf.content_string and "copytruncate" in conf.content_string
    host.run_expect([0], "logrotate --force /etc/logrotate.d/clawfleet")
    assert host.file(f"{STATE}/my-assistant.out.1").exists
    assert host.file(f"{STATE}/my-assistant.decisions.jsonl.1").exists
    # copytruncate: the sandbox and the gateway go on appending to the same (now short) files.
    deadline = time.time() + 30
    while "secrets" not in host.file(f"{STATE}/my-assistant.out").content_string:
        assert time.time() < deadline, "the sandbox's output did not resume after the rotation"
        time.sleep(1)
    assert host.file(f"{STATE}/my-assistant.decisions.jsonl").size > 0


def router_lines(host) -> list[dict]:
    """The router's decision and reload lines (decision_log: stderr, so the journal)."""
    out = host.check_output("journalctl -u clawfleet-router.service -o cat --no-pager")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_router_identity_key_is_root_only_and_reaches_both_services_as_a_credential(host):
    key = host.file("/etc/clawfleet/secrets/router-identity")
    assert key.exists and key.mode == 0o600 and key.user == "root" and key.group == "root"
    value = key.content_string.strip()
    assert len(value) >= 32
    for path in ("/etc/clawfleet/router.yaml", "/etc/systemd/system/clawfleet-router.service",
                 "/etc/systemd/system/clawfleet-gateway.service"):  # fmt: skip
        assert value not in host.file(path).content_string
    assert "credential: router-identity" in host.file("/etc/clawfleet/router.yaml").content_string
    for unit in ("clawfleet-router.service", "clawfleet-gateway.service"):
        text = host.file(f"/etc/systemd/system/{unit}").content_string
        assert "LoadCredential=router-identity:/etc/clawfleet/secrets/router-identity" in text
    gateway = show(host, "clawfleet-gateway.service", "MainPID")["MainPID"]
    environ = host.file(f"/proc/{gateway}/environ").content_string
    assert "CLAWFLEET_ROUTER_IDENTITY_KEY=/run/credentials/clawfleet-gateway.service/router-identity" in environ
    # Never on a command line or in an environment: the gateway gets the credential's path, not the key.
    for unit in ("clawfleet-router.service", "clawfleet-gateway.service"):
        pid = show(host, unit, "MainPID")["MainPID"]
        assert value not in host.file(f"/proc/{pid}/cmdline").content_string
        assert value not in host.file(f"/proc/{pid}/environ").content_string


def test_sandbox_requests_reach_the_router_attributed_to_the_sandbox(host):
    assistant_steps(host, wait_for=1)  # at least one cycle (router calls) since now
    mine = [r for r in router_lines(host) if r.get("sandbox") == "my-assistant"]
    assert mine and all(r["identity"] == "verified" for r in mine)


def test_identity_header_written_by_a_caller_without_the_key_is_ignored(host):
    # Allowed twin: the gateway's signed proof (test above). Attack: the same header, unsigned, on loopback.
    body = json.dumps({"model": "default", "messages": [{"role": "user", "content": "spoof-probe 7e1c: hello"}]})
    host.check_output(
        "curl -s -o /dev/null -H 'Content-Type: application/json' -H 'x-clawfleet-sandbox: my-assistant' "
        "-H 'x-clawfleet-identity: v1.1.abc.00' "
        f"--data {shlex.quote(body)} http://127.0.0.1:8484/v1/chat/completions"
    )
    deadline = time.time() + 10
    while True:
        spoofed = [r for r in router_lines(host) if r.get("identity") not in (None, "verified")]
        if spoofed or time.time() > deadline:
            break
        time.sleep(0.5)
    assert spoofed and spoofed[-1]["sandbox"] == "unknown"


def test_router_reloads_in_place_with_systemctl_reload(host):
    before = show(host, "clawfleet-router.service", "MainPID", "NRestarts")
    reloads_before = len([r for r in router_lines(host) if r.get("event") == "reload"])
    host.check_output("systemctl reload clawfleet-router.service")
    deadline = time.time() + 10
    while True:
        reloads = [r for r in router_lines(host) if r.get("event") == "reload"]
        if len(reloads) > reloads_before or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(reloads) > reloads_before and reloads[-1]["ok"] is True
    assert show(host, "clawfleet-router.service", "MainPID", "NRestarts") == before  # same process
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8484/healthz").stdout == "200"


def test_metrics_listen_on_loopback_only_apart_from_the_agents_port(host):
    listeners = host.check_output(
        "python3 -c \"import sys; [print(l.split()[1]) for f in ('/proc/net/tcp', '/proc/net/tcp6') "
        "for l in open(f).readlines()[1:] if l.split()[3] == '0A']\""
    ).split()
    on_9484 = [a for a in listeners if a.endswith(f":{9484:04X}")]
    assert on_9484 and all(a.split(":")[0] in ("0100007F", "00000000000000000000000001000000") for a in on_9484)
    metrics = host.run("curl -s http://127.0.0.1:9484/metrics").stdout
    assert "clawfleet_router" in metrics
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8484/metrics").stdout != "200"


def test_limits_state_lives_in_the_units_state_directory(host):
    assert show(host, "clawfleet-router.service", "StateDirectory")["StateDirectory"] == "clawfleet-router"
    assert "state_dir: /var/lib/clawfleet-router" in host.file("/etc/clawfleet/router.yaml").content_string
    # DynamicUser: systemd keeps it under /var/lib/private, reached through the /var/lib symlink.
    assert host.file("/var/lib/private/clawfleet-router/usage.sqlite").exists
