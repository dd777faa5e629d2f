"""Body selectors through a real sandbox (Launcher: namespaces, Landlock, seccomp) with real clients: curl and
Python's urllib speaking MCP Streamable HTTP (JSON-RPC POSTs, an SSE response), generic JSON-RPC and GraphQL
(POST and GET) to a real HTTPS origin on the host; and the MCP Python SDK's client in the sandbox against the SDK's
own Streamable HTTP server on the host. Root only (CI runs as root, so nothing skips there)."""

from __future__ import annotations

import json
import os
import sysconfig
import textwrap

import pytest

from policy_daemon import SANDBOX_USER

from .support import EchoHandler, Origin, make_ca_and_leaf, script_server
from .test_sandbox import NAMES, Box

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")


class McpHandler(EchoHandler):
    """A minimal MCP Streamable HTTP server: ``tools/call`` answers as an SSE stream, other requests as JSON,
    notifications with 202; GraphQL and JSON-RPC paths echo. Every body it receives is kept in ``seen``."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.seen.append({"path": self.path, "body": raw.decode("latin-1")})  # type: ignore[attr-defined]
        ctype, status, out = "application/json", 200, json.dumps({"echo": raw.decode("latin-1")}).encode()
        if self.path == "/mcp":
            msg = json.loads(raw)
            if "id" not in msg:
                status, out = 202, b""
            elif msg["method"] == "tools/call":
                result = {"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text",
                          "text": f"ran {msg['params']['name']}"}]}}  # fmt: skip
                ctype, out = "text/event-stream", f"event: message\ndata: {json.dumps(result)}\n\n".encode()
            else:
                result = {"jsonrpc": "2.0", "id": msg["id"], "result": {"capabilities": {"tools": {}}}}
                out = json.dumps(result).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer


@pytest.fixture(scope="module")
def mworld(tmp_path_factory):
    d = tmp_path_factory.mktemp("mworld")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    origin = Origin(cert, key, McpHandler)
    yield {"ca": ca, "origin": origin, "dir": d}
    origin.close()


@pytest.fixture
def box(tmp_path, mworld, user) -> Box:
    b = Box(tmp_path, mworld, user)
    o = mworld["origin"].port
    # Upstream's shapes (tests/data/upstream-l7body/): an MCP endpoint, a GraphQL endpoint beside a REST one on the
    # same host, and a generic JSON-RPC endpoint.
    b.write_policy(f"""\
    agents:
      name: agents
      endpoints:
        - host: origin.test
          port: {o}
          path: /mcp
          protocol: mcp
          allowed_ips: [127.0.0.1/32]
          mcp:
            max_body_bytes: 4096
          rules:
            - allow: {{method: initialize}}
            - allow: {{method: notifications/initialized}}
            - allow: {{method: tools/call, tool: read_status}}
            - allow: {{method: tools/call, tool: {{any: [submit_report, list_reports]}}}}
          deny_rules:
            - method: tools/call
              tool: delete_resource
        - host: origin.test
          port: {o}
          path: /graphql
          protocol: graphql
          allowed_ips: [127.0.0.1/32]
          rules:
            - allow: {{operation_type: query, fields: [viewer, repository]}}
            - allow: {{operation_type: mutation, operation_name: "Issue*", fields: [createIssue]}}
          deny_rules:
            - operation_type: mutation
              fields: [deleteRepository]
        - host: origin.test
          port: {o}
          path: /rpc
          protocol: json-rpc
          allowed_ips: [127.0.0.1/32]
          rules:
            - allow: {{method: eth_blockNumber}}
          deny_rules:
            - method: eth_sendRawTransaction
        - host: origin.test
          port: {o}
          protocol: rest
          allowed_ips: [127.0.0.1/32]
          rules:
            - allow: {{method: POST, path: "/**"}}
      binaries: [{{path: /usr/bin/curl}}, {{path: "/usr/bin/python3*"}}]
    """)
    return b


def test_curl_mcp_jsonrpc_graphql_allowed_and_denied(box, mworld):
    o = mworld["origin"].port
    u = f"https://origin.test:{o}"
    proc = box.sh(f"""
        c() {{ curl -s -o /tmp/out -w '%{{http_code}}' "$@"; echo " $(head -c 300 /tmp/out | tr -d '\\n')"; }}
        J='-H content-type:application/json'
        c $J -H 'accept: application/json, text/event-stream' -d '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_status","arguments":{{}}}}}}' {u}/mcp
        c $J -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"delete_resource"}}}}' {u}/mcp
        c $J -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"read_status","name":"delete_resource"}}}}' {u}/mcp
        c $J -H 'transfer-encoding: chunked' -d '{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"delete_resource"}}}}' {u}/mcp
        c $J -d '{{"query":"query {{ viewer {{ login }} }}"}}' {u}/graphql
        c $J -d '{{"query":"mutation {{ deleteRepository(input: {{}}) {{ clientMutationId }} }}"}}' {u}/graphql
        c -G --data-urlencode 'query={{ viewer {{ id }} }}' {u}/graphql
        c -G --data-urlencode 'query=mutation M {{ createIssue: deleteRepository {{ x }} }}' {u}/graphql
        c $J -d '{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}}' {u}/rpc
        c $J -d '[{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}},{{"jsonrpc":"2.0","id":2,"method":"eth_sendRawTransaction","params":["0x0"]}}]' {u}/rpc
        yes xxxxxxxxxxxxxxx | head -c 5000 > /tmp/big
        c $J --data-binary @/tmp/big {u}/mcp
        c $J -H 'content-encoding: gzip' -d '{{"jsonrpc":"2.0","id":1,"method":"initialize"}}' {u}/mcp
    """)  # noqa: E501
    lines = proc.stdout.strip().split("\n")
    codes = [x.split(" ", 1)[0] for x in lines]
    assert codes == ["200", "403", "403", "403", "200", "403", "200", "403", "200", "403", "413", "415"], proc
    assert "ran read_status" in lines[0] and "event: message" in lines[0]  # the SSE response came through
    denied = json.loads(lines[1].split(" ", 1)[1])
    assert denied["error"] == "policy_denied" and denied["rule"] == "agents"
    assert "deny rule tools/call tool=delete_resource" in denied["reason"]
    assert "duplicate JSON key" in lines[2]
    assert "deny rule mutation fields=deleteRepository" in lines[5]
    assert "deleteRepository" in lines[7]  # the alias createIssue: did not hide the field
    assert "eth_sendRawTransaction" in lines[9]
    assert "4096-byte limit" in lines[10] and "body_too_large" in lines[10]
    seen = json.dumps(mworld["origin"].seen)
    assert "delete_resource" not in seen and "deleteRepository" not in seen and "eth_sendRawTransaction" not in seen
    recs = [r for r in box.records() if r.get("kind") == "tls_request"]
    assert any(r["action"] == "deny" and r["binary"] == "/usr/bin/curl" and r.get("body_bytes") for r in recs)


def test_python_mcp_session_over_streamable_http(box, mworld):
    o = mworld["origin"].port
    code = f"""
