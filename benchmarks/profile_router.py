"""Where the router's CPU goes per request: the router in this process (uvloop, httptools, as `router serve`),
the fake upstream and a keep-alive client as separate processes, one request at a time.

    .venv/bin/python benchmarks/profile_router.py [--requests 1000] [--stream] [--profile out.prof] [--src DIR]

Prints wall time and this process's CPU (user, system) per request, the classify thread included; with
``--profile``, cProfile's statistics of the event-loop thread go to that file (read them with ``python -m pstats``;
cProfile inflates call-heavy code, so take its split as a guide and the CPU figure without it as the measure).
``--src`` runs another checkout's router (e.g. main's ``src``): alternate the two for a before/after on one host.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from router_bench_config import free_port, router_config

ROOT = Path(__file__).resolve().parent.parent
CHUNKS = 20  # as benchmarks/bench_router.py


CLIENT = """
import json, sys, time
import httpx
sys.path.insert(0, {bench!r})
from bench_router import clean_text
message = {{"role": "user", "content": clean_text(2048)}}
body = json.dumps({{"model": "default", "stream": {stream}, "messages": [message]}})
url = "http://127.0.0.1:{port}"
for _ in range(200):
    try:
        httpx.get(url + "/healthz")
        break
    except httpx.HTTPError:
        time.sleep(0.05)
with httpx.Client() as client:
    for _ in range({n}):
        with client.stream("POST", url + "/v1/chat/completions", content=body.encode()) as resp:
            for _ in resp.iter_raw():
                pass
            if resp.status_code != 200:
                raise SystemExit(f"HTTP {{resp.status_code}}")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--stream", action="store_true", help=f"streamed answers ({CHUNKS} SSE chunks)")
    ap.add_argument("--profile", type=Path, help="write cProfile statistics of the event-loop thread here")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the router's src/ (another checkout's: before)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src.resolve()))

    import uvicorn
    import uvloop

    from clawfleet.router.app import RouterApp
    from clawfleet.router.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="clawfleet-profile-"))
    up_port, port = free_port(), free_port()
    config = router_config(tmp, up_port, port)  # as benchmarks/bench_router.py
    (tmp / "router.yaml").write_text(json.dumps(config))  # JSON is YAML
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "router" / "fake_upstreams.py"), "--port", str(up_port),
         "--fixed-chunks", str(CHUNKS)],
    )  # fmt: skip
    app = RouterApp(load_config(str(tmp / "router.yaml")))
    server = uvicorn.Server(
        uvicorn.Config(app.asgi, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="none",
                       http="httptools", lifespan="on")
    )  # fmt: skip
    client = CLIENT.format(bench=str(Path(__file__).resolve().parent), stream=args.stream, port=port, n=args.requests)

    async def run() -> int:
        serving = asyncio.create_task(server.serve())
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", client)
        profiler = cProfile.Profile() if args.profile else None
        t0, c0 = time.perf_counter(), os.times()
        if profiler:
            profiler.enable()
        rc = await proc.wait()
        if profiler:
            profiler.disable()
        t1, c1 = time.perf_counter(), os.times()
        n = args.requests
        print(f"{'streamed' if args.stream else 'non-streamed'} 2 KB, {n} requests (client start included in "
              f"wall): wall {(t1 - t0) / n * 1000:.3f} ms, router CPU {(c1.user - c0.user) / n * 1000:.3f} user "
              f"+ {(c1.system - c0.system) / n * 1000:.3f} system ms per request; load average "
              f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        server.should_exit = True
        await serving
        if profiler and args.profile:
            profiler.dump_stats(args.profile)
        return rc

    try:
        return uvloop.run(run())
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    raise SystemExit(main())
