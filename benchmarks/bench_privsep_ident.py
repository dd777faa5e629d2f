"""What privilege separation adds to each connection's caller identification (issue 20 item 5).

    sudo .venv/bin/python benchmarks/bench_privsep_ident.py [-n 300]

Before: the proxy's own process identifies the caller (``Identifier.identify_async(peer, local)``: the
identifier's thread in the daemon, root).
After: the unprivileged parser hands the accepted socket to the privileged daemon over a ``SOCK_SEQPACKET``
socketpair (``SCM_RIGHTS``); the daemon proves it is a connection of the sandbox's listener in the sandbox's
namespace (fstat, getsockname/getpeername, one sock_diag lookup of the server side) and identifies it
(:class:`clawfleet.gateway.privsep.IdentifyService`), then answers in JSON. Here a child process plays the daemon
(its own event loop, as in ``gateway serve``) and this process the parser. A fresh namespace (``unshare -n``) stands
in for the sandbox: one process there connects once per round to a listener made inside it. Each round identifies
the same new connection both ways (order alternating). Prints the median and p90 per connection of each way, the
ratio and the added microseconds. Root only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from clawfleet.gateway.ident import Identifier
from clawfleet.gateway.listen import listen_in_netns
from clawfleet.gateway.privsep import IdentifyClient, IdentifyService

CLIENT = """
from clawfleet.sandbox.namespaces import loopback_up
import socket, sys
loopback_up()
print("up", flush=True)
held = []
for line in sys.stdin:
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    print("ok", flush=True)
"""


def _daemon(chan: socket.socket, ns_pid: int, listen: tuple[str, int]) -> None:
    async def main() -> None:
        service = IdentifyService(chan, Identifier(netns_pid=ns_pid), listen)
        await service.serve()

    asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="connections identified each way")
    ap.add_argument("--port", type=int, default=3128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("root only (network namespaces)", file=sys.stderr)
        return 2
    sandbox = subprocess.Popen(["unshare", "-n", sys.executable, "-c", CLIENT, str(args.port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert sandbox.stdin is not None and sandbox.stdout is not None
    sandbox.stdout.readline()
    listener = listen_in_netns(sandbox.pid, args.port)
    listen = ("127.0.0.1", args.port)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    daemon = os.fork()  # before this process starts any thread
    if daemon == 0:
        theirs.close()
        listener.close()
        try:
            _daemon(ours, sandbox.pid, listen)
        finally:
            os._exit(0)
    ours.close()
    direct = Identifier(netns_pid=sandbox.pid)
    before: list[float] = []
    after: list[float] = []

    async def rounds() -> None:
        client = IdentifyClient(theirs)
        reader = asyncio.ensure_future(client.read_answers())
        for i in range(args.n):
            sandbox.stdin.write("\n")
            sandbox.stdin.flush()
            sandbox.stdout.readline()
            conn, _ = listener.accept()
            peer, local = conn.getpeername()[:2], conn.getsockname()[:2]
            for way in (0, 1) if i % 2 else (1, 0):
                t0 = time.perf_counter()
                if way == 0:
                    caller = await direct.identify_async(peer, local)  # as the proxy did: the identifier's thread
                    before.append(time.perf_counter() - t0)
                else:
                    caller = await client.identify(conn.fileno())
                    after.append(time.perf_counter() - t0)
                assert caller.pid == sandbox.pid, caller
            conn.close()
        reader.cancel()

    try:
        asyncio.run(rounds())
    finally:
        theirs.close()
        os.waitpid(daemon, 0)
        sandbox.kill()
        sandbox.wait()

    def cell(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {"median_us": round(statistics.median(xs) * 1e6, 1), "p90_us": round(xs[int(len(xs) * 0.9)] * 1e6, 1)}

    result = {"n": args.n, "in_process": cell(before), "fd_passing": cell(after)}
    result["ratio"] = round(result["fd_passing"]["median_us"] / result["in_process"]["median_us"], 2)
    result["added_us"] = round(result["fd_passing"]["median_us"] - result["in_process"]["median_us"], 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'way':<34} {'median':>10} {'p90':>10}")
        for name, key in (
            ("in the proxy's process (before)", "in_process"),
            ("handed to the daemon (after)", "fd_passing"),
        ):
            print(f"{name:<34} {result[key]['median_us']:>8} us {result[key]['p90_us']:>8} us")
        print(f"ratio after/before {result['ratio']}x, added {result['added_us']} us per connection (n={args.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
