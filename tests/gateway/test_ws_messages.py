"""WebSocket message rules through the in-process gateway (issue 17 item 2): after an allowed upgrade on a
``protocol: websocket`` endpoint every client message is judged, deny by default (``WEBSOCKET_TEXT`` /
``WEBSOCKET_BINARY`` rules by upgrade path; GraphQL operation rules on graphql-transport-ws messages). Each attack
sits beside the allowed twin; the origin records every byte it receives after the ``101``."""

from __future__ import annotations

import json
import struct
import time

import pytest

from .support import SwitchingOrigin, _response, connect, read_head, tls_over, ws_frame, ws_frames

RULE = "realtime"


def _policy(port: int, enforcement: str = "enforce") -> str:
    return f"""\
version: 1
network_policies:
  {RULE}:
    endpoints:
      - host: origin.test
        port: {port}
        path: "/ws/**"
        allowed_ips: [127.0.0.1/32]
        protocol: websocket
        enforcement: {enforcement}
        rules:
          - allow: {{method: GET, path: "/ws/**"}}
          - allow: {{method: WEBSOCKET_TEXT, path: "/ws/chat/**"}}
          - allow: {{method: WEBSOCKET_BINARY, path: "/ws/bin/**"}}
        deny_rules:
          - {{method: WEBSOCKET_TEXT, path: "/ws/chat/admin/**"}}
      - host: origin.test
        port: {port}
        path: /graphql
        allowed_ips: [127.0.0.1/32]
        protocol: websocket
        rules:
          - allow: {{method: GET, path: /graphql}}
          - allow: {{operation_type: subscription, fields: [messageAdded]}}
          - allow: {{operation_type: query, fields: [viewer]}}
        deny_rules:
          - {{operation_type: mutation}}
    binaries: [{{path: /usr/bin/curl}}]
"""


@pytest.fixture
def ws(make_gateway, pki):
    made = []

    def open_ws(path: str, *, enforcement: str = "enforce", extensions: bool = False, extra_101: bytes = b""):
        origin = SwitchingOrigin(pki["cert"], pki["key"], extra_101=extra_101)
        made.append(origin)
        gw = make_gateway(policy_text=_policy(origin.port, enforcement))
        sock, status, _ = connect(gw, f"origin.test:{origin.port}")
        assert status == 200
        tls = tls_over(gw, sock, "origin.test")
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if extensions else ""
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: origin.test:{origin.port}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n".encode())  # fmt: skip
        return gw, tls, origin, read_head(tls)

    yield open_ws
    for o in made:
        o.close()


def _received(origin, size: int) -> bytes:
    deadline = time.monotonic() + 5
    while len(origin.raw) < size and time.monotonic() < deadline:
        time.sleep(0.02)
    return bytes(origin.raw)


def _close(tls) -> tuple[int, str]:
    """The close frame the gateway sent the sandbox: (code, reason)."""
    data = b""
    while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88 and not data[1] & 0x80, data  # FIN + close, unmasked (a server's frame)
    payload = data[2 : 2 + (data[1] & 0x7F)]
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def _origin_closed_with(origin, code: int) -> bool:
    """The origin got nothing but the gateway's masked close frame with ``code``."""
    return ws_frames(_received(origin, 8)) == [(1, 0x8, struct.pack("!H", code))]


def _subscribe(query: str, kind: str = "subscribe", msg_id: str = "1") -> bytes:
    return json.dumps({"type": kind, "id": msg_id, "payload": {"query": query}}).encode()


# -- WEBSOCKET_TEXT / WEBSOCKET_BINARY rules --------------------------------------------------------------------


def test_an_allowed_text_message_is_relayed_byte_for_byte(ws):
    gw, tls, origin, head = ws("/ws/chat/room1")
    assert head.startswith(b"HTTP/1.1 101")
    frame = ws_frame(0x1, b'{"method":"say","text":"hi"}')
    tls.sendall(frame)
    assert _received(origin, len(frame)) == frame
    rec = [r for r in gw.records() if r.get("kind") == "websocket_message"]
    assert rec and rec[-1]["action"] == "allow" and rec[-1]["method"] == "WEBSOCKET_TEXT"
    assert rec[-1]["path"] == "/ws/chat/room1" and rec[-1]["rule"] == RULE and rec[-1]["message_bytes"] == 28


def test_a_text_message_no_rule_allows_closes_with_1008_naming_the_rule(ws):
    gw, tls, origin, head = ws("/ws/feed")  # the upgrade is allowed (GET /ws/**), its messages are not
    assert head.startswith(b"HTTP/1.1 101")
    tls.sendall(ws_frame(0x1, b'{"method":"say"}'))
    code, reason = _close(tls)
    assert code == 1008 and f"policy {RULE}" in reason and "WEBSOCKET_TEXT /ws/feed" in reason
    assert _origin_closed_with(origin, 1008)  # the message never reached the origin
    rec = [r for r in gw.records() if r.get("kind") == "websocket_message"][-1]
    assert rec["action"] == "deny" and rec["decision"] == "deny" and rec["rule"] == RULE


