"""The per-request fast path of the proxy (issue 16): what its shortcuts must not change. A response with nothing to
drop goes on as h11 parsed it, but hop-by-hop fields never reach the sandbox; a kept-alive upstream connection
serves only the client connection that opened it; the cached authority parser never caches a refusal, and the
Host check still runs on every request of a connection."""

from __future__ import annotations

import json
import socket

import pytest

from clawfleet.gateway.addr import TargetError, is_ip_literal, parse_authority

from .support import EchoHandler, Origin, request, unit_policy


class PortEchoHandler(EchoHandler):
    """Answers with the path and the origin-side port of the connection it came on (which upstream connection the
    gateway used); ``/hop`` adds hop-by-hop fields a proxy must drop, beside an end-to-end one in mixed case."""

    def _answer(self) -> None:
        self.server.seen.append({"path": self.path, "port": self.client_address[1]})  # type: ignore[attr-defined]
        out = json.dumps({"path": self.path, "port": self.client_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Origin-Field", "Kept")
        if self.path == "/hop":
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Proxy-Authenticate", 'Basic realm="origin"')
            self.send_header("Proxy-Connection", "keep-alive")
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer


@pytest.fixture
def plain(make_gateway, origins):
    origin = Origin(handler=PortEchoHandler)
    gw = make_gateway(policy_text=unit_policy({"https": origins["https"], "http": origin}))
    yield gw, origin
    origin.close()


def _get(sock: socket.socket, port: int, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    return request(sock, "GET", f"http://plain.test:{port}{path}", host or f"plain.test:{port}")


def test_response_passes_with_its_end_to_end_fields(plain):
    gw, origin = plain
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        status, headers, body = _get(sock, origin.port, "/plain")
    assert status == 200 and json.loads(body)["path"] == "/plain"
    assert headers["x-origin-field"] == "Kept" and headers["content-type"] == "application/json"


def test_response_hop_by_hop_fields_never_reach_the_sandbox(plain):
    gw, origin = plain
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        status, headers, body = _get(sock, origin.port, "/hop")
        assert status == 200 and json.loads(body)["path"] == "/hop"
        assert not {"keep-alive", "proxy-authenticate", "proxy-connection"} & set(headers)
        assert headers["x-origin-field"] == "Kept"
        # the connection goes on: the next response (nothing to drop) is framed and answered as usual
        assert _get(sock, origin.port, "/after")[0] == 200


def test_one_client_connection_reuses_its_upstream_connection(plain):
    gw, origin = plain
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        ports = [json.loads(_get(sock, origin.port, f"/r{i}")[2])["port"] for i in range(3)]
    assert len(set(ports)) == 1  # keep-alive upstream: one origin connection for the three requests


def test_upstream_connection_is_never_shared_between_client_connections(plain):
    """Two client connections (two callers as far as the gateway knows) interleave requests: each gets its own
    upstream connection, and every response reaches the client that asked for it."""
    gw, origin = plain
    with (socket.create_connection(("127.0.0.1", gw.port), timeout=10) as a,
          socket.create_connection(("127.0.0.1", gw.port), timeout=10) as b):  # fmt: skip
        seen = {"a": [], "b": []}
        for i in range(3):
            for name, sock in (("a", a), ("b", b)):
                status, _, body = _get(sock, origin.port, f"/{name}{i}")
                doc = json.loads(body)
                assert status == 200 and doc["path"] == f"/{name}{i}"  # its own answer, never the other's
                seen[name].append(doc["port"])
    assert len(set(seen["a"])) == 1 and len(set(seen["b"])) == 1
    assert set(seen["a"]).isdisjoint(seen["b"])


def test_host_check_runs_on_every_request_of_a_connection(plain):
    gw, origin = plain
    before = len(origin.seen)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        assert _get(sock, origin.port, "/ok")[0] == 200  # the authority parse is cached from here on
        status, _, body = _get(sock, origin.port, "/smuggled", host="origin.test")
    assert status == 403 and "Host header differs" in json.loads(body)["detail"]
    assert [r["path"] for r in origin.seen[before:]] == ["/ok"]


@pytest.mark.parametrize("text", ["user@plain.test:80", "plain.test:0", "PLAIN.test:99999", "[::1%eth0]:80",
                                  "0x7f.1:80"])  # fmt: skip
def test_cached_authority_parser_refuses_every_time_and_keeps_no_refusal(text):
    size = parse_authority.cache_info().currsize
    for _ in range(2):
        with pytest.raises(TargetError):
            parse_authority(text)
    assert parse_authority.cache_info().currsize == size


def test_cached_authority_parser_gives_the_canonical_target():
    first = parse_authority("Plain.Test.:8080")
    assert (first.host, first.port) == ("plain.test", 8080)
    assert parse_authority("Plain.Test.:8080") == first
    assert parse_authority("127.0.0.1", 80).port == 80 and parse_authority("127.0.0.1", 443).port == 443
    assert is_ip_literal("127.0.0.1") and not is_ip_literal("plain.test") and is_ip_literal("::1")
