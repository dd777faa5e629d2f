"""Unit and property tests: target parsing, address normalisation and guard, CA, identification."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfleet.gateway.addr import TargetError, guard_ip, normalize_host, parse_absolute, parse_authority
from clawfleet.gateway.ca import SandboxCA
from clawfleet.gateway.config import SecretBinding, Secrets
from clawfleet.gateway.fdtables import FdTables
from clawfleet.gateway.ident import Caller, Identifier, IdentityError


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("api.github.com:443", "api.github.com", 443), ("API.GitHub.com.:443", "api.github.com", 443),
     ("[2001:db8::1]:8443", "2001:db8::1", 8443), ("[::ffff:1.2.3.4]:443", "1.2.3.4", 443),
     ("1.2.3.4:80", "1.2.3.4", 80), ("xn--bcher-kva.example:443", "xn--bcher-kva.example", 443)],
)  # fmt: skip
def test_authority_ok(text, host, port):
    t = parse_authority(text)
    assert (t.host, t.port) == (host, port)


@pytest.mark.parametrize(
    "text",
    ["2130706433:443", "0x7f.1:443", "017700000001:443", "127.1:443", "0x7f000001:443", "01.02.03.04:443",
     "1.2.3:443", "host:", "host:0", "host:65536", "host:-1", "host:+1", "host: 1", "[::1:443", "::1:443",
     "a..b:443", "-a.example:443", "a_b.1:443", "user@host:443", "host:443/", "[fe80::1%eth0]:443", "",
     "host:1e3", "ho\x00st:443", "bücher.example:443", "h\u0430st.example:4\u0663"],
)  # fmt: skip
def test_authority_refused(text):
    with pytest.raises(TargetError):
        parse_authority(text)


def test_absolute_form():
    t = parse_absolute("http://Example.COM/a/b?x=1#frag")
    assert (t.host, t.port, t.path) == ("example.com", 80, "/a/b?x=1")
    assert parse_absolute("http://example.com?q").path == "/?q"
    for bad in ("https://x/", "http://u:p@x/", "x/", "http://2130706433/", "http://[::1/"):
        with pytest.raises(TargetError):
            parse_absolute(bad)


@pytest.mark.parametrize(
    ("ip", "allowed", "ok"),
    [("8.8.8.8", (), True), ("127.0.0.1", (), False), ("::1", (), False), ("::ffff:127.0.0.1", (), False),
     ("10.0.0.5", (), False), ("10.0.0.5", ("10.0.0.0/8",), True), ("10.1.0.5", ("10.0.0.0/16",), False),
     ("169.254.169.254", (), False), ("fe80::1", (), False), ("0.0.0.0", (), False), ("::", (), False),
     ("224.0.0.1", ("224.0.0.0/4",), False), ("64:ff9b::7f00:1", (), False), ("::7f00:1", (), False),
     ("127.0.0.1", ("127.0.0.1/32",), True), ("100.64.0.1", (), False), ("fd00::1", (), False),
     ("127.0.0.1", ("64.0.0.0/2",), False), ("169.254.169.254", ("169.254.0.0/16",), True),
     ("169.254.169.254", ("128.0.0.0/1",), False), ("::ffff:127.0.0.1", ("127.0.0.1/32",), True)],
)  # fmt: skip
def test_guard(ip, allowed, ok):
    assert (guard_ip(ip, allowed) is None) == ok


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_integer_spelling_refused(n):
    for spelling in (str(n), hex(n), "0" + oct(n)[2:]):
        with pytest.raises(TargetError):
            normalize_host(spelling)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_authority_parser_total_and_canonical(text):
    """Never crashes; anything accepted is canonical and, if it names an IP, that IP is what the guard sees."""
    try:
        t = parse_authority(text)
    except TargetError:
        return
    assert normalize_host(t.host) == t.host
    assert 0 < t.port < 65536
    try:
        ip = ipaddress.ip_address(t.host)
    except ValueError:
        # a name: inet_aton must not read it as an address (no numeric spelling slipped through)
        with pytest.raises(OSError):
            socket.inet_aton(t.host)
    else:
        assert str(ip) == t.host


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_h11_request_parsing_total(data):
    """The request parser the proxy uses raises only its protocol error on arbitrary input."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
    try:
        conn.receive_data(data)
        conn.receive_data(b"")
        for _ in range(10):
            ev = conn.next_event()
            if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                break
            if isinstance(ev, h11.Request):
                with contextlib.suppress(TargetError):
                    parse_absolute(ev.target.decode("ascii", "replace"))
    except h11.RemoteProtocolError:
        pass


def test_ca_leaf_verifies_and_key_stays_private(tmp_path):
    ca = SandboxCA("unit")
    ctx = ca.server_context("api.example.com")
    assert ca.server_context("api.example.com") is ctx  # cached
    assert b"PRIVATE KEY" not in ca.bundle_text()
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.cert_pem)
    client = ssl.create_default_context(cafile=str(cafile))
    srv, cli = socket.socketpair()
    import threading

    def serve():
        with ctx.wrap_socket(srv, server_side=True) as s:
            s.recv(1)

    t = threading.Thread(target=serve)
    t.start()
    with client.wrap_socket(cli, server_hostname="api.example.com") as c:
        assert c.getpeercert()["subjectAltName"] == (("DNS", "api.example.com"),)
        c.sendall(b"x")
    t.join()
    import os

    assert os.listdir(ca._dir) == []  # leaf PEMs never stay on disk


