"""Providers v2 credentials through a real sandbox (Launcher: namespaces, Landlock, seccomp) with real clients
(issue 17): curl, Python (urllib, a socket WebSocket client) and Node (https over CONNECT, a WebSocket client on
node's tls) send the placeholders from their environment, one request per credential location: Authorization
Bearer and Basic, the profile's header, its query parameter, a JSON body (``request_body_credential_rewrite``), a
WebSocket text message (``websocket_credential_rewrite``) and plain HTTP to a loopback endpoint. Each has a denied
twin: the same request to a host the provider is not bound to arrives with the placeholder only. A second provider
whose profile has endpoints is reached through its composed ``_provider_*`` rule (not in the policy file) by the
profile's binary, and refused to a binary the profile does not list. A scan inside the sandbox proves neither
real value is in its environment, its processes' environments and command lines, or its files.

One ``gateway run`` per module (every client in one sandbox), its results shared by the tests. Root only (CI runs
as root, so nothing skips there)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import textwrap

import pytest

from .support import CUSTOM_API_PROFILE, Origin, SwitchingOrigin, make_ca_and_leaf, profile_endpoint
from .test_sandbox import Box

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")

NAMES = ("origin.test", "other.test", "plain.test", "api.test")
API_VALUE = "sk_REALapiVALUE_0987654321"  # provider "work" (endpointless profile, bound by the policy)
GH_VALUE = "ghp_REALghVALUE_1122334455"  # provider "gh" (a profile with endpoints: composed rule)
HAS_NODE = shutil.which("node") is not None

API_PROFILE = CUSTOM_API_PROFILE + "    query_param: api_key\n"


def _gh_profile(port: int) -> str:
    # api.test is in no rule of the policy file: only this profile's composed rule allows it, for curl only
    return """\
id: custom-gh
credentials:
  - name: token
    env_vars: [GH_TOKEN]
    auth_style: bearer
