"""Where classification runs: small requests on a thread, large ones in worker processes.

The classifier is pure Python and regular expressions, which hold the interpreter lock while they match; on a
thread, a 100 KB request still takes the event loop's turns, and `/healthz` and every other client's stream wait
(measured by benchmarks/bench_router_isolation.py). So texts above ``inline_below`` characters go to a small pool
of worker processes (spawned, each with its own classifier built from the same options), and the loop only waits
on a future. Small texts, the common case, stay on a thread: a process round trip would cost them more than the
classification itself. Every call has the caller's time budget; past it the caller treats the request as
unscanned.

The workers must not outlive the router. A SIGKILLed router runs no ``close()``, and each worker holds the
write end of the executor's own call queue (the queue is pickled whole into every worker), so the EOF that would
end them never comes: they lived on under PID 1. Each worker therefore watches a pipe of its own whose write end
only the router holds: the kernel closes it when the router dies, however it dies, and the worker exits (at
once when idle; mid-classification at the classifier's next release of the interpreter lock, linear-time bounded).
Chosen over ``PR_SET_PDEATHSIG``: that fires when the *thread* that spawned the worker ends, and the pool spawns
from whichever thread submits (the event loop's; in tests and embedders a thread that may end while the router
lives on), and the pipe also covers a router that died before the worker started watching (EOF at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from clawfleet.router.classifier import Classifier, CustomClass, Finding
from clawfleet.router.config import ClassifierOptions

INLINE_BELOW = 16 * 1024  # characters of text to classify, all texts of one call together

_worker_classifier: Classifier | None = None


def build_classifier(options: ClassifierOptions, custom: Sequence[CustomClass]) -> Classifier:
    extra: list[Callable[[str], Any]] = []
    if "presidio" in options.engines:
        from clawfleet.router.classifier.presidio_engine import PresidioEngine

        extra.append(PresidioEngine())
    return Classifier(min_score=options.min_score, disabled=options.disable, custom=custom, extra_engines=extra)


def _exit_when_router_dies(router_alive: Connection) -> None:
    """Block until the router's end of the pipe closes (it never writes), then end this worker at once."""
    with contextlib.suppress(EOFError, OSError):
        router_alive.recv_bytes()
    # os._exit, not sys.exit: no cleanup that could wait on the dead router's queues
    os._exit(0)


def _init_worker(router_alive: Connection, options: ClassifierOptions, custom: Sequence[CustomClass]) -> None:
    global _worker_classifier
    # first, before the classifier (Presidio takes seconds to load): a daemon thread, so it never holds the
    # worker's own exit; blocked in a read, it does not take the interpreter lock from the classification
    threading.Thread(target=_exit_when_router_dies, args=(router_alive,), name="router-watch", daemon=True).start()
    _worker_classifier = build_classifier(options, custom)


def _classify_in_worker(texts: Sequence[str]) -> list[list[Finding]]:
    assert _worker_classifier is not None, "worker initialiser did not run"
    return [_worker_classifier.classify(t) for t in texts]


def classify_all(classify: Callable[[str], list[Finding]], texts: Sequence[str]) -> list[list[Finding]]:
    return [classify(t) for t in texts]


class ClassifyPool:
    """Classify texts within a time budget, off the event loop (threads for small texts, processes for large)."""

    def __init__(
        self,
        classifier: Classifier,
        options: ClassifierOptions,
        custom: Sequence[CustomClass],
        *,
        workers: int | None = None,
        inline_below: int = INLINE_BELOW,
    ) -> None:
        self.classifier = classifier  # the in-process one (also used for small texts)
        self.inline_below = inline_below
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="classify")
        self._options, self._custom = options, tuple(custom)
        self._workers = workers or min(2, os.cpu_count() or 1)
        self._procs: ProcessPoolExecutor | None = None  # started on the first large request
        # the workers' lifeline (module docstring): the read end goes to each worker; the write end stays here,
        # never written, and is not inherited by anything (os.pipe is close-on-exec, spawn passes only the
        # descriptors it pickles), so it closes when the router dies or this pool is collected
        self._router_alive: tuple[Connection, Connection] | None = None

    def _processes(self) -> Executor:
        if self._procs is None:
            # spawn, not fork: the router runs threads (the event loop's executor, uvicorn), and a forked child
            # would inherit their locks mid-state
            ctx = multiprocessing.get_context("spawn")
            self._router_alive = ctx.Pipe(duplex=False)
            self._procs = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._router_alive[0], self._options, self._custom),
            )
        return self._procs

    async def run(self, fn: Callable[..., Any], *args: Any, budget: float) -> Any:
        """Run a preparation step (walking a body) on a thread within ``budget`` seconds."""
        future = asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        return await asyncio.wait_for(future, budget)

    def _inline(self, texts: Sequence[str]) -> bool:
        """Whether these texts are classified on a thread rather than in the worker processes."""
        return sum(len(t) for t in texts) < self.inline_below

    async def prepare_and_classify(self, prepare: Callable[..., Any], *args: Any,
                                   budget: float) -> tuple[Any, list[list[Finding]]]:  # fmt: skip
        """``prepare(*args)`` (an object with ``texts()``, e.g. a walked request body) and the findings per text,
        within ``budget`` seconds in all: small texts are classified on the same thread as the preparation (one
        hop), large ones go on to the worker processes."""
        deadline = time.monotonic() + budget

        def step() -> tuple[Any, list[list[Finding]] | None]:
            prepared = prepare(*args)
            texts = prepared.texts()
            return prepared, (classify_all(self.classifier.classify, texts) if self._inline(texts) else None)

        prepared, results = await self.run(step, budget=budget)
        if results is None:
            results = await self.classify(prepared.texts(), budget=max(0.0, deadline - time.monotonic()))
        return prepared, results

    async def classify(self, texts: Sequence[str], *, budget: float) -> list[list[Finding]]:
        """Findings per text; raises TimeoutError past ``budget`` seconds."""
        loop = asyncio.get_running_loop()
        if self._inline(texts):
            future = loop.run_in_executor(self._threads, classify_all, self.classifier.classify, list(texts))
        else:
            future = loop.run_in_executor(self._processes(), _classify_in_worker, list(texts))
        result: list[list[Finding]] = await asyncio.wait_for(future, budget)
        return result

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._procs is not None:
            # the workers end on the shutdown's own sentinels; the lifeline's write end is left to close with
            # this object (or the process): closed here, a worker still finishing a timed-out task would die
            # mid-write of its result and could leave the executor's reader waiting for the rest
            self._procs.shutdown(wait=False, cancel_futures=True)


__all__ = ["INLINE_BELOW", "ClassifyPool", "build_classifier", "classify_all"]
