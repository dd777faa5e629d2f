"""Privilege separation: the process that parses a sandbox's traffic holds no privilege.

``gateway serve`` runs as root with CAP_SYS_ADMIN (setns into the sandboxes' network namespaces),
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (caller identification reads other users' ``/proc/PID/fd`` and hashes
their binaries). None of that is needed to parse HTTP, TLS and CONNECT targets from a sandbox, the part most
exposed to hostile input. With a ``gateway_user`` in the daemon config, each sandbox's proxy runs in a
**parser process** of its own (:func:`start_parser`):

* the privileged daemon makes the listening socket inside the sandbox's namespace and starts a parser, forked
  from a pre-imported fresh interpreter (:mod:`.parser_forkserver`: nothing of the daemon's memory, so no other
  sandbox's CA key or secret) with three descriptors: the listener, an identification channel, the decision
  log (a fourth, the OCSF log, with ``ocsf_log``; with ``metrics_listen`` it counts into multiprocess files in
  a directory the daemon made for it, :mod:`.metrics`). The parser reads its setup from stdin (what serving
  imports was loaded by the forkserver), then drops to ``gateway_user`` (no supplementary groups; the uid
  change clears every capability: permitted, effective, ambient), sets ``no_new_privs``, makes itself
  non-dumpable (a parser of another sandbox, same uid, cannot ptrace it or read its memory), checks that no
  privilege is left (:func:`check_unprivileged`) and only then accepts, and says so on a fifth descriptor, a
  pipe: the daemon reports the sandbox attached (``NAME.attached``, what the sandbox waits for to start its
  command) only then;
* it gets what it needs to serve and nothing else: this sandbox's policy, interception CA, secret values and
  the router identity key, and afterwards every policy change and secret rotation the daemon sees (pushed on
  its stdin, one way, daemon to parser; a parser that does not read them is killed and started again);
* it identifies callers by sending each accepted connection's socket to the daemon over a ``SOCK_SEQPACKET``
  socketpair (``SCM_RIGHTS``). The daemon uses nothing the parser says but a request number: the descriptor must
  be a TCP socket connected to this sandbox's listener address, and the kernel's socket for that exact 4-tuple
  inside this sandbox's namespace must be that very socket (same inode), or the answer is a refusal
  (:meth:`clawfleet.gateway.ident.Identifier.connection_of`). So a compromised parser can learn the caller of
  its own sandbox's connections, which it is told anyway, and nothing about any other process.

Wire format, parser to daemon: one datagram per request, the JSON ``{"id": N}`` (N an integer,
0 <= N < 2**63) with exactly one descriptor; the answer is ``{"id": N, "caller": {...}}`` or
``{"id": N, "error": "...", "closed": bool}``. Anything else (no descriptor, several, a truncated message, other
keys) is refused and its descriptors closed.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import pickle
import pwd
import signal
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .ca import SandboxCA
from .config import DecisionLog, GatewayConfig
from .credentials import Secrets
from .ident import Caller, ConnectionClosed, Identifier, IdentityError, NotThisSandbox
from .metrics import MULTIPROC_ENV, GatewayMetrics, parser_stopped
from .ocsf import OcsfContext, OcsfLog
from .parser_forkserver import ForkedProcess, Forkserver, received_fds
from .proxy import Gateway
from .reload import PolicyHolder
from .router_identity import RouterIdentity

__all__ = ["MAX_PENDING", "IdentifyClient", "IdentifyService", "Parser", "ParserSetup", "caller_from_wire",
           "caller_to_wire", "check_unprivileged", "forkserver_main", "parser_child", "parser_user",
           "start_forkserver", "start_parser"]  # fmt: skip

MAX_PENDING = 256  # identifications queued per parser; beyond it the daemon stops reading its channel
_MAX_REQUEST = 256  # bytes of one request datagram
_MAX_ID = 2**63
_FD_SIZE = array.array("i").itemsize

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38


def parser_user(name: str) -> tuple[int, int]:
    """(uid, gid) of the parser processes' user; ValueError for root or an unknown user."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"gateway_user {name!r}: no such user") from None
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise ValueError(f"gateway_user {name!r}: must not be root (uid/gid 0)")
    return pw.pw_uid, pw.pw_gid


