"""The supervisor's control socket, server side (protocol: :mod:`clawfleet.control_protocol`): answers
``list``, ``status``, ``logs`` (optionally following) and ``stop`` about the daemon's sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from clawfleet.control_protocol import encode

from .attach import sandbox_alive

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
    try:
        with open(m.out, "rb") as f:
            tail = f.read().splitlines()[-lines:] if lines > 0 else []
            for t in tail:
                writer.write(encode({"line": t.decode("utf-8", "replace")}))
            await writer.drain()
            while follow:
                chunk = f.readline()
                if chunk:
                    writer.write(encode({"line": chunk.decode("utf-8", "replace").rstrip("\n")}))
                    await writer.drain()
                elif not sandbox_alive(m.record()):
                    break
                else:
                    await asyncio.sleep(0.2)
    except FileNotFoundError:
        writer.write(encode({"error": "no output yet"}))
