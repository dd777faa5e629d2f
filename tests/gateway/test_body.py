"""Body buffering for body selectors (gateway/body.py) through the in-process gateway over real TLS: the origin
receives exactly the bytes the engine judged, with every framing the client may choose; refusals name the
limit or the rule. Each attack case sits beside an allowed twin."""

from __future__ import annotations

import json

import pytest

from .support import _response, connect, https, tls_over


def body_policy(origins) -> str:
    hp = origins["https"].port
    return f"""\
version: 1
network_policies:
  mcp_server:
    name: mcp_server
    endpoints:
      - host: origin.test
        port: {hp}
        path: /mcp
        protocol: mcp
        allowed_ips: [127.0.0.1/32]
        mcp: {{max_body_bytes: 1024}}
        rules:
          - allow: {{method: initialize}}
          - allow: {{method: tools/call, tool: read_status}}
        deny_rules:
          - {{method: tools/call, tool: delete_resource}}
      - host: origin.test
        port: {hp}
        path: /graphql
        protocol: graphql
        allowed_ips: [127.0.0.1/32]
        rules:
          - allow: {{operation_type: query}}
      - host: origin.test
        port: {hp}
        protocol: rest
        allowed_ips: [127.0.0.1/32]
        rules:
          - allow: {{method: POST, path: "/api/*"}}
    binaries:
      - path: /usr/bin/curl
"""


@pytest.fixture
def bgw(make_gateway, origins):
    return make_gateway(policy_text=body_policy(origins))


def tool(name: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}).encode()


def raw_exchange(gw, origins, wire: list[bytes]) -> tuple[int, dict, bytes]:
    """Send ``wire`` (headers and body pieces, each its own TLS record) and read one response."""
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        for piece in wire:
            tls.sendall(piece)
        return _response(tls)


def head(origins, path: str, *lines: str) -> bytes:
    port = origins["https"].port
    return ("\r\n".join([f"POST {path} HTTP/1.1", f"Host: origin.test:{port}", *lines]) + "\r\n\r\n").encode()


def test_allowed_tool_reaches_the_origin_byte_for_byte(bgw, origins):
    body = tool("read_status")
    status, _, out = https(bgw, origins, "POST", "/mcp", headers={"Content-Type": "application/json"}, body=body)
    assert status == 200
    assert json.loads(out)["body"] == body.decode()


def test_denied_tool_gets_403_naming_the_rule(bgw, origins):
    status, _, out = https(bgw, origins, "POST", "/mcp", body=tool("delete_resource"))
    assert status == 403
    err = json.loads(out)
    assert err["error"] == "policy_denied" and err["rule"] == "mcp_server"
    assert "deny rule tools/call tool=delete_resource" in err["reason"]
    assert not any('"delete_resource"' in json.dumps(s) for s in origins["https"].seen)
    rec = [r for r in bgw.records() if r.get("path") == "/mcp"][-1]
    assert rec["action"] == "deny" and rec["body_bytes"] == len(tool("delete_resource"))


def test_chunked_body_split_across_records_is_judged_whole_and_forwarded_dechunked(bgw, origins):
    body = tool("read_status")
    half = len(body) // 2
    wire = [head(origins, "/mcp", "Transfer-Encoding: chunked", "Content-Type: application/json"),
            b"%x\r\n%s\r\n" % (half, body[:half]), b"%x\r\n%s\r\n" % (len(body) - half, body[half:]),
            b"0\r\nX-Trailer: t\r\n\r\n"]  # fmt: skip
    status, _, out = raw_exchange(bgw, origins, wire)
    assert status == 200
    seen = json.loads(out)
    assert seen["body"] == body.decode()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers.get("content-length") == str(len(body))
    assert "transfer-encoding" not in headers and "x-trailer" not in headers