# -- the answer on the wire -----------------------------------------------------------------------------


def caller_to_wire(c: Caller) -> dict[str, Any]:
    return {"pid": c.pid, "exe": c.exe, "ancestors": list(c.ancestors), "owners": [list(o) for o in c.owners],
            "sha256": c.sha256, "pin_error": c.pin_error}  # fmt: skip


def caller_from_wire(d: Mapping[str, Any]) -> Caller:
    return Caller(int(d["pid"]), str(d["exe"]), tuple(map(str, d["ancestors"])),
                  tuple((int(p), str(e)) for p, e in d["owners"]), d.get("sha256"), d.get("pin_error"))  # fmt: skip


def _request_id(data: bytes) -> int | None:
    try:
        req = json.loads(data)
    except ValueError:
        return None
    if not isinstance(req, dict) or set(req) != {"id"}:
        return None
    rid = req["id"]
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid < _MAX_ID:
        return None
    return rid


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut = loop.create_future()
    loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut = loop.create_future()
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


# -- the daemon's side ----------------------------------------------------------------------------------


class IdentifyService:
    """Answers one parser's identification requests for one sandbox (``identifier``: that sandbox's
    namespace; ``listen``: the address of the listener made there)."""

    def __init__(self, chan: socket.socket, identifier: Identifier, listen: tuple[str, int]) -> None:
        self.chan = chan
        self.identifier = identifier
        self.listen = listen
        self.refused = 0  # requests refused before any lookup (tests look at it)
        self.answered = 0
        self._slots = asyncio.Semaphore(MAX_PENDING)
        self._tasks: set[asyncio.Task[None]] = set()
        chan.setblocking(False)

    async def serve(self) -> None:
        """Until the parser's end closes."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._slots.acquire()  # backpressure: a parser cannot queue unbounded work here
                try:
                    msg = self._receive()
                except BlockingIOError:
                    self._slots.release()
                    await _readable(loop, self.chan.fileno())
                    continue
                if msg is None:
                    self._slots.release()
                    return
                task = asyncio.ensure_future(self._answer(*msg))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        finally:
            for t in list(self._tasks):
                t.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    def _receive(self) -> tuple[int | None, int | None, str | None] | None:
        """(request id, descriptor, refusal); None at the end of the channel."""
        data, anc, flags, _ = self.chan.recvmsg(_MAX_REQUEST, socket.CMSG_SPACE(_FD_SIZE))
        fds = received_fds(anc)
        if not data and not fds:
            return None
        rid = _request_id(data)
        why = None
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            why = "request truncated (one descriptor and a short JSON object per request)"
        elif rid is None:
            why = 'malformed request (expected {"id": N})'
        elif len(fds) != 1:
            why = f"expected one descriptor, got {len(fds)}"
        if why is not None:
            for fd in fds:
                os.close(fd)
            return rid, None, why
        return rid, fds[0], None

    async def _answer(self, rid: int | None, fd: int | None, why: str | None) -> None:
        answer: dict[str, Any] = {"id": rid}
        if fd is None:
            self.refused += 1
            answer.update(error=f"refused: {why}", closed=False)
        else:
            try:
                caller = await self.identifier.identify_fd_async(fd, self.listen)
                answer["caller"] = caller_to_wire(caller)
            except NotThisSandbox as exc:
                self.refused += 1
                answer.update(error=f"refused: {exc}", closed=False)
            except IdentityError as exc:
                answer.update(error=str(exc), closed=isinstance(exc, ConnectionClosed))
            except OSError as exc:
                answer.update(error=f"identification failed: {exc}", closed=False)
        self.answered += 1
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().sock_sendall(self.chan, json.dumps(answer).encode())


# -- the parser's side ----------------------------------------------------------------------------------


class IdentifyClient:
    """The parser's identify hook: hands the connection's socket to the daemon and waits for its answer."""

    def __init__(self, chan: socket.socket, on_close: Callable[[], None] | None = None) -> None:
        self.chan = chan
        chan.setblocking(False)
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._on_close = on_close
        self._closed = False

    async def identify(self, fd: int) -> Caller:
        if self._closed:
            raise IdentityError("the gateway's privileged process is gone")
        loop = asyncio.get_running_loop()
        rid, self._next = self._next, (self._next + 1) % _MAX_ID
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[rid] = fut
        try:
            payload = json.dumps({"id": rid}).encode()
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
            while True:
                try:
                    self.chan.sendmsg([payload], rights)
                    break
                except BlockingIOError:
                    await _writable(loop, self.chan.fileno())
            answer = await fut
        except OSError as exc:
            raise IdentityError(f"identification unavailable: {exc}") from None
        finally:
            self._waiting.pop(rid, None)
        if "caller" in answer:
            return caller_from_wire(answer["caller"])
        error = str(answer.get("error"))
        raise ConnectionClosed(error) if answer.get("closed") else IdentityError(error)

    async def read_answers(self) -> None:
        """Run for as long as the parser serves; at the end of the channel every waiting request fails."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = self.chan.recv(65536)
            except BlockingIOError:
                await _readable(loop, self.chan.fileno())
                continue
            except OSError:
                data = b""
            if not data:
                self._closed = True
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(IdentityError("the gateway's privileged process is gone"))
                if self._on_close is not None:
                    self._on_close()
                return
            answer = json.loads(data)
            waiting = self._waiting.get(answer.get("id"))
            if waiting is not None and not waiting.done():
                waiting.set_result(answer)


