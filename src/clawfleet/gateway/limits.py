"""Per-sandbox connection cap and idle timeout.

Every sandbox's proxy runs in the daemon's one process: without a cap a sandbox could hold gateway file
descriptors up to its own RLIMIT_NOFILE (each client connection costs the gateway one fd, two with its upstream)
and starve the others. Over ``max_connections`` a new connection gets ``503`` and is closed, without being
identified, and is logged in aggregate (one ``connection_refused`` line per second at most, with the number
refused since the last one). Refusals are rate-limited per sandbox: a client at its cap that reconnects at once
would otherwise turn into a connect/refuse spin that keeps the daemon's one loop busy for every sandbox. The first
``REFUSAL_BURST`` refusals per second are answered at once; later ones wait ``REFUSAL_DELAY`` before their 503
(a sleeping task costs no CPU, and a client that waits for its answer reconnects at that pace), and beyond
``MAX_HELD_REFUSALS`` waiting at once a refused connection is reset without an answer.

A connection on which no byte arrived from either side for ``idle_timeout`` seconds is aborted. Activity is
stamped on every read (:func:`touch`) through a context variable, so the byte paths need no extra argument; one
sweeper task per gateway checks the stamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_HELD_REFUSALS", "REFUSAL_BURST", "REFUSAL_DELAY", "Admission", "ConnectionLimits", "current", "touch"]

REFUSAL_BURST = 16  # refusals per second answered at once (the token bucket's size and refill rate)
REFUSAL_DELAY = 0.5  # seconds a refusal beyond the burst waits before its 503
MAX_HELD_REFUSALS = 64  # refused connections waiting at once; beyond this they are reset (one fd each)

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
        self._refused = 0  # refused since the last connection_refused line
        self._last_refusal_log = -1e9
        self._flush: asyncio.TimerHandle | None = None
        self._tokens = float(REFUSAL_BURST)
        self._tokens_at = _monotonic()
        self.held_refusals = 0
        # totals since start (tests and benchmarks read them)
        self.refused_total = self.refusals_delayed = self.refusals_reset = 0

    def admit(self, task: asyncio.Task | None, transport: asyncio.BaseTransport | None) -> Admission | None:
        """The connection's admission (bound to the running context), or None when the sandbox is at its cap
        (then answer it with :meth:`refuse`)."""
        if len(self.open) >= self.max_connections:
            return None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())
        adm = Admission(task, transport)
        self.open.add(adm)
        _CURRENT.set(adm)
        return adm

    async def refuse(self, transport: asyncio.BaseTransport, answer: bytes) -> None:
        """Answer a connection refused at the cap: at once, after :data:`REFUSAL_DELAY`, or by a reset."""
        self.refused_total += 1
        self._refused += 1
        self._log_refusals()
        now = _monotonic()
        self._tokens = min(float(REFUSAL_BURST), self._tokens + (now - self._tokens_at) * REFUSAL_BURST)
        self._tokens_at = now
        try:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
            elif self.held_refusals >= MAX_HELD_REFUSALS:
                self.refusals_reset += 1
                transport.abort()  # type: ignore[attr-defined]
                return
            else:
                self.refusals_delayed += 1
                self.held_refusals += 1
                try:
                    await asyncio.sleep(REFUSAL_DELAY)
                finally:
                    self.held_refusals -= 1
            transport.write(answer)  # type: ignore[attr-defined]
            transport.close()
        except asyncio.CancelledError:
            # the gateway is closing: returning normally keeps asyncio from printing a traceback
            transport.abort()  # type: ignore[attr-defined]

    def _log_refusals(self) -> None:
        """One connection_refused line per second at most, with the count since the previous line; a count
        left over when the refusals stop is written one second after the last line."""
        now = _monotonic()
        if now - self._last_refusal_log >= 1.0:
            self._write_refusals(now)
        elif self._flush is None:
            delay = 1.0 - (now - self._last_refusal_log)
            self._flush = asyncio.get_running_loop().call_later(delay, lambda: self._write_refusals(_monotonic()))

    def _write_refusals(self, now: float) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._refused:
            return
        self.log({"event": "connection_refused", "action": "deny", "open": len(self.open),
                  "max_connections": self.max_connections, "refused": self._refused,
                  "reason": f"the sandbox already holds {len(self.open)} gateway connections"})  # fmt: skip
        self._last_refusal_log, self._refused = now, 0

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
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._sweeper is not None:
            self._sweeper.cancel()
