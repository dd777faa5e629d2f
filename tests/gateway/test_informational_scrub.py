"""1xx answers from a credential-bound origin (review finding, int29): a ``103 Early Hints`` or a ``101`` that echoes
the injected value gets the placeholder back, as a final response does; a 1xx with nothing to scrub passes as it
came, and a WebSocket whose subprotocol carries the credential still switches and relays."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from .support import SECRET_VALUE, connect, origin_policy, read_head, tls_over, ws_frame, ws_frames

PH = "clawfleet:secret:GITHUB_TOKEN"


class EchoingOrigin:
    """A TLS origin that echoes what it was sent into its 1xx answers: ``Authorization`` into a ``103 Early
    Hints`` ``Link`` (then a 200), ``Sec-WebSocket-Protocol`` into a ``101`` (then a text frame ``pong``)."""

    def __init__(self, cert, key) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.heads: list[bytes] = []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen()
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as s:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head = buf.partition(b"\r\n\r\n")[0]
                self.heads.append(head)
                fields = dict(ln.split(b":", 1) for ln in head.split(b"\r\n")[1:])
                hdrs = {k.strip().lower(): v.strip() for k, v in fields.items()}
                if b"upgrade" in hdrs:
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
                              + hdrs.get(b"sec-websocket-protocol", b"") + b"\r\n\r\n")  # fmt: skip
                    if s.recv(65536):  # the client's first message: answered with a text frame (masked, so that
                        s.sendall(ws_frame(1, b"pong"))  # support.ws_frames reads it; the gateway relays it raw)
                    s.recv(10)
                else:
                    link = hdrs.get(b"authorization", b"</style.css>; rel=preload")
                    s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: " + link + b"\r\n\r\n"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # fmt: skip
                    s.recv(10)
        except (OSError, ssl.SSLError):
            return

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def origin(pki):
    o = EchoingOrigin(pki["cert"], pki["key"])
    yield o
    o.close()


def _until_ok(tls) -> bytes:
    data = b""
    while not data.endswith(b"ok"):
        got = tls.recv(65536)
        if not got:
            break
        data += got
    return data


def _early_hints(gw, origin, auth: str | None) -> bytes:
    host = f"origin.test:{origin.port}"
    sock, status, _ = connect(gw, host)
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        extra = f"Authorization: {auth}\r\n" if auth else ""
        tls.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        return _until_ok(tls)


def test_early_hints_echoing_the_credential_get_the_placeholder(make_gateway, origin):
    """Attack: the origin quotes the injected Authorization in a 103's Link header."""
    gw = make_gateway(policy_text=origin_policy(origin.port, "rest", "/**"))
    data = _early_hints(gw, origin, f"Bearer {PH}")
    assert SECRET_VALUE.encode() in origin.heads[0]  # the credential was put in
    assert SECRET_VALUE.encode() not in data
    assert b"HTTP/1.1 103 " in data and f"link: Bearer {PH}".encode() in data  # h11 gives lower-case names
    assert data.endswith(b"ok")


def test_early_hints_without_a_credential_pass_unchanged(make_gateway, origin):
    """Allowed: a 103 for a request with no placeholder reaches the sandbox as the origin sent it."""
    gw = make_gateway(policy_text=origin_policy(origin.port, "rest", "/**"))
    data = _early_hints(gw, origin, None)
    assert b"HTTP/1.1 103 " in data
    assert b"</style.css>; rel=preload" in data
    assert data.endswith(b"ok")


def _handshake(host: str, protocol: str) -> bytes:
    return (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n").encode()  # fmt: skip


def test_101_echoing_a_subprotocol_credential_gets_the_placeholder_and_still_switches(make_gateway, origin):
    """Attack beside allowed: the binding fills Sec-WebSocket-Protocol, the 101 echoes the chosen (real) value;
    the sandbox gets back the placeholder it offered (a valid handshake), and the WebSocket then works."""
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket", "/**"),
                      binding={"headers": ("authorization", "sec-websocket-protocol")})  # fmt: skip
    host = f"origin.test:{origin.port}"
    sock, status, _ = connect(gw, host)
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        tls.sendall(_handshake(host, PH))
        head = read_head(tls)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert SECRET_VALUE.encode() in origin.heads[0]  # the origin saw the real value
        assert SECRET_VALUE.encode() not in head
        assert f"sec-websocket-protocol: {PH}".encode() in head  # exactly what the sandbox offered
        rest = head.partition(b"\r\n\r\n")[2]
        tls.sendall(ws_frame(1, b"ping"))
        while len(ws_frames(rest)) < 1:
            got = tls.recv(65536)
            if not got:
                break
            rest += got
        assert ws_frames(rest)[0][2] == b"pong"


def test_101_without_a_credential_is_unchanged(make_gateway, origin):
    """Allowed: a subprotocol with no placeholder comes back as the origin chose it."""
    gw = make_gateway(policy_text=origin_policy(origin.port, "websocket", "/**"),
                      binding={"headers": ("authorization", "sec-websocket-protocol")})  # fmt: skip
    host = f"origin.test:{origin.port}"
    sock, status, _ = connect(gw, host)
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:
        tls.sendall(_handshake(host, "chat.v1"))
        head = read_head(tls)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"chat.v1" in head