@dataclasses.dataclass
class ParserSetup:
    """What one sandbox's parser gets from the daemon (and nothing more), pickled down its stdin."""

    config: GatewayConfig
    ca_pem: bytes  # the sandbox's interception CA, key and certificate: the parser mints leaves with it
    policy: Any  # clawfleet.policy.model.Policy: the base policy (the file's), composed in the parser
    secrets: dict[str, bytes]
    router_identity: RouterIdentity
    extra_ca: str | None  # the extra upstream CA's text (the file may be unreadable to the parser)
    user: tuple[int, int]  # (uid, gid) to drop to
    listener: int  # descriptor numbers (the parser replaces them with those it received)
    chan: int
    log: int
    ocsf: int | None = None  # the OCSF log (ocsf_log), opened by the daemon as the decision log is
    metrics: bool = False  # count into the multiprocess directory named in the parser's environment
    ready: int | None = None  # a pipe: one byte once the parser accepts as its user (Parser.wait_ready)


def check_unprivileged() -> None:
    """Refuse to parse anything with a privilege left: uid/gid 0, a supplementary group or any capability."""
    uids, gids = os.getresuid(), os.getresgid()
    caps = {}
    with open("/proc/self/status", "rb") as f:
        for line in f:
            key, _, value = line.partition(b":")
            if key in (b"CapInh", b"CapPrm", b"CapEff", b"CapAmb"):
                caps[key.decode()] = int(value.strip(), 16)
    if 0 in uids or 0 in gids or any(caps.values()) or os.getgroups():
        raise RuntimeError(f"parser still privileged: uids {uids}, gids {gids}, groups {os.getgroups()}, {caps}")


def prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _preload() -> None:
    """What serving imports lazily, loaded while the interpreter's files are still readable (a development
    interpreter under /root is not readable to the parser's user; an installed one is)."""
    import encodings.ascii
    import encodings.idna
    import encodings.latin_1
    import encodings.punycode  # noqa: F401

    "bücher.example".encode("idna").decode("ascii")
    ca = SandboxCA("preload")  # key generation, certificate building
    ca.server_context("preload.invalid")  # the leaf key (made at the first leaf), its PEM, an ssl context
    ca.close()


