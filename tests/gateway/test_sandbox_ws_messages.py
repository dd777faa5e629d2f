"""WebSocket message rules through a real sandbox (Launcher: namespaces, Landlock, seccomp): the ``websockets``
library's client in the sandbox (through the gateway's HTTPS_PROXY, offering permessage-deflate as it does by
default) against the same library's TLS server on the host. An allowed message is answered; a message no rule
allows closes the connection with 1008 and a reason naming the rule, and the server never reads it. Root only (CI
runs as root, so nothing skips there)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import websockets

from policy_daemon import SANDBOX_USER

from .support import make_ca_and_leaf, script_server
from .test_sandbox import NAMES, Box

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")

# The library comes from this test's environment; the sandbox runs the system interpreter with it on PYTHONPATH,
# read-only (as test_sandbox_l7body.py does for the MCP SDK).
LIB = str(Path(websockets.__file__).resolve().parent.parent)

SERVER = """\
import asyncio, json, ssl, sys

from websockets.asyncio.server import serve


async def handler(ws):
    with open(sys.argv[4], "a") as seen:
        seen.write(json.dumps({"path": ws.request.path, "extensions": [e.name for e in ws.protocol.extensions]})
                   + "\\n")
    async for message in ws:
        with open(sys.argv[4], "a") as seen:  # the test reads every message that reached the server
            seen.write(json.dumps({"message": message if isinstance(message, str) else message.hex()}) + "\\n")
        await ws.send(f"echo {message}")


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), ssl=ctx):
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
"""

CLIENT = """\
import asyncio, json, sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def session(url, messages):
    out = {"answers": []}
    try:
        async with connect(url, open_timeout=20) as ws:  # HTTPS_PROXY and SSL_CERT_FILE from the sandbox
            for m in messages:
                await ws.send(m if isinstance(m, str) else bytes.fromhex(m["hex"]))
                out["answers"].append(await asyncio.wait_for(ws.recv(), 10))
    except ConnectionClosed as exc:
        out["close"] = [exc.rcvd.code, exc.rcvd.reason] if exc.rcvd else None
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def main(base):
    gql = json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "subscription { messageAdded { id } }"}})
    bad = json.dumps({"type": "subscribe", "id": "2", "payload": {"query": "mutation { deleteRepository }"}})
    out = {
        "chat": await session(base + "/ws/chat/1", ['{"say": "hi"}', '{"say": "again"}']),
        "feed": await session(base + "/ws/feed", ['{"say": "hi"}']),
        "binary": await session(base + "/ws/chat/1", [{"hex": "7b7d"}]),
        "graphql": await session(base + "/graphql", ['{"type": "connection_init"}', gql, bad]),
    }
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def ws_server(tmp_path):
    d = tmp_path / "wsworld"
    d.mkdir()
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    script, seen = d / "server.py", d / "seen.jsonl"
    script.write_text(SERVER)
    log_path = d / "server.log"
    env = {**os.environ, "PYTHONPATH": LIB}
    with script_server(script, log_path, str(cert), str(key), str(seen), env=env) as port:
        yield {"ca": ca, "port": port, "seen": seen, "log": log_path}


def test_websockets_client_allowed_and_denied_messages(tmp_path, ws_server, user):
    port = ws_server["port"]
    box = Box(tmp_path, {"ca": ws_server["ca"]}, user)
    (box.work / "client.py").write_text(CLIENT)
    box.policy.write_text(textwrap.dedent(f"""\
        version: 1
        filesystem_policy:
          include_workdir: true
          read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom, {LIB}]
          read_write: [/sandbox, /tmp, /dev/null]
        process:
          run_as_user: {SANDBOX_USER}
        network_policies:
          realtime:
            name: realtime
            endpoints:
              - host: origin.test
                port: {port}
                path: "/ws/**"
                protocol: websocket
                allowed_ips: [127.0.0.1/32]
                rules:
                  - allow: {{method: GET, path: "/ws/**"}}
                  - allow: {{method: WEBSOCKET_TEXT, path: "/ws/chat/**"}}
              - host: origin.test
                port: {port}
                path: /graphql
                protocol: websocket
                allowed_ips: [127.0.0.1/32]
                rules:
                  - allow: {{method: GET, path: /graphql}}
                  - allow: {{operation_type: subscription, fields: [messageAdded]}}
                deny_rules:
                  - {{operation_type: mutation}}
            binaries: [{{path: "/usr/bin/python3*"}}]
        """))  # fmt: skip
    proc = box.sh(f"PYTHONPATH={LIB} /usr/bin/python3 /sandbox/client.py wss://origin.test:{port}")
    assert proc.returncode == 0, (proc.stderr[-3000:], ws_server["log"].read_text()[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # allowed: answered by the server, both messages of the session
    assert out["chat"] == {"answers": ['echo {"say": "hi"}', 'echo {"say": "again"}']}, out
    # no rule allows text on /ws/feed (the upgrade is allowed): closed with 1008 naming the rule
    assert out["feed"]["answers"] == [] and out["feed"]["close"][0] == 1008, out
    assert out["feed"]["close"][1].startswith("denied by policy realtime: ")
    assert "WEBSOCKET_TEXT /ws/feed" in out["feed"]["close"][1]
    # a binary message carrying JSON: no WEBSOCKET_BINARY rule
    assert out["binary"]["close"][0] == 1008 and "WEBSOCKET_BINARY" in out["binary"]["close"][1], out
    # GraphQL over WebSocket: the lifecycle message and the allowed subscription pass, the mutation closes it
    gql = out["graphql"]
    assert len(gql["answers"]) == 2 and "messageAdded" in gql["answers"][1], out
    assert gql["close"][0] == 1008 and "deny rule mutation" in gql["close"][1], out
    seen = [json.loads(x) for x in ws_server["seen"].read_text().splitlines()]
    messages = [s["message"] for s in seen if "message" in s]
    assert '{"say": "again"}' in messages and not any("deleteRepository" in m for m in messages)
    assert '{"say": "hi"}' in messages and len([m for m in messages if m == '{"say": "hi"}']) == 1  # /ws/feed's never
    assert "7b7d" not in messages
    assert all(s["extensions"] == [] for s in seen if "extensions" in s)  # permessage-deflate was not negotiated
    recs = [r for r in box.records() if r.get("kind") == "websocket_message"]
    assert any(r["action"] == "deny" and r["rule"] == "realtime" and r["binary"].startswith("/usr/bin/python3")
               for r in recs)  # fmt: skip
    assert any(r["action"] == "allow" and r["method"] == "WEBSOCKET_TEXT" for r in recs)
