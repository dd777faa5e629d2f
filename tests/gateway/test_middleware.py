"""The ``openshell/regex`` middleware in the gateway (in-process gateway, real TLS, real origins): request bodies
redacted, blocked or logged before they reach the origin, response bodies before they reach the client, and every
way a body can slip past an inspecting stage (chunked framing, compression, size, bytes that are not UTF-8, a
WebSocket upgrade, a ``tls: skip`` tunnel) either inspected or refused. Each attack sits beside an allowed twin."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import socket
import threading

import pytest

from clawfleet.policy import compile_policy, load_preset_text, load_text, merge

from .support import EchoHandler, Origin, _response, connect, https, request, tls_over

TOKEN = "sk-ABCDEFGHIJKLMNOPQRSTUVWX"  # upstream's built-in pattern: sk- and 16+ token characters
AWS = "AKIAIOSFODNN7EXAMPLE"
GHP = "ghp_0123456789abcdefghijKLMN"
BIG = 300 * 1024  # over the 256 KiB a stage inspects


class ContentHandler(EchoHandler):
    """Fixed responses: text with a token, chunked text, gzip, binary, a key, a large text; records headers."""

    def _answer(self) -> None:
        self.server.seen.append({"path": self.path, "headers": dict(self.headers.items())})  # type: ignore[attr-defined]
        chunked = False
        extra: list[tuple[str, str]] = []
        if self.path == "/secret":
            body = f"your token is {GHP} (keep it)".encode()
        elif self.path == "/chunked":
            body, chunked = f"chunk one {GHP} chunk two".encode(), True
        elif self.path == "/gzip":
            body, extra = gzip.compress(f"zipped {GHP}".encode()), [("content-encoding", "gzip")]
        elif self.path == "/binary":
            body = bytes(range(256)) * 4
        elif self.path == "/pem":
            body = b"-----BEGIN PRIVATE KEY-----\nMIIB...\n-----END PRIVATE KEY-----\n"
        elif self.path == "/big":
            body = b"x" * BIG
        else:
            body = b"nothing to see here"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        for k, v in extra:
            self.send_header(k, v)
        if chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for piece in (body[:half], body[half:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer


@pytest.fixture(scope="module")
def content(pki):
    origin = Origin(pki["cert"], pki["key"], ContentHandler)
    yield origin
    origin.close()


def mw_policy(origins, content_port: int) -> str:
    hp, pp = origins["https"].port, origins["http"].port
    return f"""\
version: 1
network_policies:
  origin:
    name: origin
    endpoints:
      - host: origin.test
        port: {hp}
        path: /ws
        allowed_ips: [127.0.0.1/32]
        protocol: websocket
        access: full
      - host: origin.test
        port: {hp}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        rules:
          - allow: {{method: POST, path: "/api/*"}}
          - allow: {{method: GET, path: "/**"}}
      - host: pass.test
        port: {hp}
        allowed_ips: [127.0.0.1/32]
      - host: plain.test
        port: {pp}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
      - host: other.test
        port: {content_port}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: read-only
    binaries:
      - path: /usr/bin/curl
network_middlewares:
  redact-tokens:
    name: Redact API tokens
    middleware: openshell/regex
    order: 10
    config:
      mode: redact
    on_error: fail_closed
    endpoints:
      include: [origin.test, plain.test]
  block-keys:
    middleware: openshell/regex
    order: 20
    config:
      mode: block
      patterns:
        - name: aws-access-key
          regex: "AKIA[0-9A-Z]{{16}}"
    endpoints:
      include: ["*.test"]
      exclude: [other.test, pass.test]
  detect-internal:
    middleware: openshell/regex
    order: 30
    config:
      mode: detect
      patterns: [{{name: internal, regex: "(?i)internal-only"}}]
    endpoints:
      include: [origin.test]
  lenient:
    middleware: openshell/regex
    order: 40
    on_error: fail_open
    config:
      patterns: [{{name: aws-access-key, regex: "AKIA[0-9A-Z]{{16}}"}}]
      replacement: "<aws>"
    endpoints:
      include: [pass.test]
  response-guard:
    middleware: openshell/regex
    order: 50
    config:
      direction: response
      replacement: "[FILTERED]"
      patterns: [{{name: github-token, regex: "ghp_[A-Za-z0-9_]{{20,}}"}}]
    endpoints:
      include: [other.test]
  response-keys:
    middleware: openshell/regex
    order: 60
    config:
      mode: block
      direction: response
      patterns: [{{name: private-key, regex: "-----BEGIN [A-Z ]*PRIVATE KEY-----"}}]
    endpoints:
      include: [other.test]
