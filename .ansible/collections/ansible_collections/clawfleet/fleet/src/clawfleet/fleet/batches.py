"""Rollout batches and the failure threshold, kept free of any transport so they can be tested on their own.

``--serial 1,10%,50%,100%``: batch sizes in order, each a count or a percentage of all hosts (at least 1,
rounded down, as Ansible's ``serial``); the last size repeats until every host is in a batch. ``--max-fail N``
(or ``N%`` of all hosts): after a batch, when more hosts than that have failed so far, no further batch starts,
so the hosts left are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FAILED_RESULTS", "OK_RESULTS", "parse_max_fail", "parse_serial", "plan_batches", "roll_out"]

OK_RESULTS = frozenset({"applied", "unchanged", "would_apply"})
FAILED_RESULTS = frozenset({"rolled_back", "failed", "invalid", "error"})


def _size(text: str, total: int, what: str) -> int:
    text = text.strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, int(total * pct / 100))
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a count >= 1 or a percentage in (0, 100]") from None


def parse_serial(spec: str, total: int) -> list[int]:
    """Batch sizes for ``total`` hosts (``'1,10%,100%'`` -> ``[1, 2, 20]`` for 20)."""
    if not spec.strip():
        raise ValueError("--serial: empty")
    return [_size(part, total, "--serial") for part in spec.split(",")]


def parse_max_fail(spec: str, total: int) -> int:
    """Failed hosts tolerated before the rollout stops (``'0'``, ``'2'``, ``'10%'``)."""
    spec = spec.strip()
    if spec.endswith("%"):
        try:
            pct = float(spec[:-1])
        except ValueError:
            raise ValueError(f"--max-fail: {spec!r} is not a count or a percentage") from None
        return int(total * pct / 100)
    try:
        n = int(spec)
    except ValueError:
        raise ValueError(f"--max-fail: {spec!r} is not a count or a percentage") from None
    if n < 0:
        raise ValueError("--max-fail: must be >= 0")
    return n


def plan_batches(hosts: Sequence[str], sizes: Sequence[int]) -> list[list[str]]:
    batches: list[list[str]] = []
    i = 0
    step = 0
    while i < len(hosts):
        size = sizes[min(step, len(sizes) - 1)]
        batches.append(list(hosts[i : i + size]))
        i += size
        step += 1
    return batches


def roll_out(
    batches: Sequence[Sequence[str]],
    run_batch: Callable[[list[str]], dict[str, dict[str, Any]]],
    max_fail: int,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Run ``run_batch`` batch by batch; ``(results in host order, stopped early)``. Hosts of batches that never
    start get ``{"result": "skipped"}`` and are not passed to ``run_batch``; ``stopped`` means some were."""
    results: list[dict[str, Any]] = []
    failed = 0
    stopped = False
    for number, batch in enumerate(batches, 1):
        if stopped:
            for host in batch:
                res = {"target": host, "batch": number, "result": "skipped",
                       "error": "not started: an earlier batch failed"}  # fmt: skip
                results.append(res)
                if on_result is not None:
                    on_result(number, res)
            continue
        got = run_batch(list(batch))
        for host in batch:
            res = dict(got.get(host) or {"result": "error", "error": "no result from host"})
            res.setdefault("target", host)
            res["batch"] = number
            if res.get("result") not in OK_RESULTS:
                failed += 1
            results.append(res)
            if on_result is not None:
                on_result(number, res)
        if failed > max_fail and number < len(batches):
            stopped = True
    return results, stopped
