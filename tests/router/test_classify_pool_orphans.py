"""The classify pool's worker processes end with the router, however it ends (SIGKILL runs no cleanup), and
serve while it lives, also after the thread that spawned them has ended."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from clawfleet.router import classify_pool
from clawfleet.router.config import ClassifierOptions

from .conftest import router_config_dict, serve_router, write_yaml
from .fake_upstreams import free_port

pytestmark = pytest.mark.usefixtures("clean_fakes")

# well above classify_pool.INLINE_BELOW: classified in the worker processes, not on a thread
FILLER = "The quarterly planning notes describe the migration of the build farm to the new racks. " * 400
assert len(FILLER) > 2 * classify_pool.INLINE_BELOW


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a process, or None once it is gone (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": the comm may hold spaces
    return (None if fields[0] == "Z" else (int(fields[1]), fields[0])) if fields else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _classify_workers(parent: int) -> list[int]:
    """The multiprocessing-spawned worker processes whose parent is ``parent`` (not its resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] == parent and "--multiprocessing-fork" in _cmdline(int(entry)):
                found.append(int(entry))
    return found


def _chat(url: str, text: str) -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "user", "content": text}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_classify_workers_die_with_a_sigkilled_router(fakes, tmp_path, clean_fakes):
    cfg = router_config_dict(fakes, tmp_path)
    port = free_port()
    cfg.update(listen={"host": "127.0.0.1", "port": port}, metrics_listen={"host": "127.0.0.1", "port": free_port()})
    # a loaded host may take seconds to spawn a worker and build its classifier: the default budget would turn
    # the first large request into an unscanned one (routed local), which is not what this test is about
    cfg["classifier"] = {"time_budget_ms": 60_000}
    path = tmp_path / "router.yaml"
    write_yaml(path, cfg)
    proc = serve_router(path, port, stderr=subprocess.DEVNULL, timeout=30)
    url = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        # allowed action first: while the router lives, the workers classify large requests correctly. Two at
        # once, so that the pool spawns both of its workers (it spawns one per request that finds none idle)
        texts = [FILLER + " Customer CUST-123456 asked for a refund.", FILLER]
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda t=t: results.append(_chat(url, t))) for t in texts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert [r.status_code for r in results] == [200, 200]
        local = [r.json for r in clean_fakes["local"].received]
        cloud = [r.json for r in clean_fakes["cloud"].received]
        assert len(local) == 1 and "CUST-123456" in local[0]["messages"][-1]["content"]  # the sensitive one
        assert len(cloud) == 1 and "CUST-" not in cloud[0]["messages"][-1]["content"]  # the clean one

        workers = _classify_workers(proc.pid)
        assert workers, "the large requests started no classify worker"
        assert all(_stat(w) is not None for w in workers)

        # the attack: the router dies without running any cleanup
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait(lambda: all(_stat(w) is None for w in workers), 10), [
            (w, _stat(w), _cmdline(w)) for w in workers if _stat(w) is not None
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for w in workers:  # a failed run must not leave them behind either
            if _stat(w) is not None and "--multiprocessing-fork" in _cmdline(w):
                os.kill(w, signal.SIGKILL)


def test_workers_outlive_the_thread_that_spawned_them():
    """The lifeline is the router process, not a thread: a pool first used from a thread that has since ended
    (as PR_SET_PDEATHSIG would have it) still has its worker, and the worker still classifies."""
    options = ClassifierOptions()
    pool = classify_pool.ClassifyPool(classify_pool.build_classifier(options, ()), options, (), workers=1)
    text = FILLER + " Contact alice@example.com about it."
    try:
        first: dict[str, object] = {}

        def in_a_thread() -> None:
            first["findings"] = asyncio.run(pool.classify([text], budget=60))

        t = threading.Thread(target=in_a_thread)
        t.start()
        t.join(90)
        assert not t.is_alive() and "findings" in first
        procs = pool._procs._processes  # type: ignore[union-attr]  # the executor's own record of its workers
        [pid] = list(procs)
        time.sleep(0.5)  # a PDEATHSIG tied to the ended thread would have fired by now
        assert _stat(pid) is not None
        [findings] = asyncio.run(pool.classify([text], budget=60))
        assert findings == first["findings"][0]  # type: ignore[index]
        assert any(f.type == "email" for f in findings), findings
        assert list(pool._procs._processes) == [pid]  # type: ignore[union-attr]  # the same worker served
    finally:
        pool.close()