"""


@pytest.fixture
def mgw(make_gateway, origins, content):
    return make_gateway(policy_text=mw_policy(origins, content.port), secrets=False)


def post(gw, origins, body: bytes, host="origin.test", path="/api/x", headers=None):
    return https(gw, origins, "POST", path, host=host, body=body, headers=headers)


def get(gw, content, path: str):
    port = content.port
    sock, status, refusal = connect(gw, f"other.test:{port}")
    assert status == 200, refusal
    with tls_over(gw, sock, "other.test") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: other.test:{port}\r\nAccept-Encoding: gzip\r\n\r\n".encode())
        return _response(tls)


def events(gw, key: str) -> list[dict]:
    return [r for r in gw.records() if r.get("event") == "middleware" and r.get("middleware") == key]


# -- request bodies -------------------------------------------------------------------------------------------


def test_redact_rewrites_the_forwarded_body_and_its_length(mgw, origins):
    status, _, out = post(mgw, origins, f'{{"key": "{TOKEN}", "n": 1}}'.encode())
    assert status == 200
    seen = json.loads(out)
    assert seen["body"] == '{"key": "[REDACTED]", "n": 1}'
    assert {k.lower(): v for k, v in seen["headers"].items()}["content-length"] == str(len(seen["body"]))
    assert TOKEN not in json.dumps(origins["https"].seen)
    (ev,) = events(mgw, "redact-tokens")
    assert ev["outcome"] == "redacted" and ev["matches"] == {"openai": 1} and ev["rule"] == "origin"
    assert ev["action"] == "allow" and ev["binary"] == "/usr/bin/curl" and ev["host"] == "origin.test"
    assert TOKEN not in mgw.log_path.read_text()  # the log names the pattern, never the matched text


def test_body_without_a_match_goes_through_byte_for_byte(mgw, origins):
    body = b'{"key": "sk-short", "text": "caf\xc3\xa9"}'  # sk- with too few characters: no match
    status, _, out = post(mgw, origins, body)
    assert status == 200 and json.loads(out)["body"].encode("latin-1") == body
    assert events(mgw, "redact-tokens") == []


def test_chunked_body_is_inspected_whole_and_reframed(mgw, origins):
    port = origins["https"].port
    sock, status, _ = connect(mgw, f"origin.test:{port}")
    assert status == 200
    # the token split across two chunks (and two TLS records): the stage sees the whole body
    with tls_over(mgw, sock, "origin.test") as tls:
        tls.sendall(f"POST /api/x HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        tls.sendall(b"8\r\ntoken=sk\r\n")
        tls.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(TOKEN) - 2, TOKEN[2:].encode()))
        status, _, out = _response(tls)
    assert status == 200
    seen = json.loads(out)
    assert seen["body"] == "token=[REDACTED]" and "transfer-encoding" not in {k.lower() for k in seen["headers"]}


def test_block_refuses_with_403_naming_the_middleware(mgw, origins):
    before = len(origins["https"].seen)
    status, headers, out = post(mgw, origins, f"aws_access_key_id={AWS}".encode())
    assert status == 403 and headers["content-type"] == "application/json"
    body = json.loads(out)
    assert body["error"] == "middleware_denied" and body["middleware"] == "block-keys"
    assert body["policy"] == "origin" and body["rule"] == "origin" and body["reason_code"] == "content_match"
    assert "aws-access-key" in body["reason"] and AWS not in out.decode()
    assert len(origins["https"].seen) == before  # nothing reached the origin
    (ev,) = events(mgw, "block-keys")
    assert ev["outcome"] == "blocked" and ev["matches"] == {"aws-access-key": 1} and ev["action"] == "deny"


def test_block_twin_lower_case_key_is_not_a_match(mgw, origins):
    status, _, out = post(mgw, origins, f"id={AWS.lower()}".encode())
    assert status == 200 and json.loads(out)["body"] == f"id={AWS.lower()}"


def test_block_runs_after_redact_in_order_and_over_plain_http(mgw, origins):
    pp = origins["http"].port
    sock = socket.create_connection(("127.0.0.1", mgw.port), timeout=10)
    body = f"{TOKEN} {AWS}".encode()
    sock.sendall(f"POST http://plain.test:{pp}/up HTTP/1.1\r\nHost: plain.test:{pp}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    status, _, out = _response(sock)
    sock.close()
    assert status == 403 and json.loads(out)["middleware"] == "block-keys"
    ok = f"{TOKEN} plain".encode()
    sock = socket.create_connection(("127.0.0.1", mgw.port), timeout=10)
    sock.sendall(f"POST http://plain.test:{pp}/up HTTP/1.1\r\nHost: plain.test:{pp}\r\n"
                 f"Content-Length: {len(ok)}\r\n\r\n".encode() + ok)  # fmt: skip
    status, _, out = _response(sock)
    sock.close()
    assert status == 200 and json.loads(out)["body"] == "[REDACTED] plain"


def test_detect_logs_and_forwards_unchanged(mgw, origins):
    status, _, out = post(mgw, origins, b"this is INTERNAL-ONLY material")
    assert status == 200 and json.loads(out)["body"] == "this is INTERNAL-ONLY material"
    (ev,) = events(mgw, "detect-internal")
    assert ev["outcome"] == "detected" and ev["matches"] == {"internal": 1} and ev["mode"] == "detect"


def test_body_over_the_stage_limit_is_refused_and_a_smaller_one_passes(mgw, origins):
    port = origins["https"].port
    sock, status, _ = connect(mgw, f"origin.test:{port}")
    assert status == 200
    with tls_over(mgw, sock, "origin.test") as tls:  # refused on the declared length, before a byte is read
        tls.sendall(f"POST /api/x HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: {BIG}\r\n\r\n".encode())
        status, _, out = _response(tls)
    assert status == 413 and "262144-byte limit" in json.loads(out)["detail"]
    status, _, out = post(mgw, origins, b"a" * (200 * 1024))
    assert status == 200 and len(json.loads(out)["body"]) == 200 * 1024


def test_compressed_request_body_is_refused_uncompressed_passes(mgw, origins):
    zipped = gzip.compress(TOKEN.encode())
    status, _, out = post(mgw, origins, zipped, headers={"Content-Encoding": "gzip"})
    assert status == 415 and json.loads(out)["error"] == "unsupported_content_encoding"
    status, _, out = post(mgw, origins, TOKEN.encode(), headers={"Content-Encoding": "identity"})
    assert status == 200 and json.loads(out)["body"] == "[REDACTED]"


def test_body_that_is_not_utf8_fails_closed(mgw, origins):
    status, _, out = post(mgw, origins, b"\xff\xfe" + TOKEN.encode())
    body = json.loads(out)
    assert status == 403 and body["error"] == "middleware_failed" and body["middleware"] == "redact-tokens"
    assert "UTF-8" in body["reason"]


def test_fail_open_stage_is_bypassed_and_logged(mgw, origins):
    # pass.test is an L4 endpoint: a middleware on its host makes the gateway parse the tunnel
    status, _, out = post(mgw, origins, f"k={AWS}".encode(), host="pass.test")
    assert status == 200 and json.loads(out)["body"] == "k=<aws>"
    status, _, out = post(mgw, origins, b"\xff" + AWS.encode(), host="pass.test")
    assert status == 200 and json.loads(out)["body"].encode("latin-1") == b"\xff" + AWS.encode()
    outcomes = [e["outcome"] for e in events(mgw, "lenient")]
    assert outcomes == ["redacted", "bypassed"]


def test_websocket_upgrade_is_refused_where_a_stage_is_fail_closed(mgw, origins):
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    status, _, out = https(mgw, origins, "GET", "/ws", headers=headers)
    body = json.loads(out)
    assert status == 403 and body["error"] == "middleware_failed" and "WebSocket" in body["reason"]
    status, _, _ = https(mgw, origins, "GET", "/ws")  # the twin: the same request without the upgrade
    assert status == 200
    # an offer on a REST endpoint is stripped (gateway/upgrade.py): a plain GET, inspected as usual
    status, _, out = https(mgw, origins, "GET", "/other", headers=headers)
    assert status == 200 and "Upgrade" not in json.loads(out)["headers"]


def test_tls_skip_tunnel_to_a_selected_host_is_refused_or_bypassed(make_gateway, origins, pki):
    # A policy that pairs the two is refused at load (tests/policy/test_policy_middleware.py); a preset merged into
    # a base can still pair them, so the gateway decides per CONNECT too.
    hp = origins["https"].port
    base = load_text(f"""\
