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

IDENTITY_KEY = b"bench-identity-key-0123456789abcdef0123456789"

CHUNKS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def servers() -> Iterator[tuple[int, int, int, int, int]]:
    """Start the fake upstream and two routers as separate processes; yield (upstream port, router port,
    router pid, limits-router port, limits-router pid).

    The router's cloud route is the fake; its local route points at a closed port, so a request the router keeps
    local is answered 503 at once (the benchmarks measure the router, not a model)."""
    pythonpath = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    tmp = Path(tempfile.mkdtemp(prefix="clawfleet-bench-"))
    up_port, router_port, limits_port = free_port(), free_port(), free_port()
    (tmp / "key").write_text("sk-bench-not-a-real-key")
    config = {
        "listen": {"host": "127.0.0.1", "port": router_port},
        "metrics_listen": {"host": "127.0.0.1", "port": free_port()},
        "decision_log": str(tmp / "decisions.jsonl"),
        "providers": {
            "local": {"type": "vllm", "base_url": f"http://127.0.0.1:{free_port()}/v1", "models": {"default": "m"}},
            "cloud": {"type": "openai", "base_url": f"http://127.0.0.1:{up_port}/v1", "api_key_file": str(tmp / "key"),
                      "models": {"default": "fake-model"}},
        },
        "routes": [
            {"name": "sensitive-local", "classes": ["any", "unscanned_content"], "action": "local",
             "provider": "local"},
            {"name": "default", "action": "cloud", "provider": "cloud"},
        ],
    }  # fmt: skip
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

    def serve(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c",
             "import argparse, sys\nfrom clawfleet.router.cli import cmd_serve\n"
             f"sys.exit(cmd_serve(argparse.Namespace(config={str(tmp / name)!r}, host=None, port=None)))"],
            env=env,
        )  # fmt: skip

    router, limits_router = serve("router.yaml"), serve("router-limits.yaml")
    try:
        wait_port(up_port, upstream)
        wait_port(router_port, router)
        wait_port(limits_port, limits_router)
        yield up_port, router_port, router.pid, limits_port, limits_router.pid
    finally:
        for proc in (router, limits_router, upstream):
            proc.terminate()
            proc.wait(timeout=10)


def run(args: argparse.Namespace) -> int:
    with servers() as ports:
        return measure(args, *ports)


def cpu_ms(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc), in ms; 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(
    args: argparse.Namespace, up_port: int, router_port: int, router_pid: int, limits_port: int, limits_pid: int
) -> int:
    fast = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m)]
    print(f"uvicorn accelerators importable: {', '.join(fast) or 'none (pure-Python h11 + asyncio)'}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; "
          f"{args.requests} requests per cell after {args.warmup} warm-up; stream = {CHUNKS} SSE chunks")  # fmt: skip
    rows = []
    limit_rows = []
    with httpx.Client(timeout=30) as client:
        for size_label, size in (("2 KB", 2048), ("100 KB", 100 * 1024)):
            prompt = clean_text(size)
            for stream in (False, True):
                body = json.dumps(
                    {"model": "default", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
                ).encode()
                headers = {"content-type": "application/json", "authorization": "Bearer agent-placeholder"}
                times: dict[str, list[float]] = {"direct": [], "router": [], "limits": []}
                cpu = 0.0
                urls = {
                    "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
                    "router": f"http://127.0.0.1:{router_port}/v1/chat/completions",
                    "limits": f"http://127.0.0.1:{limits_port}/v1/chat/completions",
                }
                orders = (
                    ("direct", "router", "limits"),
                    ("limits", "router", "direct"),
                    ("router", "limits", "direct"),
                )
                for i in range(args.warmup + args.requests):
                    for name in orders[i % 3]:
                        c0 = cpu_ms(router_pid) if name == "router" else 0.0
                        hdrs = headers
                        if name == "limits":  # what the gateway adds (signed outside the timed part)
                            hdrs = {**headers, HEADER_SANDBOX: "bench", HEADER_PROOF: sign(IDENTITY_KEY, "bench")}
                        t0 = time.perf_counter()
                        with client.stream("POST", urls[name], content=body, headers=hdrs) as resp:
                            for _ in resp.iter_raw():
                                pass
                            if resp.status_code != 200:
                                raise SystemExit(f"{name}: HTTP {resp.status_code}")
                        if i >= args.warmup:
                            times[name].append((time.perf_counter() - t0) * 1000)
                            if name == "router":
                                cpu += cpu_ms(router_pid) - c0
                d50, d99 = pct(times["direct"], 50), pct(times["direct"], 99)
                r50, r99 = pct(times["router"], 50), pct(times["router"], 99)
                l50, l99 = pct(times["limits"], 50), pct(times["limits"], 99)
                rows.append((size_label, "yes" if stream else "no", d50, d99, r50, r99, cpu / args.requests))
                limit_rows.append((size_label, "yes" if stream else "no", r50, r99, l50, l99))
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
    return run(ap.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