def test_a_deny_rule_on_the_upgrade_path_closes_with_1008(ws):
    _gw, tls, origin, head = ws("/ws/chat/admin/x")
    assert head.startswith(b"HTTP/1.1 101")
    tls.sendall(ws_frame(0x1, b"hello"))
    code, reason = _close(tls)
    assert code == 1008 and "deny rule WEBSOCKET_TEXT /ws/chat/admin/**" in reason
    assert _origin_closed_with(origin, 1008)


def test_audit_enforcement_relays_the_denied_message_and_logs_it(ws):
    gw, tls, origin, _ = ws("/ws/feed", enforcement="audit")
    frame = ws_frame(0x1, b"hello")
    tls.sendall(frame)
    assert _received(origin, len(frame)) == frame
    rec = [r for r in gw.records() if r.get("kind") == "websocket_message"][-1]
    assert rec["decision"] == "audit" and rec["action"] == "allow"


def test_a_fragmented_message_is_judged_whole_and_relayed_as_its_frames(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")
    first, ping, last = ws_frame(0x1, b'{"say":', fin=False), ws_frame(0x9, b"p"), ws_frame(0x0, b'"hi"}')
    tls.sendall(first + ping + last)
    # the ping passes at once; the message's frames go on only when the whole message was judged
    assert _received(origin, len(ping + first + last)) == ping + first + last


def test_a_binary_frame_carrying_json_is_denied_without_a_binary_rule(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")  # text is allowed here, binary is not
    tls.sendall(ws_frame(0x2, b'{"method":"say","text":"hi"}'))
    code, reason = _close(tls)
    assert code == 1008 and "WEBSOCKET_BINARY /ws/chat/room1" in reason
    assert _origin_closed_with(origin, 1008)


def test_a_binary_message_is_relayed_where_a_rule_allows_it(ws):
    _gw, tls, origin, _ = ws("/ws/bin/upload")
    frames = ws_frame(0x2, b"\x00\x01", fin=False) + ws_frame(0x0, b"\x02\x03")
    tls.sendall(frames)
    assert _received(origin, len(frames)) == frames


def test_control_frames_pass_without_rules(ws):
    _gw, tls, origin, _ = ws("/ws/feed")  # no message rule matches here
    frames = ws_frame(0x9, b"ping") + ws_frame(0xA, b"pong") + ws_frame(0x8, b"\x03\xe8")
    tls.sendall(frames)
    assert _received(origin, len(frames)) == frames


# -- attacks on the frame parser ---------------------------------------------------------------------------------


def test_a_denied_message_hidden_across_fragments_never_reaches_the_origin(ws):
    """Attack: the first fragment looks harmless and the deny-rule content follows in a continuation frame."""
    _gw, tls, origin, _ = ws("/graphql")
    msg = _subscribe("mutation { deleteEverything }")
    tls.sendall(ws_frame(0x1, msg[:30], fin=False) + ws_frame(0x0, msg[30:60], fin=False) + ws_frame(0x0, msg[60:]))
    code, reason = _close(tls)
    assert code == 1008 and "deny rule mutation" in reason
    assert _origin_closed_with(origin, 1008)


def test_an_unmasked_frame_after_an_allowed_one_closes_with_1002(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")
    good = ws_frame(0x1, b"ok")
    tls.sendall(good + ws_frame(0x1, b"sneaky", mask=False))
    assert _close(tls) == (1002, "")
    assert ws_frames(_received(origin, len(good) + 8)) == [(1, 0x1, b"ok"), (1, 0x8, b"\x03\xea")]


def test_a_text_message_over_the_limit_closes_with_1009_before_any_of_it_is_relayed(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")
    chunk = b"x" * 65536
    tls.sendall(b"".join(ws_frame(0x1 if i == 0 else 0x0, chunk, fin=False) for i in range(4)))
    tls.sendall(ws_frame(0x0, b"y"))  # 256 KiB + 1
    assert _close(tls) == (1009, "")
    assert _origin_closed_with(origin, 1009)


def test_a_text_message_that_is_not_utf8_closes_with_1007(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")
    tls.sendall(ws_frame(0x1, b'{"a":"\xff"}'))
    assert _close(tls) == (1007, "")
    assert _origin_closed_with(origin, 1007)


def test_a_frame_after_the_close_frame_is_refused(ws):
    _gw, tls, origin, _ = ws("/ws/chat/room1")
    close = ws_frame(0x8, b"\x03\xe8")
    tls.sendall(close + ws_frame(0x1, b"after"))
    assert _close(tls) == (1002, "")
    assert ws_frames(_received(origin, len(close) + 8)) == [(1, 0x8, b"\x03\xe8"), (1, 0x8, b"\x03\xea")]


def test_permessage_deflate_is_never_offered_and_a_compressed_frame_is_refused(ws):
    _gw, tls, origin, head = ws("/ws/chat/room1", extensions=True)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-extensions" not in origin.heads[-1].lower()  # stripped: the messages stay readable
    tls.sendall(bytes([0xC1]) + ws_frame(0x1, b"compressed?")[1:])  # RSV1 (a deflated message) without the offer
    assert _close(tls) == (1002, "")
    assert _origin_closed_with(origin, 1002)


def test_an_origin_selecting_an_extension_nobody_offered_is_502(ws):
    _gw, _tls, origin, head = ws("/ws/chat/room1", extensions=True,
                                 extra_101=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")  # fmt: skip
    assert head.startswith(b"HTTP/1.1 502"), head  # never switched: the sandbox cannot send compressed frames
    assert origin.raw == b""


def test_an_http_request_cannot_use_a_message_action_as_its_method(make_gateway, pki):
    origin = SwitchingOrigin(pki["cert"], pki["key"])
    try:
        gw = make_gateway(policy_text=_policy(origin.port))
        sock, status, _ = connect(gw, f"origin.test:{origin.port}")
        assert status == 200
        with tls_over(gw, sock, "origin.test") as tls:
            tls.sendall(f"WEBSOCKET_TEXT /ws/chat/x HTTP/1.1\r\nHost: origin.test:{origin.port}\r\n\r\n".encode())
            status, _, body = _response(tls)
        assert status == 403 and "not an HTTP method" in json.loads(body)["reason"]
        assert origin.heads == []
    finally:
        origin.close()


# -- GraphQL over WebSocket (graphql-transport-ws / graphql-ws) --------------------------------------------------


def test_graphql_lifecycle_and_allowed_operations_pass(ws):
    gw, tls, origin, head = ws("/graphql")
    assert head.startswith(b"HTTP/1.1 101")
    frames = (ws_frame(0x1, b'{"type":"connection_init","payload":{}}')
              + ws_frame(0x1, _subscribe("subscription { messageAdded { id } }"))
              + ws_frame(0x1, _subscribe("query Me { viewer { login } }", kind="start", msg_id="2"))
              + ws_frame(0x1, b'{"type":"complete","id":"1"}'))  # fmt: skip
    tls.sendall(frames)
    assert _received(origin, len(frames)) == frames
    reasons = [r["reason"] for r in gw.records() if r.get("kind") == "websocket_message"]
    assert any("lifecycle message connection_init" in r for r in reasons)
    assert any("subscription (anonymous) {messageAdded}" in r for r in reasons)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (_subscribe("subscription { secretFeed }"), "no GraphQL rule"),
        (_subscribe("subscription { messageAdded secretFeed }"), "no GraphQL rule"),  # every root field must match
        (_subscribe("mutation M { deleteRepo }"), "deny rule mutation"),
        (
            b'{"type":"subscribe","id":"1","id":"2","payload":{"query":"subscription { messageAdded }"}}',
            "duplicate JSON key",
        ),
        (b'{"type":"subscribe","payload":{"query":"subscription { messageAdded }"}}', "non-empty string id"),
        (
            b'{"type":"subscribe","id":"1","payload":{"extensions":{"persistedQuery":{"sha256Hash":"ab"}}}}',
            "hash-only persisted query",
        ),
        (b'{"type":"next","id":"1","payload":{}}', "unsupported client message type 'next'"),
        (b"subscription { messageAdded }", "not JSON"),
    ],
)
def test_graphql_messages_the_rules_do_not_allow_close_with_1008(ws, message, why):
    gw, tls, origin, _ = ws("/graphql")
    tls.sendall(ws_frame(0x1, message))
    code, reason = _close(tls)
    assert code == 1008 and reason.startswith(f"denied by policy {RULE}: ")
    assert _origin_closed_with(origin, 1008)
    rec = [r for r in gw.records() if r.get("kind") == "websocket_message"][-1]
    assert rec["action"] == "deny" and why in rec["reason"] and reason[-20:] in rec["reason"]


def test_a_reload_applies_to_the_next_message_of_an_open_connection(ws):
    gw, tls, origin, _ = ws("/ws/chat/room1")
    first = ws_frame(0x1, b"before")
    tls.sendall(first)
    assert _received(origin, len(first)) == first
    echo = b""
    while len(echo) < len(first):  # the origin echoes it back
        echo += tls.recv(4096)
    gw.policy.write_text(_policy(origin.port).replace("WEBSOCKET_TEXT, path: \"/ws/chat/**\"",
                                                      "WEBSOCKET_TEXT, path: \"/ws/other/**\""))  # fmt: skip
    assert gw.wait_for(lambda: gw.holder.check() or "/ws/other/**" in str(gw.holder.policy))
    tls.sendall(ws_frame(0x1, b"after"))
    assert _close(tls)[0] == 1008
