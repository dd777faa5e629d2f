"""How cost grows with the work (issue 16): policy size, sandboxes per host, connections per gateway.

    .venv/bin/python benchmarks/bench_scaling.py --sections policy,gateway [--json out.json]
    sudo .venv/bin/python benchmarks/bench_scaling.py [--sections policy,daemon,gateway] [--json out.json]
        [--rules 100,1000,10000] [--requests 20000] [--repeat 3]
        [--sandboxes 1,10,50] [--gateway-user clawfleet-gateway]
        [--connections 1,10,50,200] [--gw-requests 2000]

Sections (each compares within one run; absolute times move with the machine's load, growth factors less):

* ``policy``: a realistic policy of N endpoint rules (benchmarks/bench_policy.py's generator: mixed exact,
  ``*.`` and ``**.`` hosts, L7 method/path/query rules and deny rules, 1-4 binaries of 46 incl. globs), N = 100 /
  1,000 / 10,000: load (YAML text -> validated Policy, the gateway's path) and compile, median of ``--repeat``;
  decision time per request (median and p99 over ``--requests`` decisions, 80 % hits and 20 % unknown hosts,
  half with L7 method/path), and hits and misses apart.
* ``daemon`` (root): one ``clawfleet gateway serve`` with N = 1 / 10 / 50 sandboxes (each ``/bin/sleep`` of a
  duration unique to this run), privilege-separated parsers (``--gateway-user``, as the gateway role deploys it;
  ``--gateway-user ''`` runs the proxies in the daemon): time from the daemon's start until every sandbox's
  gateway has attached (``NAME.attached``) and until every parser has dropped to its user (it accepts only
  then); then RSS and PSS of the daemon (with the parser forkserver it starts), of its parsers and of the
  sandboxes' own processes. Everything it started is stopped, also on failure.
* ``gateway``: one gateway (``clawfleet gateway proxy``, caller identification, policy decisions and the JSON
  decision log on: the proxy a sandbox's parser runs) to a loopback origin at 1 / 10 / 50 / 200 keep-alive
  connections, ``--gw-requests`` per cell: plain HTTP through an L7 rule (absolute-form GETs) and TLS-inspected
  (CONNECT + interception, benchmarks/bench_gateway.py's client), each beside the direct origin in the same run;
  req/s, p50/p99 and the proxy's CPU time per request.

Rollout time at 5 / 10 / 20 hosts is benchmarks/bench_rollout.py ``--hosts N`` (Docker; run-on-quiet-host.sh).

Growth is reported per 10x of the work as the factor and as the exponent k of cost ~ N^k (k = 1 linear, 0
constant); a row is flagged ``super-linear`` when k > 1.2 (a margin for noise), the acceptance of issue 16.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import bench_gateway  # noqa: E402 (benchmarks/ on the path first)
import bench_gateway_isolation as iso  # noqa: E402
import bench_policy  # noqa: E402

SECTIONS = ("policy", "daemon", "gateway")
SUPERLINEAR_K = 1.2


# -- growth -----------------------------------------------------------------------------------------------


def growth(rows: list[dict], size_key: str, metrics: tuple[str, ...]) -> list[dict]:
    """Per consecutive pair of rows and metric: the factor per 10x of the work and k in cost ~ N^k."""
    out = []
    for prev, cur in itertools.pairwise(rows):
        span = math.log10(cur[size_key] / prev[size_key])
        for m in metrics:
            a, b = prev.get(m), cur.get(m)
            if not a or not b or span <= 0:
                continue
            k = math.log10(b / a) / span
            out.append({"metric": m, "from": prev[size_key], "to": cur[size_key], "per_10x": round(10**k, 2),
                        "k": round(k, 2), "verdict": "super-linear" if k > SUPERLINEAR_K else "ok"})  # fmt: skip
    return out


def print_growth(g: list[dict]) -> None:
    for x in g:
        print(f"  {x['metric']:<28} {x['from']:>6} -> {x['to']:<6} x{x['per_10x']:<8} per 10x  k={x['k']:<5} "
              f"{x['verdict']}")  # fmt: skip


# -- policy -----------------------------------------------------------------------------------------------


def policy_section(sizes: list[int], n_requests: int, repeat: int, seed: int) -> dict:
    from clawfleet.policy import PolicyError, compile_policy, load_data, load_text
    from clawfleet.policy.yamlio import dump_yaml

    rows = []
    for n in sizes:
        rnd = random.Random(seed)
        data = bench_policy.build_policy(n, rnd)
        text = dump_yaml(data)  # block YAML, as a policy file is written
        loads: list[float] = []
        validates, compiles = [], []
        refused = None
        for i in range(repeat):
            if i and loads[0] > 5:  # a load past 5 s is timed once (the YAML parser's share grows with the file)
                break
            t0 = time.perf_counter()
            try:
                load_text(text, f"scaling-{n}.yaml")
            except PolicyError as exc:  # the loader's caps (yamlio: MAX_NODES, MAX_BYTES): a file this large is refused
                refused = str(exc).splitlines()[0]
                break
            loads.append(time.perf_counter() - t0)
        for _ in range(repeat):
            gc.collect()  # the previous round's garbage is not this round's cost (10,000 rules: ~1M objects)
            t0 = time.perf_counter()
            policy = load_data(data)  # the same validation without the YAML parser: where the load time goes
            t1 = time.perf_counter()
            engine = compile_policy(policy)
            t2 = time.perf_counter()
            validates.append(t1 - t0)
            compiles.append(t2 - t1)
        requests = bench_policy.build_requests(data, n_requests, rnd)
        hits = [r for r in requests if engine.candidates(r[2], r[3])]
        misses = [r for r in requests if not engine.candidates(r[2], r[3])]
        for req in requests:  # warm the binary-chain cache, as a running gateway has it
            engine.decide(*req)
        median, p99, rate = bench_policy.time_calls(engine.decide, requests, repeat=2)
        rows.append({"rules": n, "yaml_bytes": len(text), "load_refused": refused,
                     "load_ms": round(statistics.median(loads) * 1000, 2) if loads else None,
                     "validate_ms": round(statistics.median(validates) * 1000, 2),
                     "compile_ms": round(statistics.median(compiles) * 1000, 2),
                     "decide_median_us": round(median / 1000, 3), "decide_p99_us": round(p99 / 1000, 3),
                     "decisions_per_s": round(rate), "decide_hit_median_us": round(
                         bench_policy.time_calls(engine.decide, hits)[0] / 1000, 3) if hits else None,
                     "decide_miss_median_us": round(
                         bench_policy.time_calls(engine.decide, misses)[0] / 1000, 3) if misses else None,
                     "requests": len(requests), "hits": len(hits), "misses": len(misses)})  # fmt: skip
    metrics = ("load_ms", "validate_ms", "compile_ms", "decide_median_us", "decide_hit_median_us",
               "decide_miss_median_us")  # fmt: skip
    return {"rows": rows, "growth": growth(rows, "rules", metrics)}


def print_policy(res: dict) -> None:
    print("policy: load = YAML text -> Policy (validate = the same from a dict, no YAML), compile; median of repeats;")
    print("decision time: median (p99) over all requests, hits and misses apart")
    print(f"{'rules':>7} {'load ms':>9} {'validate ms':>11} {'compile ms':>10} {'decide us':>9} {'p99 us':>8} "
          f"{'hit us':>7} {'miss us':>7} {'decisions/s':>12}")  # fmt: skip
    for r in res["rows"]:
        load = f"{r['load_ms']:>9.1f}" if r["load_ms"] is not None else f"{'refused':>9}"
        print(f"{r['rules']:>7} {load} {r['validate_ms']:>11.1f} {r['compile_ms']:>10.1f}"
              f" {r['decide_median_us']:>9.2f} {r['decide_p99_us']:>8.2f} {r['decide_hit_median_us'] or 0:>7.2f}"
              f" {r['decide_miss_median_us'] or 0:>7.2f} {r['decisions_per_s']:>12,}")  # fmt: skip
    for r in res["rows"]:
        if r["load_refused"]:
            print(f"  {r['rules']} rules: the YAML load is refused: {r['load_refused']}")
    print_growth(res["growth"])


# -- daemon -----------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, cmdline, start time in ticks) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        table[int(entry)] = (int(stat[1]), cmd, int(stat[19]))
    return table


def _descendants(root: int, table: dict[int, tuple[int, str, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cmd, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB; PSS shares each page among the processes that map it (parsers share the interpreter)."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def _state(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None


def _uid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def _control(sock_path: str, request: dict) -> object:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.splitlines()[0])


class DaemonFleet:
    """One ``gateway serve`` with N sleeping sandboxes in a temporary directory; :meth:`close` stops all of it."""

    def __init__(self, n: int, gateway_user: str, sleep_s: int) -> None:
        self.n, self.sleep_s = n, sleep_s
        self.names = [f"s{i:03d}" for i in range(n)]
        try:
            user = pwd.getpwnam(iso.SANDBOX_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", iso.SANDBOX_USER], check=True)
            user = pwd.getpwnam(iso.SANDBOX_USER)
        self.parser_uid = pwd.getpwnam(gateway_user).pw_uid if gateway_user else None
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
        self.tmp.chmod(0o755)
        os.makedirs("/run/clawfleet-bench", mode=0o755, exist_ok=True)  # not /tmp: the sandboxes mount their own
        self.run_dir = Path(tempfile.mkdtemp(prefix="scaling-", dir="/run/clawfleet-bench"))
        self.run_dir.chmod(0o755)
        self.socket = str(self.tmp / "gateway.sock")
        (self.tmp / "policy.yaml").write_text(iso.POLICY.format(port=18080, rules=iso.rules("/ok/**")))
        for name in self.names:
            work = self.tmp / f"work-{name}"
            work.mkdir()
            os.chown(work, user.pw_uid, user.pw_gid)
            definition = {"name": name, "policy": "policy.yaml", "user": iso.SANDBOX_USER, "workdir": str(work),
                          "command": ["/bin/sleep", str(sleep_s)],
                          "gateway": {"static_hosts": {"origin.test": "127.0.0.1"}}}  # fmt: skip
            (self.tmp / f"{name}.yaml").write_text(json.dumps(definition))
        config = {"state_dir": "state", "control_socket": self.socket, "runtime_dir": str(self.run_dir),
                  "sandboxes": [f"{n}.yaml" for n in self.names]}  # fmt: skip
        if gateway_user:
            config["gateway_user"] = gateway_user
        (self.tmp / "gateway.yaml").write_text(json.dumps(config))
        self.seen: dict[int, int] = {}  # pid -> start time of everything the daemon started, for the clean-up
        self.daemon: subprocess.Popen | None = None

    def start(self, timeout: float) -> dict:
        attached: dict[str, float] = {}
        ready_at = None
        with open(self.tmp / "daemon.err", "w") as err:
            t0 = time.monotonic()
            argv = [*iso.clawfleet(), "gateway", "serve", "--config", str(self.tmp / "gateway.yaml")]
            self.daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = t0 + timeout
        while ready_at is None:
            now = time.monotonic()
            if now > deadline or self.daemon.poll() is not None:
                raise RuntimeError(f"{len(attached)}/{self.n} attached after {now - t0:.0f} s; see daemon.err")
            for name in self.names:
                if name not in attached and (self.run_dir / "sandboxes" / f"{name}.attached").exists():
                    attached[name] = now - t0
            parsers = self._parsers(_proc_table())
            dropped = sum(1 for p in parsers if _uid(p) == self.parser_uid)
            if len(attached) == self.n and (self.parser_uid is None or dropped >= self.n):
                ready_at = now - t0
            else:
                time.sleep(0.05)
        times = sorted(attached.values())
        return {"attach_all_s": round(times[-1], 2), "attach_first_s": round(times[0], 2),
                "attach_median_s": round(statistics.median(times), 2), "ready_all_s": round(ready_at, 2),
                "ready_per_sandbox_ms": round(ready_at / self.n * 1000, 1)}  # fmt: skip

    def _parsers(self, table: dict) -> list[int]:
        assert self.daemon is not None
        pids = _descendants(self.daemon.pid, table)
        for pid in pids:
            self.seen.setdefault(pid, table[pid][2])
        return [p for p in pids if "gateway-parser" in table[p][1]]

    def _split_parsers(self, table: dict) -> tuple[list[int], list[int]]:
        """(the parsers, the forkserver they are forked from): the forkserver is the daemon's own child."""
        assert self.daemon is not None
        procs = self._parsers(table)
        forkserver = [p for p in procs if table[p][0] == self.daemon.pid]
        return [p for p in procs if p not in forkserver], forkserver

    def memory(self) -> dict:
        assert self.daemon is not None
        table = _proc_table()
        parser_list, forkserver = self._split_parsers(table)
        parsers = set(parser_list)
        others = [p for p in _descendants(self.daemon.pid, table) if p not in parsers and p not in forkserver]
        d_rss, d_pss = _memory_kib(self.daemon.pid)
        for p in forkserver:  # the gateway's own memory: the daemon and the interpreter its parsers are forked from
            f_rss, f_pss = _memory_kib(p)
            d_rss, d_pss = d_rss + f_rss, d_pss + f_pss
        p_mem = [_memory_kib(p) for p in parsers]
        o_mem = [_memory_kib(p) for p in others]
        info = _control(self.socket, {"cmd": "list"})
        assert isinstance(info, list)
        mib = 1024
        return {"daemon_rss_mib": round(d_rss / mib, 1), "daemon_pss_mib": round(d_pss / mib, 1),
                "parsers": len(parsers), "parsers_rss_mib": round(sum(m[0] for m in p_mem) / mib, 1),
                "parsers_pss_mib": round(sum(m[1] for m in p_mem) / mib, 1),
                "sandbox_procs": len(others), "sandbox_rss_mib": round(sum(m[0] for m in o_mem) / mib, 1),
                "sandbox_pss_mib": round(sum(m[1] for m in o_mem) / mib, 1),
                "gateway_rss_mib": round((d_rss + sum(m[0] for m in p_mem)) / mib, 1),
                "gateway_pss_mib": round((d_pss + sum(m[1] for m in p_mem)) / mib, 1),
                "attached_by_status": sum(1 for s in info if s.get("gateway_attached")),
                "restarts": sum(s.get("restarts", 0) for s in info)}  # fmt: skip

    def close(self) -> list[int]:
        """Stop the daemon (it stops its sandboxes), then anything it started that is still there. Returns the
        pids that had to be killed."""
        if self.daemon is not None:
            with contextlib.suppress(OSError):
                self._parsers(_proc_table())  # record the latest children
            if self.daemon.poll() is None:
                self.daemon.send_signal(signal.SIGTERM)
                try:
                    self.daemon.wait(90)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait()
        killed: list[int] = []
        deadline = time.monotonic() + 10  # the sandboxes' processes finish exiting after the daemon has
        while True:
            table = _proc_table()
            leftovers = [p for p, start in self.seen.items() if p in table and table[p][2] == start]
            # a sandbox's own processes may be re-parented away from the daemon: this run's sleep is unique
            leftovers += [p for p, (_pp, cmd, _s) in table.items() if cmd == f"/bin/sleep {self.sleep_s}"]
            leftovers = [p for p in dict.fromkeys(leftovers) if _state(p) not in (None, "Z")]  # zombies: exited
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return killed


