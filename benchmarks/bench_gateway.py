"""Egress gateway benchmark: direct vs gateway (CONNECT passthrough) vs gateway (TLS-inspected) vs mitmproxy.

One run, side by side, on loopback: a minimal HTTPS origin (test CA) in its own process, the gateway
(``clawfleet gateway proxy``: caller identification, policy decisions, JSON decision log all on) and
mitmdump (from PyPI, in its own venv: benchmarks/setup-mitmproxy-venv.sh), each driven by the same asyncio
load generator in a separate process: keep-alive HTTP/1.1 GETs over TLS, at 1 and 50 concurrent connections.
Per cell: requests/s, p50 and p99 latency; "added" = p50/p99 minus direct's at the same concurrency.

    .venv/bin/python benchmarks/bench_gateway.py [--requests 2000] [--json out.json] [--no-mitmproxy]

BENCH_PROFILE=FILE runs the gateway under cProfile. Needs Python >= 3.11 (StreamWriter.start_tls).
Connections (CONNECT + TLS handshakes) are opened before the clock starts and each connection's first
request is a warm-up: the figures are the steady keep-alive request path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
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

ROOT = Path(__file__).resolve().parent.parent
MITM_VENV = Path(os.environ.get("MITM_VENV", ROOT / ".venv-mitm"))
BODY = b"hello, bench\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


# -- test PKI ---------------------------------------------------------------------------------------------


def make_pki(d: Path) -> tuple[Path, Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    later = now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("origin.test"), x509.DNSName("pass.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "origin.test")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = d / "ca.pem", d / "origin.pem", d / "origin.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


# -- origin -----------------------------------------------------------------------------------------------


class _Origin(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * n)


async def run_origin(cert: str, key: str, port_file: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.get_running_loop().create_server(_Origin, "127.0.0.1", 0, ssl=ctx, backlog=1024)
    Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
    await server.serve_forever()


# -- load generator ---------------------------------------------------------------------------------------


async def _open(mode: str, proxy_port: int, origin_port: int, ctx: ssl.SSLContext):
    if mode == "direct":
        r, w = await asyncio.open_connection("127.0.0.1", origin_port, ssl=ctx, server_hostname="origin.test")
        return r, w, "origin.test"
    host = {"passthrough": "pass.test", "inspected": "origin.test", "mitmproxy": "127.0.0.1"}[mode]
    sni = "pass.test" if mode == "passthrough" else "origin.test"
    r, w = await asyncio.open_connection("127.0.0.1", proxy_port)
    w.write(f"CONNECT {host}:{origin_port} HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"CONNECT refused: {head[:200]!r}")
    await w.start_tls(ctx, server_hostname=sni)
    return r, w, sni


async def _get(r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes) -> None:
    w.write(req)
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response {head[:200]!r}")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await r.readexactly(length)


async def run_client(mode: str, conc: int, total: int, proxy_port: int, origin_port: int, cafile: str) -> dict:
    ctx = ssl.create_default_context(cafile=cafile)
    conns = await asyncio.gather(*(_open(mode, proxy_port, origin_port, ctx) for _ in range(conc)))
    latencies: list[float] = []
    left = [total]

    async def worker(r, w, host) -> None:
        req = f"GET /bench/x HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode()
        await _get(r, w, req)  # warm-up
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            await _get(r, w, req)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker(*c) for c in conns))
    elapsed = time.perf_counter() - start
    for _, w, _ in conns:
        w.close()
    return summary(mode, conc, latencies, elapsed)


def summary(mode: str, conc: int, latencies: list[float], elapsed: float) -> dict:
    """One cell's figures from its per-request latencies (seconds) and its wall time."""
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"mode": mode, "concurrency": conc, "requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(q[49] * 1000, 3), "p99_ms": round(q[98] * 1000, 3)}  # fmt: skip


# -- orchestration ----------------------------------------------------------------------------------------


