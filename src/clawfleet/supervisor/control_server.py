"""The supervisor's control socket, server side (protocol: :mod:`clawfleet.control_protocol`): answers
``list``, ``status``, ``logs`` (optionally following) and ``stop`` about the daemon's sandboxes, and ``reload`` (what
SIGHUP does, answered with its outcome once it is applied)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from clawfleet.control_protocol import encode

from .attach import sandbox_alive
from .logtail import MAX_LINE, follow_chunk, tail_lines

if TYPE_CHECKING:
    from .daemon import Daemon, Managed

__all__ = ["handle"]


async def handle(daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection: one request line, answer lines, close."""
    try:
        line = await reader.readline()
        req = json.loads(line or b"{}")
        cmd, name = req.get("cmd"), req.get("name")
        m = daemon.sandboxes.get(name) if name else None
        if cmd == "list":
            answer: Any = [s.info() for s in daemon.sandboxes.values()]
        elif cmd == "reload":
            answer = await daemon.reload()
        elif m is None:
            answer = {"error": f"no sandbox named {name!r}"}
        elif cmd == "status":
            answer = m.info()
        elif cmd == "stop":
            await asyncio.get_running_loop().run_in_executor(None, daemon.stop, m)
            answer = m.info()
        elif cmd == "logs":
            await _logs(m, writer, int(req.get("lines", 100)), bool(req.get("follow")))
            return
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        writer.write(encode(answer))
        await writer.drain()
    except (ValueError, ConnectionError) as exc:
        with contextlib.suppress(ConnectionError):
            writer.write(encode({"error": str(exc)}))
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _logs(m: Managed, writer: asyncio.StreamWriter, lines: int, follow: bool) -> None:
    loop = asyncio.get_running_loop()
    try:
        with open(m.out, "rb") as f:
            # Off the event loop: one slow disk read must not stall every other sandbox's control requests.
            tail = await loop.run_in_executor(None, tail_lines, f, lines)
            for t in tail:
                writer.write(encode({"line": t.decode("utf-8", "replace")}))
            await writer.drain()
            while follow:
                chunk = follow_chunk(f)
                if chunk is not None:
                    writer.write(encode({"line": chunk.decode("utf-8", "replace")}))
                    await writer.drain()
                elif not sandbox_alive(m.record()):
                    rest = f.read(MAX_LINE)  # a last line the sandbox never ended with a newline
                    if rest:
                        writer.write(encode({"line": rest.decode("utf-8", "replace")}))
                    break
                else:
                    await asyncio.sleep(0.2)
    except FileNotFoundError:
        writer.write(encode({"error": "no output yet"}))