version: 1
network_policies:
  raw:
    endpoints:
      - {{host: other.test, port: {hp}, allowed_ips: [127.0.0.1/32], tls: skip}}
      - {{host: pass.test, port: {hp}, allowed_ips: [127.0.0.1/32], tls: skip}}
    binaries: [{{path: /usr/bin/curl}}]
""")  # fmt: skip
    preset = load_preset_text("""\
preset: {name: guard}
network_middlewares:
  strict: {middleware: openshell/regex, order: 1, endpoints: {include: [other.test]}}
  soft: {middleware: openshell/regex, order: 2, on_error: fail_open, endpoints: {include: [pass.test]}}
""")
    gw = make_gateway(secrets=False)
    gw.holder.engine = compile_policy(merge(base, [preset])[0])
    sock, status, out = connect(gw, f"other.test:{hp}")
    sock.close()
    body = json.loads(out)
    assert status == 403 and body["error"] == "middleware_failed" and body["middleware"] == "strict"
    assert "tls: skip" in body["reason"]
    sock, status, _ = connect(gw, f"pass.test:{hp}")  # the fail_open twin: relayed, the bypass logged
    assert status == 200
    with tls_over(gw, sock, "pass.test", ca=pki["ca"]) as tls:  # the origin's own certificate: not intercepted
        status, _, _ = request(tls, "GET", "/x", f"pass.test:{hp}")
    assert status == 200
    (ev,) = events(gw, "soft")
    assert ev["outcome"] == "bypassed" and "tls: skip" in ev["reason"]


# -- response bodies ------------------------------------------------------------------------------------------


def test_response_is_redacted_before_the_client_sees_it(mgw, content):
    status, headers, out = get(mgw, content, "/secret")
    assert status == 200 and out == b"your token is [FILTERED] (keep it)"
    assert headers["content-length"] == str(len(out))
    asked = {k.lower(): v for k, v in content.seen[-1]["headers"].items()}
    assert asked["accept-encoding"] == "identity"  # the gateway asked for the body uncompressed
    (ev,) = events(mgw, "response-guard")
    assert ev["direction"] == "response" and ev["matches"] == {"github-token": 1}


def test_response_without_a_match_is_unchanged(mgw, content):
    status, _, out = get(mgw, content, "/plain")
    assert status == 200 and out == b"nothing to see here"


def test_chunked_response_is_inspected_whole(mgw, content):
    status, headers, out = get(mgw, content, "/chunked")
    assert status == 200 and out == b"chunk one [FILTERED] chunk two" and "transfer-encoding" not in headers


def test_response_block_withholds_the_body(mgw, content):
    status, _, out = get(mgw, content, "/pem")
    body = json.loads(out)
    assert status == 403 and body["error"] == "middleware_denied" and body["direction"] == "response"
    assert body["middleware"] == "response-keys" and b"MIIB" not in out


@pytest.mark.parametrize("path", ["/gzip", "/binary", "/big"])
def test_response_that_cannot_be_inspected_fails_closed(mgw, content, path):
    status, _, out = get(mgw, content, path)
    body = json.loads(out)
    assert status == 502 and body["error"] == "middleware_failed" and body["direction"] == "response"
    assert GHP.encode() not in out


def test_head_response_keeps_its_length(mgw, content):
    port = content.port
    sock, status, _ = connect(mgw, f"other.test:{port}")
    assert status == 200
    with tls_over(mgw, sock, "other.test") as tls:
        tls.sendall(f"HEAD /secret HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(tls, method="HEAD")
        resp.begin()
        assert resp.status == 200 and resp.getheader("content-length") == str(len(f"your token is {GHP} (keep it)"))


# -- body selectors see what the origin will see ----------------------------------------------------------------


def test_a_rewritten_body_is_judged_again_by_the_body_selectors(make_gateway, origins):
    hp = origins["https"].port
    gw = make_gateway(secrets=False, policy_text=f"""\