def daemon_section(counts: list[int], gateway_user: str, settle: float) -> dict:
    rows = []
    sleep_s = 3600 + os.getpid() % 3000  # unique to this run (the clean-up finds strays by it); ends within 2 h
    for n in counts:
        fleet = DaemonFleet(n, gateway_user, sleep_s)
        try:
            row = {"sandboxes": n, **fleet.start(timeout=60 + 3 * n)}
            time.sleep(settle)  # the parsers' first pushes and the daemon's first polls done
            row.update(fleet.memory())
        finally:
            killed = fleet.close()
        row["killed_at_cleanup"] = len(killed)
        for key in ("daemon_rss_mib", "parsers_rss_mib", "gateway_rss_mib", "gateway_pss_mib", "sandbox_rss_mib"):
            row[key.replace("_mib", "_per_sandbox_mib")] = round(row[key] / n, 1)
        rows.append(row)
    metrics = ("ready_all_s", "attach_all_s", "gateway_rss_mib", "gateway_pss_mib", "daemon_rss_mib",
               "parsers_rss_mib", "sandbox_rss_mib")  # fmt: skip
    return {"gateway_user": gateway_user or None, "rows": rows, "growth": growth(rows, "sandboxes", metrics)}


def print_daemon(res: dict) -> None:
    print(f"daemon: one gateway serve, parsers as {res['gateway_user'] or '(in the daemon)'}; times from the start")
    print(f"{'sandboxes':>9} {'attached s':>10} {'ready s':>8} {'ms/sbx':>7} {'daemon RSS':>10} {'parsers RSS':>11} "
          f"{'gw PSS':>7} {'gw PSS/sbx':>10} {'sandbox RSS':>11} {'restarts':>8}")  # fmt: skip
    for r in res["rows"]:
        print(f"{r['sandboxes']:>9} {r['attach_all_s']:>10.2f} {r['ready_all_s']:>8.2f}"
              f" {r['ready_per_sandbox_ms']:>7.0f} {r['daemon_rss_mib']:>8.1f}Mi {r['parsers_rss_mib']:>9.1f}Mi"
              f" {r['gateway_pss_mib']:>5.1f}Mi {r['gateway_pss_per_sandbox_mib']:>8.1f}Mi"
              f" {r['sandbox_rss_mib']:>9.1f}Mi {r['restarts']:>8}")  # fmt: skip
    print_growth(res["growth"])


