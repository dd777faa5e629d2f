"""The sandbox's WebSocket messages after an allowed ``101`` on a ``protocol: websocket`` endpoint: parsed frame by
frame (RFC 6455) and judged message by message, deny by default (docs/gateway.md "WebSocket messages").

The upgrade is sent without ``Sec-WebSocket-Extensions`` (an origin that selects one anyway is refused before the
``101`` reaches the sandbox), so no frame may set a reserved bit: every message the gateway judges is the message
the origin reads. The sandbox-to-origin direction:

* a text message (fragments collected, at most :data:`MAX_MESSAGE_BYTES` and :data:`MAX_FRAGMENTS`) must be UTF-8,
  and is judged as a whole (``WEBSOCKET_TEXT``) before any of its frames goes on, so a denied method cannot hide
  across fragments; an allowed one goes on as the frames the sandbox sent, byte for byte, unless
  ``websocket_credential_rewrite`` filled a placeholder in it (:mod:`.body_credentials`: a JSON string *value* that
  is exactly one placeholder), when it goes on as one frame masked with a fresh key;
* a binary message is judged once (``WEBSOCKET_BINARY``, by the rules alone: its content is not read) and then
  streamed through;
* control frames (ping, pong, close) pass as they came, also between the fragments of a message being collected;
* a denied message closes the connection with ``1008`` and a reason naming the policy rule; an unmasked or
  reserved-bit frame, an unknown opcode, a broken fragment sequence or a frame after the close ``1002``; a text
  message over the limits ``1009``; one that is not UTF-8 ``1007``. The origin gets the same code (masked close),
  then both sides are closed: the gateway never forwards what it has not judged.

The origin-to-sandbox direction is relayed raw (as upstream: server messages are not inspected).

Why this small parser rather than ``wsproto``: a relay must forward what it allowed byte-identical, and pass the
sandbox's own pings and closes through; wsproto is a connection endpoint (it decodes, answers pings itself and
re-encodes frames with its own masks and fragmentation), and it would be a new runtime dependency for ~100 lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from collections.abc import Callable
from typing import Protocol

from clawfleet.policy.model import WEBSOCKET_BINARY, WEBSOCKET_TEXT

from .body_credentials import rewrite_body

__all__ = ["MAX_FRAGMENTS", "MAX_MESSAGE_BYTES", "Judge", "close_reason", "relay_client_frames"]

#: The largest text message the gateway collects to judge (upstream's bound for inspected messages).
MAX_MESSAGE_BYTES = 256 * 1024
#: The most frames one message may come in (upstream's bound): tiny fragments cost a header each.
MAX_FRAGMENTS = 4096
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: ``(action, text message or None for a binary one) -> None`` to pass it, or the close reason to deny it (``1008``).
#: It is also where each decision is logged.
Judge = Callable[[str, bytes | None], str | None]


class _Stream(Protocol):
    async def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...


class _Refused(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code, self.why = code, why


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


def _frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final frame: masked with a fresh key (a client's, to the origin) or unmasked (a server's, to the
    sandbox)."""
    n = len(payload)
    bit = 0x80 if masked else 0
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(payload, key)


def close_reason(text: str) -> bytes:
    """``text`` cut to the 123 bytes a close frame's reason may have, on a UTF-8 character boundary."""
    return text.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")


async def relay_client_frames(src: _Stream, dst: _Stream, judge: Judge, fill: Callable[[bytes], bytes | None] | None
                              = None, refused: Callable[[int, str], None] | None = None) -> None:  # fmt: skip
    """Relay the sandbox's frames to the origin, each message judged first (see the module). ``fill``: the
    ``websocket_credential_rewrite`` placeholder filler; ``refused(code, why)``: told of a protocol refusal (a denial
    was logged by ``judge`` already)."""
    reader = _Reader(src)
    frames: list[bytes] = []  # the frames of a text message being collected, as they came (empty: none)
    parts: list[bytes] = []  # and their unmasked payloads
    size = 0
    binary = False  # inside a fragmented binary message
    closed = False  # the sandbox sent its close frame: nothing may follow
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
            if closed:
                raise _Refused(1002, "a frame after the close frame")
            key = await reader.exactly(4)
            if key is None:
                break
            raw += key
            if opcode >= _CLOSE:
                if opcode not in (_CLOSE, _PING, _PONG) or not fin or n > 125:
                    raise _Refused(1002, "invalid control frame")
                closed = opcode == _CLOSE
            elif opcode == _TEXT or (opcode == _CONT and frames):
                if opcode == _TEXT and (frames or binary):
                    raise _Refused(1002, "a new message inside a fragmented one")
                size += n
                if size > MAX_MESSAGE_BYTES:
                    raise _Refused(1009, f"text message over the {MAX_MESSAGE_BYTES} bytes the gateway judges")
                if len(parts) >= MAX_FRAGMENTS:
                    raise _Refused(1009, f"text message in more than {MAX_FRAGMENTS} frames")
                payload = await reader.exactly(n)
                if payload is None:
                    break
                frames.append(bytes(raw) + payload)
                parts.append(_unmask(payload, key))
                if fin:
                    message = b"".join(parts)
                    try:
                        message.decode("utf-8", "strict")
                    except UnicodeDecodeError:
                        raise _Refused(1007, "text message is not UTF-8") from None
                    why = judge(WEBSOCKET_TEXT, message)
                    if why is not None:
                        raise _Refused(1008, why)
                    out = rewrite_body(message, "application/json", fill) if fill is not None else message
                    dst.write(b"".join(frames) if out is message else _frame(_TEXT, out))
                    await dst.drain()
                    frames, parts, size = [], [], 0
                continue
            elif opcode == _BINARY or (opcode == _CONT and binary):
                if opcode == _BINARY:
                    if frames or binary:
                        raise _Refused(1002, "a new message inside a fragmented one")
                    why = judge(WEBSOCKET_BINARY, None)
                    if why is not None:
                        raise _Refused(1008, why)
                binary = not fin
            else:
                raise _Refused(1002, f"unexpected opcode {opcode}")
            # control frames and allowed binary messages: relayed as they came, the payload streamed through
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
        if refused is not None and exc.code != 1008:
            refused(exc.code, exc.why)
        code = struct.pack("!H", exc.code)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            dst.write(_frame(_CLOSE, code))  # at a frame boundary: no judged message was cut
            src.write(_frame(_CLOSE, code + (close_reason(exc.why) if exc.code == 1008 else b""), masked=False))
        await asyncio.gather(src.drain(), dst.drain(), return_exceptions=True)
        src.close()
        dst.close()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        dst.write_eof()
