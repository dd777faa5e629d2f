"""Robustness of one sandbox's gateway (issue 14, finding 9): a connection cap and an idle timeout per sandbox,
and no asyncio traceback when connections are cut while an upgraded relay runs."""

from __future__ import annotations

import json
import socket
import time

import pytest

from clawfleet.gateway import limits
from clawfleet.gateway.config import ConfigError, GatewayConfig, load_gateway_section

from .support import SwitchingOrigin, connect, https, request, tls_over, ws_frame


def _idle_socket(gw) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def test_connection_cap_refuses_with_503_and_logs(make_gateway, origins):
    """Attack: a sandbox opening connections until the gateway's descriptors run out."""
    gw = make_gateway(max_connections=4)
    held = [_idle_socket(gw) for _ in range(4)]
    assert gw.wait_for(lambda: len(gw.gateway.limits.open) == 4)
    extra = _idle_socket(gw)
    data = b""
    while chunk := extra.recv(65536):
        data += chunk
    extra.close()
    assert data.startswith(b"HTTP/1.1 503 ")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"] == "gateway_busy"
    assert len(gw.gateway.limits.open) == 4
    assert gw.wait_for(lambda: any(r.get("event") == "connection_refused" for r in gw.records()))
    # the allowed twin: once a connection is given back, requests go through again
    held.pop().close()
    assert gw.wait_for(lambda: len(gw.gateway.limits.open) == 3)
    assert https(gw, origins, "GET", "/ok/after-cap")[0] == 200
    for s in held:
        s.close()


def test_idle_connections_are_cut(make_gateway, origins):
    """Attack: connections that never send a byte (a plain one, an L4 tunnel, an intercepted tunnel) are held
    open forever; each is aborted after idle_timeout and its slot given back."""
    gw = make_gateway(idle_timeout=1.5)
    plain = _idle_socket(gw)
    l4, status, _ = connect(gw, f"pass.test:{origins['https'].port}")
    assert status == 200
    tunnel, status, _ = connect(gw, f"origin.test:{origins['https'].port}")
    assert status == 200
    tls = tls_over(gw, tunnel, "origin.test")
    for s in (plain, l4):
        assert s.recv(65536) == b""  # closed by the gateway (the socket timeout is 10 s)
    assert tls.recv(65536) == b""
    assert gw.wait_for(lambda: not gw.gateway.limits.open)
    assert gw.wait_for(lambda: sum(r.get("event") == "idle_timeout" for r in gw.records()) >= 3)
    for s in (plain, l4, tls):
        s.close()


def test_active_connection_outlives_the_idle_timeout(make_gateway, origins):
    """The allowed twin: a keep-alive connection in use stays open past idle_timeout (bytes reset the clock)."""
    gw = make_gateway(idle_timeout=3)
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        for i in range(12):  # about 3.6 s in all, 0.3 s apart
            assert request(tls, "GET", f"/ok/{i}", f"origin.test:{port}")[0] == 200
            time.sleep(0.3)
    assert not any(r.get("event") == "idle_timeout" for r in gw.records())


def test_no_traceback_when_an_upgraded_relay_is_cut(make_gateway, pki, capfd):
    """The sandbox exits while a WebSocket relay runs: the gateway closes its connections without printing an
    asyncio CancelledError traceback (stderr and the loop's exception handler both stay clean)."""
    origin = SwitchingOrigin(pki["cert"], pki["key"])
    policy = f"""\
version: 1
network_policies:
  ws:
    name: ws
    endpoints: [{{host: origin.test, port: {origin.port}, protocol: websocket}}]
    binaries: [{{path: /usr/bin/curl}}]
"""
    gw = make_gateway(policy_text=policy)
    problems: list = []
    gw.loop.set_exception_handler(lambda loop, ctx: problems.append(ctx))
    sock, status, _ = connect(gw, f"origin.test:{origin.port}")
    assert status == 200
    tls = tls_over(gw, sock, "origin.test")
    tls.sendall(f"GET /ws HTTP/1.1\r\nHost: origin.test:{origin.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n".encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    frame = ws_frame(0x1, b"ping")  # the endpoint has no rules: every message passes
    tls.sendall(frame)
    assert tls.recv(4096) == frame.upper()
    gw.close()  # what the embedded gateway does when the sandbox exits
    gw.close = lambda: None  # type: ignore[method-assign]  # already closed for the fixture's teardown
    tls.close()
    origin.close()
    err = capfd.readouterr().err
    assert problems == [] and "Traceback" not in err and "CancelledError" not in err, (problems, err)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_connections", 0), ("max_connections", "many"), ("max_connections", True), ("idle_timeout", 0),
     ("idle_timeout", -1), ("idle_timeout", "5m")],
)  # fmt: skip
def test_limit_settings_validated(setting, value):
    with pytest.raises(ConfigError, match=setting):
        load_gateway_section({"policy": "p.yaml", setting: value})


