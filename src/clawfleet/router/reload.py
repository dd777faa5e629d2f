"""Hot reload of the router config: SIGHUP, and a watch on the file (stat + digest every 0.5 s).

A change is live within a second of the file landing, whether it was edited in place or replaced by
rename. A config that does not load keeps the running one (the error, with file:line, goes to the log);
requests in flight, streams included, finish on the config they started with (``Generation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clawfleet.router.app import RouterApp

POLL_S = 0.5


class ConfigWatcher:
    def __init__(self, app: RouterApp, interval: float = POLL_S) -> None:
        self.app = app
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._sig = self._stat()
        self._hup = False

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.app.config.source)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # signal handlers can only be set from the main thread (the served process); tests serve on a thread
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self.app.reload("sighup"))
            self._hup = True
        if self.app.config.watch_config:
            self._task = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            sig = self._stat()
            if sig is not None and sig != self._sig:
                self._sig = sig
                # the digest decides: a touch without a change reloads nothing
                self.app.reload("file_changed")

    async def stop(self) -> None:
        if self._hup:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
