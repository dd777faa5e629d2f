"""Hop-by-hop fields named in ``Connection`` (RFC 9110 7.6.1) stop at the gateway, both ways, on the plain and
the TLS-intercepted paths; naming a field the gateway adds (router identity proof, a credential) never removes it,
neither at the gateway nor at the next hop (:mod:`clawfleet.gateway.hopbyhop`)."""

from __future__ import annotations

import json
import socket

import pytest

from clawfleet.gateway.hopbyhop import strip_hop_by_hop
from clawfleet.gateway.router_identity import RouterIdentity
from clawfleet.router.identity import IdentityVerifier, sandbox_key

from .support import (
    SECRET_VALUE,
    EchoHandler,
    Origin,
    SwitchingOrigin,
    _response,
    connect,
    https,
    origin_policy,
    read_head,
    request,
    tls_over,
    unit_policy,
    ws_frame,
)

HOST_KEY = b"k" * 32


# -- the function ------------------------------------------------------------------------------------------------
def test_named_fields_dropped_case_insensitively_across_lists_and_repeated_lines():
    headers = [(b"connection", b"X-Hop-A ,x-hop-b"), (b"x-hop-a", b"1"), (b"x-hop-b", b"2"), (b"x-keep", b"3"),
               (b"connection", b" KEEP-ALIVE, X-HOP-C,,"), (b"x-hop-c", b"4"), (b"keep-alive", b"timeout=5"),
               (b"proxy-authorization", b"Basic x")]  # fmt: skip
    assert strip_hop_by_hop(headers) == [(b"x-keep", b"3"), (b"connection", b"keep-alive")]


def test_nothing_to_drop_is_forwarded_as_it_came():
    headers = [(b"host", b"a.test"), (b"x-keep", b"1")]
    assert strip_hop_by_hop(headers) == headers


def test_framing_and_judged_fields_are_never_dropped_on_a_connection_option():
    """Attack: naming Content-Length / Content-Type would send the origin a message other than the one h11 framed
    and the policy judged."""
    headers = [(b"host", b"a.test"), (b"content-length", b"2"), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked"), (b"content-encoding", b"identity"), (b"upgrade", b"websocket"),
               (b"connection", b"host, content-length, content-type, transfer-encoding, content-encoding,"
                               b" upgrade")]  # fmt: skip
    out = strip_hop_by_hop(headers)
    assert out[:-1] == headers[:-1] and out[-1] == (b"connection", b"upgrade")


def test_the_forwarded_connection_header_names_no_field():
    """Attack: ``Connection: x-clawfleet-identity`` passed on would make the next hop drop the proof."""
    out = strip_hop_by_hop([(b"connection", b"close, x-clawfleet-identity, authorization, upgrade")])
    assert out == [(b"connection", b"close, upgrade")]


# -- requests through the gateway --------------------------------------------------------------------------------
_NAMED = {"Connection": "X-Hop-A, x-hop-b", "X-Hop-A": "1", "X-Hop-B": "2", "X-Keep": "kept"}