# -- gateway ----------------------------------------------------------------------------------------------


async def run_client(mode: str, conc: int, total: int, proxy_port: int, origin_port: int, cafile: str) -> dict:
    """bench_gateway.run_client with plain HTTP beside TLS and the clock started by the parent: ``direct-plain`` to
    the plain origin, ``plain`` through the gateway in absolute form (an HTTP client behind HTTP_PROXY),
    ``direct`` and ``inspected`` as in bench_gateway. Every connection is opened and has had one answer (the
    caller's identification, TLS handshakes) before this prints ``warm`` and waits for a line on stdin: the
    parent reads the proxy's CPU time there, so that it counts the timed requests only."""
    if mode.endswith("plain"):
        port = origin_port if mode == "direct-plain" else proxy_port
        conns = [(*await asyncio.open_connection("127.0.0.1", port), "origin.test") for _ in range(conc)]
        target = "/bench/x" if mode == "direct-plain" else f"http://origin.test:{origin_port}/bench/x"
    else:
        ctx = ssl.create_default_context(cafile=cafile)
        conns = await asyncio.gather(*(bench_gateway._open(mode, proxy_port, origin_port, ctx) for _ in range(conc)))
        target = "/bench/x"
    reqs = [f"GET {target} HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode() for _, _, host in conns]
    await asyncio.gather(*(bench_gateway._get(r, w, req) for (r, w, _), req in zip(conns, reqs, strict=True)))
    print("warm", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies: list[float] = []
    left = [total]

    async def worker(r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes) -> None:
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            await bench_gateway._get(r, w, req)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker(r, w, req) for (r, w, _), req in zip(conns, reqs, strict=True)))
    elapsed = time.perf_counter() - start
    for _, w, _ in conns:
        w.close()
    return {**bench_gateway.summary(mode, conc, latencies, elapsed),
            "wall_us_per_req": round(elapsed / len(latencies) * 1e6, 1)}  # fmt: skip