def test_limit_settings_defaults_and_load():
    assert (GatewayConfig("p").max_connections, GatewayConfig("p").idle_timeout) == (256, 300.0)
    c = load_gateway_section({"policy": "p.yaml", "max_connections": 32, "idle_timeout": 60})
    assert (c.max_connections, c.idle_timeout) == (32, 60)


def _refusal_clock(monkeypatch, delay: float, held: int) -> None:
    """Freeze the limits' clock (no token refill: the counts below do not depend on the machine's speed)."""
    frozen = time.monotonic()
    monkeypatch.setattr(limits, "_monotonic", lambda: frozen)
    monkeypatch.setattr(limits, "REFUSAL_DELAY", delay)
    monkeypatch.setattr(limits, "MAX_HELD_REFUSALS", held)


def _counting_identify(gw) -> list:
    calls: list = []
    inner = gw.gateway.identify

    def identify(peer, local):
        calls.append(peer)
        return inner(peer, local)

    gw.gateway.identify = identify
    return calls


def test_refusal_spin_at_the_cap_is_rate_limited_unidentified_and_logged_in_aggregate(make_gateway, monkeypatch):
    """Attack: a sandbox at its cap reconnects at once, over and over, so that refusing it keeps the daemon's
    shared loop busy. Refused connections are never identified, the first REFUSAL_BURST are answered at once,
    the next MAX_HELD_REFUSALS wait REFUSAL_DELAY for their 503, the rest are closed unanswered;
    two log lines in all."""
    _refusal_clock(monkeypatch, delay=3.0, held=10)
    gw = make_gateway(max_connections=2)
    calls = _counting_identify(gw)
    held = [_idle_socket(gw) for _ in range(2)]
    assert gw.wait_for(lambda: len(gw.gateway.limits.open) == 2 and len(calls) == 2)
    spin = [_idle_socket(gw) for _ in range(40)]
    lim = gw.gateway.limits
    assert gw.wait_for(lambda: lim.refused_total == 40)
    answers = []
    for s in spin:
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            data = b""
        answers.append(data[:12])
        s.close()
    assert answers.count(b"HTTP/1.1 503") == limits.REFUSAL_BURST + 10
    assert answers.count(b"") == 40 - limits.REFUSAL_BURST - 10
    assert (lim.refusals_delayed, lim.refusals_reset) == (10, 40 - limits.REFUSAL_BURST - 10)
    assert len(calls) == 2  # no identification for any refused connection
    assert gw.wait_for(lambda: sum(r.get("refused", 0) for r in gw.records()) == 40)
    lines = [r for r in gw.records() if r.get("event") == "connection_refused"]
    assert len(lines) == 2, lines  # the first refusal at once, the other 39 in one line a second later
    for s in held:
        s.close()


def test_refusals_under_the_burst_are_answered_at_once(make_gateway, origins, monkeypatch):
    """Allowed twin: a few connections over the cap get their 503 at once (none delayed or reset), and the
    sandbox's requests go through as soon as it is under its cap again."""
    _refusal_clock(monkeypatch, delay=3.0, held=10)
    gw = make_gateway(max_connections=1)
    held = _idle_socket(gw)
    assert gw.wait_for(lambda: len(gw.gateway.limits.open) == 1)
    for _ in range(3):
        extra = _idle_socket(gw)
        assert extra.recv(12) == b"HTTP/1.1 503"
        extra.close()
    lim = gw.gateway.limits
    assert (lim.refused_total, lim.refusals_delayed, lim.refusals_reset) == (3, 0, 0)
    held.close()
    assert gw.wait_for(lambda: len(gw.gateway.limits.open) == 0)
    assert https(gw, origins, "GET", "/ok/under-cap")[0] == 200