version: 1
network_policies:
  tools:
    name: tools
    endpoints:
      - host: origin.test
        port: {hp}
        path: /mcp
        protocol: mcp
        allowed_ips: [127.0.0.1/32]
        mcp: {{max_body_bytes: 1048576}}
        rules:
          - allow: {{method: tools/call, tool: "sk-*"}}
          - allow: {{method: tools/call, tool: read_status}}
    binaries:
      - path: /usr/bin/curl
network_middlewares:
  redact-tokens:
    middleware: openshell/regex
    endpoints: {{include: [origin.test]}}
""")  # fmt: skip

    def call(name: str, arg: str) -> tuple[int, bytes]:
        msg = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {"k": arg}}}
        status, _, out = https(gw, origins, "POST", "/mcp", headers={"Content-Type": "application/json"},
                               body=json.dumps(msg).encode())  # fmt: skip
        return status, out

    status, out = call("read_status", TOKEN)  # allowed twin: the token in an argument is redacted, the call passes
    assert status == 200 and '\\"k\\": \\"[REDACTED]\\"' in out.decode() and TOKEN not in out.decode()
    status, out = call(TOKEN, "x")  # the rewrite turns the allowed tool name into one no rule allows
    body = json.loads(out)
    assert status == 403 and body["error"] == "policy_denied" and "after middleware rewrote the body" in body["reason"]
    assert TOKEN not in json.dumps(origins["https"].seen)
    # the endpoint buffers up to 1 MiB, the stage inspects 256 KiB: a body between the two is not let past it
    status, out = call("read_status", "a" * BIG)
    body = json.loads(out)
    assert status == 413 and body["error"] == "middleware_failed" and body["middleware"] == "redact-tokens"
    status, _ = call("read_status", "a" * (200 * 1024))
    assert status == 200


def test_fail_open_chain_lets_a_compressed_body_stream_past(make_gateway, origins):
    hp = origins["https"].port
    gw = make_gateway(secrets=False, policy_text=f"""\