def measure_cell(argv: list[str], proxy_pid: int | None) -> dict:
    """Run one client (``client`` role), reading the proxy's CPU time between ``warm`` and the result."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "warm":
            raise RuntimeError(f"client failed before its clock: {proc.communicate(timeout=30)[1][-2000:]}")
        cpu0 = bench_gateway._cpu_seconds(proxy_pid) if proxy_pid else 0.0
        out, err = proc.communicate("go\n", timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"client failed: {err[-2000:]}")
        cell = json.loads(out)
        if proxy_pid:
            cpu = bench_gateway._cpu_seconds(proxy_pid) - cpu0
            cell["proxy_cpu_us_per_req"] = round(cpu / cell["requests"] * 1e6, 1)
        return cell
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def gateway_section(concurrency: list[int], requests: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaling-gw-"))
    procs: list[subprocess.Popen] = []
    py = sys.executable
    try:
        ca, cert, key = bench_gateway.make_pki(tmp)
        port_file = tmp / "origin.port"
        plain = subprocess.Popen([py, "-c", iso.ORIGIN], stdout=subprocess.PIPE, text=True)
        procs.append(plain)
        tls_port = bench_gateway.start_origin(procs, cert, key, port_file)
        plain_port = int(plain.stdout.readline())  # type: ignore[union-attr]
        policy = tmp / "policy.yaml"
        policy.write_text(
            "version: 1\nnetwork_policies:\n  bench:\n    name: bench\n    endpoints:\n"
            + "".join(f"      - host: origin.test\n        port: {p}\n        protocol: rest\n"
                      '        rules: [{allow: {method: GET, path: "/bench/**"}}]\n' for p in (tls_port, plain_port))
            + f"    binaries: [{{path: {os.path.realpath(py)}}}]\n"
        )  # fmt: skip
        gport = bench_gateway._free_port()
        gw_ca = tmp / "gateway-ca.pem"
        gw = subprocess.Popen(
            [py, "-m", "clawfleet.cli", "gateway", "proxy", "--policy", str(policy), "--listen", f"127.0.0.1:{gport}",
             "--log", str(tmp / "decisions.jsonl"), "--extra-ca", str(ca), "--ca-out", str(gw_ca),
             "--static-host", "origin.test=127.0.0.1"],
            cwd=HERE.parent, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(gw)
        bench_gateway._wait_port(gport)
        cells = []
        for conc in concurrency:
            plan = [("direct-plain", plain_port), ("plain", plain_port), ("direct", tls_port), ("inspected", tls_port)]
            for mode, oport in plan:
                cafile = ca if mode == "direct" else gw_ca
                argv = [py, __file__, "client", mode, str(conc), str(requests), str(gport), str(oport), str(cafile)]
                cells.append(measure_cell(argv, None if mode.startswith("direct") else gw.pid))
        by = {(c["mode"], c["concurrency"]): c for c in cells}
        for c in cells:
            peer = by[("direct-plain" if c["mode"].endswith("plain") else "direct", c["concurrency"])]
            c["rps_vs_direct"] = round(c["rps"] / peer["rps"], 3)
        series = {}
        for mode in ("direct-plain", "plain", "direct", "inspected"):
            rows = [{"connections": c["concurrency"], **c} for c in cells if c["mode"] == mode]
            # cost per request as connections grow; p50 is not a cost here: once the CPU is saturated it is
            # connections / throughput (queueing), linear by construction
            metrics = ("wall_us_per_req",) if mode.startswith("direct") else ("wall_us_per_req", "proxy_cpu_us_per_req")
            series[mode] = growth(rows, "connections", metrics)
        return {"cells": cells, "growth": series}
    finally:
        bench_gateway.stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def print_gateway(res: dict) -> None:
    print("gateway: keep-alive GETs to a loopback origin; vs direct = req/s over the direct origin's at that count")
    head = f"{'mode':<13} {'conns':>5} {'req/s':>9} {'vs direct':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head} {'proxy CPU us/req':>16}")
    for c in res["cells"]:
        print(f"{c['mode']:<13} {c['concurrency']:>5} {c['rps']:>9.1f} {c['rps_vs_direct']:>9.2f} {c['p50_ms']:>8.3f}"
              f" {c['p99_ms']:>8.3f} {c.get('proxy_cpu_us_per_req', '-'):>16}")  # fmt: skip
    for mode, g in res["growth"].items():
        if g:
            print(f" {mode}:")
            print_growth(g)


# -- main -------------------------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="policy,daemon,gateway", help=f"subset of {','.join(SECTIONS)}")
    ap.add_argument("--rules", type=ints, default=[100, 1000, 10000])
    ap.add_argument("--requests", type=int, default=20000, help="decisions per policy size")
    ap.add_argument("--repeat", type=int, default=3, help="loads and compiles per policy size (median)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sandboxes", type=ints, default=[1, 10, 50])
    ap.add_argument("--gateway-user", default="clawfleet-gateway", help="parsers' user ('': in the daemon)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the last attach before measuring RSS")
    ap.add_argument("--connections", type=ints, default=[1, 10, 50, 200])
    ap.add_argument("--gw-requests", type=int, default=2000, help="timed requests per gateway cell")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON ('-': stdout, instead of the tables)")
    ap.add_argument("role", nargs="?", default="main", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "client":
        mode, conc, total, pport, oport, cafile = a.args
        print(json.dumps(asyncio.run(run_client(mode, int(conc), int(total), int(pport), int(oport), cafile))))
        return 0
    sections = [s for s in a.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if "daemon" in sections and os.geteuid() != 0:
        print("bench_scaling: the daemon section needs root (sandboxes)", file=sys.stderr)
        return 2
    quiet = a.json == "-"
    result: dict = {"host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
                    f"python {platform.python_version()}, kernel {platform.release()}",
                    "load_avg_start": [round(x, 2) for x in os.getloadavg()], "argv": sys.argv[1:]}  # fmt: skip
    printers = {"policy": print_policy, "daemon": print_daemon, "gateway": print_gateway}
    for section in sections:
        if not quiet:
            print(f"... {section}", file=sys.stderr, flush=True)
        if section == "policy":
            result["policy"] = policy_section(a.rules, a.requests, a.repeat, a.seed)
        elif section == "daemon":
            result["daemon"] = daemon_section(a.sandboxes, a.gateway_user, a.settle)
        else:
            result["gateway"] = gateway_section(a.connections, a.gw_requests)
        if not quiet:
            printers[section](result[section])
            print()
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    flagged = [(s, g) for s in sections for g in _all_growth(result[s]) if g["verdict"] != "ok"]
    result["super_linear"] = [{"section": s, **g} for s, g in flagged]
    if quiet:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['host']}; load average {result['load_avg_start']} -> {result['load_avg_end']}")
        print(f"super-linear rows (k > {SUPERLINEAR_K}): {len(flagged) or 'none'}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


def _all_growth(section: dict) -> list[dict]:
    g = section["growth"]
    return [x for rows in g.values() for x in rows] if isinstance(g, dict) else list(g)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