def _wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def start_origin(procs: list[subprocess.Popen], cert: Path, key: Path, port_file: Path) -> int:
    """Starts this file's TLS origin (appended to ``procs``, for ``stop``) and returns its port once written."""
    procs.append(subprocess.Popen([sys.executable, __file__, "origin", str(cert), str(key), str(port_file)]))
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            break
        time.sleep(0.05)
    return int(port_file.read_text())


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGINT to every helper first (they stop together), then reap each; kill what has not left in 10 s."""
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per cell (default 2000)")
    ap.add_argument("--concurrency", default="1,50")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--no-mitmproxy", action="store_true")
    ap.add_argument("role", nargs="?", default="main", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "origin":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_origin(*a.args))
        return 0
    if a.role == "client":
        mode, conc, total, pport, oport, cafile = a.args
        print(json.dumps(asyncio.run(run_client(mode, int(conc), int(total), int(pport), int(oport), cafile))))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    procs: list[subprocess.Popen] = []
    py = sys.executable
    try:
        ca, cert, key = make_pki(tmp)
        port_file = tmp / "origin.port"
        oport = start_origin(procs, cert, key, port_file)
        policy = tmp / "policy.yaml"
        client_exe = os.path.realpath(py)
        policy.write_text(
            "version: 1\nnetwork_policies:\n  bench:\n    name: bench\n    endpoints:\n"
            f"      - {{host: pass.test, port: {oport}}}\n"
            f"      - host: origin.test\n        port: {oport}\n        protocol: rest\n"
            '        rules: [{allow: {method: GET, path: "/bench/**"}}]\n'
            f"    binaries: [{{path: {client_exe}}}]\n"
        )
        gport = _free_port()
        gw_ca = tmp / "gateway-ca.pem"
        prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
        gw_proc = subprocess.Popen(
            [py, *prof, "-m", "clawfleet.cli", "gateway", "proxy", "--policy", str(policy),
             "--listen", f"127.0.0.1:{gport}",
             "--log", str(tmp / "decisions.jsonl"), "--extra-ca", str(ca), "--ca-out", str(gw_ca),
             "--static-host", "origin.test=127.0.0.1", "--static-host", "pass.test=127.0.0.1"],
            cwd=ROOT, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(gw_proc)
        _wait_port(gport)
        mitm_ca = None
        mport = 0
        mitmdump = MITM_VENV / "bin" / "mitmdump"
        if not a.no_mitmproxy and mitmdump.exists():
            mport = _free_port()
            confdir = tmp / "mitm"
            mitm_proc = subprocess.Popen(
                [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(mport), "--set",
                 f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={ca}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            procs.append(mitm_proc)
            _wait_port(mport, 60)
            mitm_ca = confdir / "mitmproxy-ca-cert.pem"
        elif not a.no_mitmproxy:
            print(f"mitmproxy not found at {mitmdump}: run benchmarks/setup-mitmproxy-venv.sh", file=sys.stderr)

        cells = []
        for conc in (int(c) for c in a.concurrency.split(",")):
            plan = [("direct", 0, ca), ("passthrough", gport, ca), ("inspected", gport, gw_ca)]
            if mitm_ca is not None:
                plan.append(("mitmproxy", mport, mitm_ca))
            for mode, pport, cafile in plan:
                total = a.requests if mode != "mitmproxy" else min(a.requests, 1000)
                proxy_pid = {"passthrough": gw_proc.pid, "inspected": gw_proc.pid}.get(mode)
                if mode == "mitmproxy":
                    proxy_pid = mitm_proc.pid
                cpu0 = _cpu_seconds(proxy_pid) if proxy_pid else 0.0
                out = subprocess.run([py, __file__, "client", mode, str(conc), str(total), str(pport), str(oport),
                                      str(cafile)], capture_output=True, text=True, timeout=600)  # fmt: skip
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    raise SystemExit(f"client failed for {mode} x{conc}")
                cell = json.loads(out.stdout)
                if proxy_pid:  # proxy CPU per request: robust to a busy, shared machine (incl. connection setup)
                    cell["proxy_cpu_us_per_req"] = round((_cpu_seconds(proxy_pid) - cpu0) / cell["requests"] * 1e6, 1)
                cells.append(cell)
        by = {(c["mode"], c["concurrency"]): c for c in cells}
        for c in cells:
            d = by[("direct", c["concurrency"])]
            c["added_p50_ms"] = round(c["p50_ms"] - d["p50_ms"], 3)
            c["added_p99_ms"] = round(c["p99_ms"] - d["p99_ms"], 3)
            c["rps_vs_direct"] = round(c["rps"] / d["rps"], 3)
        print(f"{'mode':<12} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
              f"{'vs direct':>9} {'proxy CPU us/req':>16}")  # fmt: skip
        for c in cells:
            print(f"{c['mode']:<12} {c['concurrency']:>4} {c['rps']:>9.1f} {c['p50_ms']:>8.3f} {c['p99_ms']:>8.3f} "
                  f"{c['added_p50_ms']:>8.3f} {c['added_p99_ms']:>8.3f} {c['rps_vs_direct']:>9.2f} "
                  f"{c.get('proxy_cpu_us_per_req', '-'):>16}")  # fmt: skip
        summary = {}
        for conc in {c["concurrency"] for c in cells}:
            ins, mit = by.get(("inspected", conc)), by.get(("mitmproxy", conc))
            pas = by[("passthrough", conc)]
            ratio = round(ins["rps"] / mit["rps"], 1) if ins and mit else None
            cpu_ratio = (round(mit["proxy_cpu_us_per_req"] / ins["proxy_cpu_us_per_req"], 1)
                         if ins and mit and ins.get("proxy_cpu_us_per_req") else None)  # fmt: skip
            summary[conc] = {"passthrough_vs_direct": pas["rps_vs_direct"],
                             "inspected_added_p50_ms": ins["added_p50_ms"] if ins else None,
                             "inspected_vs_mitmproxy_rps": ratio,
                             "inspected_vs_mitmproxy_cpu_per_req": cpu_ratio}  # fmt: skip
        print(json.dumps({"summary": summary}, indent=1))
        if a.json:
            Path(a.json).write_text(json.dumps({"cells": cells, "summary": summary, "cpus": os.cpu_count()}, indent=1))
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