def _drop(uid: int, gid: int, parent: int) -> None:
    """Before anything from the sandbox is read. ``parent``: the process whose death must kill this one."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # from uid 0 to another: the kernel clears every capability set
    prctl(_PR_SET_NO_NEW_PRIVS, 1)
    prctl(_PR_SET_DUMPABLE, 0)  # a parser of another sandbox (same uid) cannot ptrace this one or read its memory
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setresuid, which clears it
    if os.getppid() != parent:
        raise RuntimeError("the daemon (or its forkserver) exited while the parser started")
    check_unprivileged()


def _read_exact(fd: int, size: int) -> bytes:
    """Unbuffered: a buffered reader could swallow the pushes that follow the setup on the same pipe."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the daemon closed the parser's stdin")
        data += chunk
    return data


def _read_frame(fd: int) -> Any:
    (size,) = struct.unpack("!I", _read_exact(fd, 4))
    return pickle.loads(_read_exact(fd, size))  # noqa: S301 - written by the daemon, our parent


def _frame(kind: str, value: Any) -> bytes:
    data = pickle.dumps((kind, value))
    return struct.pack("!I", len(data)) + data


def forkserver_main(argv: list[str]) -> int:
    """``python -m clawfleet.supervisor gateway-parser-forkserver FD DAEMON_PID``: started by the daemon (root) at
    its start (:func:`start_forkserver`) or on its first parser; forks every parser after everything serving needs
    is loaded (:mod:`.parser_forkserver`)."""
    from .parser_forkserver import forkserver_main as loop

    _preload()
    return loop(int(argv[0]), int(argv[1]), parser_child)


def parser_child(fds: list[int], metrics_dir: str | None, parent: int) -> int:
    """One sandbox's parser, in a child of the forkserver: ``fds`` are its stdin (the setup, then the pushes), the
    listener, the identification channel, the decision log, the readiness pipe and maybe the OCSF log."""
    os.dup2(fds[0], 0)
    os.close(fds[0])
    kind, setup = _read_frame(0)
    if kind != "setup" or not isinstance(setup, ParserSetup):
        raise RuntimeError("expected the parser's setup")
    # the descriptors as this process received them, whatever numbers the daemon had for them
    setup = dataclasses.replace(setup, listener=fds[1], chan=fds[2], log=fds[3], ready=fds[4],
                                ocsf=fds[5] if len(fds) > 5 else None)  # fmt: skip
    if setup.metrics and metrics_dir:
        # the forkserver imported prometheus_client without a multiprocess directory (it serves every sandbox)
        from prometheus_client import values

        os.environ[MULTIPROC_ENV] = metrics_dir
        values.ValueClass = values.MultiProcessValue()
    _drop(*setup.user, parent)
    asyncio.run(_serve_parser(setup))
    return 0


async def _serve_parser(setup: ParserSetup) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    stop = done.set
    loop.add_signal_handler(signal.SIGTERM, stop)
    cfg = setup.config
    log = DecisionLog(stream=os.fdopen(setup.log, "a", buffering=1 << 16), sandbox=cfg.sandbox)
    if setup.ocsf is not None:
        log.observers.append(OcsfLog(setup.ocsf, OcsfContext(cfg.sandbox, cfg.listen_port)))
    key = serialization.load_pem_private_key(setup.ca_pem, password=None)
    cert = x509.load_pem_x509_certificate(setup.ca_pem[setup.ca_pem.index(b"-----BEGIN CERTIFICATE-----") :])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = SandboxCA(cfg.sandbox, key=key, cert=cert)  # its temporary directory belongs to the parser's user
    holder = PolicyHolder.given(setup.policy, cfg.providers)
    gateway = Gateway(cfg, holder, log, None, ca)
    gateway.secrets = Secrets(cfg.secrets, values=setup.secrets)
    gateway.router_identity = setup.router_identity
    metrics = GatewayMetrics(parser=True) if setup.metrics else None
    if metrics is not None:
        gateway.metrics = metrics
        log.observers.append(metrics.add(cfg.sandbox, gateway, holder))
    if setup.extra_ca:
        gateway.upstream_ctx.load_verify_locations(cadata=setup.extra_ca)
    client = IdentifyClient(socket.socket(fileno=setup.chan), on_close=stop)
    gateway.identify_socket = client.identify
    await gateway.serve_socket(socket.socket(fileno=setup.listener))
    if setup.ready is not None:  # dropped and accepting: the daemon may now call the sandbox served
        os.write(setup.ready, b"R")
        os.close(setup.ready)

    async def pushes() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        try:
            while True:
                (size,) = struct.unpack("!I", await reader.readexactly(4))
                kind, value = pickle.loads(await reader.readexactly(size))  # noqa: S301 - from the daemon
                if kind == "policy":
                    holder.replace(value)
                elif kind == "secrets":
                    gateway.secrets.update(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            stop()  # the daemon is gone

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.1)
            log.flush()
            if metrics is not None:
                metrics.set_active(cfg.sandbox, gateway.active)

    tasks = [asyncio.ensure_future(pushes()), asyncio.ensure_future(flush()),
             asyncio.ensure_future(client.read_answers())]  # fmt: skip
    await done.wait()
    for t in tasks:
        t.cancel()
    await gateway.close()
    ca.close()
    log.flush()
    log.close()  # the OCSF observer's buffer too