def _low(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def _no_hop(seen: dict) -> None:
    low = _low(seen)
    assert low["x-keep"] == "kept"
    assert "x-hop-a" not in low and "x-hop-b" not in low
    assert "x-hop" not in low.get("connection", "").lower()


def test_tls_request_loses_its_connection_named_fields(gw, origins):
    status, _, body = https(gw, origins, "GET", "/ok/hop", headers=_NAMED)
    assert status == 200
    _no_hop(json.loads(body)["headers"])


def test_plain_request_loses_its_connection_named_fields(gw, origins):
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        # a repeated Connection line counts as much as the first
        lines = [f"GET http://plain.test:{port}/hop HTTP/1.1", f"Host: plain.test:{port}", "Connection: x-hop-a",
                 "connection: X-HOP-B", "X-Hop-A: 1", "X-Hop-B: 2", "X-Keep: kept"]  # fmt: skip
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, _, body = _response(sock)
    assert status == 200
    _no_hop(json.loads(body)["headers"])


def test_naming_content_length_keeps_the_body_the_policy_judged(gw, origins):
    """Attack: ``Connection: content-length`` on a POST; the origin still gets the exact body, framed."""
    status, _, body = https(gw, origins, "POST", "/api/x", headers={"Connection": "content-length, content-type",
                            "Content-Type": "application/json"}, body=b'{"a":1}')  # fmt: skip
    assert status == 200
    seen = json.loads(body)
    assert seen["body"] == '{"a":1}' and _low(seen["headers"])["content-type"] == "application/json"


def test_a_credential_field_named_in_connection_is_never_named_to_the_origin(gw, origins):
    """Allowed: a placeholder is filled beside ``Connection: close``. Attack: the sandbox names the field the
    credential goes in: its own field is dropped before the gateway fills anything (strip first, then inject), and
    the Connection header that goes on names no field, so no hop after the gateway is told to drop one."""
    hdr = {"Authorization": "Bearer clawfleet:secret:GITHUB_TOKEN", "Connection": "close"}
    status, _, body = https(gw, origins, "GET", "/ok/cred", headers=hdr)
    seen = _low(json.loads(body)["headers"])
    assert status == 200 and seen["authorization"] == f"Bearer {SECRET_VALUE}"
    assert seen.get("connection", "").lower() == "close"
    # attack: the sandbox names the field the credential goes in; what goes on names no field at all
    hdr = {"Authorization": "Bearer clawfleet:secret:GITHUB_TOKEN", "Connection": "close, authorization, x-other"}
    status, _, body = https(gw, origins, "GET", "/ok/cred", headers=hdr)
    seen = _low(json.loads(body)["headers"])
    assert status == 200 and "authorization" not in seen and seen.get("connection", "").lower() == "close"


@pytest.mark.parametrize("named", ["x-clawfleet-identity, x-clawfleet-sandbox", "X-CLAWFLEET-IDENTITY"])
def test_naming_the_router_identity_fields_keeps_the_gateways_proof(gw, origins, named):
    """Attack: the sandbox names the identity proof the gateway adds. It still reaches the router, signed, and the
    Connection header that goes on does not name it (the router would drop it otherwise)."""
    gw.gateway.router_identity = RouterIdentity("unit", sandbox_key(HOST_KEY, "unit"),
                                                [("origin.test", origins["https"].port)])  # fmt: skip
    hdr = {"Connection": named, "X-Clawfleet-Sandbox": "someone-else", "X-Clawfleet-Identity": "forged"}
    status, _, body = https(gw, origins, "GET", "/ok/router", headers=hdr)
    assert status == 200
    seen = _low(json.loads(body)["headers"])
    assert seen["x-clawfleet-sandbox"] == "unit"
    assert IdentityVerifier(HOST_KEY).verify([seen["x-clawfleet-sandbox"]], [seen["x-clawfleet-identity"]]) == (
        "unit", None)  # fmt: skip
    assert "connection" not in seen


# -- responses ---------------------------------------------------------------------------------------------------
class NamingHandler(EchoHandler):
    """Answers with fields it names in ``Connection`` (two lines, mixed case) beside an end-to-end one."""

    def _answer(self) -> None:
        out = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Connection", "X-Origin-Hop")
        self.send_header("connection", "x-origin-hop2")
        self.send_header("X-Origin-Hop", "1")
        self.send_header("X-Origin-Hop2", "2")
        self.send_header("X-Origin-Field", "Kept")
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer


def test_response_loses_the_fields_the_origin_names(make_gateway, origins):
    origin = Origin(handler=NamingHandler)
    try:
        gw = make_gateway(policy_text=unit_policy({"https": origins["https"], "http": origin}))
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            status, headers, _ = request(sock, "GET", f"http://plain.test:{origin.port}/r", f"plain.test:{origin.port}")
            assert status == 200 and headers["x-origin-field"] == "Kept"
            assert not {"x-origin-hop", "x-origin-hop2", "connection"} & set(headers)
            # the connection goes on
            assert request(sock, "GET", f"http://plain.test:{origin.port}/s", f"plain.test:{origin.port}")[0] == 200
    finally:
        origin.close()


# -- WebSocket: Connection: upgrade still switches ---------------------------------------------------------------
def test_websocket_upgrade_still_switches_and_named_fields_are_dropped(make_gateway, pki):
    origin = SwitchingOrigin(pki["cert"], pki["key"])
    try:
        policy = origin_policy(origin.port, "websocket")
        gw = make_gateway(policy_text=policy)
        host = f"origin.test:{origin.port}"
        sock, status, _ = connect(gw, host)
        assert status == 200
        with tls_over(gw, sock, "origin.test") as tls:
            tls.sendall(f"GET /public/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade, X-Hop-A\r\nX-Hop-A: 1\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())  # fmt: skip
            assert read_head(tls).startswith(b"HTTP/1.1 101")
            frame = ws_frame(0x1, b"frames")
            tls.sendall(frame)
            assert tls.recv(4096) == frame.upper()
        head = origin.heads[-1].lower()
        assert b"upgrade: websocket" in head and b"connection: upgrade" in head and b"x-hop-a" not in head
    finally:
        origin.close()
