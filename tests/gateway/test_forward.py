"""`clawfleet sandbox forward` against a real gateway daemon and a real kernel sandbox: a server listening on
127.0.0.1 inside the sandbox's network namespace becomes reachable on the host's loopback, and only there; the
forward ends with the sandbox. And `clawfleet sandbox connect` carries a terminal (a TUI's raw mode). Root only (CI
runs as root, so nothing skips there).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import pytest

from clawfleet.control_protocol import request
from clawfleet.sandbox.namespaces import run_in_netns
from clawfleet.supervisor.forward import ForwardError, is_loopback, parse_listen
from policy_daemon import GatewayDaemon

SANDBOX_PORT = 18789  # the OpenClaw dashboard's port; inside the sandbox's own namespace, so it cannot clash
CLI = [sys.executable, "-m", "clawfleet.cli"]

# The sandbox's command: an echo server on the sandbox's loopback that greets with where it runs.
ECHO_SERVER = textwrap.dedent(
    """\
    import os, signal, socket, sys, threading
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    def serve(conn):
        with conn:
            conn.sendall(b"sandbox %d\\n" % os.getuid())
            while data := conn.recv(65536):
                conn.sendall(data)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
    """
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox forward tests need root; CI runs as root")


def _echo_daemon(root: Path, name: str) -> GatewayDaemon:
    # Names differ per daemon: the published pids live in the shared runtime directory (/run/clawfleet).
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "echo.py").write_text(ECHO_SERVER)
    return GatewayDaemon(root, name, command=["/usr/bin/python3", "/sandbox/echo.py", str(SANDBOX_PORT)])


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """One daemon for the tests that leave the sandbox running."""
    d = _echo_daemon(tmp_path_factory.mktemp("forward"), "forward-echo")
    d.start()
    yield d
    d.stop()


class Forward:
    """A running `clawfleet sandbox forward --json`; ``address`` is what it bound."""

    def __init__(self, daemon: GatewayDaemon, *args: str, port: int = SANDBOX_PORT) -> None:
        argv = [*CLI, "sandbox", "forward", "--socket", str(daemon.socket), "--json", daemon.name, str(port), *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.proc.wait(30)
            raise AssertionError(f"forward did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.info = json.loads(line)
        self.address = (self.info["host"], self.info["port"])

    def connect(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.address)
        return s

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        return code, self.proc.stderr.read()  # type: ignore[union-attr]


def _greeting(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(100)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = s.recv(min(65536, n - got))
        assert chunk, f"connection closed after {got} of {n} bytes"
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _refused(address: tuple[str, int]) -> bool:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(address)
        except (ConnectionRefusedError, OSError):
            return True
        return False


def _listening(port: int) -> list[str]:
    """Local addresses of the host's LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6, hex-decoded)."""
    found = []
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(path, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                addr, port_hex = fields[1].split(":")
                if fields[3] != "0A" or int(port_hex, 16) != port:
                    continue
                raw = bytes.fromhex(addr)
                # /proc prints each 32-bit word in host byte order
                raw = b"".join(struct.pack("<I", *struct.unpack(">I", raw[i : i + 4])) for i in range(0, len(raw), 4))
                found.append(socket.inet_ntop(family, raw))
    return found


def _host_addresses() -> list[str]:
    """The host's own non-loopback addresses (what a neighbour would dial)."""
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    addresses = [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]
    return [a for a in addresses if not is_loopback(a) and not a.startswith("fe80")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the listen address: loopback only (no root needed) -----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (None, ("127.0.0.1", 18789)), ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("127.0.0.2", ("127.0.0.2", 18789)),
    ("127.255.0.9:0", ("127.255.0.9", 0)), ("localhost:9", ("127.0.0.1", 9)), ("[::1]:8080", ("::1", 8080)),
    ("::1", ("::1", 18789)), ("[::1]", ("::1", 18789)),
])  # fmt: skip
def test_loopback_listen_addresses_are_accepted(text, expected):
    listen = parse_listen(text, 18789)
    assert (listen.host, listen.port) == expected


