"""Added latency of the privacy router vs calling the (fake) upstream directly, side by side in one run.

    .venv/bin/python benchmarks/bench_router.py [--requests 300]

Starts the stand-in upstream (tests/router/fake_upstreams.py) and the router (`router serve`) as separate
uvicorn processes on loopback, then sends the same chat-completions requests alternately straight to the fake
and through the router, with one keep-alive HTTP client, for a 2 KB and a 100 KB prompt, streaming (20 SSE
chunks) and not. The prompts carry no sensitive data, so the router classifies them fully and forwards them to
its cloud route (the fake), which is the common path. Added latency = router figure - direct figure, at p50 and
p99 of the whole request (last byte read). Also reports the classifier alone on 100 KB texts, in-process.

A second router process, "router+limits", has the same routes plus caller attribution (identity key; each
request carries a fresh gateway proof, signed before the clock starts) and per-sandbox and per-host limits
(requests, tokens, USD per day, none reached) with their sqlite state: "limits added" = router+limits -
router, measured in the same alternating loop.

The peer, "litellm": a LiteLLM proxy (`litellm --config`, version pinned in benchmarks/setup-litellm-venv.sh,
installed in its own venv) on loopback in front of the same fake upstream, with one model alias pointing at it,
no database, no master key, no callbacks: the smallest LiteLLM proxy, in the same alternating loop. Without
that venv the benchmark stops and says so; `--no-litellm` measures without the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "router"))

from clawfleet.router.classifier import Classifier  # noqa: E402
from clawfleet.router.identity import HEADER_PROOF, HEADER_SANDBOX, sign  # noqa: E402
from router_bench_config import free_port, router_config  # noqa: E402

IDENTITY_KEY = b"bench-identity-key-0123456789abcdef0123456789"
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 4
LITELLM_VENV = Path(os.environ.get("LITELLM_VENV", ROOT / ".venv-litellm"))

CHUNKS = 20


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def clean_text(size: int) -> str:
    """Realistic non-sensitive agent traffic (code, logs, prose) of about ``size`` characters."""
    base = (
        "Please review this function and suggest a faster approach.\n"
        "def merge(a: list[int], b: list[int]) -> list[int]:\n"
        "    out = []\n    i = j = 0\n    while i < len(a) and j < len(b):\n"
        "        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n"
        "        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]\n"
        "2026-11-26T01:02:03Z INFO worker-3 processed batch 118 in 412ms version=1.14.2\n"
        "The scheduler retries failed jobs three times with exponential backoff before paging on-call.\n"
    )
    return (base * (size // len(base) + 1))[:size]


def mixed_text(size: int) -> str:
    from eval.dataset import load

    text = "\n".join(r["text"] for r in load())
    return (text * (size // len(text) + 1))[:size]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


def litellm_binary(venv: Path) -> Path | None:
    exe = venv / "bin" / "litellm"
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``url`` answers 200 (LiteLLM opens its port before its app is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: server exited early with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def start_litellm(exe: Path, tmp: Path, up_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The peer: a LiteLLM proxy with one alias, "default", for the fake upstream's OpenAI API, offline."""
    port = free_port()
    config = {
        "model_list": [
            {"model_name": "default",
             "litellm_params": {"model": "openai/fake-model", "api_base": f"http://127.0.0.1:{up_port}/v1",
                                "api_key": "sk-bench-not-a-real-key"}},
        ],
        # LiteLLM 1.110 refuses to start without a master key: requests carry it (a string compare, no database)
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }  # fmt: skip
    (tmp / "litellm.yaml").write_text(json.dumps(config))  # JSON is YAML
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        # offline: the bundled model price map, no telemetry, no proxy from the environment
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "NO_PROXY": "*",
    }
    proc = subprocess.Popen(
        [str(exe), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "litellm.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    return proc, port


@contextlib.contextmanager
def servers(
    litellm: Path | None = None, compare_src: Path | None = None
) -> Iterator[tuple[int, int, int, int, int, int, int, int, int]]:
    """Start the fake upstream, two routers and (``litellm``) the peer as separate processes; yield (upstream
    port, router port, router pid, limits-router port, limits-router pid, peer port, peer pid), the last two 0
    without the peer, and the port of a router run from ``compare_src`` (another checkout's src/; 0 without).

    The router's cloud route is the fake; its local route points at a closed port, so a request the router keeps
    local is answered 503 at once (the benchmarks measure the router, not a model)."""
    pythonpath = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    tmp = Path(tempfile.mkdtemp(prefix="clawfleet-bench-"))
    up_port, router_port, limits_port = free_port(), free_port(), free_port()
    config = router_config(tmp, up_port, router_port)
    (tmp / "router.yaml").write_text(json.dumps(config))  # JSON is YAML
    (tmp / "identity.key").write_bytes(IDENTITY_KEY)
    (tmp / "identity.key").chmod(0o600)
    big = {"requests_per_min": 10**9, "tokens_per_min": 10**12, "usd_per_day": 1e9, "usd_per_month": 1e9}
    limited = {
        **config,
        "listen": {"host": "127.0.0.1", "port": limits_port},
        "metrics_listen": {"host": "127.0.0.1", "port": free_port()},
        "decision_log": str(tmp / "decisions-limits.jsonl"),
        "identity": {"key_file": str(tmp / "identity.key"), "unknown": "refuse"},
        "state_dir": str(tmp / "state"),
        "limits": {"sandbox": big, "host": big},
        "prices": {"cloud": {"fake-model": {"input": 1.0, "output": 2.0}}},
    }
    (tmp / "router-limits.yaml").write_text(json.dumps(limited))
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "router" / "fake_upstreams.py"), "--port", str(up_port),
         "--fixed-chunks", str(CHUNKS)],
        env=env,
    )  # fmt: skip

    def serve(name: str, src: Path | None = None, port: int | None = None) -> subprocess.Popen[bytes]:
        # the compared router gets its src/ alone: the interpreter's own packages, not this run's PYTHONPATH (so a
        # PYTHONPATH adding uvloop/httptools for the branch leaves "before" as main runs without them)
        path = env["PYTHONPATH"] if src is None else str(src)
        return subprocess.Popen(
            [sys.executable, "-c",
             "import argparse, sys\nfrom clawfleet.router.cli import cmd_serve\n"
             f"sys.exit(cmd_serve(argparse.Namespace(config={str(tmp / name)!r}, host=None, port={port!r})))"],
            env={**env, "PYTHONPATH": path},
        )  # fmt: skip

    router, limits_router = serve("router.yaml"), serve("router-limits.yaml")
    procs = [router, limits_router, upstream]
    compare_port = 0
    if compare_src is not None:
        compare_port = free_port()
        compared = {**config, "metrics_listen": {"host": "127.0.0.1", "port": free_port()},
                    "decision_log": str(tmp / "decisions-compare.jsonl")}  # fmt: skip
        (tmp / "router-compare.yaml").write_text(json.dumps(compared))
        procs.append(serve("router-compare.yaml", compare_src, compare_port))
    try:
        peer, peer_port = (None, 0) if litellm is None else start_litellm(litellm, tmp, up_port)
        if peer is not None:
            procs.append(peer)
        wait_port(up_port, upstream)
        wait_port(router_port, router)
        wait_port(limits_port, limits_router)
        if compare_port:
            wait_port(compare_port, procs[3])
        if peer is not None:
            try:
                wait_http(f"http://127.0.0.1:{peer_port}/health/liveliness", peer, timeout=180)
            except SystemExit:
                print((tmp / "litellm.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
        peer_pid = peer.pid if peer else 0
        compare_pid = procs[3].pid if compare_port else 0
        yield (up_port, router_port, router.pid, limits_port, limits_router.pid, peer_port, peer_pid, compare_port,
               compare_pid)  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(args: argparse.Namespace) -> int:
    litellm = None
    if not args.no_litellm:
        litellm = litellm_binary(args.litellm_venv)
        if litellm is None:
            print(f"LiteLLM peer NOT installed ({args.litellm_venv}/bin/litellm is missing): run "
                  "benchmarks/setup-litellm-venv.sh (or set LITELLM_VENV), or pass --no-litellm to measure "
                  "without the peer.", file=sys.stderr)  # fmt: skip
            return 2
    with servers(litellm, args.compare_src) as ports:
        return measure(args, *ports)


def cpu_ms(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc), in ms; 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(
    args: argparse.Namespace,
    up_port: int,
    router_port: int,
    router_pid: int,
    limits_port: int,
    limits_pid: int,
    peer_port: int = 0,
    peer_pid: int = 0,
    compare_port: int = 0,
    compare_pid: int = 0,
) -> int:
    fast = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m)]
    print(f"uvicorn accelerators importable: {', '.join(fast) or 'none (pure-Python h11 + asyncio)'}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; "
          f"{args.requests} requests per cell after {args.warmup} warm-up; stream = {CHUNKS} SSE chunks")  # fmt: skip
    if peer_port:
        version = subprocess.run([str(args.litellm_venv / "bin" / "python"), "-c",
                                  "import importlib.metadata as m; print(m.version('litellm'))"],
                                 capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
        print(f"peer: LiteLLM proxy {version or '?'} ({args.litellm_venv}), same upstream, same loop")
    else:
        print("peer: LiteLLM left out (--no-litellm)")
    rows = []
    limit_rows = []
    peer_rows = []
    compare_rows = []
    with httpx.Client(timeout=30) as client:
        for size_label, size in (("2 KB", 2048), ("100 KB", 100 * 1024)):
            prompt = clean_text(size)
            for stream in (False, True):
                body = json.dumps(
                    {"model": "default", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
                ).encode()
                headers = {"content-type": "application/json", "authorization": "Bearer agent-placeholder"}
                times: dict[str, list[float]] = {"direct": [], "router": [], "limits": [], "litellm": []}
                cpu = {"router": 0.0, "litellm": 0.0, "compare": 0.0}
                pids = {"router": router_pid, "litellm": peer_pid, "compare": compare_pid}
                urls = {
                    "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
                    "router": f"http://127.0.0.1:{router_port}/v1/chat/completions",
                    "limits": f"http://127.0.0.1:{limits_port}/v1/chat/completions",
                }
                if peer_port:
                    urls["litellm"] = f"http://127.0.0.1:{peer_port}/v1/chat/completions"
                if compare_port:
                    urls["compare"] = f"http://127.0.0.1:{compare_port}/v1/chat/completions"
                    times["compare"] = []
                names = list(urls)
                for i in range(args.warmup + args.requests):
                    shift = i % len(names)  # each target goes first, second... in turn
                    for name in names[shift:] + names[:shift]:
                        c0 = cpu_ms(pids[name]) if name in pids else 0.0
                        hdrs = headers
                        if name == "limits":  # what the gateway adds (signed outside the timed part)
                            hdrs = {**headers, HEADER_SANDBOX: "bench", HEADER_PROOF: sign(IDENTITY_KEY, "bench")}
                        elif name == "litellm":
                            hdrs = {**headers, "authorization": f"Bearer {LITELLM_KEY}"}
                        t0 = time.perf_counter()
                        with client.stream("POST", urls[name], content=body, headers=hdrs) as resp:
                            for _ in resp.iter_raw():
                                pass
                            if resp.status_code != 200:
                                raise SystemExit(f"{name}: HTTP {resp.status_code}")
                        if i >= args.warmup:
                            times[name].append((time.perf_counter() - t0) * 1000)
                            if name in pids:
                                cpu[name] += cpu_ms(pids[name]) - c0
                d50, d99 = pct(times["direct"], 50), pct(times["direct"], 99)
                r50, r99 = pct(times["router"], 50), pct(times["router"], 99)
                l50, l99 = pct(times["limits"], 50), pct(times["limits"], 99)
                label = "yes" if stream else "no"
                rows.append((size_label, label, d50, d99, r50, r99, cpu["router"] / args.requests))
                limit_rows.append((size_label, label, r50, r99, l50, l99))
                if compare_port:
                    c50, c99 = pct(times["compare"], 50), pct(times["compare"], 99)
                    compare_rows.append((size_label, label, c50 - d50, c99 - d99, r50 - d50, r99 - d99,
                                         cpu["compare"] / args.requests, cpu["router"] / args.requests))  # fmt: skip
                if peer_port:
                    p50, p99 = pct(times["litellm"], 50), pct(times["litellm"], 99)
                    peer_rows.append((size_label, label, r50 - d50, r99 - d99, p50 - d50, p99 - d99,
                                      cpu["litellm"] / args.requests))  # fmt: skip
    print()
    print(f"{'prompt':<8}{'stream':<8}{'direct p50':>11}{'direct p99':>11}{'router p50':>11}{'router p99':>11}"
          f"{'added p50':>11}{'added p99':>11}{'router CPU':>11}   (ms; CPU = router process per request)")  # fmt: skip
    for size_label, stream, d50, d99, r50, r99, cpu_req in rows:
        cells = [d50, d99, r50, r99, r50 - d50, r99 - d99, cpu_req]
        print(f"{size_label:<8}{stream:<8}" + "".join(f"{c:>11.3f}" for c in cells))
    print()
    print("attribution + limits (identity proof checked, 4 limits per sandbox and host, sqlite state):")
    print(f"{'prompt':<8}{'stream':<8}{'router p50':>11}{'router p99':>11}{'+limits p50':>12}{'+limits p99':>12}"
          f"{'added p50':>11}{'added p99':>11}   (ms)")  # fmt: skip
    for size_label, stream, r50, r99, l50, l99 in limit_rows:
        cells = [r50, r99, l50, l99, l50 - r50, l99 - r99]
        print(f"{size_label:<8}{stream:<8}" + "".join(f"{c:>11.3f}" if i < 2 or i > 3 else f"{c:>12.3f}"
                                                     for i, c in enumerate(cells)))  # fmt: skip

    print()
    if peer_rows:
        print("peer: LiteLLM proxy in the same loop (added = peer - direct, as for the router):")
        print(f"{'prompt':<8}{'stream':<8}{'router +p50':>12}{'router +p99':>12}{'litellm +p50':>13}"
              f"{'litellm +p99':>13}{'peer CPU':>10}   (ms; CPU = LiteLLM process per request)")  # fmt: skip
        for size_label, stream, ra50, ra99, pa50, pa99, pcpu in peer_rows:
            print(f"{size_label:<8}{stream:<8}{ra50:>12.3f}{ra99:>12.3f}{pa50:>13.3f}{pa99:>13.3f}{pcpu:>10.3f}")
    else:
        print("peer: LiteLLM NOT measured (--no-litellm)")

    if compare_rows:
        print()
        print(
            f"before/after in this loop: 'before' = the router from {args.compare_src}, 'after' = from {ROOT / 'src'}"
        )
        print(f"{'prompt':<8}{'stream':<8}{'before +p50':>12}{'before +p99':>12}{'after +p50':>12}{'after +p99':>12}"
              f"{'before CPU':>11}{'after CPU':>11}   (ms over direct; CPU per request)")  # fmt: skip
        for size_label, stream, *cells in compare_rows:
            print(f"{size_label:<8}{stream:<8}" + "".join(f"{c:>12.3f}" for c in cells[:4])
                  + "".join(f"{c:>11.3f}" for c in cells[4:]))  # fmt: skip

    limits_alone(args)
    clf = Classifier()
    print()
    print("classifier alone (in-process):")
    texts = (
        ("100 KB clean agent traffic", clean_text(100 * 1024)),
        ("100 KB eval-set text (~1150 PII)", mixed_text(100 * 1024)),
        ("2 KB clean agent traffic", clean_text(2048)),
    )
    for label, text in texts:
        clf.classify(text)
        ts = []
        for _ in range(args.classify_runs):
            t0 = time.perf_counter()
            clf.classify(text)
            ts.append((time.perf_counter() - t0) * 1000)
        print(f"  {label:<32} median {statistics.median(ts):8.3f} ms   p99 {pct(ts, 99):8.3f} ms")
    return 0


def limits_alone(args: argparse.Namespace) -> None:
    """The attribution and limit steps in-process, per request: verify the proof, admit (2 limits x 2
    scopes), check the spending budgets, record tokens and cost (one sqlite transaction each for admit and
    record). The signature is made outside the timed part, as the gateway makes it."""
    from clawfleet.router.identity import IdentityVerifier
    from clawfleet.router.limits import Limiter
    from clawfleet.router.limits_config import LimitsConfig, LimitSet
    from clawfleet.router.usage_store import UsageStore

    big = LimitSet(10**9, 10**12, 1e9, 1e9)
    with tempfile.TemporaryDirectory() as tmp:
        limiter = Limiter(LimitsConfig(big, {}, big), UsageStore(Path(tmp) / "usage.sqlite"))
        verifier = IdentityVerifier(IDENTITY_KEY)
        ts = []
        for i in range(args.requests * 5):
            proof = sign(IDENTITY_KEY, "bench")
            t0 = time.perf_counter()
            sandbox, _ = verifier.verify(["bench"], [proof])
            assert sandbox == "bench"
            limiter.admit(sandbox)
            limiter.check_spend(sandbox)
            limiter.record(sandbox, 1500, 0.002)
            if i >= 50:
                ts.append((time.perf_counter() - t0) * 1000)
        limiter.store.close()
    print()
    print(f"attribution + limits alone (in-process, sqlite WAL): median {statistics.median(ts):.3f} ms   "
          f"p99 {pct(ts, 99):.3f} ms per request")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--classify-runs", type=int, default=30)
    ap.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM peer out (it is measured by default)")
    ap.add_argument(
        "--compare-src",
        type=Path,
        help="also run the router from this src/ directory (e.g. a checkout of main) in the same loop: before/after",
    )
    ap.add_argument(
        "--litellm-venv",
        type=Path,
        default=LITELLM_VENV,
        help="venv made by benchmarks/setup-litellm-venv.sh (default: $LITELLM_VENV or .venv-litellm)",
    )
    return run(ap.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