version: 1
network_policies:
  p:
    endpoints:
      - host: origin.test
        port: {hp}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
    binaries:
      - path: /usr/bin/curl
network_middlewares:
  soft:
    middleware: openshell/regex
    on_error: fail_open
    endpoints: {{include: [origin.test]}}
""")  # fmt: skip
    zipped = gzip.compress(TOKEN.encode())
    status, _, out = post(gw, origins, zipped, headers={"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(out)["body"].encode("latin-1") == zipped
    (ev,) = events(gw, "soft")
    assert ev["outcome"] == "bypassed" and "fail_open" in ev["reason"]
    status, _, out = post(gw, origins, TOKEN.encode())  # the inspectable twin is still redacted
    assert status == 200 and json.loads(out)["body"] == "[REDACTED]"


# -- a tunnel that is not HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def tcp_echo():
    """A raw TCP server on 127.0.0.1 that echoes what it reads, prefixed (an SSH- or database-like protocol)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(4096)
                conn.sendall(b"echo:" + data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


def tcp_policy(port: int, on_error: str) -> str:
    return f"""\
version: 1
network_policies:
  db:
    endpoints:
      - host: other.test
        port: {port}
        allowed_ips: [127.0.0.1/32]
    binaries:
      - path: /usr/bin/curl
network_middlewares:
  guard:
    middleware: openshell/regex
    on_error: {on_error}
    endpoints: {{include: [other.test]}}
"""


def through_tunnel(gw, port: int, payload: bytes) -> bytes:
    sock, status, _ = connect(gw, f"other.test:{port}")
    assert status == 200
    sock.sendall(payload)
    got = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            got += chunk
    sock.close()
    return got


def test_non_http_tunnel_is_closed_under_fail_closed(make_gateway, tcp_echo):
    gw = make_gateway(secrets=False, policy_text=tcp_policy(tcp_echo, "fail_closed"))
    assert through_tunnel(gw, tcp_echo, b"SSH-2.0-OpenSSH_9.6\r\n") == b""
    (ev,) = events(gw, "guard")
    assert ev["outcome"] == "failed" and "other than HTTP" in ev["reason"]


def test_non_http_tunnel_is_relayed_and_logged_under_fail_open(make_gateway, tcp_echo):
    gw = make_gateway(secrets=False, policy_text=tcp_policy(tcp_echo, "fail_open"))
    assert through_tunnel(gw, tcp_echo, b"SSH-2.0-OpenSSH_9.6\r\n") == b"echo:SSH-2.0-OpenSSH_9.6\r\n"
    (ev,) = events(gw, "guard")
    assert ev["outcome"] == "bypassed" and "fail_open" in ev["reason"]


def test_held_responses_keep_the_connection_alive(mgw, content):
    port = content.port
    sock, status, _ = connect(mgw, f"other.test:{port}")
    assert status == 200
    with tls_over(mgw, sock, "other.test") as tls:
        got = []
        for path in ("/secret", "/plain", "/chunked"):
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n".encode())
            got.append(_response(tls)[2])
    assert got == [b"your token is [FILTERED] (keep it)", b"nothing to see here", b"chunk one [FILTERED] chunk two"]
