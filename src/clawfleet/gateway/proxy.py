"""The egress proxy: asyncio streams + h11 (sans-IO HTTP/1.1).

Per client connection:

1. identify the caller from the kernel (:mod:`.ident`); failure means deny;
2. read one request with h11:
   * ``CONNECT host:port``: strict authority parsing, L4 decision, DNS by the gateway only for an allowed
     name, destination guard on every resolved address. Endpoints with L7 rules (or a bound credential)
     are intercepted: the first client bytes are peeked; TLS (0x16) is terminated with the per-sandbox CA,
     anything else is parsed as plain HTTP. Other endpoints are relayed byte for byte (L4 passthrough).
   * absolute-form ``GET http://host/path``: the same checks per request, plus the L7 check; the request
     is re-sent in origin form. Keep-alive on both sides.
   * anything else: 400.
3. inside an intercepted tunnel every request is checked (method, path, query) and the SNI, the CONNECT
   target and the Host header must name the same host; requests in absolute form or with the CONNECT
   method are refused (no relaying a tunnel through an allowed host).

Denials get ``403`` with ``{"error":"policy_denied","detail":...,"rule":...,"reason":...}`` and close.
Every decision is one JSON line (:class:`~.config.DecisionLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11

from clawfleet.policy import Decision, credential_scopes
from clawfleet.policy.matching import normalize_request_host
from clawfleet.policy.middleware import RegexHook

from .addr import Target, TargetError, is_ip_literal, parse_absolute, parse_authority
from .body import BodyRefused, body_headers, read_body, reframe
from .body_credentials import MAX_REWRITE_BYTES, rewrite_body
from .ca import SandboxCA, upstream_context
from .config import MONITOR, DecisionLog, GatewayConfig, Secrets
from .credentials import CredentialUnavailable, Destination
from .destguard import address_verdict
from .hopbyhop import ALWAYS, strip_hop_by_hop
from .ident import Caller, IdentityError
from .limits import ConnectionLimits, current, touch
from .middleware import MiddlewareStop, run_chain
from .middleware import event as mw_event
from .providers import private_addresses
from .reload import PolicyHolder
from .resign import MAX_SIGNED_BODY, ResignRefused, needs_body, resign
from .router_identity import RouterIdentity
from .target import RequestRefused, checked_target
from .token_mint import MintDriver
from .upgrade import offers_websocket, sanitize_upgrade, switch_accepted
from .ws_relay import close_reason, relay_client_frames

if TYPE_CHECKING:
    from clawfleet.policy.model import Endpoint

    from .metrics import GatewayMetrics

__all__ = ["Denied", "Gateway"]

READ_SIZE = 65536
_HOP = ALWAYS | {b"connection"}  # a response with one of these is rebuilt without its hop-by-hop fields
_VERSION = b"clawfleet-gateway"
_METHOD = re.compile(rb"[A-Z][A-Z0-9_-]{0,31}")
_HTTP_START = re.compile(rb"[A-Z][A-Z0-9_-]{0,31}(?: |\Z)")  # a request line's method, or the start of one
_ERROR_KINDS = {403: "policy_denied", 413: "body_too_large", 415: "unsupported_content_encoding"}
_BUSY_BODY = (b'{"error":"gateway_busy","detail":"too many connections from this sandbox",'
              b'"reason":"connection cap (gateway max_connections) reached"}\n')  # fmt: skip
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
         b"content-length: %d\r\nserver: clawfleet-gateway\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))  # fmt: skip


class Denied(Exception):
    def __init__(self, status: int, detail: str, reason: str, rule: str | None = None, error: str | None = None,
                 extra: dict | None = None) -> None:  # fmt: skip
        super().__init__(detail)
        self.status, self.detail, self.reason, self.rule = status, detail, reason, rule
        self.error, self.extra = error, extra  # the response's "error" kind when not the status's; more fields


# -- byte streams ----------------------------------------------------------------------------------------


class Stream:
    """A plain asyncio stream pair with an optional pre-read buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pre: bytes = b"") -> None:
        self.reader, self.writer, self.pre = reader, writer, pre
        self.tallied = False  # its bytes were counted (metrics)

    async def read(self) -> bytes:
        if self.pre:
            data, self.pre = self.pre, b""
            return data
        data = await self.reader.read(READ_SIZE)
        touch()
        return data

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def write_eof(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class TLSServerStream(Stream):
    """TLS termination on top of a plain stream with ``ssl.MemoryBIO`` (works the same on 3.10+ and lets
    the peeked bytes go into the handshake)."""

    def __init__(self, raw: Stream, ctx: ssl.SSLContext) -> None:
        super().__init__(raw.reader, raw.writer)
        self.raw = raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sni: str | None = None
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.raw.write(out)

    async def _fill(self) -> bool:
        self._flush()
        await self.raw.drain()
        data = await self.raw.read()
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await self._fill():
                    raise ConnectionError("client closed during the TLS handshake") from None
        self._flush()

    async def read(self) -> bytes:
        if self.pre:
            data, self.pre = self.pre, b""
            return data
        while True:
            try:
                return self.obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                if not await self._fill():
                    try:
                        return self.obj.read(READ_SIZE)
                    except (ssl.SSLError, ssl.SSLEOFError):
                        return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    async def drain(self) -> None:
        await self.raw.drain()

    def write_eof(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            self.obj.unwrap()
        self._flush()

    def close(self) -> None:
        self.raw.close()


async def next_event(conn: h11.Connection, stream: Stream):
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await stream.read())
            continue
        return ev


async def pipe(src: Stream, dst: Stream) -> None:
    try:
        while data := await src.read():
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        dst.write_eof()


async def splice(a: Stream, b: Stream) -> None:
    await asyncio.gather(pipe(a, b), pipe(b, a))


class _Side(asyncio.Protocol):
    """One side of an L4 relay: what it receives is written to the peer's transport, with flow control."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.relay.activity is not None:
            self.relay.activity.touch()
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                peer.transport.write_eof()
        self.relay.eofs += 1
        if self.relay.eofs >= 2:
            self.relay.finish()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()
        self.relay.finish()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Relay:
    def __init__(self) -> None:
        self.upstream = _Side(self)
        self.client = _Side(self)
        self.eofs = 0
        self.done = asyncio.get_running_loop().create_future()
        self.activity = current()  # protocol callbacks run outside the connection's task: stamp it directly
        self.before_close: Callable[[], None] | None = None

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        for side in (self.client, self.upstream):
            if side.transport is not None and self.eofs >= 2:
                side.transport.close()

    async def attach(self, transport: asyncio.Transport, pre: bytes, client_eof: bool = False) -> None:
        """Take over the client's transport (its stream protocol is replaced) and relay until both ends close."""
        self.client.connection_made(transport)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        transport.set_protocol(self.client)
        up = self.upstream.transport
        assert up is not None
        if pre:
            up.write(pre)
        for chunk in self.upstream.pending:
            transport.write(chunk)
        self.upstream.pending.clear()
        if transport.is_closing():
            up.close()
            return
        if client_eof:
            self.client.eof_received()
        transport.resume_reading()
        try:
            await self.done
        finally:
            if self.before_close is not None:
                self.before_close()
            for side in (self.client, self.upstream):
                if side.transport is not None and not side.transport.is_closing():
                    side.transport.close()


def _peer_ip(stream: Stream) -> str | None:
    peer = stream.writer.get_extra_info("peername")
    return str(peer[0]) if peer else None


def _sent(ev: h11.Request) -> bytes:
    """The request as the sandbox sent it (target and header values): which placeholder form it used, for
    :meth:`Secrets.scrub`. Built only for a request that had a value put in, not on every request."""
    return ev.target + b"\n" + b"\n".join(v for _, v in ev.headers)


def _uninspectable(headers) -> str | None:
    """Why a response body cannot go through the response middleware as it is (``None``: it can)."""
    encodings = [v for k, v in headers if k == b"content-encoding"]
    if len(encodings) > 1:
        return "the response repeats Content-Encoding"
    if encodings and encodings[0].strip().lower() not in (b"", b"identity"):
        return (f"the response is compressed (Content-Encoding {encodings[0].decode('latin-1')[:40]!r}) although"
                " the gateway asked for identity")  # fmt: skip
    return None


def _informational(
    ev: h11.InformationalResponse, scrub: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]] | None = None
) -> h11.InformationalResponse:
    """A 1xx answer without the origin's hop-by-hop fields (a 101 keeps ``Upgrade`` and ``Connection: upgrade``).
    ``scrub`` (a request that had a credential put in): its headers get the placeholders back, as a final
    response's do; an Early Hints ``Link`` or a 101's ``Sec-WebSocket-Protocol`` may echo the injected value, and
    the sandbox then sees exactly the placeholder it offered (a 101 handshake stays valid)."""
    if scrub is None and not any(k in _HOP for k, _ in ev.headers):
        return ev
    headers = strip_hop_by_hop(ev.headers)
    if scrub is not None:
        headers = scrub(headers)
    return h11.InformationalResponse(status_code=ev.status_code, headers=headers, reason=ev.reason)


