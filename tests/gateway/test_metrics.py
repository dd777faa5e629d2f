"""Prometheus metrics of the gateway: real traffic through the in-process gateway, then a real scrape (HTTP GET over
the metrics socket). Where they may be served (loopback or a root-only unix socket) is checked as attack and twin.
The daemon's ``metrics_listen`` over TCP: tests/gateway/test_daemon.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clawfleet.gateway.metrics import GatewayMetrics, MetricsError, parse_listen, serve_metrics
from clawfleet.policy import approvals

from .support import connect, https, request, tls_over


def scrape_unix(path: str, target: str = "/metrics") -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: metrics\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def served(make_gateway):
    metrics = GatewayMetrics()
    gw = make_gateway(metrics=metrics)
    # a directory every user may traverse, so that only the socket's own mode keeps others out
    where = tempfile.mkdtemp(prefix="metrics-", dir="/tmp")
    os.chmod(where, 0o755)
    path = os.path.join(where, "metrics.sock")
    server = asyncio.run_coroutine_threadsafe(serve_metrics(metrics, f"unix:{path}"), gw.loop).result(5)
    yield gw, path
    gw.loop.call_soon_threadsafe(server.close)
    shutil.rmtree(where, ignore_errors=True)


def test_scrape_after_real_traffic(served, origins, pki):
    gw, path = served
    for _ in range(2):
        assert https(gw, origins, "GET", "/ok/a")[0] == 200
    assert https(gw, origins, "DELETE", "/ok/a")[0] == 403
    assert https(gw, origins, "POST", "/api/upload", body=b"y" * 1000)[0] == 200
    assert gw.wait_for(lambda: gw.gateway.active == 0)
    before = samples(scrape_unix(path)[1].decode())

    # an L4 passthrough (pass.test has no L7 rules, so no interception): relayed transport to transport, its bytes
    # counted by the kernel when the connection ends
    payload = b"x" * 50_000
    sock, status, _ = connect(gw, f"pass.test:{origins['https'].port}")
    assert status == 200
    with tls_over(gw, sock, "pass.test", ca=pki["ca"]) as tls:
        assert request(tls, "POST", "/upload", f"pass.test:{origins['https'].port}", body=payload)[0] == 200
    assert gw.wait_for(lambda: gw.gateway.active == 0)

    code, text = scrape_unix(path)
    assert code == 200
    found = samples(text.decode())
    tls_kind = {"sandbox": "unit", "kind": "tls_request"}
    assert value(found, "clawfleet_gateway_decisions_total", **tls_kind, rule="origin", action="allow",
                 decision="allow") == 3  # fmt: skip
    assert value(found, "clawfleet_gateway_decisions_total", **tls_kind, rule="origin", action="deny",
                 decision="deny") == 1  # fmt: skip
    assert value(found, "clawfleet_gateway_decisions_total", sandbox="unit", kind="connect", rule="origin",
                 action="allow", decision="allow") == 5  # fmt: skip
    # latency: one observation per forwarded request (the denied one was never forwarded)
    assert value(found, "clawfleet_gateway_request_duration_seconds_count", **tls_kind) == 3
    assert value(found, "clawfleet_gateway_request_duration_seconds_sum", **tls_kind) > 0
    sent = "clawfleet_gateway_bytes_total"
    assert value(before, sent, sandbox="unit", direction="from_sandbox") > 1000
    relayed = value(found, sent, sandbox="unit", direction="from_sandbox") - value(
        before, sent, sandbox="unit", direction="from_sandbox")  # fmt: skip
    assert len(payload) < relayed < len(payload) + 20_000  # the upload plus TLS framing and handshake
    assert value(found, sent, sandbox="unit", direction="to_sandbox") > value(before, sent, sandbox="unit",
                                                                               direction="to_sandbox")  # fmt: skip
    assert value(found, "clawfleet_gateway_connections_total", sandbox="unit") == 5
    assert value(found, "clawfleet_gateway_active_connections", sandbox="unit") == 0
    assert value(found, "clawfleet_gateway_policy_info", sandbox="unit", digest=gw.holder.digest, mode="enforce") == 1
    assert value(found, "clawfleet_gateway_policy_generation", sandbox="unit") == 0

    assert scrape_unix(path, "/other")[0] == 404


def test_active_connections_and_reload_results(served, origins):
    gw, path = served
    old = gw.holder.digest
    held, status, _ = connect(gw, f"origin.test:{origins['https'].port}")
    assert status == 200
    try:
        assert value(samples(scrape_unix(path)[1].decode()), "clawfleet_gateway_active_connections",
                     sandbox="unit") == 1  # fmt: skip
    finally:
        held.close()

    # before any reload both results are exported at 0 (else increase() misses the first one: the fleet dashboard)
    found = samples(scrape_unix(path)[1].decode())
    reloads = "clawfleet_gateway_policy_reloads_total"
    for result in ("ok", "failed"):
        assert found[(reloads, (("result", result), ("sandbox", "unit")))] == 0

    gw.policy.write_text(gw.policy.read_text().replace('method: GET, path: "/ok/**"', 'method: "*", path: "/ok/**"'))
    assert gw.wait_for(lambda: gw.holder.digest != old)
    found = samples(scrape_unix(path)[1].decode())
    assert value(found, "clawfleet_gateway_policy_reloads_total", sandbox="unit", result="ok") == 1
    assert value(found, "clawfleet_gateway_policy_last_reload_ok", sandbox="unit") == 1
    assert value(found, "clawfleet_gateway_policy_info", sandbox="unit", digest=gw.holder.digest, mode="enforce") == 1
    assert value(found, "clawfleet_gateway_policy_info", sandbox="unit", digest=old, mode="enforce") == 0
    assert value(found, "clawfleet_gateway_policy_generation", sandbox="unit") == 1

    gw.policy.write_text("version: 1\nnetwork_policies:\n  broken: {endpoints: [{host: 'x', port: 'nope'}]}\n")
    assert gw.wait_for(lambda: any(r.get("event") == "reload" and not r["ok"] for r in gw.records()))
    found = samples(scrape_unix(path)[1].decode())
    assert value(found, "clawfleet_gateway_policy_reloads_total", sandbox="unit", result="failed") == 1
    assert value(found, "clawfleet_gateway_policy_last_reload_ok", sandbox="unit") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try as another user; CI runs as root")
def test_unix_socket_is_root_only(served):
    _gw, path = served
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    probe = ("import os,socket,sys\nos.stat(sys.argv[1])\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\nexcept PermissionError: print('refused')")  # fmt: skip
    # the system interpreter: the test's own may sit where that user cannot read
    as_nobody = subprocess.run(["/usr/bin/python3", "-c", probe, path], capture_output=True, text=True, user=65534,
                               group=65534, check=True)  # fmt: skip
    assert as_nobody.stdout.strip() == "refused"
    as_root = subprocess.run(["/usr/bin/python3", "-c", probe, path], capture_output=True, text=True, check=True)
    assert as_root.stdout.strip() == "connected"  # the twin: root (the scraper's relay) gets in


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464", "192.168.0.1:80", "9464",
                                    "localhost:9464", "unix:relative.sock", "127.0.0.1:0", ""])  # fmt: skip
def test_metrics_never_listen_beyond_the_host(listen):
    with pytest.raises(MetricsError):
        parse_listen(listen)


@pytest.mark.parametrize(("listen", "parsed"), [("127.0.0.1:9464", ("tcp", ("127.0.0.1", 9464))),
                                                ("127.0.0.9:80", ("tcp", ("127.0.0.9", 80))),
                                                ("[::1]:9464", ("tcp", ("::1", 9464))),
                                                ("unix:/run/m.sock", ("unix", "/run/m.sock"))])  # fmt: skip
def test_loopback_and_unix_listeners_are_accepted(listen, parsed):
    assert parse_listen(listen) == parsed


def test_approvals_pending_is_what_policy_pending_lists(make_gateway, origins):
    metrics = GatewayMetrics()
    gw = make_gateway(metrics=metrics)

    def pending_now(m: GatewayMetrics) -> float:
        return value(samples(m.render().decode()), "clawfleet_gateway_approvals_pending", sandbox="unit")

    gw.binary = "/usr/bin/git"
    assert https(gw, origins, "GET", "/ok/x")[0] == 403  # git is not listed
    gw.binary = "/usr/bin/curl"
    for _ in range(2):
        assert https(gw, origins, "PUT", "/ok/y")[0] == 403  # twice: one pending approval
    items = approvals.pending(str(gw.log_path))
    assert len(items) == 2
    assert pending_now(metrics) == 2

    approvals.approve(str(gw.log_path), str(gw.policy), items[0].id)
    assert len(approvals.pending(str(gw.log_path))) == 1
    assert pending_now(metrics) == 1

    # a gateway started later over the same log (a restarted daemon) counts what the file already holds
    later = GatewayMetrics()
    make_gateway(metrics=later)
    assert gw.wait_for(lambda: pending_now(later) == 1)


def test_daemon_config_refuses_a_metrics_listener_beyond_the_host(tmp_path):
    from clawfleet.sandbox.definition import DefinitionError
    from clawfleet.supervisor.config import load_daemon_config

    config = tmp_path / "gateway.yaml"
    config.write_text("state_dir: state\nsandboxes: []\nocsf_logs: true\nmetrics_listen: 0.0.0.0:9464\n")
    with pytest.raises(DefinitionError, match=r"gateway\.yaml:4:\d+: metrics_listen: .*only a loopback address"):
        load_daemon_config(str(config))
    config.write_text("state_dir: state\nsandboxes: []\nocsf_logs: true\nmetrics_listen: 127.0.0.1:9464\n")
    loaded = load_daemon_config(str(config))  # the twin: loopback is accepted
    assert (loaded.ocsf_logs, loaded.metrics_listen, loaded.problems) == (True, "127.0.0.1:9464", ())
    config.write_text("state_dir: state\nsandboxes: []\nocsf_logs: 'yes'\n")
    with pytest.raises(DefinitionError, match=r"ocsf_logs: expected true or false"):
        load_daemon_config(str(config))


_PARSER_COUNTS = """
import sys
from clawfleet.gateway.metrics import GatewayMetrics
m = GatewayMetrics(parser=True)
for sandbox in sys.argv[1:]:
    m.decisions.labels(sandbox, "http", "r", "allow", "allow").inc(3)
    m.set_active(sandbox, 2)
