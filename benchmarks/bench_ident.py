"""Caller identification cost per connection, with and without fd load in the sandbox's namespace.

    sudo .venv/bin/python benchmarks/bench_ident.py [-n 100] [--procs 200] [--fds 1000]

A fresh network namespace (``unshare -n``) stands in for a sandbox: its first process forks PROCS children
that each hold FDS open fds and sleep, then opens connections on command to a listener the benchmark made
inside that namespace (as the gateway does). Each accepted connection is identified with
:class:`clawfleet.gateway.ident.Identifier` and timed. Cells, all in this one run:

* ``idle``: no extra processes (the peer every ratio is taken against);
* ``procs x 0 fds``: the extra processes, without extra fds;
* ``procs x fds``: the fd load, fd tables cached while their tasks do not run (the gateway's setting);
* ``procs x fds, no cache``: every table read per connection (what each connection paid before).

Then the event loop's lateness (a 1 ms ticker) while the loaded namespace's connections are identified,
once with ``identify_async`` (the identifier's own thread: what the gateway does) and once calling
``identify`` on the loop (before), both without the cache (a busy sandbox whose tasks all run).
Root only (network namespaces). Ratios matter, not absolute times: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from clawfleet.gateway.ident import Identifier
from clawfleet.gateway.listen import listen_in_netns

HELPER = r"""
import os, resource, signal, socket, subprocess, sys
procs, fds, port = map(int, sys.argv[1:4])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
resource.setrlimit(resource.RLIMIT_NOFILE, (fds + 64, fds + 64))
r, w = os.pipe()
for _ in range(procs):
    if os.fork() == 0:
        keep = [os.open("/dev/null", os.O_RDONLY) for _ in range(fds)]
        os.write(w, b"x")
        signal.pause()
        os._exit(0)
got = 0
while got < procs:
    got += len(os.read(r, procs - got))
print("ready", flush=True)
held = None
for line in sys.stdin:
    if held is not None:
        held.close()
    held = socket.create_connection(("127.0.0.1", port))
    print("ok", flush=True)
"""

PORT = 3128


class Namespace:
    def __init__(self, procs: int, fds: int) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-n", "--", sys.executable, "-c", HELPER, str(procs), str(fds), str(PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"
        self.listener = listen_in_netns(self.proc.pid, PORT)

    def connection(self):
        self.proc.stdin.write("connect\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"
        conn, peer = self.listener.accept()
        return conn, peer[:2], conn.getsockname()[:2]

    def close(self) -> None:
        self.listener.close()
        os.killpg(self.proc.pid, 9)
        self.proc.wait()


def timed(ns: Namespace, identifier: Identifier, n: int) -> list[float]:
    times = []
    for _ in range(n):
        conn, peer, local = ns.connection()
        t0 = time.perf_counter()
        caller = identifier.identify(peer, local)
        times.append(time.perf_counter() - t0)
        assert caller.pid == ns.proc.pid, caller
        conn.close()
    return times


async def loop_lateness(ns: Namespace, identifier: Identifier, n: int, off_loop: bool) -> float:
    """Largest lateness (ms) of a 1 ms ticker while n connections are identified."""
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t0 - 0.001)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    for _ in range(n):
        conn, peer, local = await loop.run_in_executor(None, ns.connection)
        if off_loop:
            await identifier.identify_async(peer, local)
        else:
            identifier.identify(peer, local)
        conn.close()
        await asyncio.sleep(0)
    stop = True
    await task
    return worst * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100, help="connections per cell")
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--fds", type=int, default=1000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_ident: needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for label, procs, fds, cache in (
        ("idle", 0, 0, True),
        (f"{args.procs} procs x 0 fds", args.procs, 0, True),
        (f"{args.procs} procs x {args.fds} fds", args.procs, args.fds, True),
        (f"{args.procs} procs x {args.fds} fds, no cache", args.procs, args.fds, False),
    ):
        ns = Namespace(procs, fds)
        try:
            identifier = Identifier(netns_pid=ns.proc.pid, cache_tables=cache)
            times = timed(ns, identifier, args.n)
            rows.append((label, statistics.median(times), sorted(times)[int(len(times) * 0.9)],
                         identifier.tables.reads / args.n))  # fmt: skip
        finally:
            ns.close()
    base = rows[0][1]
    print(f"identification per connection, {args.n} connections per cell")
    print(f"{'cell':<34} {'median ms':>10} {'p90 ms':>8} {'tables/conn':>12} {'x idle':>7}")
    for label, med, p90, reads in rows:
        print(f"{label:<34} {med * 1000:>10.2f} {p90 * 1000:>8.2f} {reads:>12.1f} {med / base:>7.1f}")
    ns = Namespace(args.procs, args.fds)
    try:
        n = max(5, args.n // 10)
        off = asyncio.run(loop_lateness(ns, Identifier(netns_pid=ns.proc.pid, cache_tables=False), n, True))
        on = asyncio.run(loop_lateness(ns, Identifier(netns_pid=ns.proc.pid, cache_tables=False), n, False))
    finally:
        ns.close()
    print(f"event-loop lateness (1 ms ticker, worst) while {n} loaded, uncached connections are identified:")
    print(f"  identify_async (own thread): {off:.1f} ms   identify on the loop (before): {on:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