""" + profile_endpoint("api.test", port, "[/usr/bin/curl]")


def _policy(e: int, p: int, w: int) -> str:
    clients = '[{path: /usr/bin/curl}, {path: "/usr/bin/python3*"}, {path: "/usr/bin/node*"}]'
    return f"""\
    api:
      name: api
      endpoints:
        - host: origin.test
          port: {e}
          path: /ok/**
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          access: full
          request_body_credential_rewrite: true
          credential_binding: {{provider: work}}
        - {{host: other.test, port: {e}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full,
            request_body_credential_rewrite: true}}
        - host: plain.test
          port: {p}
          path: /ok/**
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          access: full
          credential_binding: {{provider: work}}
        - {{host: plain.test, port: {p}, path: /no/**, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
        - host: origin.test
          port: {w}
          allowed_ips: [127.0.0.1/32]
          protocol: websocket
          rules: [{{allow: {{method: GET, path: "/ws/**"}}}}, {{allow: {{method: WEBSOCKET_TEXT, path: "/ws/**"}}}}]
          websocket_credential_rewrite: true
          credential_binding: {{provider: work}}
        - host: other.test
          port: {w}
          allowed_ips: [127.0.0.1/32]
          protocol: websocket
          rules: [{{allow: {{method: GET, path: "/ws/**"}}}}, {{allow: {{method: WEBSOCKET_TEXT, path: "/ws/**"}}}}]
          websocket_credential_rewrite: true
      binaries: {clients}
    """


# The clients. Paths name the client and the location; /ok/ goes to a bound endpoint, /no/ (or other.test) not.
CURL = r"""
c() { curl -s -o /dev/null -w "curl $1 %{http_code}\n" "${@:2}"; }
for h in origin.test other.test; do
  k=ok; [ $h = other.test ] && k=no
  c bearer-$k -H "Authorization: Bearer $API_TOKEN" https://$h:E/ok/curl/bearer-$k
  c basic-$k -u "user:$API_TOKEN" https://$h:E/ok/curl/basic-$k
  c header-$k -H "X-Api-Key: $API_TOKEN" https://$h:E/ok/curl/header-$k
  c query-$k "https://$h:E/ok/curl/query-$k?api_key=$API_TOKEN"
  c body-$k -H "Content-Type: application/json" --data "{\"api_key\": \"$API_TOKEN\"}" https://$h:E/ok/curl/body-$k
done
c plain-ok -H "X-Api-Key: $API_TOKEN" http://plain.test:P/ok/curl/plain-ok
c plain-no -H "X-Api-Key: $API_TOKEN" http://plain.test:P/no/curl/plain-no
c gh-ok -H "Authorization: Bearer $GH_TOKEN" https://api.test:E/gh/curl/gh-ok
c gh-post -X POST -d x -H "Authorization: Bearer $GH_TOKEN" https://api.test:E/gh/curl/gh-post
"""

PYTHON = r"""
import base64, json, os, socket, ssl, urllib.error, urllib.request
T = os.environ["API_TOKEN"]
E, P, W = int(os.environ["E"]), int(os.environ["P"]), int(os.environ["W"])

def req(name, url, headers=None, data=None):
    r = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        code = urllib.request.urlopen(r, timeout=10).status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except urllib.error.URLError as exc:  # a refused CONNECT: "Tunnel connection failed: 403 Forbidden"
        code = int(str(exc.reason).split("failed: ")[1].split()[0])
    print("python", name, code, flush=True)

def ws(name, host):
    proxy = urllib.request.getproxies()["https"].split("//", 1)[1].rstrip("/")
    ph, pp = proxy.rsplit(":", 1)
    s = socket.create_connection((ph, int(pp)), timeout=10)
    s.sendall(f"CONNECT {host}:{W} HTTP/1.1\r\nHost: {host}:{W}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        print("python", name, head.split()[1].decode(), flush=True)
        return
    t = ssl.create_default_context().wrap_socket(s, server_hostname=host)
    t.sendall(f"GET /ws/py HTTP/1.1\r\nHost: {host}:{W}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += t.recv(4096)
    msg = json.dumps({"case": f"python {name}", "token": T}).encode()
    key = os.urandom(4)
    t.sendall(bytes([0x81, 0x80 | len(msg)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(msg)))
    t.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    t.recv(4096)  # the origin's echo (of masked bytes): read, not kept
    t.close()
    print("python", name, head.split()[1].decode(), flush=True)

for h, k in (("origin.test", "ok"), ("other.test", "no")):
    u = f"https://{h}:{E}/ok/python"
    req(f"bearer-{k}", f"{u}/bearer-{k}", {"Authorization": f"Bearer {T}"})
    basic = base64.b64encode(f"user:{T}".encode()).decode()
    req(f"basic-{k}", f"{u}/basic-{k}", {"Authorization": f"Basic {basic}"})
    req(f"header-{k}", f"{u}/header-{k}", {"X-Api-Key": T})
    req(f"query-{k}", f"{u}/query-{k}?api_key={T}")
    req(f"body-{k}", f"{u}/body-{k}", {"Content-Type": "application/json"}, json.dumps({"api_key": T}).encode())
    ws(f"ws-{k}", h)
req("plain-ok", f"http://plain.test:{P}/ok/python/plain-ok", {"X-Api-Key": T})
req("plain-no", f"http://plain.test:{P}/no/python/plain-no", {"X-Api-Key": T})
req("gh-binary", f"https://api.test:{E}/gh/python/gh-binary", {"Authorization": "Bearer " + os.environ["GH_TOKEN"]})
"""

NODE = r"""
const http = require('http'), https = require('https'), tls = require('tls'), crypto = require('crypto');
const T = process.env.API_TOKEN, E = process.env.E, P = process.env.P, W = process.env.W;
const proxy = new URL(process.env.HTTPS_PROXY);
function tunnel(host, port) { return new Promise((resolve, reject) => {
  const r = http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: `${host}:${port}`});
  r.on('connect', (res, socket) => res.statusCode !== 200 ? resolve([res.statusCode, null])
    : resolve([200, tls.connect({socket, servername: host})]));
  r.on('error', reject); r.end(); }); }
async function req(name, host, port, path, headers, body) {
  const [status, sock] = await tunnel(host, port);
  if (!sock) return console.log('node', name, status);
  const code = await new Promise((resolve, reject) => {
    const r = https.request({host, port, path, method: body ? 'POST' : 'GET', headers,
                             createConnection: () => sock}, res => { res.resume(); resolve(res.statusCode); });
    r.on('error', reject); r.end(body); });
  console.log('node', name, code);
}
async function plain(name, path) {
  const code = await new Promise((resolve, reject) => {
    const r = http.request({host: proxy.hostname, port: proxy.port, path: `http://plain.test:${P}${path}`,
                            headers: {'X-Api-Key': T, host: `plain.test:${P}`}}, res => {
      res.resume(); resolve(res.statusCode); });
    r.on('error', reject); r.end(); });
  console.log('node', name, code);
}
async function ws(name, host) {
  const [status, sock] = await tunnel(host, W);
  if (!sock) return console.log('node', name, status);
  sock.write(`GET /ws/node HTTP/1.1\r\nHost: ${host}:${W}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
             'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  const head = await new Promise(resolve => { let d = ''; sock.on('data', c => {
    d += c; if (d.includes('\r\n\r\n')) { sock.removeAllListeners('data'); resolve(d); } }); });
  const msg = Buffer.from(JSON.stringify({case: `node ${name}`, token: T})), key = crypto.randomBytes(4);
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | msg.length]), key, msg.map((b, i) => b ^ key[i % 4])]);
  sock.write(frame); sock.write(Buffer.concat([Buffer.from([0x88, 0x80]), crypto.randomBytes(4)]));
  await new Promise(resolve => setTimeout(resolve, 200)); sock.destroy();
  console.log('node', name, head.split(' ')[1]);
}
(async () => {
  for (const [h, k] of [['origin.test', 'ok'], ['other.test', 'no']]) {
    await req(`bearer-${k}`, h, E, `/ok/node/bearer-${k}`, {Authorization: `Bearer ${T}`});
    const basic = Buffer.from(`user:${T}`).toString('base64');
    await req(`basic-${k}`, h, E, `/ok/node/basic-${k}`, {Authorization: `Basic ${basic}`});
    await req(`header-${k}`, h, E, `/ok/node/header-${k}`, {'X-Api-Key': T});
    await req(`query-${k}`, h, E, `/ok/node/query-${k}?api_key=${T}`, {});
    await req(`body-${k}`, h, E, `/ok/node/body-${k}`, {'Content-Type': 'application/json'},
              JSON.stringify({api_key: T}));
    await ws(`ws-${k}`, h);
  }
  await plain('plain-ok', '/ok/node/plain-ok');
  await plain('plain-no', '/no/node/plain-no');
})();
"""

SCAN = r"""
import json, os
wanted = {n: os.environ.pop(n).encode() for n in ("WANT_API", "WANT_GH")}
hits = []
# the control: a file the scan itself writes with a value must be found, or the scan proves nothing
control = "/tmp/scan-control"
with open(control, "wb") as fh:
    fh.write(b"x" + wanted["WANT_API"] + b"x")
for k, v in os.environ.items():
    hits += [f"env:{k}" for w in wanted.values() if w in v.encode()]
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        for f in ("cmdline", "environ"):
            try:
                data = open(f"/proc/{pid}/{f}", "rb").read()
            except OSError:
                continue
            hits += [f"/proc/{pid}/{f}" for w in wanted.values() if w in data]
for root in ("/sandbox", "/tmp", "/run", "/etc", "/dev", "/home", "/var"):
    for d, _, files in os.walk(root):
        for name in files:
            try:
                with open(os.path.join(d, name), "rb") as fh:
                    data = fh.read(1 << 20)
            except OSError:
                continue
            hits += [os.path.join(d, name) for w in wanted.values() if w in data]
os.unlink(control)
found = control in hits
hits = [h for h in hits if h != control]
print("scan", json.dumps({"hits": hits, "control_found": found, "API_TOKEN": os.environ.get("API_TOKEN"),
                          "GH_TOKEN": os.environ.get("GH_TOKEN")}))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, user):
    """The sandbox run: (client, case) -> HTTP status, the origins' records, the scan, the box."""
    d = tmp_path_factory.mktemp("sbxprov")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    echo, plain, wso = Origin(cert, key), Origin(), SwitchingOrigin(cert, key)
    try:
        (d / "box").mkdir()
        box = Box(d / "box", {"ca": ca}, user)
        e, p, w = echo.port, plain.port, wso.port
        box.write_policy(_policy(e, p, w))
        (d / "custom-api.yaml").write_text(API_PROFILE)
        (d / "custom-gh.yaml").write_text(_gh_profile(e))
        for name, value in (("work-API_TOKEN", API_VALUE), ("gh-GH_TOKEN", GH_VALUE)):
            (d / name).write_text(value + "\n")
            (d / name).chmod(0o600)
        box.gwconf.write_text(json.dumps({  # relative paths: from the config file, in d/box
            "extra_ca_file": str(ca),
            "static_hosts": {n: "127.0.0.1" for n in NAMES},
            "providers": {
                "work": {"profile": "../custom-api.yaml", "credentials": {"API_TOKEN": "../work-API_TOKEN"}},
                "gh": {"profile": "../custom-gh.yaml", "credentials": {"GH_TOKEN": "../gh-GH_TOKEN"}},
            },
        }))  # fmt: skip
        (box.work / "curl.sh").write_text(CURL.replace(":E/", f":{e}/").replace(":P/", f":{p}/"))
        (box.work / "client.py").write_text(PYTHON)
        (box.work / "client.js").write_text(NODE)
        (box.work / "scan.py").write_text(SCAN)
        node = "node /sandbox/client.js" if HAS_NODE else "true"
        # the scan is told the values split in two, so no command line or environment holds them whole
        ha, hg = len(API_VALUE) // 2, len(GH_VALUE) // 2
        env = {"E": e, "P": p, "W": w, "A1": API_VALUE[:ha], "A2": API_VALUE[ha:], "G1": GH_VALUE[:hg],
               "G2": GH_VALUE[hg:]}  # fmt: skip
        extra = ["--credential", "API_TOKEN", "--credential", "GH_TOKEN"]
        for k, v in env.items():
            extra += ["--env", f"{k}={v}"]
        script = f"""
            bash /sandbox/curl.sh
            python3 /sandbox/client.py
            {node}
            WANT_API="$A1$A2" WANT_GH="$G1$G2" python3 /sandbox/scan.py
        """
        proc = box.run(["/bin/bash", "-c", textwrap.dedent(script)], extra=tuple(extra), timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        codes: dict[tuple[str, str], int] = {}
        scan: dict = {}
        for line in proc.stdout.splitlines():
            client, _, rest = line.partition(" ")
            if client == "scan":
                scan = json.loads(rest)
            elif client in ("curl", "python", "node"):
                case, code = rest.split()
                codes[(client, case)] = int(code)
        yield {"codes": codes, "scan": scan, "echo": echo, "plain": plain, "ws": wso, "box": box, "out": proc}
    finally:
        for o in (echo, plain, wso):
            o.close()


CLIENTS = ["curl", "python", pytest.param("node", marks=pytest.mark.skipif(not HAS_NODE, reason="no node"))]


def _record(origin, client: str, case: str) -> dict:
    (rec,) = [r for r in origin.seen if r["path"].split("?")[0].endswith(f"/{client}/{case}")]
    return {"path": rec["path"], "body": rec["body"], **{k.lower(): v for k, v in rec["headers"].items()}}


def _both(run, client: str, case: str, origin: str = "echo") -> tuple[dict, dict]:
    """The bound request's record and its denied twin's, both answered 200."""
    assert run["codes"].get((client, f"{case}-ok")) == 200, run["out"].stdout + run["out"].stderr[-3000:]
    assert run["codes"][(client, f"{case}-no")] == 200, run["out"].stdout
    o = run[origin]
    return _record(o, client, f"{case}-ok"), _record(o, client, f"{case}-no")


def _placeholder(run, name: str = "API_TOKEN") -> str:
    return run["scan"][name]


@pytest.mark.parametrize("client", CLIENTS)
def test_bearer(run, client):
    ok, no = _both(run, client, "bearer")
    assert ok["authorization"] == f"Bearer {API_VALUE}"
    assert no["authorization"] == f"Bearer {_placeholder(run)}"  # other.test: allowed, not bound


@pytest.mark.parametrize("client", CLIENTS)
def test_basic(run, client):
    ok, no = _both(run, client, "basic")
    assert base64.b64decode(ok["authorization"].split()[1]).decode() == f"user:{API_VALUE}"
    assert base64.b64decode(no["authorization"].split()[1]).decode() == f"user:{_placeholder(run)}"


@pytest.mark.parametrize("client", CLIENTS)
def test_custom_header(run, client):
    ok, no = _both(run, client, "header")
    assert ok["x-api-key"] == API_VALUE
    assert no["x-api-key"] == _placeholder(run)


@pytest.mark.parametrize("client", CLIENTS)
def test_query_parameter(run, client):
    ok, no = _both(run, client, "query")
    assert ok["path"].endswith(f"?api_key={API_VALUE}")
    ph = _placeholder(run)
    assert no["path"].split("api_key=")[1] in (ph, ph.replace(":", "%3A"))


@pytest.mark.parametrize("client", CLIENTS)
def test_json_body(run, client):
    ok, no = _both(run, client, "body")
    assert json.loads(ok["body"]) == {"api_key": API_VALUE}
    assert int(ok["content-length"]) == len(ok["body"])  # reframed
    assert json.loads(no["body"]) == {"api_key": _placeholder(run)}  # other.test opts in, but binds no provider


def _ws_messages(run) -> dict[str, str]:
    raw, out, i = bytes(run["ws"].raw), {}, 0
    while i + 2 <= len(raw):
        opcode, n = raw[i] & 0x0F, raw[i + 1] & 0x7F
        if n == 126:
            n, i = int.from_bytes(raw[i + 2 : i + 4], "big"), i + 2
        key, i = raw[i + 2 : i + 6], i + 6
        payload = bytes(b ^ key[j % 4] for j, b in enumerate(raw[i : i + n]))
        i += n
        if opcode == 0x1:
            msg = json.loads(payload)
            out[msg["case"]] = msg["token"]
    return out


@pytest.mark.parametrize("client", ["python", pytest.param("node", marks=CLIENTS[2].marks)])
def test_websocket_text_message(run, client):
    assert run["codes"][(client, "ws-ok")] == 101 and run["codes"][(client, "ws-no")] == 101
    messages = _ws_messages(run)
    assert messages[f"{client} ws-ok"] == API_VALUE
    assert messages[f"{client} ws-no"] == _placeholder(run)


@pytest.mark.parametrize("client", CLIENTS)
def test_plain_http_to_a_loopback_endpoint(run, client):
    ok, no = _both(run, client, "plain", origin="plain")
    assert ok["x-api-key"] == API_VALUE
    assert no["x-api-key"] == _placeholder(run)  # same host, a path the binding does not cover


def test_a_profile_with_endpoints_is_reached_through_its_composed_rule_by_its_binary_only(run):
    codes = run["codes"]
    assert codes[("curl", "gh-ok")] == 200  # api.test is in no rule of the policy file
    assert _record(run["echo"], "curl", "gh-ok")["authorization"] == f"Bearer {GH_VALUE}"
    assert codes[("curl", "gh-post")] == 403  # the profile's endpoint is read-only
    assert codes[("python", "gh-binary")] == 403  # python is allowed elsewhere, not listed by the profile
    assert not [r for r in run["echo"].seen if "/gh-post" in r["path"] or "/gh-binary" in r["path"]]


def test_the_real_values_are_nowhere_in_the_sandbox(run):
    scan = run["scan"]
    assert scan["API_TOKEN"] == "openshell:resolve:env:API_TOKEN"
    assert scan["GH_TOKEN"] == "openshell:resolve:env:GH_TOKEN"
    assert scan["control_found"]  # the scan finds a value where there is one
    assert scan["hits"] == []
    log = run["box"].log.read_text()
    assert API_VALUE not in log and GH_VALUE not in log
