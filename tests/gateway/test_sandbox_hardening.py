"""Issue 14 findings 6, 7 and 9 attacked from INSIDE a real sandbox (as the sandbox user, through `gateway run`),
against origins on 127.0.0.1 in the host namespace. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os

import pytest

from .support import SECRET_VALUE, Origin, SwitchingOrigin, make_ca_and_leaf
from .test_sandbox import Box

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")

NAMES = ("origin.test", "ws.test")

# A raw HTTP/1.1 client over the proxy (CONNECT + TLS with the sandbox's CA bundle): sends SEND, prints what came
# back, then (EXIT_EARLY) leaves without closing anything, as a crashing agent would.
CLIENT = """
import json, os, socket, ssl, sys
host, port, send, exit_early = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode())
head = b""
while b"\\r\\n\\r\\n" not in head:
    head += s.recv(1)
t = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]).wrap_socket(s, server_hostname=host)
t.sendall(send.replace("{a}", f"{host}:{port}").encode().decode("unicode_escape").encode())
got = b""
try:
    while True:
        data = t.recv(65536)
        if not data:
            break
        got += data
        if exit_early and b"PING" in got:
            break
        if exit_early and got.startswith(b"HTTP/1.1 101") and b"\\r\\n\\r\\n" in got and b"PING" not in got:
            t.sendall(b"\\x81\\x84\\x00\\x00\\x00\\x00ping")  # a text frame masked with a zero key: "ping" as is
except OSError as exc:
    got += f"<{type(exc).__name__}>".encode()
print(json.dumps({"got": got.decode("latin-1")}), flush=True)
if exit_early:
    os._exit(0)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("hardening")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    echo = Origin(cert, key)
    ws = SwitchingOrigin(cert, key)
    yield {"dir": d, "ca": ca, "echo": echo, "ws": ws}
    echo.close()
    ws.close()


@pytest.fixture
def box(tmp_path, world, user) -> Box:
    b = Box(tmp_path, world, user)
    (b.work / "client.py").write_text(CLIENT)
    conf = json.loads(b.gwconf.read_text())
    conf["static_hosts"] = {n: "127.0.0.1" for n in NAMES}
    conf["max_connections"] = 8
    b.gwconf.write_text(json.dumps(conf))
    return b


def _policy(world, ws_protocol: str) -> str:
    messages = ', {allow: {method: WEBSOCKET_TEXT, path: "/public/**"}}' if ws_protocol == "websocket" else ""
    return f"""\
    api:
      name: api
      endpoints:
        - {{host: origin.test, port: {world["echo"].port}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
        - host: ws.test
          port: {world["ws"].port}
          allowed_ips: [127.0.0.1/32]
          protocol: {ws_protocol}
          rules: [{{allow: {{method: GET, path: "/public/**"}}}}{messages}]
      binaries: [{{path: /usr/bin/curl}}, {{path: "/usr/bin/python3*"}}]
    """


