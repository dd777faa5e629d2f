"""Per-sandbox and per-host limits: requests and tokens per minute, spending per day and month.

A request is admitted only when neither its sandbox nor the host is at a limit; it is counted as one
request when admitted, and its tokens and cost when it ends (so the request that crosses a token or
spending limit completes, and the next one gets 429). Windows are fixed UTC minutes, days and months;
``Retry-After`` is the time until the window that is full ends.
"""

from __future__ import annotations

import calendar
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from clawfleet.router.limits_config import LimitsConfig, LimitSet
from clawfleet.router.usage_store import UsageStore


@dataclass(frozen=True)
class Refusal:
    limit: str  # e.g. "sandbox.tokens_per_min"
    subject: str  # "sandbox 'alpha'" or "the host"
    used: float
    allowed: float
    retry_after: int

    def message(self) -> str:
        if "usd" in self.limit:
            amounts = f"{self.used:.4f} of {self.allowed:g} USD"
        else:
            amounts = f"{int(self.used)} of {int(self.allowed)}"
        kind = self.limit.split(".", 1)[1]
        return f"{self.subject} is over its {kind} limit ({amounts} used); retry after {self.retry_after} s"


def _windows(now: float) -> tuple[str, str, str, int, int, int]:
    """Window keys (minute, day, month) and the seconds until each ends."""
    return _windows_at(math.floor(now))


@functools.lru_cache(maxsize=4)
def _windows_at(second: int) -> tuple[str, str, str, int, int, int]:
    """``_windows`` for a whole second: every window ends on a whole second, so within one second the keys and
    ``ceil(end - now)`` are the same for every ``now`` (ceil(E - s - f) = E - s for 0 <= f < 1). A request asks
    for them 4-6 times (admit, spending check, record), so they are worked out once per second."""
    now = second
    t = time.gmtime(now)
    minute = int(now // 60)
    day_end = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    ny, nm = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    month_end = calendar.timegm((ny, nm, 1, 0, 0, 0))
    return (
        f"m{minute}",
        f"d{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}",
        f"M{t.tm_year:04d}-{t.tm_mon:02d}",
        max(1, math.ceil((minute + 1) * 60 - now)),
        max(1, math.ceil(day_end - now)),
        max(1, math.ceil(month_end - now)),
    )


class Limiter:
    def __init__(self, config: LimitsConfig, store: UsageStore, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._last_minute = ""

    def _check(
        self, scope: str, subject: str, prefix: str, lim: LimitSet, now: float, *, spend: bool
    ) -> Refusal | None:
        m, d, mo, m_left, d_left, mo_left = _windows(now)
        if spend:
            checks = (
                ("usd_per_day", lim.usd_per_day, self.store.get(scope, d)[2], d_left),
                ("usd_per_month", lim.usd_per_month, self.store.get(scope, mo)[2], mo_left),
            )
        else:
            minute = self.store.get(scope, m)
            checks = (
                ("requests_per_min", lim.requests_per_min, minute[0], m_left),
                ("tokens_per_min", lim.tokens_per_min, minute[1], m_left),
            )
        for name, allowed, used, left in checks:
            if allowed is not None and used >= allowed:
                return Refusal(f"{prefix}.{name}", subject, used, allowed, left)
        return None

    def _first_refusal(self, sandbox: str, now: float, *, spend: bool) -> Refusal | None:
        lim = self.config.for_sandbox(sandbox)
        refusal = self._check(f"sandbox:{sandbox}", f"sandbox {sandbox!r}", "sandbox", lim, now, spend=spend)
        return refusal or self._check("host", "the host", "host", self.config.host, now, spend=spend)

    def admit(self, sandbox: str) -> Refusal | None:
        """Rates (requests and tokens per minute): None and the request counted, or the first limit hit."""
        now = self._clock()
        refusal = self._first_refusal(sandbox, now, spend=False)
        if refusal is not None:
            return refusal
        m = _windows(now)[0]
        if m != self._last_minute:
            self.store.prune({m})
            self._last_minute = m
        self.store.add([(f"sandbox:{sandbox}", m), ("host", m)], requests=1)
        return None

    def check_spend(self, sandbox: str) -> Refusal | None:
        """Spending budgets, checked only for requests routed to a cloud provider (local calls cost nothing,
        so a sandbox out of money still reaches its local model)."""
        return self._first_refusal(sandbox, self._clock(), spend=True)

    def record(self, sandbox: str, tokens: int, cost: float) -> None:
        if tokens <= 0 and cost <= 0:
            return
        m, d, mo = _windows(self._clock())[:3]
        rows = [(scope, w) for scope in (f"sandbox:{sandbox}", "host") for w in (m, d, mo)]
        self.store.add(rows, tokens=tokens, cost=cost)