def test_secrets_only_for_bound_hosts(tmp_path):
    f = tmp_path / "s"
    f.write_text("REAL\n")
    s = Secrets([SecretBinding("TOK", str(f), ("api.github.com", "*.example.org"))])
    hdrs = [(b"authorization", b"token clawfleet:secret:TOK"), (b"x", b"clawfleet:secret:OTHER")]
    _, out, used = s.inject("api.github.com", b"/p?t=clawfleet:secret:TOK", hdrs)
    assert out[0][1] == b"token REAL" and out[1][1] == b"clawfleet:secret:OTHER" and used == {"TOK"}
    target, out, used = s.inject("evil.com", b"/p?t=clawfleet:secret:TOK", hdrs)
    assert out == hdrs and target == b"/p?t=clawfleet:secret:TOK" and not used


def test_identify_a_real_process():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    code = f"import socket,time;s=socket.create_connection(('127.0.0.1',{srv.getsockname()[1]}));time.sleep(5)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        conn, peer = srv.accept()
        caller = Identifier(stop_at_ns_init=False).identify(peer, conn.getsockname())
        assert caller.pid == proc.pid
        assert caller.exe == __import__("os").path.realpath(sys.executable)
        conn.close()
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(IdentityError):  # the caller is gone
        Identifier(stop_at_ns_init=False).identify(peer, ("127.0.0.1", srv.getsockname()[1]))
    srv.close()


def test_sha256_pins_trust_on_first_use(tmp_path):
    from clawfleet.gateway.ident import HashPins

    pins = HashPins(str(tmp_path / "pins.json"))
    import os

    sha, err = pins.check(os.getpid(), "/usr/bin/thing")
    assert err is None and len(sha) == 64
    assert pins.check(os.getpid(), "/usr/bin/thing")[1] is None
    pins.pins["/usr/bin/thing"] = "0" * 64
    assert "pinned" in pins.check(os.getpid(), "/usr/bin/thing")[1]
    assert HashPins(str(tmp_path / "pins.json")).pins  # persisted


# -- who holds the socket: every task's table, one executable ------------------------------------------------

BORROW = str(Path(__file__).with_name("borrow_socket.py"))


def _wait_blocked(pid: int) -> None:
    """Until the process sleeps (blocked reading stdin), so its CPU time stops moving."""
    for _ in range(500):
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"S":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never blocked")


def _borrow(mode: str, identifier: Identifier, before=None):
    """Run borrow_socket.py MODE against a plain listener here; identify its connection as the proxy would.
    Returns (Caller or IdentityError, the helper's JSON)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(30)
    proc = subprocess.Popen([sys.executable, BORROW, mode, str(srv.getsockname()[1]), "origin.test:443"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        if before is not None:
            before(proc)
        conn, peer = srv.accept()
        try:
            result = identifier.identify(peer, conn.getsockname())
        except IdentityError as exc:
            result = exc
        conn.sendall(b"HTTP/1.1 200 identified\r\n\r\n")
        conn.close()
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        srv.close()
    return result, json.loads(out.strip().splitlines()[-1])


def test_socket_hidden_in_a_threads_private_fd_table_is_found():
    """A thread's unshare(CLONE_FILES) copy is not in /proc/<tgid>/fd: without reading every task's table,
    curl (which only inherited the socket) would be the sole holder, and python3 would pass as curl."""
    result, out = _borrow("hide", Identifier(stop_at_ns_init=False))
    assert out == {"unshare": None, "status": "HTTP/1.1 200 identified"}
    assert isinstance(result, IdentityError), result
    assert "different executables" in str(result) and "/usr/bin/curl" in str(result)
    assert os.path.realpath(sys.executable) in str(result)


def test_socket_shared_by_two_binaries_refused():
    result, _ = _borrow("share", Identifier(stop_at_ns_init=False))
    assert isinstance(result, IdentityError) and "different executables" in str(result)


def test_socket_shared_with_a_forked_child_of_the_same_binary_identified():
    """The allowed twin: a fork that inherits the connection runs the same executable."""
    result, out = _borrow("fork", Identifier(stop_at_ns_init=False))
    assert out["status"] == "HTTP/1.1 200 identified"
    assert isinstance(result, Caller), result
    assert result.exe == os.path.realpath(sys.executable) and len(result.owners) == 2


def test_cached_fd_table_of_an_idle_process_is_reread_once_it_runs():
    """The cache keeps an idle task's table; the attacker reads as idle first, then creates the socket, hands
    it to curl and connects: its stale entry must not hide it."""
    identifier = Identifier(stop_at_ns_init=False)

    def warm(proc) -> None:
        _wait_blocked(proc.pid)  # python3 blocked on stdin, its table without the socket
        identifier.tables.holders(0, [proc.pid])
        assert (proc.pid, proc.pid) in identifier.tables._tables  # cached while idle
        proc.stdin.write("go\n")
        proc.stdin.flush()

    result, _ = _borrow("stale", identifier, before=warm)
    assert isinstance(result, IdentityError) and "different executables" in str(result)


def test_idle_tables_are_not_reread():
    """Identification cost does not grow with the fds of processes that did not run: 1,000 fds held by an
    idle process are read once, not per connection."""
    code = "import os,sys\nfds=[os.open('/dev/null',os.O_RDONLY) for _ in range(1000)]\nprint(1,flush=True)\n"
    code += "sys.stdin.readline()"
    idle = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        idle.stdout.readline()
        _wait_blocked(idle.pid)
        tables = FdTables()
        assert tables.holders(1, [idle.pid]) == [] and tables.reads == 1
        for _ in range(5):
            tables.holders(1, [idle.pid])
        assert tables.reads == 1
        uncached = FdTables(cache=False)
        for _ in range(3):
            uncached.holders(1, [idle.pid])
        assert uncached.reads == 3
    finally:
        idle.kill()
        idle.wait()
