"""The sockets under the upstream connection pool: httpcore's network backend on the running asyncio loop.

httpcore (under httpx) does its socket I/O through anyio by default: every read and write opens a cancel scope
for its timeout, and every reuse of a kept-alive connection asks anyio's typed attributes for the raw socket and
polls it. For a small request that bookkeeping was about a tenth of the router's CPU (docs/router.md,
Performance). This backend does the same I/O with an ``asyncio.Protocol``: one buffer, one waiter future, one
timer per wait. Same contract as httpcore's own backends (``httpcore.AsyncNetworkBackend``, a public extension
point): reads return what has arrived (``b""`` at the end), timeouts and socket errors are raised as httpcore's
``ReadTimeout``/``ReadError``/``WriteTimeout``/``WriteError``/``ConnectTimeout``/``ConnectError`` (httpx maps
them on), TLS is the caller's ``ssl.SSLContext`` (certificate and host name checked by it, as before), and
reading pauses while more than ``_HIGH_WATER`` bytes wait unread, so a slow client cannot make the router buffer
a provider's whole stream. A host name's addresses are tried as anyio tried them (Happy Eyeballs: families
interleaved, the next address started after 250 ms), so a broken IPv6 route does not cost the connect timeout.
One addition: a request's head (its first write, if small) is held and goes out in one send with the first piece
of its body, or when the response is first read, so a small request costs the provider one wake-up, not two;
every later write goes out at once (a streamed body is not held back).

Tested in tests/router/test_upstream_netio.py, on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

_HIGH_WATER = 256 * 1024  # unread bytes at which the socket stops being read until the reader catches up
_HOLD_BELOW = 64 * 1024  # a request's first write is held back (until the next write or read) if smaller
_STAGGER = 0.25  # seconds a connection attempt has before the next address is tried beside it (RFC 8305)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self.drain: asyncio.Future[None] | None = None  # a write waiting for the send buffer to empty
        self.paused_reading = False
        self.paused_writing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def _wake(self, which: str) -> None:
        fut = getattr(self, which)
        if fut is not None:
            setattr(self, which, None)
            if not fut.done():
                fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake("waiter")

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake("waiter")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake("waiter")
        self._wake("drain")

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._wake("drain")


async def _wait(fut: asyncio.Future[None], timeout: float | None, on_timeout: type[Exception]) -> None:
    """Wait for ``fut`` at most ``timeout`` seconds (a timer, not a task: ``asyncio.wait_for`` costs more)."""
    if timeout is None:
        await fut
        return
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        fut.cancel()

    task = asyncio.current_task()
    # cancellation requests of the task so far (Python 3.11+; 3.10 cannot tell, see below)
    cancelling = getattr(task, "cancelling", None)
    before = cancelling() if cancelling is not None else 0
    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        await fut
    except asyncio.CancelledError:
        # the timer and a task.cancel() can both land before the task wakes: the cancel then wins, or it would be
        # lost (turned into a timeout the caller may retry). On 3.10 that rare case still reads as a timeout.
        if expired and (cancelling is None or cancelling() == before):
            raise on_timeout(f"no progress in {timeout:g} s") from None
        raise  # the caller's task was cancelled: let it go on
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # the first write after a read (a request's head) held until the next write or read: httpcore writes a
        # request's head and its body separately, and one send instead of two halves the provider's wake-ups for
        # a small request. Only that one: a streamed body's pieces must not wait for the ones after them.
        self._held: bytes | None = None
        self._held_timeout: float | None = None  # the held write's own (write) timeout, used when it is sent
        self._may_hold = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held is not None:
            # as httpcore does with a failed write: read on, the server may have answered (e.g. 413) and closed
            with contextlib.suppress(httpcore.WriteError):
                await self._send(b"", self._held_timeout)
        self._may_hold = True  # the next write is the next request's head
        proto = self._protocol
        if not proto.buffer and not proto.eof:
            proto.waiter = asyncio.get_running_loop().create_future()
            await _wait(proto.waiter, timeout, httpcore.ReadTimeout)
        if proto.buffer:
            if len(proto.buffer) <= max_bytes:
                data = bytes(proto.buffer)
                proto.buffer.clear()
            else:
                data = bytes(proto.buffer[:max_bytes])
                del proto.buffer[:max_bytes]
            if proto.paused_reading and len(proto.buffer) <= _HIGH_WATER // 4 and not self._transport.is_closing():
                proto.paused_reading = False
                self._transport.resume_reading()
            return data
        if proto.error is not None:
            raise httpcore.ReadError(str(proto.error) or type(proto.error).__name__)
        return b""  # the peer closed its side

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if self._may_hold and len(buffer) < _HOLD_BELOW:
            self._may_hold = False
            self._held, self._held_timeout = buffer, timeout
            return
        self._may_hold = False
        await self._send(buffer, timeout)

    async def _send(self, buffer: bytes, timeout: float | None) -> None:
        """Hand the held bytes and ``buffer`` to the socket, and wait (within the write ``timeout``) while its
        send buffer is full."""
        data = buffer if self._held is None else self._held + buffer
        self._held = None
        proto = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        try:
            self._transport.write(data)
        except (OSError, RuntimeError) as exc:
            raise httpcore.WriteError(str(exc)) from exc
        if proto.paused_writing:
            proto.drain = asyncio.get_running_loop().create_future()
            await _wait(proto.drain, timeout, httpcore.WriteTimeout)
            if proto.error is not None or self._transport.is_closing():
                raise httpcore.WriteError("the connection was lost while writing")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        # the timeout by wait_for, so that it is a ConnectTimeout: the loop's own handshake timeout raises a plain
        # ConnectionAbortedError ("SSL handshake is taking longer..."), so it is set later than ours, as a backstop
        handshake = loop.start_tls(
            self._transport, self._protocol, ssl_context, server_hostname=server_hostname,
            ssl_handshake_timeout=None if timeout is None else timeout + 5.0,
        )  # fmt: skip
        try:
            transport = await asyncio.wait_for(handshake, timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from exc
        except (OSError, ConnectionError) as exc:  # ssl.SSLError (a failed certificate check) is an OSError
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the TLS handshake did not complete")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # an idle kept-alive connection "readable" = the server closed it or sent something unasked: the
            # loop has already read that into the buffer (httpcore then drops the connection)
            proto = self._protocol
            return bool(proto.buffer) or proto.eof or self._transport.is_closing()
        return None


def _interleave(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The resolved addresses, families alternating (as RFC 8305 orders them): the resolver's first family, then
    the other, then the first again, so one family that is broken costs one attempt, not every address of it."""
    families: dict[int, list[tuple[Any, ...]]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    queues = list(families.values())
    out: list[tuple[Any, ...]] = []
    while queues:
        out.extend(q.pop(0) for q in queues)
        queues = [q for q in queues if q]
    return out


async def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """``host``'s addresses for a TCP connection (a module function: tests give their own)."""
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def _attempt(info: tuple[Any, ...], local: str | None) -> tuple[asyncio.BaseTransport, _Protocol]:
    """One connection attempt to one resolved address; the socket closed if it does not connect."""
    family, type_, proto, _, address = info
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        if local:
            sock.bind((local, 0))
        await loop.sock_connect(sock, address)
        transport, protocol = await loop.create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


def _close_result(task: asyncio.Task[tuple[asyncio.BaseTransport, _Protocol]]) -> None:
    """Done callback of a losing attempt: if it connected after all, close that connection."""
    if not task.cancelled() and task.exception() is None:
        task.result()[0].close()


async def _race(host: str, port: int, local: str | None) -> tuple[asyncio.BaseTransport, _Protocol]:
    """Happy Eyeballs (RFC 8305, as anyio did it for httpcore): the addresses tried in turn, the next started
    when the last has failed or not connected within ``_STAGGER`` seconds; the first to connect wins and the
    others are cancelled. A blackholed first address (a broken IPv6 route) so costs 250 ms, not the timeout.
    (uvloop takes no ``happy_eyeballs_delay`` for ``create_connection``, so it is done here.)"""
    infos = _interleave(await _resolve(host, port))
    if not infos:
        raise OSError(f"no address found for {host}")
    pending: set[asyncio.Task[tuple[asyncio.BaseTransport, _Protocol]]] = set()
    last: BaseException | None = None
    try:
        for n, info in enumerate(infos):
            pending.add(asyncio.ensure_future(_attempt(info, local)))
            more = n + 1 < len(infos)
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=_STAGGER if more else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # none connected in time: start the next address beside them
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        for other in done - {task}:
                            _close_result(other)
                        return task.result()
                    last = exc
                if more:
                    break  # one failed: start the next address now
        assert last is not None
        raise last
    finally:
        for task in pending:
            task.cancel()
            task.add_done_callback(_close_result)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            transport, protocol = await asyncio.wait_for(_race(host, port, local_address), timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return self._stream(transport, protocol, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(loop.create_unix_connection(_Protocol, path), timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return self._stream(transport, protocol, socket_options)

    @staticmethod
    def _stream(
        transport: asyncio.BaseTransport, protocol: _Protocol, options: Iterable[httpcore.SOCKET_OPTION] | None
    ) -> AsyncioStream:
        sock: socket.socket | None = transport.get_extra_info("socket")
        for option in options or ():
            if sock is not None:
                sock.setsockopt(*option)
        return AsyncioStream(cast(asyncio.Transport, transport), protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


__all__ = ["AsyncioBackend", "AsyncioStream"]