class Parser:
    """The daemon's handle on one sandbox's parser process."""

    def __init__(self, proc: ForkedProcess, service: IdentifyService, task: asyncio.Future[None],
                 generation: int, metrics_dir: str | None = None, ready: int | None = None) -> None:  # fmt: skip
        self.proc, self.service, self.task = proc, service, task
        self._ready = ready  # the read end of the parser's readiness pipe, until wait_ready has read it
        self.metrics_dir = metrics_dir
        self.pid = proc.pid
        assert proc.stdin is not None
        self.push = proc.stdin.fileno()
        self._generation = generation  # of the policy in the setup
        self._secrets: dict[str, bytes] | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def reported_status(self) -> int | None:
        """The exit status of a parser :meth:`alive` saw gone, waiting (in an executor, never on the event loop
        that serves every sandbox) a bounded time for the forkserver's report."""
        return await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 0)

    async def wait_ready(self, timeout: float) -> None:
        """Until the parser has dropped its privileges and accepts on the sandbox's listener. Raises OSError when
        it exits first or does not get there within ``timeout`` seconds (the caller stops it): until then the
        sandbox is not served, and its gateway must not say that it is (``NAME.attached``)."""
        fd, self._ready = self._ready, None
        if fd is None:
            return
        try:
            try:
                await asyncio.wait_for(_readable(asyncio.get_running_loop(), fd), timeout)
            except asyncio.TimeoutError:
                raise OSError(f"the parser does not serve after {timeout:.0f} s") from None
            if os.read(fd, 1) != b"R":
                raise OSError(f"the parser exited before it served (status {self.proc.poll()})")
        finally:
            os.close(fd)

    def send(self, kind: str, value: Any) -> None:
        """Push one update; a parser that does not read its pushes (pipe full) is killed (and started again)."""
        frame = _frame(kind, value)
        try:
            written = os.write(self.push, frame)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written != len(frame):
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def update(self, holder: PolicyHolder, secrets: Secrets) -> None:
        """Hand over a policy or secret values that changed since the last call."""
        if holder.generation != self._generation:
            self.send("policy", holder.base)  # the parser composes it with the providers, as this process does
            self._generation = holder.generation
        values = secrets.snapshot() if secrets else {}
        if self._secrets is not None and values != self._secrets:
            self.send("secrets", values)
        self._secrets = values

    async def stop(self, timeout: float = 5.0) -> None:
        if self._ready is not None:
            os.close(self._ready)
            self._ready = None
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.alive() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):  # it may exit between the check and the signal
                self.proc.kill()
            await loop.run_in_executor(None, self.proc.wait)
        self.task.cancel()
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.service.chan.close()
        self.service.identifier.close()
        if self.metrics_dir is not None:
            parser_stopped(self.pid, self.metrics_dir)


