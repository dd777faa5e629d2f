"""Privilege separation of the gateway (issue 20 item 5, :mod:`clawfleet.gateway.privsep`).

A real ``gateway serve`` with ``gateway_user``: the process that parses the sandbox's traffic runs as that user
with no capability, and a normal request from the real sandbox is still identified as its binary. The daemon's
identification channel, driven directly as a compromised parser would drive it, refuses every descriptor that is
not an accepted connection of the sandbox's listener inside the sandbox's network namespace. Root only (CI runs
as root, so nothing skips there)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clawfleet.gateway.ident import Identifier
from clawfleet.gateway.listen import listen_in_netns
from clawfleet.gateway.privsep import IdentifyClient, IdentifyService, check_unprivileged, parser_user
from clawfleet.sandbox.namespaces import run_in_netns
from clawfleet.supervisor.check import check_file
from clawfleet.supervisor.config import load_daemon_config

from .test_check_and_digest import definition, write
from .test_daemon import Fleetlet, until
from .test_daemon import origin as origin  # the module-scoped fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation tests need root; CI runs as root")

PARSER_USER = "nobody"  # any user but root and the sandbox's; the role makes clawfleet-gateway


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _forkserver(daemon_pid: int) -> int | None:
    """The daemon's parser forkserver (issue 16: parsers are its children, not the daemon's)."""
    for pid in _children(daemon_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"gateway-parser-forkserver" in f.read():
                    return pid
        except OSError:
            continue
    return None


def _parsers(daemon_pid: int) -> list[int]:
    forkserver = _forkserver(daemon_pid)
    if forkserver is None:
        return []
    try:
        return _children(forkserver)
    except OSError:
        return []


@pytest.fixture
def separated(tmp_path, origin, user):
    f = Fleetlet(tmp_path, origin, user)
    config = json.loads(f.config.read_text())
    f.config.write_text(json.dumps({**config, "gateway_user": PARSER_USER}))
    yield f
    f.close()


def test_the_parser_runs_as_its_own_user_without_capabilities_and_still_identifies_the_caller(separated):
    separated.start()
    until(lambda: separated.results()[-1:] == ["200"], 60, "the first request through the separated gateway")
    daemon = separated.daemon.pid
    parsers = _parsers(daemon)
    assert len(parsers) == 1, parsers
    parser = _status(parsers[0])
    uid = str(parser_user(PARSER_USER)[0])
    assert parser["Uid"].split() == [uid] * 4 and parser["Gid"].split() == [str(parser_user(PARSER_USER)[1])] * 4
    assert parser["Groups"].strip() == ""
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(parser[caps], 16) == 0, (caps, parser[caps])
    assert parser["NoNewPrivs"] == "1"
    # Non-dumpable: its /proc files belong to root, so another process of its uid cannot read or trace it.
    assert os.stat(f"/proc/{parsers[0]}/environ").st_uid == 0
    # The twin: the daemon itself keeps root and its capabilities, and parses nothing.
    assert _status(daemon)["Uid"].split()[0] == "0" and int(_status(daemon)["CapEff"], 16) != 0
    # The parser holds its listener, its channel and the decision log, nothing of the daemon's (control socket).
    fds = sorted(int(n) for n in os.listdir(f"/proc/{parsers[0]}/fd"))
    targets = [os.readlink(f"/proc/{parsers[0]}/fd/{n}") for n in fds]
    assert not any(str(separated.socket) in t for t in targets), targets
    # Identified by the privileged side from the handed-over socket: the sandbox's curl, allowed.
    allowed = _decisions(separated, "allow")
    assert allowed and allowed[-1]["binary"] == "/usr/bin/curl", allowed[-1:]


def _decisions(f: Fleetlet, decision: str) -> list[dict]:
    lines = (f.tmp / "state" / "looper.decisions.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("decision") == decision]


def test_a_policy_change_reaches_the_parser_and_a_dead_parser_is_replaced(separated):
    separated.start()
    until(lambda: separated.results()[-1:] == ["200"], 60, "the first request through the separated gateway")
    policy = separated.tmp / "policy.yaml"
    policy.write_text(policy.read_text().replace("binaries: [{path: /usr/bin/curl}]", "binaries: [{path: /bin/no}]"))
    seen = len(separated.results())
    until(lambda: _decisions(separated, "deny"), 30, "the new policy to deny curl in the parser")
    assert "200" not in separated.results()[seen + 2 :]
    policy.write_text(policy.read_text().replace("binaries: [{path: /bin/no}]", "binaries: [{path: /usr/bin/curl}]"))
    seen = len(separated.results())
    until(lambda: "200" in separated.results()[seen:], 30, "the policy to allow curl again")

    (first,) = _parsers(separated.daemon.pid)
    os.kill(first, 9)
    until(lambda: _parsers(separated.daemon.pid) not in ([], [first]), 30, "a new parser")
    seen = len(separated.results())
    until(lambda: "200" in separated.results()[seen:], 60, "traffic through the new parser")
    exits = separated.records("parser_exited")
    assert exits, "the daemon logs the parser's death"
    assert exits[0]["status"] == -signal.SIGKILL  # its real status, reaped by the forkserver and reported
    assert separated.status()["gateway_attached"] is True


SECRET_LOOP = """while true; do
  curl -s -o /dev/null --max-time 2 -H 'Authorization: Bearer clawfleet:secret:TOKEN' https://origin.test:PORT/ok/s
  sleep 0.2
