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
a provider's whole stream. One addition: a request's small writes (head, then body) go out as one send when the
response is first read, so a small request costs the provider one wake-up, not two.

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
_HOLD_BELOW = 64 * 1024  # written bytes held back (until the next read) while they are fewer than this


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

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        await fut
    except asyncio.CancelledError:
        if expired:
            raise on_timeout(f"no progress in {timeout:g} s") from None
        raise  # the caller's task was cancelled: let it go on
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # small writes held until the next read or a larger write: httpcore writes a request's head and its body
        # separately, and one send instead of two halves the wake-ups of the provider for a small request
        self._held: list[bytes] = []
        self._held_size = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            # as httpcore does with a failed write: read on, the server may have answered (e.g. 413) and closed
            with contextlib.suppress(httpcore.WriteError):
                await self._send(timeout)
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
        self._held.append(buffer)
        self._held_size += len(buffer)
        if self._held_size >= _HOLD_BELOW:
            await self._send(timeout)

    async def _send(self, timeout: float | None) -> None:
        """Hand the held bytes to the socket, and wait (within ``timeout``) while its send buffer is full."""
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_size = 0
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
        try:
            transport = await loop.start_tls(
                self._transport, self._protocol, ssl_context, server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )  # fmt: skip
        except (TimeoutError, asyncio.TimeoutError) as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout(str(exc)) from exc
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


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port, local_addr=local), timeout
            )
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
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