def _environment() -> dict[str, str]:
    """The daemon's environment without what points at its credentials (the parser gets the key itself) or at a
    metrics directory (each parser is told its own, :func:`parser_child`)."""
    drop = ("CLAWFLEET_ROUTER_IDENTITY_KEY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
            MULTIPROC_ENV, MULTIPROC_ENV.lower())  # fmt: skip
    return {k: v for k, v in os.environ.items() if k not in drop}


@functools.cache
def _forkserver() -> Forkserver:
    """This daemon's one forkserver handle (it starts the process on first use and again after it died)."""
    return Forkserver(_environment())


def start_forkserver() -> None:
    """Start the parsers' forkserver now (the daemon, at its start): its imports overlap the sandboxes' own start
    instead of delaying the first parser."""
    _forkserver().start()


async def start_parser(*, config: GatewayConfig, ca_pem: bytes, holder: PolicyHolder, secrets: Secrets,
                       router_identity: RouterIdentity, listener: socket.socket, identifier: Identifier,
                       user: tuple[int, int], metrics_dir: str | None = None) -> Parser:  # fmt: skip
    """Start this sandbox's parser process with ``listener``; the daemon keeps the channel on which it answers the
    parser's identifications (``identifier``: the sandbox's namespace) and the parser's stdin for pushes.
    ``metrics_dir``: a directory the parser's group may write, for its metrics files (:mod:`.metrics`); None: none."""
    listen = listener.getsockname()[:2]
    extra = None
    if config.extra_ca_file:
        with open(config.extra_ca_file, encoding="utf-8") as f:
            extra = f.read()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    if config.log is not None:
        log_fd = os.open(config.log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    else:
        log_fd = os.dup(2)
    ocsf_fd = None
    try:
        if config.ocsf_log is not None:  # the daemon's own OcsfLog (assemble) made it; the parser appends to it too
            ocsf_fd = os.open(config.ocsf_log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        passed = (listener.fileno(), theirs.fileno(), log_fd, ready_w) + ((ocsf_fd,) if ocsf_fd is not None else ())
        # the parser opens no file of its own: the extra CA comes as text, the log as a descriptor, pins stay here
        # no refresh material either: the daemon mints (it can read the material) and hands the values over
        parser_config = dataclasses.replace(config, extra_ca_file=None, log=None, ocsf_log=None, pins_file=None,
                                            refresh={})  # fmt: skip
        values = secrets.snapshot() if secrets else {}
        generation = holder.generation
        setup = ParserSetup(parser_config, ca_pem, holder.base, values, router_identity, extra, user,
                            listener.fileno(), theirs.fileno(), log_fd, ocsf_fd, metrics_dir is not None,
                            ready_w)  # fmt: skip
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        try:
            server = _forkserver()
            pid = await asyncio.get_running_loop().run_in_executor(None, server.fork, (stdin_r, *passed), metrics_dir)
            proc = ForkedProcess(pid, os.fdopen(stdin_w, "wb"), server.exit_status)  # its status: the forkserver's
        except BaseException:
            os.close(stdin_w)
            raise
        finally:
            os.close(stdin_r)
    except BaseException:
        os.close(ready_r)
        ours.close()
        raise
    finally:
        theirs.close()
        os.close(ready_w)  # the parser's copy is the only writer: EOF without a byte = it exited first
        os.close(log_fd)
        if ocsf_fd is not None:
            os.close(ocsf_fd)
        listener.close()  # only the parser listens: when it dies, the sandbox is offline (fail closed)
    assert proc.stdin is not None
    frame = _frame("setup", setup)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, proc.stdin.write, frame)
        await loop.run_in_executor(None, proc.stdin.flush)
    except OSError:  # usually EPIPE: the child is gone already, and kill() says so
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        ours.close()
        os.close(ready_r)
        raise
    os.set_blocking(proc.stdin.fileno(), False)
    service = IdentifyService(ours, identifier, listen)
    parser = Parser(proc, service, asyncio.ensure_future(service.serve()), generation, metrics_dir, ready_r)
    parser.update(holder, secrets)
    return parser
