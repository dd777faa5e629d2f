"""Protocol upgrades through the gateway (issue 14, finding 6): only ``protocol: websocket`` endpoints may
switch, and only to WebSocket; a ``rest`` endpoint never relays raw bytes past its rules."""

from __future__ import annotations

import json

import pytest

from .support import SwitchingOrigin, _response, connect, origin_policy, read_head, tls_over, ws_frame


@pytest.fixture
def switching(pki):
    made = []

    def make(switch_to=None) -> SwitchingOrigin:
        o = SwitchingOrigin(pki["cert"], pki["key"], switch_to)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


def _tunnel(gw, origin):
    sock, status, _ = connect(gw, f"origin.test:{origin.port}")
    assert status == 200
    return tls_over(gw, sock, "origin.test")


def test_rest_endpoint_upgrade_cannot_smuggle_a_raw_request(make_gateway, switching):
    """Attack: an upgrade on a GET the rule allows, then a raw DELETE the rules forbid, in the same write."""
    origin = switching()
    gw = make_gateway(policy_text=origin_policy(origin.port, "rest"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:
        tls.sendall(
            f"GET /public/x HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            f"DELETE /private/everything HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        status, _, body = _response(tls)
        assert status == 200  # served as plain HTTP/1.1: the origin never saw the offer
        status, _, body = _response(tls)
    assert status == 403 and json.loads(body)["rule"] == "api"  # the DELETE was judged as a request
    assert b"DELETE" not in bytes(origin.raw) and not any(b"DELETE" in h for h in origin.heads)
    assert not any(b"upgrade" in h.lower() for h in origin.heads)


def test_rest_endpoint_h2c_upgrade_stripped(make_gateway, switching):
    origin = switching()
    gw = make_gateway(policy_text=origin_policy(origin.port, "rest"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:
        tls.sendall(
            f"GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\n"
            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n".encode()
        )
        status, _, body = _response(tls)
    assert status == 200
    head = json.loads(body)["head"].lower()
    assert "upgrade" not in head and "http2-settings" not in head and "h2c" not in head
    assert "connection: keep-alive" in head  # the other Connection tokens survive


def test_websocket_endpoint_only_switches_to_websocket(make_gateway, switching):
    origin = switching()
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:  # h2c on a websocket endpoint: stripped as well
        tls.sendall(f"GET /public/x HTTP/1.1\r\nHost: {host}\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".encode())
        assert _response(tls)[0] == 200
    assert b"upgrade" not in origin.heads[-1].lower()


def test_websocket_offer_answered_with_another_protocol_is_502(make_gateway, switching):
    origin = switching(switch_to="h2c")
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:
        tls.sendall(
            f"GET /public/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            "PRI * HTTP/2.0\r\n\r\n".encode()
        )
        head = read_head(tls)
    assert head.startswith(b"HTTP/1.1 502")


def test_websocket_endpoint_upgrade_relayed(make_gateway, switching):
    """The allowed twin: a WebSocket upgrade on a websocket endpoint switches and relays frames both ways."""
    origin = switching()
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:
        tls.sendall(
            f"GET /public/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        assert read_head(tls).startswith(b"HTTP/1.1 101")
        frame = ws_frame(0x1, b"frames")  # a message the WEBSOCKET_TEXT rule allows (.ws_relay)
        tls.sendall(frame)
        assert tls.recv(4096) == frame.upper()  # the origin echoes what it got, upper-cased
    assert b"upgrade: websocket" in origin.heads[-1].lower()
    assert bytes(origin.raw) == frame


def test_websocket_endpoint_upgrade_still_judged(make_gateway, switching):
    origin = switching()
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket"))
    host = f"origin.test:{origin.port}"
    with _tunnel(gw, origin) as tls:
        tls.sendall(f"GET /private/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    .encode())  # fmt: skip
        assert _response(tls)[0] == 403
    assert origin.heads == []
