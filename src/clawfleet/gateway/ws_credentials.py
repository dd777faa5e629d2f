"""Provider credential placeholders in client WebSocket text messages, on endpoints that opt in (upstream's
``websocket_credential_rewrite: true``, docs/gateway.md "Providers"): Discord's Gateway login carries its token in
a JSON ``IDENTIFY`` message, not in a header.

After the ``101``, the sandbox-to-origin direction is parsed frame by frame (RFC 6455) instead of relayed raw:

* a text message (fragmented or not, at most :data:`MAX_MESSAGE_BYTES`) is collected, and a JSON string *value*
  that is exactly one placeholder is filled, as in a request body (:mod:`.body_credentials`); the message goes on
  as one frame, masked with a fresh key (an intermediary may refragment when no extension is in use, and the
  upgrade is sent without ``Sec-WebSocket-Extensions``, so none is);
* binary messages and control frames pass unchanged (a placeholder in them stays a placeholder);
* an unmasked or reserved-bit frame, an unknown opcode, a broken fragment sequence, or a text message over the
  limit closes both sides (``1002`` / ``1009`` to the sandbox): the gateway never forwards what it cannot parse.

The origin-to-sandbox direction is relayed raw. An origin that echoes a filled message back hands the value to the
sandbox (as with bodies: bind credentials only where that does not happen).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
from collections.abc import Callable
from typing import Protocol

from .body_credentials import rewrite_body

__all__ = ["MAX_MESSAGE_BYTES", "relay_client_frames"]

MAX_MESSAGE_BYTES = 256 * 1024
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class _Stream(Protocol):
    async def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...


class _Refused(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class _Reader:
    def __init__(self, src: _Stream) -> None:
        self.src, self.buf = src, bytearray()

    async def exactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            data = await self.src.read()
            if not data:
                return None
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big") if n else b""


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked with a fresh key, as RFC 6455 requires of a client)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + _unmask(payload, key)


def _close_to_client(code: int) -> bytes:
    """A server close frame (unmasked) for the sandbox."""
    return bytes([0x80 | _CLOSE, 2]) + struct.pack("!H", code)


async def relay_client_frames(src: _Stream, dst: _Stream, fill: Callable[[bytes], bytes | None]) -> None:
    """Relay the sandbox's frames to the origin, filling placeholders in text messages (see the module)."""
    reader = _Reader(src)
    text: list[bytes] | None = None  # the parts of a text message being collected
    text_size = 0
    binary = False  # inside a fragmented binary message
    try:
        while True:
            head = await reader.exactly(2)
            if head is None:
                break
            fin, rsv, opcode = head[0] & 0x80, head[0] & 0x70, head[0] & 0x0F
            masked, n = head[1] & 0x80, head[1] & 0x7F
            raw = bytearray(head)
            if n >= 126:
                ext = await reader.exactly(2 if n == 126 else 8)
                if ext is None:
                    break
                raw += ext
                n = struct.unpack("!H" if len(ext) == 2 else "!Q", ext)[0]
            if not masked or rsv:
                raise _Refused(1002, "unmasked client frame or reserved bits (no extension was negotiated)")
            key = await reader.exactly(4)
            if key is None:
                break
            raw += key
            if opcode >= _CLOSE:
                if opcode not in (_CLOSE, _PING, _PONG) or not fin or n > 125:
                    raise _Refused(1002, "invalid control frame")
            elif opcode == _TEXT or (opcode == _CONT and text is not None):
                if opcode == _TEXT and (text is not None or binary):
                    raise _Refused(1002, "a new message inside a fragmented one")
                text_size += n
                if text_size > MAX_MESSAGE_BYTES:
                    raise _Refused(1009, f"text message over {MAX_MESSAGE_BYTES} bytes on a credential endpoint")
                payload = await reader.exactly(n)
                if payload is None:
                    break
                text = [*(text or []), _unmask(payload, key)]
                if fin:
                    message = b"".join(text)
                    dst.write(_frame(_TEXT, rewrite_body(message, "application/json", fill)))
                    await dst.drain()
                    text, text_size = None, 0
                continue
            elif opcode == _BINARY or (opcode == _CONT and binary):
                if opcode == _BINARY and (text is not None or binary):
                    raise _Refused(1002, "a new message inside a fragmented one")
                binary = not fin
            else:
                raise _Refused(1002, f"unexpected opcode {opcode}")
            # control and binary frames: relayed as they came, the payload streamed through
            dst.write(bytes(raw))
            while n:
                chunk = await reader.exactly(min(n, 65536))
                if chunk is None:
                    return
                dst.write(chunk)
                n -= len(chunk)
                await dst.drain()
            await dst.drain()
    except _Refused as exc:
        src.write(_close_to_client(exc.code))
        await asyncio.gather(src.drain(), return_exceptions=True)
        src.close()
        dst.close()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        dst.write_eof()
