"""What `clawfleet sandbox forward` costs: an echo server on 127.0.0.1 inside a real sandbox (run by a real gateway
daemon), reached (a) directly, by a socket created in the sandbox's namespace with ``run_in_netns`` (what a client
inside the sandbox would see; each new socket costs the setns helper thread here too), and (b) through the forward
on the host's loopback. Figures are ratios forward / direct, with the absolute medians for context. Root only.

    sudo .venv/bin/python benchmarks/bench_forward.py [--rounds 200] [--megabytes 64]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from clawfleet.control_protocol import request
from clawfleet.sandbox.namespaces import run_in_netns
from policy_daemon import GatewayDaemon

PORT = 18789
SERVER = """\
import os, signal, socket, sys, threading
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
def serve(conn):
    with conn:
        conn.sendall(b"hi\\n")
        while data := conn.recv(1 << 16):
            conn.sendall(data)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(64)
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


def _greeted(s: socket.socket) -> socket.socket:
    data = b""
    while not data.endswith(b"\n"):
        data += s.recv(16)
    return s


def _roundtrip(connect: Callable[[], socket.socket]) -> float:
    t0 = time.perf_counter()
    with connect() as s:
        _greeted(s)
        s.sendall(b"x")
        s.recv(1)
    return time.perf_counter() - t0


def _throughput(connect: Callable[[], socket.socket], megabytes: int) -> float:
    block = b"\0" * (1 << 20)
    with connect() as s:
        _greeted(s)
        t0 = time.perf_counter()

        def send() -> None:
            for _ in range(megabytes):
                s.sendall(block)

        th = threading.Thread(target=send)
        th.start()
        got = 0
        while got < megabytes << 20:
            got += len(s.recv(1 << 20))
        th.join()
        return megabytes / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        (root / "work" / "echo.py").write_text(SERVER)
        daemon = GatewayDaemon(root, "bench-forward", command=["/usr/bin/python3", "/sandbox/echo.py", str(PORT)])
        status = daemon.start()
        fwd = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "sandbox", "forward", "--socket",
                                str(daemon.socket), "--json", "--listen", "127.0.0.1:0", daemon.name, str(PORT)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            info = json.loads(fwd.stdout.readline())  # type: ignore[union-attr]
            pid = status["pid"]

            def direct() -> socket.socket:
                s = run_in_netns(pid, socket.socket)
                s.connect(("127.0.0.1", PORT))
                return s

            def forwarded() -> socket.socket:
                return socket.create_connection((info["host"], info["port"]))

            results = {}
            for name, connect in (("direct", direct), ("forward", forwarded)):
                times = [_roundtrip(connect) for _ in range(args.rounds)]
                results[name] = {"connect_roundtrip_ms_median": round(statistics.median(times) * 1000, 3),
                                 "throughput_mb_s": round(_throughput(connect, args.megabytes), 1)}  # fmt: skip
            fw, di = results["forward"], results["direct"]
            results["ratio_connect_roundtrip"] = round(
                fw["connect_roundtrip_ms_median"] / di["connect_roundtrip_ms_median"], 2
            )
            results["ratio_throughput"] = round(fw["throughput_mb_s"] / di["throughput_mb_s"], 2)
            print(json.dumps(results, indent=1))
        finally:
            fwd.terminate()
            fwd.wait(30)
            next(iter(request({"cmd": "stop", "name": daemon.name}, str(daemon.socket))))
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