done"""


def test_secret_values_reach_the_parser_from_the_daemon_and_follow_a_rotation(tmp_path, origin, user):
    """The secret file is root-only: the parser (nobody) cannot read it, the daemon hands it the value."""
    port = origin["origin"].port
    f = Fleetlet(tmp_path, origin, user, command=["/bin/sh", "-c", SECRET_LOOP.replace("PORT", str(port))])
    try:
        secret = tmp_path / "token"
        secret.write_text("first-value\n")
        secret.chmod(0o600)
        definition = json.loads((tmp_path / "looper.yaml").read_text())
        definition["secrets"] = {"TOKEN": {"file": str(secret), "hosts": ["origin.test"]}}
        (tmp_path / "looper.yaml").write_text(json.dumps(definition))
        f.config.write_text(json.dumps({**json.loads(f.config.read_text()), "gateway_user": PARSER_USER}))

        def authorizations() -> list[str]:
            return [r["headers"].get("authorization", "") for r in origin["origin"].seen if r["path"] == "/ok/s"]

        f.start()
        until(lambda: "Bearer first-value" in authorizations(), 60, "the injected value at the origin")
        secret.write_text("second-value\n")
        until(lambda: "Bearer second-value" in authorizations(), 30, "the rotated value at the origin")
        assert all(a in ("Bearer first-value", "Bearer second-value") for a in authorizations()), authorizations()
        (parser,) = _parsers(f.daemon.pid)
        assert _status(parser)["Uid"].split()[0] == str(parser_user(PARSER_USER)[0])
    finally:
        f.close()


def test_config_refuses_root_or_an_unknown_parser_user(tmp_path):
    with pytest.raises(ValueError, match="must not be root"):
        parser_user("root")
    with pytest.raises(ValueError, match="no such user"):
        parser_user("clawfleet-no-such-user")
    (tmp_path / "g.yaml").write_text(json.dumps({"gateway_user": PARSER_USER, "sandboxes": []}))
    assert load_daemon_config(str(tmp_path / "g.yaml")).gateway_user == PARSER_USER


def test_gateway_check_refuses_a_root_or_sandbox_parser_user_and_passes_its_own(tmp_path):
    d = definition(tmp_path, user="daemon")  # the sandbox's user

    def config(user: str) -> str:
        return str(write(tmp_path / "gw.yaml", {"state_dir": str(tmp_path / "s"), "sandboxes": [str(d)],
                                                "gateway_user": user}))  # fmt: skip

    for user, message in (("root", "must not be root"), ("clawfleet-no-such-user", "no such user"),
                          ("daemon", "runs as gateway_user")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            check_file(config(user))
    assert check_file(config(PARSER_USER)) == ["agent"]


def test_check_unprivileged_refuses_root_and_passes_a_dropped_process():
    with pytest.raises(RuntimeError, match="still privileged"):
        check_unprivileged()  # this test process: root
    uid, gid = parser_user(PARSER_USER)
    # imported before the drop: a development interpreter under /root is unreadable to the user afterwards
    code = (
        "import os; from clawfleet.gateway.privsep import check_unprivileged; os.setgroups([]); "
        f"os.setresgid({gid}, {gid}, {gid}); os.setresuid({uid}, {uid}, {uid}); check_unprivileged(); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd="/")
    assert out.stdout.strip() == "ok", out.stderr


# -- the identification channel, driven as a compromised parser would --------------------------------


CLIENT = """import socket, sys
sys.stdin.readline()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
"""


class Channel:
    """A namespace with one listener, the daemon's service on one end of a socketpair, the raw other end."""

    def __init__(self, port: int = 3128) -> None:
        # The "sandbox": a process in a network namespace of its own that connects when told to.
        code = f"from clawfleet.sandbox.namespaces import loopback_up; loopback_up()\n{CLIENT}"
        self.proc = subprocess.Popen(["unshare", "-n", sys.executable, "-c", code, str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.port = port
        until(lambda: self._netns_differs(), 10, "the namespace")
        self.listener = listen_in_netns(self.proc.pid, port)
        self.identifier = Identifier(netns_pid=self.proc.pid)
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.service = IdentifyService(self.ours, self.identifier, ("127.0.0.1", port))

    def _netns_differs(self) -> bool:
        try:
            return os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        except OSError:
            return False

    def connect(self) -> socket.socket:
        """The sandbox's process connects; the gateway's accepted side is returned."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()
        conn, _ = self.listener.accept()
        return conn

    def close(self) -> None:
        for s in (self.listener, self.ours, self.theirs):
            s.close()
        self.identifier.close()
        self.proc.kill()
        self.proc.wait()


def _ask(ch: Channel, data: bytes, fds: list[int]) -> dict:
    """One raw request (as a compromised parser may send it) and the daemon's answer."""

    async def go() -> dict:
        task = asyncio.ensure_future(ch.service.serve())
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        ch.theirs.sendmsg([data], anc)
        loop = asyncio.get_running_loop()
        ch.theirs.setblocking(False)
        answer = json.loads(await loop.sock_recv(ch.theirs, 65536))
        task.cancel()
        return answer

    return asyncio.run(go())


def _copies(fds) -> dict[str, int]:
    """How many of this process's descriptors point at each object that ``fds`` point at (``socket:[inode]``,
    a path): a descriptor the service kept would be one more copy. Other threads' own descriptors (left by
    earlier tests) do not count, as they would in a plain count of every open descriptor."""
    targets = {os.readlink(f"/proc/self/fd/{fd}") for fd in fds}
    counts = dict.fromkeys(targets, 0)
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target in counts:
                counts[target] += 1
    return counts


@pytest.fixture
def channel():
    ch = Channel()
    yield ch
    ch.close()


def test_a_connection_of_the_sandbox_is_identified_from_its_descriptor(channel):
    conn = channel.connect()

    async def go():
        task = asyncio.ensure_future(channel.service.serve())
        client = IdentifyClient(channel.theirs)
        reader = asyncio.ensure_future(client.read_answers())
        try:
            return await client.identify(conn.fileno())
        finally:
            task.cancel()
            reader.cancel()

    caller = asyncio.run(go())
    assert caller.pid == channel.proc.pid
    assert caller.exe == os.path.realpath(sys.executable)
    assert channel.service.refused == 0 and channel.identifier.identified == 1
    conn.close()


def test_forged_descriptors_are_refused_before_any_lookup(channel, tmp_path):
    sandbox_conn = channel.connect()
    # the same listener address, the same kind of socket, but in the host's namespace, not the sandbox's
    host_listener = socket.create_server(("127.0.0.1", 0))
    host_client = socket.create_connection(host_listener.getsockname())
    host_conn, _ = host_listener.accept()
    same_port = socket.socket()
    try:
        same_port.bind(("127.0.0.1", channel.port))
        same_port.listen()
        same_port_client = socket.create_connection(("127.0.0.1", channel.port))
        same_port_conn, _ = same_port.accept()
    except OSError:  # port 3128 taken on this host: the host connection above stands in
        same_port_client = same_port_conn = None
    # the sandbox-side (client) end of a connection to the listener: in the namespace, but not an accepted one
    client_in_ns = run_in_netns(channel.proc.pid, lambda: socket.create_connection(("127.0.0.1", channel.port)))
    accepted_for_it, _ = channel.listener.accept()
    a_file = open(tmp_path / "f", "w")  # noqa: SIM115
    r, w = os.pipe()
    unix_a, unix_b = socket.socketpair()
    udp = run_in_netns(channel.proc.pid, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    forged = {
        "a regular file": (a_file.fileno(), "not a socket"),
        "a pipe": (r, "not a socket"),
        "a unix socket": (unix_a.fileno(), "not a TCP socket"),
        "a UDP socket in the namespace": (udp.fileno(), "not a TCP socket"),
        "the listener itself": (channel.listener.fileno(), "not a connected socket"),
        "the client end inside the namespace": (client_in_ns.fileno(), "not a connection to the gateway's listener"),
        "a host connection": (host_conn.fileno(), "not a connection to the gateway's listener"),
    }
    if same_port_conn is not None:
        forged["a host connection to the same address"] = (same_port_conn.fileno(), "not a connection inside")
    handed = {fd for fd, _ in forged.values()} | {sandbox_conn.fileno()}
    before = _copies(handed)
    for what, (fd, why) in forged.items():
        answer = _ask(channel, b'{"id": 7}', [fd])
        assert answer["id"] == 7 and "caller" not in answer, (what, answer)
        assert answer["error"].startswith("refused:") and why in answer["error"], (what, answer)
    malformed = {
        "no descriptor": (b'{"id": 1}', []),
        "two descriptors": (b'{"id": 2}', [sandbox_conn.fileno(), sandbox_conn.fileno()]),
        "a pid field": (b'{"id": 3, "pid": 1}', [sandbox_conn.fileno()]),
        "a path field": (b'{"id": 4, "path": "/proc/1/exe"}', [sandbox_conn.fileno()]),
        "not JSON": (b"\x00" * 16, [sandbox_conn.fileno()]),
        "a boolean id": (b'{"id": true}', [sandbox_conn.fileno()]),
        "a huge id": (b'{"id": 99999999999999999999}', [sandbox_conn.fileno()]),
        "a truncated request": (b'{"id": 5}' + b" " * 4096, [sandbox_conn.fileno()]),
    }
    for what, (data, fds) in malformed.items():
        answer = _ask(channel, data, fds)
        assert "caller" not in answer and answer["error"].startswith("refused:"), (what, answer)
    assert _copies(handed) == before, "every descriptor handed over was closed"
    assert channel.identifier.identified == 0, "no fd table was read for a forged request"
    assert channel.service.refused == len(forged) + len(malformed)
    # The allowed twin on the same channel: the sandbox's accepted connection.
    answer = _ask(channel, b'{"id": 9}', [sandbox_conn.fileno()])
    assert answer["id"] == 9 and answer["caller"]["pid"] == channel.proc.pid, answer
    for s in (sandbox_conn, host_listener, host_client, host_conn, same_port, client_in_ns, accepted_for_it, unix_a,
              unix_b, udp, a_file):  # fmt: skip
        s.close()
    for s in (same_port_client, same_port_conn):
        if s is not None:
            s.close()
    os.close(r)
    os.close(w)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_parser_exits_when_the_daemon_dies(separated):
    separated.start()
    until(lambda: separated.results()[-1:] == ["200"], 60, "the first request through the separated gateway")
    (parser,) = _parsers(separated.daemon.pid)
    separated.daemon.kill()
    separated.daemon.wait()
    deadline = time.monotonic() + 10
    while _running(parser) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(parser), "an orphaned parser would keep the sandbox's listener without identification"


def _unit_bounding_set() -> list[str]:
    """The gateway unit's CapabilityBoundingSet, as setpriv takes it: the daemon under systemd has these and no
    other capability (the pytest daemon, run by root, has all of them, which hid a missing CAP_KILL)."""
    unit = Path(__file__).parents[2] / "roles/gateway/templates/clawfleet-gateway.service.j2"
    (line,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("CapabilityBoundingSet=")]
    caps = line.split("=", 1)[1].split()
    return ["setpriv", "--no-new-privs", "--bounding-set", ",".join(["-all", *(f"+{c[4:].lower()}" for c in caps)])]


def test_a_reload_that_remakes_a_sandboxs_gateway_leaves_one_parser(separated):
    """A definition change (SIGHUP / `gateway reload`) remakes the sandbox's gateway: its old parser is stopped, not
    left holding a listener in the namespace. The twin: traffic flows through the new parser."""
    import signal

    separated.start()
    until(lambda: separated.results()[-1:] == ["200"], 60, "the first request through the separated gateway")
    (before,) = _parsers(separated.daemon.pid)
    looper = json.loads((separated.tmp / "looper.yaml").read_text())
    (separated.tmp / "looper.yaml").write_text(json.dumps({**looper, "env": {"EDITED": "1"}}))
    separated.daemon.send_signal(signal.SIGHUP)
    until(lambda: separated.status()["gateway_attached"] and before not in _parsers(separated.daemon.pid)
          and len(_parsers(separated.daemon.pid)) == 1, 60, "one new parser")  # fmt: skip
    seen = len(separated.results())
    until(lambda: "200" in separated.results()[seen:], 60, "traffic through the remade gateway")
    # Then the sandbox restarts (under systemd the role restarts its unit): the parser follows it, still one.
    (after_reload,) = _parsers(separated.daemon.pid)
    old_pid = separated.status()["pid"]
    os.kill(old_pid, signal.SIGKILL)
    until(lambda: separated.status()["pid"] not in (None, old_pid) and separated.status()["gateway_attached"], 60,
          "the restarted sandbox attached")  # fmt: skip
    seen = len(separated.results())
    until(lambda: "200" in separated.results()[seen:], 60, "traffic through the restarted sandbox's parser")
    time.sleep(2)  # nothing else starts later
    parsers = _parsers(separated.daemon.pid)
    assert len(parsers) == 1 and after_reload not in parsers, parsers


def test_under_the_units_capabilities_a_reload_and_a_sandbox_restart_leave_one_parser(separated):
    """The systemd shape: the daemon has only the gateway unit's bounding set (no_new_privs too) and does not launch
    the sandbox; the sandbox runs beside it (`gateway sandbox`, as clawfleet-sandbox@NAME does) and is restarted
    after the definition edit, as the role does. Stopping the old parser (another uid) needs CAP_KILL: without it
    the daemon's terminate() failed and the old parser kept its listener (two parsers, found by Molecule `site`)."""
    import signal

    config = json.loads(separated.config.read_text())
    separated.config.write_text(json.dumps({**config, "launch_sandboxes": False}))
    argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "sandbox", "--config", str(separated.config), "looper"]
    unit = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        separated.start(_unit_bounding_set())
        assert _status(separated.daemon.pid)["CapBnd"] != _status(os.getpid())["CapBnd"]  # the set really applies
        until(lambda: separated.results()[-1:] == ["200"], 90, "the first request through the separated gateway")
        (before,) = _parsers(separated.daemon.pid)
        looper = json.loads((separated.tmp / "looper.yaml").read_text())
        (separated.tmp / "looper.yaml").write_text(json.dumps({**looper, "env": {"EDITED": "1"}}))
        separated.daemon.send_signal(signal.SIGHUP)
        until(lambda: before not in _parsers(separated.daemon.pid) and len(_parsers(separated.daemon.pid)) == 1, 60,
              "the old parser stopped and one new parser")  # fmt: skip
        unit.send_signal(signal.SIGTERM)  # the role restarts the sandbox's unit for its new definition
        unit.wait(60)
        unit = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = len(separated.results())
        until(lambda: "200" in separated.results()[seen:], 90, "traffic through the restarted sandbox's parser")
        time.sleep(2)  # nothing else starts later
        assert len(_parsers(separated.daemon.pid)) == 1, _parsers(separated.daemon.pid)
    finally:
        if unit.poll() is None:
            unit.send_signal(signal.SIGTERM)
            unit.wait(60)


def test_a_parsers_counts_reach_the_daemons_scrape_and_its_decisions_the_ocsf_log(separated, origin):
    """Metrics and OCSF under privilege separation, with the gateway unit's capabilities only: the parser counts
    into multiprocess files of its own user in a directory of the runtime dir (root:its group 0770, no other user
    writes there) and the daemon's scrape serves them (a replaced parser's counts stay in the totals, its live
    gauge goes); the parser appends its decisions to the OCSF file the daemon opened for it, schema-valid, while
    the daemon's own events (the listener, the policy load) go to the same file from the daemon."""
    from .test_daemon import OBSERVED_LOOP, _free_loopback_port

    port = _free_loopback_port()
    config = json.loads(separated.config.read_text())
    # the systemd shape (the sandbox beside the daemon, as clawfleet-sandbox@NAME), as the unit test above
    separated.config.write_text(json.dumps({**config, "ocsf_logs": True, "metrics_listen": f"127.0.0.1:{port}",
                                            "launch_sandboxes": False}))  # fmt: skip
    looper = json.loads((separated.tmp / "looper.yaml").read_text())
    command = ["/bin/sh", "-c", OBSERVED_LOOP.replace("PORT", str(origin["origin"].port))]
    (separated.tmp / "looper.yaml").write_text(json.dumps({**looper, "command": command}))
    argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "sandbox", "--config", str(separated.config), "looper"]
    unit = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _observe_a_separated_gateway(separated, port)
    finally:
        unit.send_signal(signal.SIGTERM)
        unit.wait(60)


def _observe_a_separated_gateway(separated, port: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from .ocsf_schema import problems

    def scrape() -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        text = resp.read().decode()
        conn.close()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip

    def metric(name: str, found: dict | None = None, **labels) -> float:
        return (found or scrape()).get((name, tuple(sorted(labels.items()))), 0)

    tls = {"sandbox": "looper", "kind": "tls_request", "rule": "origin"}
    allowed = {**tls, "action": "allow", "decision": "allow"}
    decisions = "clawfleet_gateway_decisions_total"
    separated.start(_unit_bounding_set())
    until(lambda: {"200", "403"} <= set(separated.results()), 90, "an allowed GET and a denied POST via the parser")
    until(lambda: metric(decisions, **tls, action="deny", decision="deny") >= 1, 10, "the parser's denial counted")
    until(lambda: metric("clawfleet_gateway_bytes_total", sandbox="looper", direction="from_sandbox") > 0, 10,
          "the parser's bytes counted")  # fmt: skip
    found = scrape()
    assert metric(decisions, found, **allowed) >= 1, found
    assert metric("clawfleet_gateway_request_duration_seconds_count", found, sandbox="looper", kind="tls_request") >= 1
    assert ("clawfleet_gateway_active_connections", (("sandbox", "looper"),)) in found
    # one series per label set: the parser's files and the daemon's own merged, no pid label
    assert not any(dict(labels).get("pid") for _, labels in found), found
    # the daemon's own part: the policy it watches
    assert metric("clawfleet_gateway_policy_last_reload_ok", found, sandbox="looper") == 1
    # the parser's denials, read back from the decision log it writes: what `policy pending` would list
    until(lambda: metric("clawfleet_gateway_approvals_pending", sandbox="looper") >= 1, 10, "the pending denial")

    (first,) = _parsers(separated.daemon.pid)
    files = separated.run_dir / "gateway-metrics" / "looper"
    uid, gid = parser_user(PARSER_USER)
    st = os.stat(files)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, gid, 0o770)
    mine = [p for p in files.iterdir() if p.name.endswith(f"_{first}.db")]
    assert mine and all(p.stat().st_uid == uid for p in mine), mine
    before = metric(decisions, **allowed)
    os.kill(first, 9)
    until(lambda: _parsers(separated.daemon.pid) not in ([], [first]), 30, "a new parser")
    until(lambda: metric(decisions, **allowed) > before, 60, "the new parser's counts added to the old one's")
    assert not list(files.glob(f"gauge_livesum_{first}.db")), "the dead parser's live gauge is gone"

    lines = [json.loads(x) for x in (separated.tmp / "state" / "looper.ocsf.jsonl").read_text().splitlines()]
    bad = [(ev, p) for ev in lines if (p := problems(ev))]
    assert not bad, bad[:3]
    http_events = [(ev["activity_name"], ev["action"]) for ev in lines if ev["class_uid"] == 4002]
    assert ("Get", "Allowed") in http_events and ("Post", "Denied") in http_events  # written by the parser
    assert any(ev["class_uid"] == 4001 and ev["activity_name"] == "Listen" for ev in lines)  # by the daemon
    assert any(ev["class_uid"] == 5019 and ev["message"].startswith("Policy loaded") for ev in lines)


def test_the_sandbox_is_called_attached_only_once_its_parser_serves_as_its_user(separated):
    """Issue 16: ``NAME.attached`` (what the sandbox waits for before it runs its command) was written when the parser
    had been started, about a second before it dropped to its user and accepted. At the first sight of the file the
    parser must already be unprivileged, and the command's very first request must be answered."""
    attached = separated.run_dir / "sandboxes" / "looper.attached"
    separated.start()
    deadline = time.monotonic() + 60
    while not attached.exists():
        assert time.monotonic() < deadline, "the gateway never attached"
        time.sleep(0.005)
    parsers = _parsers(separated.daemon.pid)
    assert len(parsers) == 1, parsers
    assert _status(parsers[0])["Uid"].split() == [str(parser_user(PARSER_USER)[0])] * 4
    until(lambda: separated.results(), 30, "the command's first request")
    assert separated.results()[0] == "200", separated.results()


def test_a_wedged_forkserver_is_killed_and_replaced_instead_of_holding_every_start(monkeypatch):
    """A forkserver that does not answer (stopped, wedged) makes the start fail within the timeout, is killed, and
    the next start gets a new one that answers."""
    from clawfleet.gateway import parser_forkserver
    from clawfleet.gateway.parser_forkserver import Forkserver

    monkeypatch.setattr(parser_forkserver, "_REPLY_TIMEOUT", 2.0)
    server = Forkserver(os.environ)
    devnull = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
    try:
        server.start()
        wedged = server._proc
        assert wedged is not None
        os.kill(wedged.pid, signal.SIGSTOP)
        with pytest.raises(OSError, match="did not answer"):
            server.fork(devnull, None)
        assert wedged.poll() is not None  # killed, not left stopped
        pid = server.fork(devnull, None)  # a fresh forkserver; its child fails on the empty setup and exits
        assert pid > 0 and server._proc is not None and server._proc.pid != wedged.pid
    finally:
        server.close()
        for fd in devnull:
            os.close(fd)
