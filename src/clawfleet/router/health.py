"""Health checks of deployments: ``GET {base_url}/models`` every ``health_interval_s`` per provider.

A replica that fails its check (connect error, timeout, 5xx) leaves the rotation; one that answers comes
back at once, even inside a cooldown that a failed request started. Cloud providers are checked only when
their config asks for it (``health_interval_s``), so no traffic goes to a cloud API unasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx

from clawfleet.router.providers import Replica, Upstreams

TICK_S = 0.1
PROBE_TIMEOUT_S = 2.0


async def probe(replica: Replica) -> bool:
    try:
        resp = await replica.client.get("/models", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return resp.status_code < 500


class HealthChecker:
    def __init__(self, upstreams: Callable[[], Upstreams]) -> None:
        self._upstreams = upstreams  # the current generation's, looked up on each tick
        self._due: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            checks = []
            for up in self._upstreams().values():
                interval = up.provider.health_interval_s
                if interval <= 0 or self._due.get(id(up), 0.0) > now:
                    continue
                self._due[id(up)] = now + interval
                checks += [self._check(r, max(interval, up.provider.cooldown_s)) for r in up.replicas]
            if checks:
                await asyncio.gather(*checks)

    @staticmethod
    async def _check(replica: Replica, hold_s: float) -> None:
        if await probe(replica):
            replica.down_until = 0.0
        else:
            replica.down_until = max(replica.down_until, time.monotonic() + hold_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
