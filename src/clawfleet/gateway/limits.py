"""Per-sandbox connection cap and idle timeout.

Every sandbox's proxy runs in the daemon's one process: without a cap a sandbox could hold gateway file
descriptors up to its own RLIMIT_NOFILE (each client connection costs the gateway one fd, two with its upstream)
and starve the others. Over ``max_connections`` a new connection gets ``503`` and is closed at once (one log line
per second at most, with the number refused). A connection on which no byte arrived from either side for
``idle_timeout`` seconds is aborted. Activity is stamped on every read (:func:`touch`) through a context
variable, so the byte paths need no extra argument; one sweeper task per gateway checks the stamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Admission", "ConnectionLimits", "current", "touch"]

_CURRENT: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("clawfleet_gateway_conn", default=None)
_monotonic = time.monotonic


class Admission:
    """One admitted client connection: its task, its client transport and when a byte last arrived."""

    __slots__ = ("idle", "last", "task", "transport")

    def __init__(self, task: asyncio.Task | None, transport: asyncio.BaseTransport | None) -> None:
        self.task, self.transport = task, transport
        self.last = _monotonic()
        self.idle = False

    def touch(self) -> None:
        self.last = _monotonic()


def current() -> Admission | None:
    return _CURRENT.get()


def touch() -> None:
    """Stamp activity on the connection the running task serves (a no-op outside one)."""
    adm = _CURRENT.get()
    if adm is not None:
        adm.last = _monotonic()


class ConnectionLimits:
    def __init__(self, max_connections: int, idle_timeout: float, log: Callable[[dict[str, Any]], None]) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.log = log
        self.open: set[Admission] = set()
        self._sweeper: asyncio.Task | None = None
        self._refused = 0
        self._last_refusal_log = 0.0

    def admit(self, task: asyncio.Task | None, transport: asyncio.BaseTransport | None) -> Admission | None:
        """The connection's admission (bound to the running context), or None when the sandbox is at its cap."""
        if len(self.open) >= self.max_connections:
            self._refused += 1
            now = _monotonic()
            if now - self._last_refusal_log >= 1.0:
                self.log({"event": "connection_refused", "action": "deny", "open": len(self.open),
                          "max_connections": self.max_connections, "refused": self._refused,
                          "reason": f"the sandbox already holds {len(self.open)} gateway connections"})  # fmt: skip
                self._last_refusal_log, self._refused = now, 0
            return None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())
        adm = Admission(task, transport)
        self.open.add(adm)
        _CURRENT.set(adm)
        return adm

    def release(self, adm: Admission) -> None:
        self.open.discard(adm)

    async def _sweep(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.05), 5.0)
        while self.open:
            await asyncio.sleep(interval)
            deadline = _monotonic() - self.idle_timeout
            for adm in [a for a in self.open if a.last < deadline and not a.idle]:
                adm.idle = True
                # Abort first: a task blocked writing to a client that stopped reading wakes up with an error,
                # so nothing can keep the connection's descriptors once it is idle.
                if adm.transport is not None:
                    with contextlib.suppress(Exception):
                        adm.transport.abort()  # type: ignore[attr-defined]
                if adm.task is not None:
                    adm.task.cancel()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