"""


def _parser_counts(directory: str, *sandboxes: str) -> int:
    """A parser-like process counting into ``directory`` (multiprocess mode is chosen when prometheus_client is
    imported, so it takes a process of its own); returns its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    proc = subprocess.run([sys.executable, "-c", _PARSER_COUNTS, *sandboxes], env=env, check=True)
    assert proc.returncode == 0
    return int(next(p.name.rsplit("_", 1)[1][:-3] for p in Path(directory).glob("counter_*.db")))


def test_a_parsers_files_count_for_its_own_sandbox_only(tmp_path):
    """The daemon merges what a privsep parser counted (prometheus_client multiprocess files) with its own
    registry. Attack: a parser writes series of another sandbox into its files, and plants a file that does not
    parse: neither reaches the scrape. Twin: its own sandbox's counts do, summed with the daemon's own series, and
    its live gauge goes when it is marked dead while its counters stay."""
    from clawfleet.gateway.metrics import parser_stopped

    own = tmp_path / "a"
    own.mkdir()
    pid = _parser_counts(str(own), "a", "b")
    (own / "counter_999999.db").write_bytes(b"\x10\x00\x00\x00garbage that is no mmap dict")
    m = GatewayMetrics()
    m.decisions.labels("a", "http", "r", "allow", "allow").inc()  # the daemon's own count of the same series
    m.follow("a", str(own))
    found = samples(m.render().decode())
    assert value(found, "clawfleet_gateway_decisions_total", sandbox="a", kind="http", rule="r", action="allow",
                 decision="allow") == 4  # fmt: skip
    assert value(found, "clawfleet_gateway_active_connections", sandbox="a") == 2
    assert not [k for k in found if ("sandbox", "b") in k[1]], "another sandbox's series from a's parser"
    assert not [k for k in found if any(name == "pid" for name, _ in k[1])]
    parser_stopped(pid, str(own))
    found = samples(m.render().decode())
    assert value(found, "clawfleet_gateway_active_connections", sandbox="a") == 0
    assert value(found, "clawfleet_gateway_decisions_total", sandbox="a", kind="http", rule="r", action="allow",
                 decision="allow") == 4  # fmt: skip