def _hdr(headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


@dataclass
class _MwContext:
    """The request a middleware chain runs for: what its log lines and refusals name."""

    caller: Caller | None
    kind: str
    target: Target
    method: str
    path: str
    decision: Decision

    def record(self, rec: dict) -> dict:
        c = self.caller
        return {**rec, "binary": c.exe if c else None, "pid": c.pid if c else None, "host": self.target.host,
                "port": self.target.port, "method": self.method, "path": self.path, "kind": self.kind,
                "rule": self.decision.policy_key}  # fmt: skip


#: The decision-log ``kind`` of one client WebSocket message (OCSF: Network Activity, Other, as upstream's
#: ``WEBSOCKET_L7_REQUEST`` events).
WEBSOCKET_KIND = "websocket_message"


@dataclass
class _WebSocket:
    """What the relay after a ``101`` needs (.ws_relay): the message judge, the credential filler, the refusal log."""

    judge: Callable[[str, bytes | None], str | None]
    fill: Callable[[bytes], bytes | None] | None
    refused: Callable[[int, str], None]


@dataclass
class _Upstream:
    key: tuple[str, int, bool]
    stream: Stream
    conn: h11.Connection
    peer: str | None  # the address it is connected to (a connected socket's peer does not change)


# -- the gateway ----------------------------------------------------------------------------------------


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        holder: PolicyHolder,
        log: DecisionLog,
        identify: Callable[[tuple, tuple], Caller | Awaitable[Caller]] | None,
        ca: SandboxCA | None = None,
    ) -> None:
        self.config = config
        self.holder = holder
        self.log = log
        self.identify = identify
        # Set in an unprivileged parser process (:mod:`.privsep`): the connected socket itself is handed to the
        # privileged process, which identifies its caller; takes precedence over ``identify``.
        self.identify_socket: Callable[[int], Awaitable[Caller]] | None = None
        self.ca = ca or SandboxCA(config.sandbox)
        self.secrets = Secrets(config.secrets)
        # gateway-minted credentials: minted here, in the privileged process (privsep sets it to None in the parser)
        self.minting: MintDriver | None = MintDriver(config.providers, config.refresh) if config.refresh else None
        self._scoped: tuple[object, object] | None = None  # (secrets, policy) the provider scopes were set for
        # The gateway -> origin TLS context is built on first use (``upstream_ctx``): loading the system trust
        # store costs ~100 ms, which `clawfleet sandbox run` paid before the sandbox could start even when its
        # command never opens a TLS upstream connection. The extra CA file is checked now, as before: a bad
        # file still fails the gateway's start, not its first connection.
        self._upstream_ctx: ssl.SSLContext | None = None
        self._upstream_lock = threading.Lock()
        if config.extra_ca_file:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(config.extra_ca_file)
        self.monitor = config.mode == MONITOR
        self.servers: list[asyncio.base_events.Server] = []
        self.active = 0
        self._tasks: set[asyncio.Task] = set()
        self.limits = ConnectionLimits(config.max_connections, config.idle_timeout, self.log.write)
        self.router_identity = RouterIdentity.from_environment(config.sandbox)
        self.metrics: GatewayMetrics | None = None  # set by assembly.assemble when the process exports metrics

    @property
    def upstream_ctx(self) -> ssl.SSLContext:
        """The client context for the gateway -> origin leg (:func:`.ca.upstream_context`), made once."""
        with self._upstream_lock:
            if self._upstream_ctx is None:
                self._upstream_ctx = upstream_context(self.config.extra_ca_file)
            return self._upstream_ctx

    async def _upstream_tls(self) -> ssl.SSLContext:
        """``upstream_ctx`` without stalling the event loop (every sandbox's connections) while it is made."""
        if self._upstream_ctx is not None:
            return self._upstream_ctx
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.upstream_ctx)

    async def serve_socket(self, sock: socket.socket) -> asyncio.base_events.Server:
        sock.setblocking(False)
        server = await asyncio.start_server(self.handle, sock=sock, limit=READ_SIZE)
        self.servers.append(server)
        return server

    # -- decisions --------------------------------------------------------------------------------------
    def decide(self, caller: Caller | None, why_unknown: str, host: str, port: int,
               method: str | None = None, path: str | None = None, body: bytes | None = None,
               content_type: str | None = None, websocket_message: bool = False) -> Decision:  # fmt: skip
        if caller is None:
            return Decision("deny", None, f"caller not identified: {why_unknown}")
        if caller.pin_error:
            return Decision("deny", None, caller.pin_error)
        engine = self.holder.engine
        kw: dict = {"body": body, "content_type": content_type} if body is not None else {}
        if websocket_message:
            kw["websocket_message"] = True
        d = engine.decide(caller.exe, caller.ancestors, host, port, method=method, path=path, **kw)
        for _pid, exe in caller.owners[1:]:  # a socket shared by several binaries: all must be allowed
            if exe != caller.exe and d.allowed:
                other = engine.decide(exe, (), host, port, method=method, path=path, **kw)
                if not other.allowed:
                    d = Decision("deny", other.policy_key, f"socket shared with {exe}: {other.reason}")
        return d

    def record(self, caller: Caller | None, kind: str, host: str | None, port: int | None, d: Decision,
               allowed: bool, method: str | None = None, path: str | None = None, **extra) -> None:  # fmt: skip
        rec = {
            "kind": kind,
            "binary": caller.exe if caller else None,
            "pid": caller.pid if caller else None,
            "ancestors": list(caller.ancestors) if caller else [],
            "host": host,
            "port": port,
            "method": method,
            "path": path,
            "decision": d.decision,
            "action": "allow" if allowed else "deny",
            "rule": d.policy_key,
            "reason": d.reason,
            "digest": self.holder.digest,
            "mode": self.config.mode,
        }
        if caller and caller.sha256:
            rec["sha256"] = caller.sha256
        rec.update(extra)
        self.log.write(rec)

    def _judge(self, caller, why, kind, host, port, method=None, path=None, body=None, content_type=None,
               **extra) -> Decision:  # fmt: skip
        d = self.decide(caller, why, host, port, method, path, body, content_type)
        allowed = d.allowed or self.monitor
        self.record(caller, kind, host, port, d, allowed, method, path, **extra)
        if not allowed:
            what = f"{method} {host}:{port}{path or ''}" if method else f"CONNECT {host}:{port}"
            raise Denied(403, f"{what} not permitted by policy", d.reason, d.policy_key)
        return d

    def _judge_message(self, caller, why, target: Target, path: str, is_tls: bool, action: str,
                       message: bytes | None) -> str | None:  # fmt: skip
        """One client WebSocket message after an allowed upgrade (.ws_relay): judged by the current policy (a reload
        applies from the next message on) and logged; ``None`` to pass it, else the close reason (``1008``)."""
        d = self.decide(caller, why, target.host, target.port, action, path, message, websocket_message=True)
        allowed = d.allowed or self.monitor
        extra = {"message_bytes": len(message)} if message is not None else {}
        self.record(caller, WEBSOCKET_KIND, target.host, target.port, d, allowed, action, path, tls=is_tls, **extra)
        if allowed:
            return None
        text = d.reason if d.policy_key is None or d.policy_key in d.reason else f"policy {d.policy_key}: {d.reason}"
        return close_reason(text).decode("utf-8")

    def _ws_refused(self, caller, target: Target, path: str, is_tls: bool, d: Decision, code: int, why: str) -> None:
        """A WebSocket connection closed for a frame the gateway cannot judge (``1002``/``1007``/``1009``)."""
        self.record(caller, WEBSOCKET_KIND, target.host, target.port, Decision("deny", d.policy_key, why), False,
                    None, path, tls=is_tls, close_code=code)  # fmt: skip

    async def resolve(self, host: str, port: int, d: Decision, caller: Caller | None = None) -> list[str]:
        """Addresses for an allowed destination that pass the destination guard for this caller (never the
        sandbox's DNS)."""
        if is_ip_literal(host):
            ips = [host]
        elif host in self.config.static_hosts:
            # The operator mapped this name on purpose in the gateway config (e.g. a host-local service on
            # 127.0.0.1): the mapping is the address grant, and the sandbox cannot add or change it.
            return [self.config.static_hosts[host]]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise Denied(502, f"cannot resolve {host}", f"DNS: {exc}", d.policy_key) from None
            ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        good, why = [], ""
        for ip in ips:
            verdict = address_verdict(self.holder.engine, caller, d, host, port, ip)
            if verdict is None:
                good.append(ip)
            else:
                why = verdict
        if not good:
            self.log.write({"event": "address_refused", "binary": caller.exe if caller else None, "host": host,
                            "port": port, "addresses": ips, "rule": d.policy_key, "reason": why})  # fmt: skip
            raise Denied(403, f"{host}:{port} resolves only to refused addresses", why, d.policy_key)
        return good

    async def open_upstream(self, host: str, port: int, ips: list[str], tls: bool) -> Stream:
        last: Exception | None = None
        try:
            ctx = await self._upstream_tls() if tls else None
        except (OSError, ssl.SSLError) as exc:  # made at first use now: say why, as the start used to
            raise Denied(502, f"cannot verify upstream {host}:{port}", f"gateway trust store: {exc}") from None
        for ip in ips:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(
                        ip, port, ssl=ctx, server_hostname=host if tls else None,
                        limit=READ_SIZE,
                    ),
                    self.config.connect_timeout,
                )  # fmt: skip
                sock = w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return Stream(r, w)
            except ssl.SSLCertVerificationError as exc:
                raise Denied(502, f"upstream {host}:{port} failed TLS verification", str(exc.verify_message)) from None
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        raise Denied(502, f"cannot connect to {host}:{port}", f"upstream: {last}")

    async def open_relay(self, host: str, port: int, ips: list[str]) -> _Relay:
        last: Exception | None = None
        loop = asyncio.get_running_loop()
        for ip in ips:
            relay = _Relay()
            try:
                await asyncio.wait_for(loop.create_connection(lambda r=relay: r.upstream, ip, port),
                                       self.config.connect_timeout)  # fmt: skip
                return relay
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        raise Denied(502, f"cannot connect to {host}:{port}", f"upstream: {last}")

    def needs_interception(self, d: Decision, host: str, port: int, middleware: bool = True) -> bool:
        """Terminate TLS when ANY endpoint for host:port has L7 rules (deny_rules of a second endpoint must not
        be skipped because the first one is L4), when a middleware selects the host (``middleware=False``: leave
        that reason out), or when a credential is bound to the host. In monitor mode the same holds for callers
        the policy does not list, so the log shows their requests."""
        if d.endpoint is None and not self.monitor:
            return False
        h = normalize_request_host(host)
        cands = [c.endpoint for c in self.holder.engine.candidates(h, port)] if h else []
        if d.endpoint is not None and d.endpoint not in cands:
            cands.append(d.endpoint)
        if not cands or all(ep.tls == "skip" for ep in cands):
            return False
        if any(ep.inspects_l7 and ep.tls != "skip" for ep in cands):
            return True
        if middleware and self.holder.engine.middlewares(host):  # it sees only traffic the gateway parses
            return True
        return bool(self.secrets) and self.credentials().bound(host, port)

    def _resign(self, ep: Endpoint, method: str, host: str, target: bytes, headers: list, body: bytes | None,
                dest: Destination) -> list:  # fmt: skip
        """Headers signed with the real AWS keys of the provider that reaches ``dest`` (.resign); never the
        sandbox's own signature."""
        keys = self.credentials().aws_keys(dest)
        if keys is None:
            raise ResignRefused(503, f"{ep.host}: credential_signing needs a provider whose AWS credentials"
                                " (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) reach this endpoint")  # fmt: skip
        return resign(ep, method, host, target, headers, body, keys[1:])

    def credentials(self) -> Secrets:
        """The secrets, with each provider's endpoints taken from the live policy: an endpointless provider's
        credentials follow the policy's ``credential_binding`` endpoints from one reload to the next."""
        policy = self.holder.policy
        if self._scoped is None or self._scoped[0] is not self.secrets or self._scoped[1] is not policy:
            self.secrets.scope(credential_scopes(policy, self.config.providers))
            self._scoped = (self.secrets, policy)
        return self.secrets

    def _uninspected_tunnel(self, caller, d: Decision, target: Target) -> None:
        """A tunnel relayed byte for byte (``tls: skip``) to a host a middleware selects: refused when a stage is
        fail_closed (its content cannot be inspected), logged as a bypass otherwise (as upstream)."""
        hooks = self.holder.engine.middlewares(target.host)
        if not hooks:
            return
        ctx = _MwContext(caller, "connect", target, "CONNECT", "", d)
        why = "the endpoint is relayed uninspected (tls: skip)"
        closed = [h for h in hooks if not h.fail_open]
        if closed:
            stop = MiddlewareStop("middleware_failed", closed[0], why, [mw_event(closed[0], "request", "failed",
                                  reason=why)])  # fmt: skip
            raise self._middleware_stop(ctx, stop, "request", 403)
        self._bypassed(ctx, hooks, "request", why)

    # -- connection handling ----------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        adm = self.limits.admit(task, writer.transport)
        if adm is None:  # at the cap: no identification, a rate-limited 503 (see .limits)
            await self.limits.refuse(writer.transport, _BUSY)
            return
        self.active += 1
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        client = Stream(reader, writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        caller: Caller | None = None
        why = ""
        try:
            if self.identify_socket is not None and sock is not None:
                try:
                    caller = await self.identify_socket(sock.fileno())
                except IdentityError as exc:
                    why = str(exc)
            elif self.identify is not None:
                try:
                    found = self.identify(writer.get_extra_info("peername")[:2], writer.get_extra_info("sockname")[:2])
                    # an identifier that reads /proc runs off the loop (Identifier.identify_async)
                    caller = await found if inspect.isawaitable(found) else found
                except IdentityError as exc:
                    why = str(exc)
            else:
                why = "no identifier configured"
            await self._serve(client, caller, why)
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a bug must cost one connection, never the gateway
            self.log.write({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        except asyncio.CancelledError:
            # Idle timeout, or the gateway closing (the sandbox exited). Returning normally on purpose: a handler
            # task that ends cancelled makes asyncio's start_server callback print a CancelledError traceback.
            if adm.idle:
                self.log.write({"event": "idle_timeout", "binary": caller.exe if caller else None,
                                "idle_timeout": self.config.idle_timeout})  # fmt: skip
        finally:
            self.active -= 1
            self.limits.release(adm)
            if self.metrics is not None:
                self._tally(client)
            client.close()

    def _tally(self, client: Stream) -> None:
        """Count one ended connection and its bytes (the kernel's count; once, before its socket closes)."""
        if self.metrics is not None and not client.tallied:
            client.tallied = True
            self.metrics.connection_done(self.config.sandbox, client.writer.get_extra_info("socket"))

    async def _serve(self, client: Stream, caller: Caller | None, why: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        upstreams: dict = {}
        try:
            while True:
                try:
                    ev = await next_event(conn, client)
                except h11.RemoteProtocolError as exc:
                    self.log.write({"event": "bad_request", "binary": caller.exe if caller else None,
                                    "error": str(exc)})  # fmt: skip
                    await self._error(conn, client, 400, "bad request", str(exc))
                    return
                if type(ev) is not h11.Request:  # h11's events are exact classes (see _exchange)
                    return
                if ev.method == b"CONNECT":
                    await self._connect(conn, client, ev, caller, why)
                    return
                keep = await self._forward(conn, client, ev, caller, why, upstreams, tunnel=None)
                if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        finally:
            for up in upstreams.values():
                up.stream.close()

    async def _error(self, conn: h11.Connection, client: Stream, status: int, detail: str, reason: str,
                     rule: str | None = None, error: str | None = None, extra: dict | None = None) -> None:  # fmt: skip
        body = json.dumps(
            {"error": error or _ERROR_KINDS.get(status, "gateway_error"), "detail": detail, "rule": rule,
             "reason": reason, **(extra or {})}
        ).encode() + b"\n"  # fmt: skip
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), (b"server", _VERSION)]  # fmt: skip
        try:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                data = conn.send(h11.Response(status_code=status, headers=headers))
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
            else:
                return
        except h11.LocalProtocolError:
            reason_phrase = {400: b"Bad Request", 403: b"Forbidden", 405: b"Method Not Allowed",
                             413: b"Content Too Large", 415: b"Unsupported Media Type", 502: b"Bad Gateway",
                             503: b"Service Unavailable"}.get(status, b"Error")  # fmt: skip
            data = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase)
            data += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body
        client.write(data)
        with contextlib.suppress(ConnectionError, OSError):
            await client.drain()

    # -- CONNECT ---------------------------------------------------------------------------------------
    async def _connect(self, conn, client: Stream, ev: h11.Request, caller, why) -> None:
        raw_target = ev.target.decode("ascii", "replace")
        try:
            target = parse_authority(raw_target)
        except TargetError as exc:
            d = Decision("deny", None, str(exc))
            self.record(caller, "connect", raw_target[:256], None, d, False)
            await self._error(conn, client, 400, f"bad CONNECT target {raw_target[:256]!r}", str(exc))
            return
        try:
            d = self._judge(caller, why, "connect", target.host, target.port)
            ips = await self.resolve(target.host, target.port, d, caller)
            intercept = self.needs_interception(d, target.host, target.port)
            if not intercept and d.allowed:
                self._uninspected_tunnel(caller, d, target)
            relay = None if intercept else await self.open_relay(target.host, target.port, ips)
        except Denied as exc:
            await self._error(conn, client, exc.status, exc.detail, exc.reason, exc.rule, exc.error, exc.extra)
            return
        client.write(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established")))
        pre, _closed = conn.trailing_data
        if relay is not None:  # L4 passthrough: transport-to-transport, no coroutine per chunk
            if self.metrics is not None:  # the relay closes the client's socket: count its bytes first
                relay.before_close = functools.partial(self._tally, client)
            await relay.attach(client.writer.transport, pre + bytes(client.reader._buffer), client.reader.at_eof())
            return
        await client.drain()
        first = pre or await client.read()
        if not first:
            return
        if first[:1] == b"\x16":
            assert self.ca is not None
            tls = TLSServerStream(client, self.ca.server_context(target.host))
            tls.incoming.write(first)
            try:
                await tls.handshake()
            except (ssl.SSLError, ConnectionError) as exc:
                self.log.write({"event": "tls_handshake_failed", "binary": caller.exe if caller else None,
                                "host": target.host, "port": target.port, "error": str(exc)[:300]})  # fmt: skip
                return
            sni = getattr(tls.obj, "clawfleet_sni", None)
            inner: Stream = tls
            is_tls = True
        else:
            if _HTTP_START.match(first) is None and not self.needs_interception(d, target.host, target.port, False):
                await self._not_http(client, caller, d, target, ips, first)
                return
            client.pre = first
            inner, sni, is_tls = client, None, False
        await self._tunnel(inner, caller, why, target, ips, sni, is_tls)

    async def _not_http(self, client: Stream, caller, d: Decision, target: Target, ips, first: bytes) -> None:
        """Plain bytes that are not HTTP (SSH, a database protocol) in a tunnel intercepted only because a middleware
        selects its host: no stage can inspect them. Upstream's gate: closed when a stage is fail_closed, relayed
        with a logged bypass when every stage is fail_open."""
        hooks = self.holder.engine.middlewares(target.host)
        ctx = _MwContext(caller, "connect", target, "CONNECT", "", d)
        why = "the tunnel carries a protocol other than HTTP, which no middleware stage can inspect"
        closed = [h for h in hooks if not h.fail_open]
        if closed:
            for h in closed:
                self.log.write(ctx.record(mw_event(h, "request", "failed", reason=why)))
            return
        self._bypassed(ctx, hooks, "request", why)
        try:
            upstream = await self.open_upstream(target.host, target.port, ips, False)
        except Denied as exc:
            self.log.write({"event": "error", "error": f"{exc.detail}: {exc.reason}"})
            return
        client.pre = first
        try:
            await splice(client, upstream)
        finally:
            upstream.close()

    async def _tunnel(self, inner: Stream, caller, why, target: Target, ips, sni, is_tls) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        upstreams: dict = {}
        ctx = (target, ips, sni, is_tls)
        try:
            while True:
                try:
                    ev = await next_event(conn, inner)
                except h11.RemoteProtocolError as exc:
                    await self._error(conn, inner, 400, "bad request", str(exc))
                    return
                if type(ev) is not h11.Request:  # h11's events are exact classes (see _exchange)
                    return
                keep = await self._forward(conn, inner, ev, caller, why, upstreams, tunnel=ctx)
                if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        finally:
            for up in upstreams.values():
                up.stream.close()
            if is_tls:
                inner.write_eof()
                with contextlib.suppress(Exception):
                    await inner.drain()

    # -- one HTTP request ------------------------------------------------------------------------------
    async def _forward(self, conn, client: Stream, ev: h11.Request, caller, why, upstreams, tunnel) -> bool:
        started = time.perf_counter() if self.metrics is not None else 0.0
        method = ev.method.decode("ascii", "replace")
        raw_target = ev.target.decode("ascii", "replace")
        # h11's Headers iterate through the Sequence ABC (a Python call per field): walked once, then a list
        fields = list(ev.headers)
        if any(k == b"connection" or k in ALWAYS for k, _ in fields):
            # the sandbox's hop-by-hop fields go first, once: every decision below (100 Continue, the body a
            # signature needs, the policy's), the credentials and the forward see the same headers. Before the
            # gateway adds its own (router identity, credentials): naming a field in Connection never removes one
            # the gateway puts in, here or at the next hop (.hopbyhop)
            fields = strip_hop_by_hop(fields)
            ev = h11.Request(method=ev.method, target=ev.target, headers=fields, http_version=ev.http_version)
        host_hdr = _hdr(fields, b"host")
        kind = "tls_request" if tunnel and tunnel[3] else ("tunnel_request" if tunnel else "http")
        try:
            if tunnel is not None:
                target, ips, sni, is_tls = tunnel
                if method == "CONNECT" or not raw_target.startswith("/"):
                    raise Denied(403, f"{method} {raw_target[:200]} inside a tunnel", "only origin-form requests"
                                 " are accepted inside a tunnel (no relaying through an allowed host)")  # fmt: skip
                if sni is not None and sni.lower().rstrip(".") != target.host:
                    raise Denied(403, "TLS SNI differs from the CONNECT target",
                                 f"SNI {sni!r} != CONNECT target {target.host!r}")  # fmt: skip
                path = raw_target
            else:
                target = parse_absolute(raw_target)
                ips, is_tls, path = None, False, target.path
            if _METHOD.fullmatch(ev.method) is None:
                raise Denied(400, "invalid method", "methods are case-sensitive upper-case tokens")
            if host_hdr is None:
                raise Denied(400, "missing Host header", "HTTP/1.1 requests must carry Host")
            if _hdr(fields, b"transfer-encoding") is not None and _hdr(fields, b"content-length") is not None:
                raise Denied(400, "ambiguous request framing", "both Transfer-Encoding and Content-Length (smuggling)")
            try:
                hh = parse_authority(host_hdr.decode("ascii"), target.port)
            except (TargetError, UnicodeDecodeError) as exc:
                raise Denied(400, "invalid Host header", str(exc)) from None
            if (hh.host, hh.port) != (target.host, target.port):
                raise Denied(403, "Host header differs from the request target",
                             f"Host {host_hdr.decode('ascii', 'replace')!r} != target {target.authority}")  # fmt: skip
            if self.credentials().refuses(method, target.host, target.port):
                raise Denied(405, f"{method} to {target.host} refused",
                             "a host a credential is bound to may echo the injected value back")  # fmt: skip
            try:  # judged and forwarded: the canonical form, never the raw text
                path = checked_target(method, raw_target, path, fields).wire
            except RequestRefused as exc:
                raise Denied(exc.status, exc.detail, exc.reason) from None
        except TargetError as exc:
            d = Decision("deny", None, str(exc))
            self.record(caller, kind, None, None, d, False, method, raw_target[:512])
            await self._error(conn, client, 400, f"bad request target {raw_target[:200]!r}", str(exc))
            return False
        except Denied as exc:
            d = Decision("deny", None, exc.reason)
            self.record(caller, kind, tunnel[0].host if tunnel else None, tunnel[0].port if tunnel else None, d,
                        False, method, raw_target[:512])  # fmt: skip
            await self._error(conn, client, exc.status, exc.detail, exc.reason, exc.rule, exc.error, exc.extra)
            return False
        body: bytes | None = None
        ctype: str | None = None
        req_headers = list(fields)
        try:
            buffered = await self._buffer_body(conn, client, ev, caller, why, kind, target, method, path)
            if buffered is not None:
                body, ctype, req_headers = buffered
            d = self._judge(caller, why, kind, target.host, target.port, method, path, body, ctype,
                            **({"body_bytes": len(body)} if body is not None else {}))  # fmt: skip
            if ips is None:
                ips = await self.resolve(target.host, target.port, d, caller)
            ips = self._granted(caller, d, kind, target, ips, method, path, body, ctype)
            hooks = self.holder.engine.middlewares(target.host)
            if hooks:  # after the policy admitted the request, before anything reaches the origin (as upstream)
                mwctx = _MwContext(caller, kind, target, method, path, d)
                body, req_headers = await self._request_middleware(conn, client, ev, mwctx, hooks, body, ctype,
                                                                   req_headers, buffered is not None)  # fmt: skip
            # Host-bound secrets travel only inside verified TLS; a provider's credential also over plain HTTP to
            # addresses the policy or the operator granted on loopback or a private network (.credentials).
            private = not is_tls and private_addresses(ips)  # cached by address list (.providers)
            dest = Destination(target.host, target.port, path.partition("?")[0], plain=not is_tls, private=private)
            body_used: set[str] = set()
            if d.endpoint is not None and d.endpoint.request_body_credential_rewrite and self.secrets:
                body, req_headers = await self._body_credentials(conn, client, ev, caller, kind, target, method,
                                                                 path, dest, body, req_headers, body_used)  # fmt: skip
            signing = d.endpoint if d.endpoint is not None and d.endpoint.credential_signing is not None else None
            if signing is not None and body is None and needs_body(signing, req_headers):
                # the signature covers the body's hash: read it (bounded) and forward it with an exact length
                where = f"{target.authority} (credential_signing)"
                body, _ = await self._read_bounded_body(conn, client, ev, caller, kind, target, method, path,
                                                        MAX_SIGNED_BODY, where)  # fmt: skip
                req_headers = reframe(ev.headers, body)
            up = await self._upstream(upstreams, target, ips, is_tls)
        except Denied as exc:
            await self._error(conn, client, exc.status, exc.detail, exc.reason, exc.rule, exc.error, exc.extra)
            return False
        headers, websocket = sanitize_upgrade(req_headers, d.endpoint)  # hop-by-hop fields went at the top
        ws: _WebSocket | None = None
        if websocket:  # a protocol: websocket endpoint judges every client message after the 101 (.ws_relay)
            # no extension (permessage-deflate): the gateway must read the messages it judges (and fills)
            headers = [(k, v) for k, v in headers if k != b"sec-websocket-extensions"]
            ws_fill: Callable[[bytes], bytes | None] | None = None
            if d.endpoint is not None and d.endpoint.websocket_credential_rewrite and self.secrets:
                secrets = self.credentials()
                if secrets.provider_reaches(dest):
                    ws_used: set[str] = set()
                    ws_fill = functools.partial(secrets.fill, dest, used=ws_used)
            ws = _WebSocket(functools.partial(self._judge_message, caller, why, target, path, is_tls), ws_fill,
                            functools.partial(self._ws_refused, caller, target, path, is_tls, d))  # fmt: skip
        resp_hooks = tuple(h for h in hooks if h.response) if not websocket else ()
        if resp_hooks:  # ask for the body as the origin has it: a compressed one cannot be inspected
            headers = [(k, v) for k, v in headers if k != b"accept-encoding"] + [(b"accept-encoding", b"identity")]
        headers = self.router_identity.apply(target.host, target.port, headers)
        out_target = path.encode()
        # a credential_signing endpoint is re-signed or refused, also on a gateway with no secrets at all: the
        # sandbox's own (placeholder) signature is never sent on
        if self.secrets or signing is not None:
            if self.minting is not None and self.credentials().provider_reaches(dest):
                await self.minting.refresh(self.secrets)  # cached: only a due token costs a call
            # the raw target too: a path binding fills only a path the sandbox sent in canonical form
            try:
                out_target, headers, used = self.credentials().inject(dest, out_target, headers, ev.target)
                if d.endpoint is not None and d.endpoint.credential_signing is not None:
                    headers = self._resign(d.endpoint, method, target.host, out_target, headers, body, dest)
            except (CredentialUnavailable, ResignRefused) as exc:  # never send on what could not be filled or signed
                reason, error = (
                    ("credential unavailable", "credential_unavailable")
                    if isinstance(exc, CredentialUnavailable)
                    else ("cannot re-sign", "signing_refused")
                )
                upstreams.pop(up.key, None)
                up.stream.close()
                await self._error(conn, client, exc.status, str(exc), reason, error=error)
                return False
            used |= body_used
        else:
            used = set()
        expect = _hdr(headers, b"expect")
        if expect is not None and expect.lower() == b"100-continue":
            headers = [(k, v) for k, v in headers if k != b"expect"]
            client.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        try:
            keep = await self._exchange(conn, client, up, h11.Request(
                method=ev.method, target=out_target, headers=headers, http_version="1.1"), upstreams,
                websocket, used, _sent(ev) if used else b"", body,
                resp_hooks, _MwContext(caller, kind, target, method, path, d) if resp_hooks else None,
                ws)  # fmt: skip
            if self.metrics is not None and not websocket:  # a WebSocket's time is the session's, not a request's
                self.metrics.request_done(self.config.sandbox, kind, time.perf_counter() - started)
            return keep
        except h11.RemoteProtocolError as exc:
            upstreams.pop(up.key, None)
            up.stream.close()
            await self._error(conn, client, 502, "upstream protocol error", str(exc))
            return False

    async def _buffer_body(self, conn, client: Stream, ev: h11.Request, caller, why, kind: str, target: Target,
                           method: str, path: str) -> tuple[bytes, str | None, list] | None:  # fmt: skip
        """Read the body when an endpoint with body selectors judges this request (``None`` when none does):
        ``(body, content type, headers to forward it with)``. Refusals are logged and raised as :class:`Denied`.
        """
        if caller is None or caller.pin_error:
            return None  # denied by identity before any body matters
        engine = self.holder.engine
        limit = engine.body_limit(caller.exe, caller.ancestors, target.host, target.port, path)
        if limit is None:
            return None
        where = f"{target.authority} (body-inspecting endpoint)"
        body, ctype = await self._read_bounded_body(conn, client, ev, caller, kind, target, method, path, limit,
                                                    where)  # fmt: skip
        return body, ctype, reframe(ev.headers, body)

    async def _read_bounded_body(self, conn: h11.Connection, client: Stream, ev: h11.Request, caller: Caller | None,
                                 kind: str, target: Target, method: str, path: str, limit: int,
                                 where: str) -> tuple[bytes, str | None]:  # fmt: skip
        """The request's whole body, at most ``limit`` bytes (``100 Continue`` first when the client waits for it),
        and its content type. A body that cannot be read within the limit is logged and raised as
        :class:`Denied`."""
        try:
            ctype = body_headers(ev.headers, limit, where)
            expect = _hdr(ev.headers, b"expect")
            if expect is not None and expect.lower() == b"100-continue":  # the client waits before the body
                client.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            return await read_body(conn, client.read, limit, where), ctype
        except (BodyRefused, h11.RemoteProtocolError) as exc:
            status, detail, reason = ((exc.status, exc.detail, exc.reason) if isinstance(exc, BodyRefused)
                                      else (400, "malformed request body", str(exc)))  # fmt: skip
            d = Decision("deny", None, f"{detail}: {reason}")
            self.record(caller, kind, target.host, target.port, d, False, method, path)
            raise Denied(status, detail, reason) from None

    async def _body_credentials(self, conn: h11.Connection, client: Stream, ev: h11.Request, caller: Caller | None,
                                kind: str, target: Target, method: str, path: str, dest: Destination,
                                body: bytes | None, headers: list[tuple[bytes, bytes]],
                                used: set[str]) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:  # fmt: skip
        """On a ``request_body_credential_rewrite`` endpoint that a provider credential reaches: the body with each
        placeholder that fills a JSON string value or a form value replaced (:mod:`.body_credentials`), read here
        (at most 256 KiB, as upstream) unless body selectors or middleware read it already."""
        secrets = self.credentials()
        if not secrets.provider_reaches(dest):
            return body, headers
        if body is None:
            where = f"{target.authority} (request_body_credential_rewrite)"
            body, _ = await self._read_bounded_body(conn, client, ev, caller, kind, target, method, path,
                                                    MAX_REWRITE_BYTES, where)  # fmt: skip
            headers = reframe(ev.headers, body)
        ctype = _hdr(ev.headers, b"content-type")
        out = rewrite_body(body, ctype.decode("latin-1") if ctype else None, lambda ph: secrets.fill(dest, ph, used))
        return (body, headers) if out is body else (out, reframe(headers, out))

    def _middleware_stop(self, ctx: _MwContext, stop: MiddlewareStop, direction: str, status: int) -> Denied:
        """The refusal for a chain that blocked or failed closed (its log lines written)."""
        for rec in stop.events:
            self.log.write(ctx.record(rec))
        hook = stop.hook
        what = "blocked by" if stop.error == "middleware_denied" else "could not be inspected by"
        # upstream's fields (policy, middleware, reason_code) beside clawfleet's (rule, reason); never the content
        extra = {"policy": ctx.decision.policy_key, "middleware": hook.key, "direction": direction}
        if stop.error == "middleware_denied":
            extra["reason_code"] = "content_match"
        return Denied(status, f"{direction} {what} middleware {hook.key} ({hook.middleware})", stop.reason,
                      ctx.decision.policy_key, stop.error, extra)  # fmt: skip

    async def _request_middleware(self, conn, client: Stream, ev: h11.Request, ctx: _MwContext,
                                  hooks: tuple[RegexHook, ...], body: bytes | None, ctype: str | None,
                                  headers: list, judged: bool) -> tuple[bytes | None, list]:  # fmt: skip
        """Run the request stages of ``hooks`` on the request body: ``(body, headers)`` to forward it with.

        ``body`` is the body already read for body selectors (``judged``), else ``None`` and read here (bounded by
        the stages' limit). Raises :class:`Denied` for a block, a fail-closed failure, or a rewritten body the
        body selectors no longer allow (upstream re-checks the policy after every rewrite, too)."""
        req_hooks = tuple(h for h in hooks if h.request)
        ep = ctx.decision.endpoint
        if ep is not None and ep.protocol == "websocket" and offers_websocket(ev.headers):
            # an upgrade the gateway lets through (.upgrade): the frames after it are relayed uninspected
            closed = [h for h in hooks if not h.fail_open]
            why = "the clawfleet gateway does not inspect WebSocket messages"
            if closed:
                stop = MiddlewareStop("middleware_failed", closed[0], f"{why}; a fail_closed middleware covers this"
                                      " host", [mw_event(closed[0], "request", "failed", reason=why)])  # fmt: skip
                raise self._middleware_stop(ctx, stop, "request", 403)
            self._bypassed(ctx, hooks, "request", why)
        if not req_hooks:
            return body, headers
        target = ctx.target
        if body is None:
            limit = max(h.limit for h in req_hooks)
            where = f"{target.authority} (middleware {', '.join(h.key for h in req_hooks)})"
            try:
                body_headers(ev.headers, limit, where)
            except BodyRefused as exc:  # nothing read yet: an all-fail_open chain may let the body stream past
                if all(h.fail_open for h in req_hooks):
                    self._bypassed(ctx, req_hooks, "request", exc.detail)
                    return None, headers
                self.record(ctx.caller, ctx.kind, target.host, target.port, Decision("deny", ctx.decision.policy_key,
                            f"{exc.detail}: {exc.reason}"), False, ctx.method, ctx.path)  # fmt: skip
                raise Denied(exc.status, exc.detail, exc.reason, ctx.decision.policy_key) from None
            try:
                expect = _hdr(ev.headers, b"expect")
                if expect is not None and expect.lower() == b"100-continue":  # the client waits before the body
                    client.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                body = await read_body(conn, client.read, limit, where)
            except (BodyRefused, h11.RemoteProtocolError) as exc:  # bytes consumed: it cannot be resumed
                status, detail, reason = ((exc.status, exc.detail, exc.reason) if isinstance(exc, BodyRefused)
                                          else (400, "malformed request body", str(exc)))  # fmt: skip
                self.record(ctx.caller, ctx.kind, target.host, target.port,
                            Decision("deny", ctx.decision.policy_key, f"{detail}: {reason}"), False, ctx.method,
                            ctx.path)  # fmt: skip
                raise Denied(status, detail, reason, ctx.decision.policy_key) from None
            headers = reframe(ev.headers, body)
        try:
            out, events = run_chain(req_hooks, body, "request")
        except MiddlewareStop as stop:
            raise self._middleware_stop(ctx, stop, "request", stop.status or 403) from None
        for rec in events:
            self.log.write(ctx.record(rec))
        if out is body:
            return body, headers
        if judged:  # the body selectors judged the original bytes: the rewritten ones must pass them too
            d = self.decide(ctx.caller, "", target.host, target.port, ctx.method, ctx.path, out, ctype)
            if not d.allowed and not self.monitor:
                why = f"after middleware rewrote the body: {d.reason}"
                self.record(ctx.caller, ctx.kind, target.host, target.port, Decision("deny", d.policy_key, why),
                            False, ctx.method, ctx.path)  # fmt: skip
                raise Denied(403, f"{ctx.method} {target.authority}{ctx.path} not permitted by policy", why,
                             d.policy_key)  # fmt: skip
        return out, reframe(headers, out)

    def _granted(self, caller, d: Decision, kind: str, target: Target, ips: list[str], method: str,
                 path: str, body: bytes | None = None, content_type: str | None = None) -> list[str]:  # fmt: skip
        """The addresses this request may go to: those the endpoint that allowed THIS request grants."""
        if target.host in self.config.static_hosts:
            return ips  # the operator's grant (see resolve)
        good, why = [], ""
        for ip in ips:
            verdict = address_verdict(self.holder.engine, caller, d, target.host, target.port, ip, method, path,
                                      body, content_type)  # fmt: skip
            if verdict is None:
                good.append(ip)
            else:
                why = why or verdict
        if not good:
            self.record(caller, kind, target.host, target.port, Decision("deny", d.policy_key, why), False, method,
                        path)  # fmt: skip
            raise Denied(403, f"{method} {target.authority}{path} not permitted to its address", why, d.policy_key)
        return good

    async def _upstream(self, upstreams: dict, target: Target, ips, tls: bool) -> _Upstream:
        key = (target.host, target.port, tls)
        up = upstreams.get(key)
        if up is not None and up.conn.our_state is h11.IDLE and up.peer in ips:
            return up
        if up is not None:
            up.stream.close()
        for other in list(upstreams.values()):  # one upstream connection per client connection
            other.stream.close()
        upstreams.clear()
        stream = await self.open_upstream(target.host, target.port, ips, tls)
        up = _Upstream(key, stream, h11.Connection(h11.CLIENT, max_incomplete_event_size=65536), _peer_ip(stream))
        upstreams[key] = up
        return up

    async def _exchange(self, cconn, client: Stream, up: _Upstream, req: h11.Request, upstreams,
                        websocket: bool = False, used: set[str] | frozenset[str] = frozenset(),
                        sent: bytes = b"", body: bytes | None = None, resp_hooks: tuple[RegexHook, ...] = (),
                        mwctx: _MwContext | None = None,
                        ws: _WebSocket | None = None) -> bool:  # fmt: skip
        uconn, ustream = up.conn, up.stream
        # Response middleware: the response is held (head and body, bounded) until the chain has run on it.
        held: h11.Response | None = None
        held_body: list[bytes] = []
        held_size = 0
        hold_limit = max((h.limit for h in resp_hooks), default=0)
        out = [uconn.send(req)]
        if body is not None:  # already read and judged: exactly these bytes go out (see .body)
            out += [uconn.send(h11.Data(data=body)) if body else b"", uconn.send(h11.EndOfMessage())]
        # request body (a GET's EndOfMessage goes out in the same write as its headers)
        while body is None:
            ev = cconn.next_event()
            if ev is h11.NEED_DATA:
                ustream.write(b"".join(out))
                out.clear()
                await ustream.drain()
                cconn.receive_data(await client.read())
                continue
            if type(ev) is h11.Data:
                out.append(uconn.send(ev))
            elif type(ev) is h11.EndOfMessage:
                out.append(uconn.send(ev))
                break
            else:  # ConnectionClosed / PAUSED: the client went away mid-request
                return False
        ustream.write(b"".join(out))
        out.clear()
        # response: events are batched into one write per read from upstream
        switched = False
        scrub = functools.partial(self.secrets.scrub, set(used), sent=sent) if used else None
        while True:
            ev = uconn.next_event()
            # h11's events are exact classes (never subclassed) on an ABC base: ``type() is`` skips a Python-level
            # ABC instance check per comparison; anything else still ends in the refusal at the bottom
            if ev is h11.NEED_DATA:
                if out:
                    client.write(b"".join(out))
                    out.clear()
                    await client.drain()
                uconn.receive_data(await ustream.read())
                continue
            if type(ev) is h11.InformationalResponse:
                if ev.status_code == 101:
                    if not websocket or not switch_accepted(ev.headers):
                        raise h11.RemoteProtocolError("upstream switched protocols; only offered WebSocket passes")
                    if any(k == b"sec-websocket-extensions" for k, _ in ev.headers):
                        # none was offered (.ws_relay): compressed frames are messages the gateway cannot judge
                        raise h11.RemoteProtocolError("upstream selected a WebSocket extension that was not offered")
                    out.append(cconn.send(_informational(ev, scrub)))
                    switched = True
                    break
                if ev.status_code != 100:
                    out.append(cconn.send(_informational(ev, scrub)))
                continue
            if type(ev) is h11.Response:
                if used or ev.http_version != b"1.1" or any(k in _HOP for k, _ in ev.headers):
                    headers = strip_hop_by_hop(ev.headers)  # the origin's Connection-named fields stop here
                    if used:  # a redirect or header that quotes the request gets the placeholder back, not the value
                        headers = self.secrets.scrub(set(used), headers, sent)
                    resp = h11.Response(status_code=ev.status_code, headers=headers, reason=ev.reason)
                else:  # nothing to drop or scrub: the event h11 parsed (and validated) goes on as it is
                    resp = ev
                if resp_hooks and req.method != b"HEAD" and ev.status_code not in (204, 304):
                    assert mwctx is not None
                    why = _uninspectable(resp.headers)
                    if why is None:
                        held = resp
                        continue
                    if not self._response_bypass(mwctx, resp_hooks, why):
                        return await self._response_refused(cconn, client, up, upstreams, mwctx, resp_hooks, why)
                out.append(cconn.send(resp))
                continue
            if type(ev) is h11.Data:
                if held is not None:
                    held_size += len(ev.data)
                    if held_size <= hold_limit:
                        held_body.append(bytes(ev.data))
                        continue
                    assert mwctx is not None
                    why = f"response body is over the {hold_limit}-byte limit of the response middleware"
                    if not self._response_bypass(mwctx, resp_hooks, why):
                        return await self._response_refused(cconn, client, up, upstreams, mwctx, resp_hooks, why)
                    out.append(cconn.send(held))  # fail_open: what was held goes out as it came, then the rest
                    out.extend(cconn.send(h11.Data(data=chunk)) for chunk in held_body)
                    held, held_body = None, []
                out.append(cconn.send(ev))
                continue
            if type(ev) is h11.EndOfMessage:
                if held is not None:
                    assert mwctx is not None
                    got = b"".join(held_body)
                    try:
                        new, events = run_chain(resp_hooks, got, "response")
                    except MiddlewareStop as stop:
                        denied = self._middleware_stop(mwctx, stop, "response",
                                                       403 if stop.error == "middleware_denied" else 502)  # fmt: skip
                        upstreams.pop(up.key, None)
                        ustream.close()
                        await self._error(cconn, client, denied.status, denied.detail, denied.reason, denied.rule,
                                          denied.error, denied.extra)  # fmt: skip
                        return False
                    for rec in events:
                        self.log.write(mwctx.record(rec))
                    hdrs = [(k, v) for k, v in held.headers if k not in (b"content-length", b"transfer-encoding")]
                    hdrs.append((b"content-length", str(len(new)).encode()))
                    out.append(cconn.send(h11.Response(status_code=held.status_code, headers=hdrs,
                                                       reason=held.reason)))  # fmt: skip
                    if new:
                        out.append(cconn.send(h11.Data(data=new)))
                    ev = h11.EndOfMessage()  # trailers cannot follow a Content-Length body: they are dropped
                out.append(cconn.send(ev))
                break
            if type(ev) is h11.ConnectionClosed:
                raise h11.RemoteProtocolError("upstream closed before the response ended")
            raise h11.RemoteProtocolError(f"unexpected upstream event {type(ev).__name__}")
        client.write(b"".join(x for x in out if x))
        await client.drain()
        if switched:  # Upgrade (e.g. WebSocket): from here on raw bytes both ways
            upstreams.pop(up.key, None)
            client.pre = cconn.trailing_data[0]
            ustream.pre = uconn.trailing_data[0]
            if ws is not None:  # the sandbox's messages are judged (and filled) one by one (.ws_relay)
                await asyncio.gather(relay_client_frames(client, ustream, ws.judge, ws.fill, ws.refused),
                                     pipe(ustream, client))  # fmt: skip
            else:
                await splice(client, ustream)
            return False
        if uconn.our_state is h11.DONE and uconn.their_state is h11.DONE:
            uconn.start_next_cycle()
        else:
            upstreams.pop(up.key, None)
            ustream.close()
        return cconn.our_state is h11.DONE and cconn.their_state is h11.DONE

    def _response_bypass(self, ctx: _MwContext, hooks: tuple[RegexHook, ...], why: str) -> bool:
        """A response the stages cannot inspect: ``True`` (logged, passed on) when every stage is fail_open."""
        if not all(h.fail_open for h in hooks):
            return False
        self._bypassed(ctx, hooks, "response", why)
        return True

    def _bypassed(self, ctx: _MwContext, hooks: tuple[RegexHook, ...], direction: str, why: str) -> None:
        """Log that ``hooks`` (all fail_open) let through what they could not inspect (upstream's finding)."""
        for h in hooks:
            self.log.write(ctx.record(mw_event(h, direction, "bypassed", reason=f"{why} (on_error: fail_open)")))

    async def _response_refused(self, cconn, client: Stream, up: _Upstream, upstreams, ctx: _MwContext,
                                hooks: tuple[RegexHook, ...], why: str) -> bool:  # fmt: skip
        """A fail_closed stage cannot inspect the response: nothing of it reaches the client; ``502``."""
        hook = next(h for h in hooks if not h.fail_open)
        stop = MiddlewareStop("middleware_failed", hook, why, [mw_event(hook, "response", "failed", reason=why)])
        denied = self._middleware_stop(ctx, stop, "response", 502)
        upstreams.pop(up.key, None)
        up.stream.close()
        await self._error(cconn, client, denied.status, denied.detail, denied.reason, denied.rule, denied.error,
                          denied.extra)  # fmt: skip
        return False

    async def close(self) -> None:
        self.limits.close()
        for s in self.servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for s in self.servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