@pytest.mark.parametrize("text", [
    "0.0.0.0:8080", "0.0.0.0", "[::]:8080", "::", "8.8.8.8:80", "192.168.1.10:8080", "10.0.0.1", "[fd00::2]:80",
    "[::ffff:127.0.0.1]:80", "[::1%lo]:80", "example.com:80", "localhost.example.com:80", "127.0.0.1:99999",
    "127.0.0.1:http", "[::1]8080", "",
])  # fmt: skip
def test_non_loopback_or_malformed_listen_addresses_are_refused(text):
    with pytest.raises(ForwardError):
        parse_listen(text, 18789)


# --- against a real sandbox -------------------------------------------------------------------------------------


@root_only
def test_forward_reaches_the_sandbox_server_from_host_loopback_only(echo, user):
    fwd = Forward(echo, "--listen", "127.0.0.1:0")
    try:
        assert fwd.info["target"] == f"127.0.0.1:{SANDBOX_PORT}" and fwd.address[0] == "127.0.0.1", fwd.info
        a, b = fwd.connect(), fwd.connect()  # two at once, relayed independently
        with a, b:
            assert _greeting(a) == _greeting(b) == f"sandbox {user.pw_uid}\n".encode()  # the sandbox user answers
            payload = os.urandom(1 << 20)
            threading.Thread(target=a.sendall, args=(payload,), daemon=True).start()
            b.sendall(b"second\n")
            assert _recv_exactly(b, 7) == b"second\n"
            assert _recv_exactly(a, len(payload)) == payload
        # Nothing listens on the forward's port but the loopback, and the host's other addresses do not answer.
        port = fwd.address[1]
        assert _listening(port) == ["127.0.0.1"], _listening(port)
        others = _host_addresses()
        assert others, "the host has no non-loopback address to try"
        for address in others:
            assert _refused((address, port)), f"the forward answers on {address}"
    finally:
        code, err = fwd.stop()
    assert code == 0, err  # SIGTERM: a clean stop
    assert _refused(fwd.address)


@root_only
def test_forward_on_ipv6_loopback(echo, user):
    fwd = Forward(echo, "--listen", "[::1]:0")
    try:
        with fwd.connect() as s:
            assert _greeting(s) == f"sandbox {user.pw_uid}\n".encode()
        assert _listening(fwd.address[1]) == ["::1"]
    finally:
        code, err = fwd.stop(signal.SIGINT)  # Ctrl-C: as clean as SIGTERM
    assert code == 0 and "Traceback" not in err, err
    assert _refused(fwd.address)