import json, urllib.request, urllib.error
URL = "https://origin.test:{o}/mcp"
def post(msg, url=URL):
    req = urllib.request.Request(url, data=json.dumps(msg).encode(), method="POST", headers={{
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18"}})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers.get("content-type"), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type"), exc.read().decode()
out = {{}}
out["init"] = post({{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {{"protocolVersion": "2025-06-18",
                    "capabilities": {{}}, "clientInfo": {{"name": "t", "version": "1"}}}}}})
out["initialized"] = post({{"jsonrpc": "2.0", "method": "notifications/initialized"}})
out["call"] = post({{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {{"name": "submit_report",
                    "arguments": {{"text": "weekly"}}}}}})
out["denied"] = post({{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {{"name": "delete_resource"}}}})
out["unlisted"] = post({{"jsonrpc": "2.0", "id": 3, "method": "tools/list"}})
out["batch"] = post([{{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {{"name": "read_status"}}}},
                     {{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {{"name": "delete_resource"}}}}])
out["gql"] = post({{"query": "mutation IssueNew {{ createIssue(input: {{}}) {{ issue {{ id }} }} }}"}},
                  "https://origin.test:{o}/graphql")
print(json.dumps(out))
"""
    proc = box.run(["/usr/bin/python3", "-c", code])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["init"][0] == 200 and "capabilities" in out["init"][2]
    assert out["initialized"][0] == 202
    assert out["call"][0] == 200 and out["call"][1] == "text/event-stream" and "ran submit_report" in out["call"][2]
    assert out["denied"][0] == 403 and json.loads(out["denied"][2])["rule"] == "agents"
    assert out["unlisted"][0] == 403 and "no rule on" in json.loads(out["unlisted"][2])["reason"]
    assert out["batch"][0] == 403 and "delete_resource" in json.loads(out["batch"][2])["reason"]
    assert out["gql"][0] == 200
    bodies = [s["body"] for s in mworld["origin"].seen]
    assert any('"submit_report"' in b for b in bodies)
    assert not any("delete_resource" in b for b in bodies)


# -- the MCP Python SDK on both sides ----------------------------------------------------------------------

# The SDK comes from this test's environment; the sandbox runs the system interpreter with the same site-packages,
# read-only (as tests/router/test_kernel_sandboxes.py does for the openai and anthropic SDKs).
SITE = sysconfig.get_paths()["purelib"]

MCP_SERVER = """\
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

app = MCPServer("clawfleet-test")


def ran(name: str) -> None:  # the test reads which tools really ran
    with open(sys.argv[2], "a") as f:
        f.write(name + "\\n")


@app.tool()
def read_status() -> str:
    ran("read_status")
    return "all green"


@app.tool()
def delete_resource(name: str) -> str:
    ran("delete_resource")
    return f"deleted {name}"


# SSE responses (json_response=False), stateless: each POST stands alone
asgi = app.streamable_http_app(
    stateless_http=True, transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
)
uvicorn.run(asgi, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

MCP_CLIENT = """\
import asyncio, json, sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url):
    out = {}
    async with httpx2.AsyncClient(timeout=20) as http:  # HTTP_PROXY from the sandbox's environment
        async with streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write, *_):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["server"] = init.server_info.name
                r = await session.call_tool("read_status", {})
                out["read_status"] = [c.text for c in r.content]
                try:
                    r = await session.call_tool("delete_resource", {"name": "prod"})
                    out["delete_resource"] = [c.text for c in r.content]
                except Exception as exc:
                    out["delete_resource_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def mcp_server(tmp_path):
    script = tmp_path / "mcp_server.py"
    script.write_text(MCP_SERVER)
    ran = tmp_path / "ran.txt"
    with script_server(script, tmp_path / "mcp_server.log", str(ran)) as port:
        yield port, ran


def test_mcp_sdk_client_and_server_through_the_sandbox(tmp_path, mworld, user, mcp_server):
    port, ran = mcp_server
    box = Box(tmp_path, mworld, user)
    (box.work / "client.py").write_text(MCP_CLIENT)
    box.policy.write_text(textwrap.dedent(f"""\
        version: 1
        filesystem_policy:
          include_workdir: true
          read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom, {SITE}]
          read_write: [/sandbox, /tmp, /dev/null]
        process:
          run_as_user: {SANDBOX_USER}
        network_policies:
          mcp:
            name: mcp
            endpoints:
              - host: plain.test
                port: {port}
                path: /mcp
                protocol: mcp
                allowed_ips: [127.0.0.1/32]
                rules:
                  - allow: {{method: initialize}}
                  - allow: {{method: notifications/initialized}}
                  - allow: {{method: tools/list}}
                  - allow: {{method: tools/call, tool: read_status}}
                deny_rules:
                  - {{method: tools/call, tool: delete_resource}}
            binaries: [{{path: "/usr/bin/python3*"}}]
        """))  # fmt: skip
    proc = box.sh(f"PYTHONPATH={SITE} /usr/bin/python3 /sandbox/client.py http://plain.test:{port}/mcp")
    assert proc.returncode == 0, (proc.stderr[-2000:], (tmp_path / "mcp_server.log").read_text()[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["server"] == "clawfleet-test" and out["read_status"] == ["all green"]
    # the SDK surfaces the gateway's 403 as an error response; the server never ran the tool
    assert "delete_resource" not in out and "error" in out["delete_resource_error"], out
    assert ran.read_text().split() == ["read_status"]
    denied = [r for r in box.records() if r.get("action") == "deny" and r.get("path") == "/mcp"]
    assert denied and "deny rule tools/call tool=delete_resource" in denied[0]["reason"]