def _client(box, world, send: str, exit_early: bool = False):
    proc = box.run(["/usr/bin/python3", "/sandbox/client.py", "ws.test", str(world["ws"].port), send,
                    "1" if exit_early else "0"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["got"], proc


def test_rest_upgrade_smuggling_from_inside(box, world):
    box.write_policy(_policy(world, "rest"))
    got, _ = _client(box, world, "GET /public/x HTTP/1.1\\r\\nHost: {a}\\r\\nUpgrade: websocket\\r\\n"
                     "Connection: Upgrade\\r\\n\\r\\nDELETE /private/everything HTTP/1.1\\r\\nHost: {a}\\r\\n"
                     "Content-Length: 0\\r\\n\\r\\n")  # fmt: skip
    assert got.startswith("HTTP/1.1 200") and "HTTP/1.1 403" in got
    assert b"DELETE" not in bytes(world["ws"].raw) and not any(b"DELETE" in h for h in world["ws"].heads)
    assert any(r.get("method") == "DELETE" and r["action"] == "deny" for r in box.records())


def test_websocket_relay_cut_by_sandbox_exit_leaves_no_traceback(box, world):
    """The allowed twin of the above (a WebSocket endpoint switches), and the agent then dies mid-relay: the
    gateway's stderr stays free of asyncio tracebacks."""
    box.write_policy(_policy(world, "websocket"))
    got, proc = _client(box, world, "GET /public/ws HTTP/1.1\\r\\nHost: {a}\\r\\nUpgrade: websocket\\r\\n"
                        "Connection: Upgrade\\r\\n\\r\\n", exit_early=True)  # fmt: skip
    assert got.startswith("HTTP/1.1 101") and got.endswith("PING")
    assert "Traceback" not in proc.stderr and "CancelledError" not in proc.stderr, proc.stderr


def test_echoing_bound_host_gets_only_placeholders(box, world):
    box.write_policy(_policy(world, "rest"))
    e = world["echo"].port
    proc = box.sh(f"""
        curl -s "https://origin.test:{e}/q?key=$GITHUB_TOKEN"; echo
        curl -s -H "X-Api-Key: $GITHUB_TOKEN" https://origin.test:{e}/h; echo
        curl -s -o /dev/null -w '%{{http_code}}\\n' -X TRACE -H "Authorization: Bearer $GITHUB_TOKEN" \\
            https://origin.test:{e}/t
        curl -s -o /dev/null -w '%{{http_code}}\\n' -H "Authorization: Bearer $GITHUB_TOKEN" https://origin.test:{e}/ok
    """, extra=("--credential", "GITHUB_TOKEN"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert SECRET_VALUE not in proc.stdout
    assert "openshell:resolve:env:GITHUB_TOKEN" in json.loads(lines[0])["path"]
    assert lines[2:] == ["405", "200"]
    seen = {k.lower(): v for k, v in world["echo"].seen[-1]["headers"].items()}
    assert seen["authorization"] == f"Bearer {SECRET_VALUE}"  # the configured place still gets the value


def test_connection_cap_from_inside(box, world):
    box.write_policy(_policy(world, "rest"))
    code = """
import json, socket, time
held, busy = [], 0
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.settimeout(0.3)
    try:
        data = s.recv(4096)
        busy += data.startswith(b"HTTP/1.1 503")
        s.close()
    except TimeoutError:
        held.append(s)
for s in held:
    s.close()
time.sleep(0.5)
print(json.dumps({"held": len(held), "busy": busy}))
"""
    e = world["echo"].port
    proc = box.sh(f"""
        python3 -c '{code}'
        curl -s -o /dev/null -w '%{{http_code}}\\n' https://origin.test:{e}/after
    """)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"held": 8, "busy": 12}
    assert lines[1] == "200"
    assert any(r.get("event") == "connection_refused" for r in box.records())


def test_mountinfo_shows_only_the_sandbox_mounts(box, world):
    """What /proc/self/mountinfo reveals inside: only the sandbox's own mounts (no host mount point outside the
    policy, no trace of the old root). Still visible by design (docs/gateway.md): the workdir's path within its
    filesystem (a bind mount's root field), the CA bundle directory (also in SSL_CERT_FILE), devtmpfs options."""
    box.write_policy(_policy(world, "rest"))
    proc = box.sh("cat /proc/self/mountinfo")
    assert proc.returncode == 0, proc.stderr
    entries = [line.split(" - ")[0].split() for line in proc.stdout.strip().splitlines()]
    points = {e[4]: e[3] for e in entries}  # mount point -> root within its filesystem
    bundle = [p for p in points if p.startswith("/run/clawfleet/gateway/")]
    assert len(bundle) == 1
    expected = {"/", "/proc", "/tmp", "/dev", "/sandbox", "/etc", "/usr", *bundle}
    assert set(points) - expected <= {f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")}
    assert ".oldroot" not in proc.stdout
    for point, root in points.items():
        if point == "/sandbox":
            assert str(box.work).endswith(root)  # the workdir's path within its filesystem (documented)
        elif not point.startswith("/dev/"):
            assert root in ("/", point)  # nothing else of the host's tree
