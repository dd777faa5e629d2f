"""The programs bench_gateway_isolation.py runs inside its two sandboxes (as the sandbox user, through
``clawfleet sandbox connect``). Standard library only: the sandbox has the system python3, not the venv.

    python3 /sandbox/isolation_sandbox.py probe N PORT INTERVAL       sandbox B: N allowed requests, JSON out
    python3 /sandbox/isolation_sandbox.py attack MODE JSON-CONFIG     sandbox A: until /sandbox/stop exists

Every request goes to the gateway (127.0.0.1:3128 in the sandbox's namespace) on a new connection, in absolute
form (plain HTTP): the way an agent running curl, or a fresh HTTP client, reaches it. Each new connection costs
the gateway an identification of its caller, which is what the fd load targets.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
import traceback

GATEWAY = ("127.0.0.1", 3128)
STOP = "/sandbox/stop"
OUT = "/sandbox/out"


def request(port: int, path: str, timeout: float = 60.0) -> tuple[int, float]:
    """(status, seconds) of one GET through the gateway on a new connection; status 0 if it failed."""
    t0 = time.perf_counter()
    raw = (f"GET http://origin.test:{port}{path} HTTP/1.1\r\nHost: origin.test:{port}\r\n"
           "Connection: close\r\n\r\n").encode()  # fmt: skip
    try:
        with socket.create_connection(GATEWAY, timeout=timeout) as s:
            s.sendall(raw)
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
            while s.recv(65536):  # the gateway closes after the response (Connection: close)
                pass
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    except OSError:
        status = 0
    return status, time.perf_counter() - t0


def probe(n: int, port: int, interval: float) -> None:
    times, bad = [], {}
    for i in range(n):
        status, dt = request(port, f"/ok/probe-{i}")
        if status == 200:
            times.append(dt * 1000)
        else:
            bad[status] = bad.get(status, 0) + 1
        time.sleep(interval)
    print(json.dumps({"ms": times, "failed": bad}))


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def stopped() -> bool:
    return os.path.exists(STOP)


def write_out(name: str, data: dict) -> None:
    tmp = f"{OUT}/{name}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, f"{OUT}/{name}.json")


def request_loop(name: str, port: int, path: str) -> None:
    """New connection, one request, until told to stop: counts per status and the time spent."""
    statuses: dict[str, int] = {}
    t0 = time.monotonic()
    worst = 0.0
    while not stopped():
        status, dt = request(port, path)
        if not statuses:  # the attack is under way: the benchmark waits for this before it measures B
            open(f"{OUT}/{name}.first", "w").close()
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        worst = max(worst, dt)
    write_out(name, {"statuses": statuses, "seconds": time.monotonic() - t0, "worst_s": worst})


def forked(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def fd_holders(procs: int, fds: int) -> list[int]:
    """PROCS processes holding FDS open descriptors each, asleep (their fd tables do not change)."""
    raise_nofile(fds + 64)
    r, w = os.pipe()
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            keep = [os.open("/dev/null", os.O_RDONLY) for _ in range(fds)]  # noqa: F841 (held until killed)
            os.write(w, b"x")
            signal.pause()
            os._exit(0)
        pids.append(pid)
    got = 0
    while got < procs:
        got += len(os.read(r, procs - got))
    return pids


def idle_connections(name: str, count: int, port: int) -> None:
    """Open COUNT connections to the gateway and send nothing; report how many it kept and how many its cap
    refused (a 503 and a close), then hold them until told to stop."""
    raise_nofile(count + 256)
    socks, errors = [], {}
    t0 = time.monotonic()
    for _ in range(count):
        if stopped():
            break
        try:
            socks.append(socket.create_connection(GATEWAY, timeout=30))
        except OSError as exc:
            key = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            errors[key] = errors.get(key, 0) + 1
    opened = time.monotonic() - t0
    # The gateway identifies A's connections one at a time, in arrival order: once a fresh connection's request
    # is answered, every held one has been identified. Watched in the background: the probe of B runs meanwhile.
    identified: list[float] = []
    threading.Thread(target=lambda: (request(port, "/ok/after-idle-connections", timeout=3600),
                                     identified.append(time.monotonic() - t0)), daemon=True).start()  # fmt: skip
    time.sleep(1.0)  # let the gateway answer the ones over its cap (it refuses them before identifying)

    def classify() -> dict[str, int]:
        held = refused = closed = 0
        for s in socks:
            if s.fileno() < 0:
                closed += 1
                continue
            poller = select.poll()  # select() stops at fd 1024
            poller.register(s, select.POLLIN)
            if not poller.poll(0):
                held += 1
                continue
            try:
                data = s.recv(64, socket.MSG_PEEK)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
            else:
                closed += 1
        return {"held": held, "refused_503": refused, "closed": closed}

    result = {"attempted": count, "connect_errors": errors, "open_seconds": opened, "at_ready": classify()}
    write_out(f"{name}.ready", result)
    while not stopped():
        time.sleep(0.2)
    result["at_stop"] = classify()
    result["identified_seconds"] = identified[0] if identified else None  # None: still queued at the stop
    write_out(name, result)
    for s in socks:
        s.close()


def wait_for(path: str, pid: int) -> None:
    while not os.path.exists(path):
        if os.waitpid(pid, os.WNOHANG)[0]:
            raise SystemExit(f"{path}: the process that should write it exited")
        time.sleep(0.1)


def attack(mode: str, cfg: dict) -> None:
    """Sandbox A. Modes combine (a ``+``-joined list): ``busy`` (allowed requests, the control), ``redos``, ``fds``,
    ``conns``. The idle connections come first: the other loads start once they are open."""
    os.makedirs(OUT, exist_ok=True)
    port, workers = cfg["port"], cfg["workers"]
    children, holders = [], []
    modes = mode.split("+")
    if "conns" in modes:
        children.append(forked(idle_connections, "conns", cfg["conns"], port))
        wait_for(f"{OUT}/conns.ready.json", children[-1])
    if "fds" in modes:
        holders = fd_holders(cfg["procs"], cfg["fds"])
        children += [forked(request_loop, f"fds-{i}", port, "/ok/fd-load") for i in range(workers)]
        write_out("fds.ready", {"procs": len(holders), "fds": cfg["fds"]})
    if "redos" in modes:
        path = "/files/" + "-" * cfg["redos_len"]
        children += [forked(request_loop, f"redos-{i}", port, path) for i in range(workers)]
    if "busy" in modes:
        children += [forked(request_loop, f"busy-{i}", port, "/ok/busy") for i in range(workers)]
    for pid in children:
        os.waitpid(pid, 0)
    for pid in holders:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def main() -> None:
    if sys.argv[1] == "probe":
        probe(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        attack(sys.argv[2], json.loads(sys.argv[3]))


if __name__ == "__main__":
    main()
