"""``clawfleet sandbox forward NAME PORT [--listen ADDR[:PORT]]``: one TCP port of a running sandbox on the host's
loopback, for an SSH tunnel from the operator's laptop (``ssh -L 18789:127.0.0.1:18789 host``).

A sandbox's network namespace holds only ``lo``: a server the agent runs there (the OpenClaw dashboard) is
unreachable from the host. The forwarder listens on a loopback address of the host (127.0.0.0/8 or ::1, nothing
else is accepted) and, for each accepted connection, creates a socket inside the sandbox's namespace (the one setns
helper, :func:`clawfleet.sandbox.namespaces.run_in_netns`: only a short-lived thread enters it; the socket keeps
the namespace) and connects it to ``127.0.0.1:PORT`` there. Both ends are then relayed from the asyncio loop in
the host's namespace.

What it does not do: the sandbox gains no way out. Connections only go from the host into the sandbox, the
sandbox-side destination is fixed to its own loopback (no other address, and never the gateway's proxy port: a
host process would reach the outside world as the sandbox), and nothing listens on a routable address. The
forward ends when the sandbox's process holding the namespace exits (a pidfd), with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawfleet.sandbox.namespaces import run_in_netns

__all__ = ["SANDBOX_HOST", "ForwardError", "Forwarder", "Listen", "forward_command", "parse_listen"]

SANDBOX_HOST = "127.0.0.1"  # the only destination inside the sandbox: its own loopback
DEFAULT_MAX_CONNECTIONS = 32
CONNECT_TIMEOUT = 10.0
CHUNK = 65536
EXIT_STOPPED = 1
EXIT_REFUSED = 2


class ForwardError(ValueError):
    """An address or port the forwarder refuses; the message says why."""


@dataclass(frozen=True)
class Listen:
    host: str  # an IP literal, loopback
    port: int  # 0: any free port

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _port(text: str, what: str, allow_zero: bool) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise ForwardError(f"{what} {text!r}: not a port number") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ForwardError(f"{what} {port}: out of range")
    return port


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 or exactly ::1 (no scope, no IPv4-mapped form: an IPv6 socket on ::ffff:127.0.0.1 is a
    dual-stack oddity we have no use for)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in ipaddress.IPv4Network("127.0.0.0/8")
    return ip.scope_id is None and ip == ipaddress.IPv6Address("::1")


def parse_listen(text: str | None, default_port: int) -> Listen:
    """``--listen``: ``ADDR``, ``ADDR:PORT``, ``[V6]`` or ``[V6]:PORT``; ``localhost`` means 127.0.0.1. Names are
    never resolved (a resolver could answer with a public address). Refuses anything outside the loopback."""
    if text is None:
        return Listen(SANDBOX_HOST, default_port)
    host, port = text, default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ForwardError(f"--listen {text}: expected [ADDRESS]:PORT")
        if rest:
            port = _port(rest[1:], f"--listen {text}: port", allow_zero=True)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, f"--listen {text}: port", allow_zero=True)
    if host == "localhost":
        host = SANDBOX_HOST
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ForwardError(f"--listen {text}: {host!r} is not an IP address (names are not resolved)") from None
    if not is_loopback(host):
        raise ForwardError(f"--listen {text}: {host} is not a loopback address; the forward listens on the "
                           "host's loopback only (127.0.0.0/8 or ::1): use an SSH tunnel")  # fmt: skip
    return Listen(str(ipaddress.ip_address(host)), port)


def bind_loopback(listen: Listen, backlog: int = 128) -> socket.socket:
    """The host-side listening socket; its bound address is checked again (nothing but loopback may listen)."""
    sock = socket.socket(listen.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if listen.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listen.host, listen.port))
        if not is_loopback(sock.getsockname()[0]):
            raise ForwardError(f"bound to {sock.getsockname()[0]}, not a loopback address")
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _exited(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 0)[0])


def _new_socket() -> socket.socket:
    # Runs on run_in_netns's helper thread, inside the sandbox's namespace: the socket belongs to it for good.
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class Forwarder:
    """Relays host loopback connections to ``127.0.0.1:target_port`` in the namespace of ``pid``.

    ``netns_inode`` is the namespace recorded at start: every inner socket is created after checking it, so a
    reused pid cannot send a connection to another namespace. ``pidfd`` refers to that process; it becomes
    readable when the process exits, which ends the forward.
    """

    def __init__(self, name: str, pid: int, netns_inode: int, pidfd: int, target_port: int, listen: Listen, *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 on_ready: Callable[[Forwarder], None] | None = None) -> None:  # fmt: skip
        self.name, self.pid, self.netns_inode, self.pidfd = name, pid, netns_inode, pidfd
        self.target_port, self.listen, self.max_connections = target_port, listen, max_connections
        self.on_ready = on_ready
        self.active: set[asyncio.Task[None]] = set()
        self.bound: tuple[str, int] | None = None
        self.served = 0

    def _log(self, message: str) -> None:
        print(f"clawfleet sandbox forward: {message}", file=sys.stderr, flush=True)

    async def run(self) -> int:
        """Serve until SIGINT/SIGTERM (0) or until the sandbox stops (:data:`EXIT_STOPPED`)."""
        loop = asyncio.get_running_loop()
        sock = bind_loopback(self.listen)
        self.bound = sock.getsockname()[:2]
        done: asyncio.Future[int] = loop.create_future()

        def finish(code: int, message: str | None) -> None:
            if not done.done():
                if message:
                    self._log(message)
                done.set_result(code)

        loop.add_reader(self.pidfd, finish, EXIT_STOPPED, f"sandbox {self.name} stopped; forward closed")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, finish, 0, None)
        server = await asyncio.start_server(self._client, sock=sock)
        try:
            if _exited(self.pidfd):  # stopped while we were starting
                finish(EXIT_STOPPED, f"sandbox {self.name} stopped; forward closed")
            elif self.on_ready is not None:
                self.on_ready(self)
            return await done
        finally:
            server.close()
            loop.remove_reader(self.pidfd)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for task in list(self.active):
                task.cancel()
            await asyncio.gather(*self.active, return_exceptions=True)
            await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.active) >= self.max_connections:
            # Each connection holds a socket in the sandbox; the limit bounds what a local client can pile up.
            self._log(f"{self.max_connections} connections open: refusing one more")
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        inner_writer: asyncio.StreamWriter | None = None
        try:
            loop = asyncio.get_running_loop()
            make = functools.partial(run_in_netns, self.pid, _new_socket, netns_inode=self.netns_inode)
            inner = await loop.run_in_executor(None, make)
            try:
                inner.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(inner, (SANDBOX_HOST, self.target_port)), CONNECT_TIMEOUT)
                inner_reader, inner_writer = await asyncio.open_connection(sock=inner)
            except BaseException:
                inner.close()
                raise
            self.served += 1
            await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
        except (OSError, asyncio.TimeoutError) as exc:
            self._log(f"{self.name} {SANDBOX_HOST}:{self.target_port}: {exc or type(exc).__name__}")
        except asyncio.CancelledError:
            # Only our own shutdown cancels a relay; ending normally keeps asyncio's stream callback from
            # reporting the cancellation as an error.
            pass
        finally:
            for w in (writer, inner_writer):
                if w is not None:
                    w.close()
            self.active.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close (the other direction may still be talking)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()  # a reset on one side ends both directions


def _status(name: str, socket_path: str) -> dict[str, Any]:
    from clawfleet.control_protocol import request

    answer = next(iter(request({"cmd": "status", "name": name}, socket_path)))
    return answer if isinstance(answer, dict) else {"error": "unexpected answer from the gateway daemon"}


def forward_command(args: argparse.Namespace) -> int:
    """The command: checks, then :class:`Forwarder` until interrupted or until the sandbox stops."""
    from clawfleet.gateway.config import GatewayConfig
    from clawfleet.sandbox.definition import load_definition

    def fail(message: str, code: int = 1) -> int:
        print(f"clawfleet sandbox forward: {message}", file=sys.stderr)
        return code

    try:
        target_port = _port(str(args.port), "PORT", allow_zero=False)
        listen = parse_listen(args.listen, target_port)
    except ForwardError as exc:
        return fail(str(exc), EXIT_REFUSED)
    if args.max_connections < 1:
        return fail("--max-connections must be at least 1", EXIT_REFUSED)
    if os.geteuid() != 0:
        return fail("must run as root (it enters the sandbox's network namespace)")
    try:
        status = _status(args.name, args.socket)
    except (FileNotFoundError, ConnectionRefusedError):
        return fail(f"no gateway daemon at {args.socket}")
    except (OSError, StopIteration, ValueError) as exc:
        return fail(f"gateway daemon at {args.socket}: {exc}")
    if "error" in status or status.get("state") != "running" or not isinstance(status.get("pid"), int):
        return fail(status.get("error") or f"{args.name} is not running")
    try:
        definition = load_definition(status["definition"])
    except (OSError, ValueError) as exc:
        return fail(f"{args.name}: {exc}")
    gateway_port = int(definition.gateway.get("listen_port", GatewayConfig.listen_port))
    if target_port == gateway_port:
        return fail(f"port {target_port} is {args.name}'s gateway proxy: forwarding it would let host processes "
                    "reach the outside world as the sandbox", EXIT_REFUSED)  # fmt: skip
    pid = status["pid"]
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return fail(f"{args.name} is not running")
    try:
        try:
            netns_inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return fail(f"{args.name} is not running")
        # The pidfd is ours: if that process is still alive now and the daemon still calls it the sandbox (it checks
        # the namespace it recorded), the inode read above is the sandbox's, not that of a reused pid.
        again = _status(args.name, args.socket)
        if _exited(pidfd) or again.get("pid") != pid or again.get("state") != "running":
            return fail(f"{args.name} stopped while the forward was starting")

        def ready(fwd: Forwarder) -> None:
            host, port = fwd.bound or ("", 0)
            shown = str(Listen(host, port))
            if args.json:
                info = {"sandbox": args.name, "listen": shown, "host": host, "port": port,
                        "target": f"{SANDBOX_HOST}:{target_port}", "pid": os.getpid()}  # fmt: skip
                print(json.dumps(info), flush=True)
            else:
                print(f"forwarding {shown} -> {args.name} {SANDBOX_HOST}:{target_port} (Ctrl-C to stop)", flush=True)

        forwarder = Forwarder(args.name, pid, netns_inode, pidfd, target_port, listen,
                              max_connections=args.max_connections, on_ready=ready)  # fmt: skip
        try:
            return asyncio.run(forwarder.run())
        except OSError as exc:  # the listen address is taken, or gone
            return fail(f"listen on {listen}: {exc.strerror or exc}")
        except ForwardError as exc:
            return fail(str(exc), EXIT_REFUSED)
    finally:
        os.close(pidfd)