@root_only
@pytest.mark.parametrize("listen", ["0.0.0.0", "[::]", "PUBLIC", "[::ffff:127.0.0.1]"])
def test_public_listen_addresses_are_refused_and_nothing_listens(echo, listen):
    port = _free_port()
    if listen == "PUBLIC":
        listen = _host_addresses()[0]
        listen = f"[{listen}]" if ":" in listen else listen
    proc = subprocess.run([*CLI, "sandbox", "forward", "--socket", str(echo.socket), "--listen", f"{listen}:{port}",
                           echo.name, str(SANDBOX_PORT)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "not a loopback address" in proc.stderr, proc.stderr
    assert proc.stdout == "" and _listening(port) == []


@root_only
def test_the_target_is_the_sandbox_loopback_not_the_host(echo):
    # A server on the HOST's loopback, on a port nothing in the sandbox listens on: the forward must not reach it.
    host_server = socket.socket()
    host_server.bind(("127.0.0.1", 0))
    host_server.listen(4)
    port = host_server.getsockname()[1]
    try:
        fwd = Forward(echo, "--listen", "127.0.0.1:0", port=port)
        try:
            with fwd.connect() as s:
                assert s.recv(100) == b""  # connection refused inside the sandbox: closed at once
            host_server.settimeout(0)
            with pytest.raises(BlockingIOError):
                host_server.accept()  # the host's server never saw a connection
        finally:
            assert fwd.stop()[0] == 0
    finally:
        host_server.close()
    # No destination other than a port: an address, or the sandbox's gateway proxy, is refused.
    for port_arg, message in (("10.0.0.1:80", "not a port number"), ("127.0.0.1:80", "not a port number"),
                              ("3128", "gateway proxy")):  # fmt: skip
        proc = subprocess.run([*CLI, "sandbox", "forward", "--socket", str(echo.socket), echo.name, port_arg],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr, (port_arg, proc.stderr)


@root_only
def test_the_connection_limit_refuses_extra_connections(echo):
    fwd = Forward(echo, "--listen", "127.0.0.1:0", "--max-connections", "1")
    try:
        with fwd.connect() as first:
            assert _greeting(first).startswith(b"sandbox ")
            with fwd.connect() as second:
                assert second.recv(100) == b""  # closed without reaching the sandbox
            first.sendall(b"still here\n")
            assert _recv_exactly(first, 11) == b"still here\n"
        # The slot is free again once the forwarder has seen the first close (it may not have yet: retry for up to
        # 30 s, the forwarder's turn may be late on a loaded machine).
        deadline = time.monotonic() + 30
        while True:
            with fwd.connect() as third:
                data = third.recv(100)
            if data or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert data.startswith(b"sandbox "), data
    finally:
        assert fwd.stop()[0] == 0


@root_only
def test_forward_ends_when_the_sandbox_stops(tmp_path):
    daemon = _echo_daemon(tmp_path, "forward-stop")
    daemon.start()
    try:
        fwd = Forward(daemon, "--listen", "127.0.0.1:0")
        held = fwd.connect()
        assert _greeting(held).startswith(b"sandbox ")
        next(iter(request({"cmd": "stop", "name": daemon.name}, str(daemon.socket))))
        code = fwd.proc.wait(60)
        err = fwd.proc.stderr.read()  # type: ignore[union-attr]
        assert code == 1 and f"sandbox {daemon.name} stopped" in err, err
        assert held.recv(100) == b""  # the relayed connection ended too
        held.close()
        assert _refused(fwd.address) and _listening(fwd.address[1]) == []
        # and a stopped sandbox cannot be forwarded
        proc = subprocess.run([*CLI, "sandbox", "forward", "--socket", str(daemon.socket), daemon.name,
                               str(SANDBOX_PORT)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 1 and "not running" in proc.stderr, proc.stderr
    finally:
        daemon.stop()


# --- connect with a terminal (a TUI such as `openclaw tui`) -----------------------------------------------------

TUI = textwrap.dedent(
    """\
    import os, sys, termios, tty, fcntl, struct
    rows, cols = struct.unpack("hh", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\\0" * 4))
    old = termios.tcgetattr(0)
    tty.setraw(0)
    os.write(1, b"RAW %d %d %d %s\\r\\n" % (os.isatty(0), rows, cols, os.environ.get("TERM", "-").encode()))
    key = os.read(0, 1)  # raw mode: one key, no Enter needed, no echo
    termios.tcsetattr(0, termios.TCSADRAIN, old)
    print("KEY", key.hex(), flush=True)
    """
)


@root_only
def test_connect_passes_a_terminal_through_for_a_tui(echo):
    (echo.root / "work" / "tui.py").write_text(TUI)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))

    def controlling_tty() -> None:  # a login shell's terminal: the command's session has it as controlling tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*CLI, "sandbox", "connect", "--socket", str(echo.socket), echo.name, "--",
                             "/usr/bin/python3", "/sandbox/tui.py"], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-operator"}, start_new_session=True,
                            preexec_fn=controlling_tty)  # fmt: skip
    os.close(slave)
    out = b""
    try:
        while b"RAW" not in out or not out.endswith(b"\r\n"):
            out += os.read(master, 1024)
        os.write(master, b"q")  # no newline: only a raw-mode reader gets it now
        while b"KEY" not in out or not out.endswith(b"\n"):
            with contextlib.suppress(OSError):  # EIO once the last writer closed the terminal
                chunk = os.read(master, 1024)
                if not chunk:
                    break
                out += chunk
                continue
            break
        assert proc.wait(60) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    # a terminal, with the operator's window size and terminal type (not the service's TERM, none under systemd)
    assert "RAW 1 40 132 xterm-operator" in text, text
    assert "KEY 71" in text and "qKEY" not in text, text  # raw mode: the key came alone and was not echoed


@root_only
def test_run_in_netns_refuses_a_namespace_other_than_the_recorded_one():
    # The forward records the sandbox's namespace once; a pid reused by another process (here: ours, in the host's
    # namespace) must not receive the connection.
    own = os.stat("/proc/self/ns/net").st_ino
    ran = []
    with pytest.raises(ProcessLookupError):
        run_in_netns(os.getpid(), lambda: ran.append(1), netns_inode=own + 1)
    assert ran == []
    assert run_in_netns(os.getpid(), lambda: os.stat("/proc/thread-self/ns/net").st_ino, netns_inode=own) == own