def test_chunked_denied_tool_split_mid_name_is_denied(bgw, origins):
    body = tool("delete_resource")
    cut = body.index(b"delete") + 3  # the name arrives in two pieces
    wire = [head(origins, "/mcp", "Transfer-Encoding: chunked"), b"%x\r\n%s\r\n" % (cut, body[:cut]),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - cut, body[cut:])]  # fmt: skip
    status, _, out = raw_exchange(bgw, origins, wire)
    assert status == 403 and "delete_resource" in json.loads(out)["reason"]


def test_body_over_the_limit_gets_413_naming_the_limit(bgw, origins):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": "x" * 2000}}).encode()
    status, _, out = https(bgw, origins, "POST", "/mcp", body=body)
    assert status == 413
    err = json.loads(out)
    assert err["error"] == "body_too_large" and "1024-byte limit" in err["detail"]
    # chunked, so no Content-Length to refuse up front: refused once the buffered bytes pass the limit
    wire = [head(origins, "/mcp", "Transfer-Encoding: chunked")] + [b"200\r\n" + b" " * 512 + b"\r\n"] * 3
    status, _, out = raw_exchange(bgw, origins, wire)
    assert status == 413 and "1024-byte limit" in json.loads(out)["detail"]


def test_body_just_under_the_limit_passes(bgw, origins):
    base = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": ""}}
    pad = 1024 - len(json.dumps(base).encode())
    base["params"]["pad"] = "x" * pad
    body = json.dumps(base).encode()
    assert len(body) == 1024
    status, _, _ = https(bgw, origins, "POST", "/mcp", body=body)
    assert status == 200


def test_compressed_body_is_refused_identity_passes(bgw, origins):
    status, _, out = https(bgw, origins, "POST", "/mcp", headers={"Content-Encoding": "gzip"}, body=tool("x"))
    assert status == 415 and json.loads(out)["error"] == "unsupported_content_encoding"
    status, _, _ = https(bgw, origins, "POST", "/mcp", headers={"Content-Encoding": "identity"},
                         body=tool("read_status"))  # fmt: skip
    assert status == 200


def test_repeated_content_type_is_refused(bgw, origins):
    wire = [head(origins, "/graphql", "Content-Type: application/json", "Content-Type: application/graphql",
                 "Content-Length: 17") + b"{ viewer { id } }"]  # fmt: skip
    status, _, out = raw_exchange(bgw, origins, wire)
    assert status == 400 and "repeated" in json.loads(out)["reason"]


def test_expect_continue_is_answered_before_the_body_is_read(bgw, origins):
    body = tool("read_status")
    port = origins["https"].port
    sock, status, _ = connect(bgw, f"origin.test:{port}")
    with tls_over(bgw, sock, "origin.test") as tls:
        tls.sendall(head(origins, "/mcp", f"Content-Length: {len(body)}", "Expect: 100-continue"))
        assert tls.recv(100).startswith(b"HTTP/1.1 100")
        tls.sendall(body)
        status, _, out = _response(tls)
    assert status == 200 and json.loads(out)["body"] == body.decode()


def test_keep_alive_after_a_buffered_body(bgw, origins):
    port = origins["https"].port
    sock, status, _ = connect(bgw, f"origin.test:{port}")
    with tls_over(bgw, sock, "origin.test") as tls:
        for name in ("read_status", "read_status"):
            body = tool(name)
            tls.sendall(head(origins, "/mcp", f"Content-Length: {len(body)}") + body)
            status, _, out = _response(tls)
            assert status == 200 and json.loads(out)["body"] == body.decode()


def test_graphql_get_and_post(bgw, origins):
    status, _, _ = https(bgw, origins, "GET", "/graphql?query=%7Bviewer%7Bid%7D%7D")
    assert status == 200
    status, _, out = https(bgw, origins, "GET", "/graphql?query=mutation%7Bx%7D")
    assert status == 403 and "no rule on" in json.loads(out)["reason"]


def test_rest_endpoint_without_body_selectors_streams_as_before(bgw, origins):
    status, _, out = https(bgw, origins, "POST", "/api/x", headers={"Content-Encoding": "gzip"}, body=b"\x1f\x8b")
    assert status == 200 and json.loads(out)["body"] == "\x1f\x8b"
