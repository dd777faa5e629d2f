"""Egress gateway benchmark: direct vs gateway (passthrough, TLS-inspected) vs mitmproxy vs Squid ssl-bump.

One run, side by side, on loopback: a minimal HTTPS origin (test CA) in its own process, the gateway
(``clawfleet gateway proxy``: caller identification, policy decisions, JSON decision log all on), mitmdump
(from PyPI, in its own venv: benchmarks/setup-mitmproxy-venv.sh) and Squid with ssl-bump (Debian's
squid-openssl: benchmarks/setup-squid.sh), each driven by the same asyncio load generator in a separate
process: keep-alive HTTP/1.1 GETs over TLS, at 1 and 50 concurrent connections.
Per cell: requests/s, p50 and p99 latency; "added" = p50/p99 minus direct's at the same concurrency; the
proxy's CPU per request (its whole process tree: squid's certgen helpers included).

    .venv/bin/python benchmarks/bench_gateway.py [--requests 2000] [--json out.json] [--no-mitmproxy] [--no-squid]

Squid runs in the foreground (-N) from a throwaway config, certgen db and logs in the bench's tempdir, with
no disk cache, bumping with its own test CA and trusting only the origin's test CA upstream (as root it
drops to SQUID_USER, default ``proxy``); it is stopped with the other helpers, even when the run fails.
Without squid the bench stops and says what to run (exit 2); ``--no-squid`` measures without it.

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
SQUID = os.environ.get("SQUID") or shutil.which("squid") or "/usr/sbin/squid"
CERTGEN = os.environ.get("SQUID_CERTGEN", "/usr/lib/squid/security_file_certgen")
# squid's data files (error pages, MIME table, icons): elsewhere only when its .debs are unpacked, not installed
SQUID_SHARE = Path(os.environ.get("SQUID_SHARE", "/usr/share/squid"))
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


# the CONNECT target per proxy: the gateway and squid resolve the test names themselves (--static-host, hosts_file)
CONNECT_HOST = {
    "passthrough": "pass.test",
    "inspected": "origin.test",
    "mitmproxy": "127.0.0.1",
    "squid": "origin.test",
}


async def _open(mode: str, proxy_port: int, origin_port: int, ctx: ssl.SSLContext):
    if mode == "direct":
        r, w = await asyncio.open_connection("127.0.0.1", origin_port, ssl=ctx, server_hostname="origin.test")
        return r, w, "origin.test"
    host = CONNECT_HOST[mode]
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


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (squid's certgen helpers, which squid puts in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants, plus what their reaped children used, from /proc:
    a helper is counted while alive, or in its parent's cutime/cstime once reaped, never both."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            total += sum(int(x) for x in _stat(p)[11:15])
    return total / os.sysconf("SC_CLK_TCK")


# -- squid (ssl-bump peer) --------------------------------------------------------------------------------


def make_bump_ca(d: Path) -> tuple[Path, Path]:
    """Squid's own signing CA (RSA, what its certgen is built around), written beside its config."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench squid CA")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert, pkey = d / "bump-ca.pem", d / "bump-ca.key"
    cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pkey.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, pkey


def squid_missing() -> str | None:
    """Why squid with ssl-bump cannot run here, or None."""
    if not (os.path.isfile(SQUID) and os.access(SQUID, os.X_OK)):
        return f"squid not found ({SQUID})"
    if not os.access(CERTGEN, os.X_OK):
        return f"squid's certgen helper not found ({CERTGEN}): squid without ssl-bump (install squid-openssl)"
    return None


def start_squid(procs: list[subprocess.Popen], tmp: Path, origin_ca: Path) -> tuple[subprocess.Popen, int, Path]:
    """Squid in the foreground with ssl-bump (peek, stare, bump: its fake certificate mimics the origin's),
    from a throwaway dir; returns (process, port, the CA the client must trust)."""
    d = tmp / "squid"
    d.mkdir()
    bump_ca, bump_key = make_bump_ca(d)
    upstream_ca = d / "origin-ca.pem"
    shutil.copyfile(origin_ca, upstream_ca)
    (d / "hosts").write_text("127.0.0.1 origin.test pass.test\n")  # as the gateway's --static-host
    port = _free_port()
    # the certgen db must not exist yet: -c creates it
    subprocess.run([CERTGEN, "-c", "-s", str(d / "ssl_db"), "-M", "16MB"], check=True, stdout=subprocess.DEVNULL)
    user = ""
    if os.geteuid() == 0:  # as root, squid switches to cache_effective_user: name it, and let it own its dir
        import pwd

        name = os.environ.get("SQUID_USER", "proxy")
        pw = pwd.getpwnam(name)
        user = f"cache_effective_user {name}\n"
        os.chmod(tmp, 0o711)  # traverse only: the other files in tmp stay unreadable to it
        for p in [d, *d.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
    (d / "squid.conf").write_text(
        f"http_port 127.0.0.1:{port} ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB "
        f"tls-cert={bump_ca} tls-key={bump_key}\n"
        f"sslcrtd_program {CERTGEN} -s {d / 'ssl_db'} -M 16MB\n"
        "sslcrtd_children 4 startup=1 idle=1\n"
        f"tls_outgoing_options cafile={upstream_ca}\n"
        "acl step1 at_step SslBump1\nacl step2 at_step SslBump2\n"
        "ssl_bump peek step1\nssl_bump stare step2\nssl_bump bump all\n"
        "acl bench src 127.0.0.1\nhttp_access allow bench\nhttp_access deny all\n"
        # no disk cache (no cache_dir) and nothing cached in memory: every request goes to the origin
        "cache deny all\ncache_mem 0 MB\n"
        f"hosts_file {d / 'hosts'}\n"
        f"error_directory {SQUID_SHARE / 'errors' / 'templates'}\nmime_table {SQUID_SHARE / 'mime.conf'}\n"
        f"icon_directory {SQUID_SHARE / 'icons'}\nerr_page_stylesheet none\n"
        f"{user}pid_filename {d / 'squid.pid'}\ncache_log {d / 'cache.log'}\n"
        f"access_log stdio:{d / 'access.log'}\ncoredump_dir {d}\nnetdb_filename none\n"
        "pinger_enable off\ndigest_generation off\nlogfile_rotate 0\nshutdown_lifetime 1 seconds\n"
    )
    proc = subprocess.Popen([SQUID, "-N", "-f", str(d / "squid.conf")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "squid.stderr", "wb"))  # fmt: skip  # noqa: SIM115
    procs.append(proc)
    try:
        _wait_port(port, 30)
    except RuntimeError:
        for log in ("squid.stderr", "cache.log"):
            with contextlib.suppress(OSError):
                print(f"--- {log}\n" + (d / log).read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    return proc, port, bump_ca


def start_origin(procs: list[subprocess.Popen], cert: Path, key: Path, port_file: Path) -> int:
    """Starts this file's TLS origin (appended to ``procs``, for ``stop``) and returns its port once written."""
    procs.append(subprocess.Popen([sys.executable, __file__, "origin", str(cert), str(key), str(port_file)]))
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            break
        time.sleep(0.05)
    return int(port_file.read_text())


def stop(procs: list[subprocess.Popen], trees: tuple[int, ...] = ()) -> None:
    """SIGINT to every helper first (they stop together), then reap each; kill what has not left in 10 s.
    ``trees``: processes (squid) whose descendants (its certgen helpers) are killed too if still there after."""
    left = []
    for root in trees:  # (pid, start time): a pid reused meanwhile is not ours to kill
        for pid in _tree(root)[1:]:
            with contextlib.suppress(OSError):
                left.append((pid, _stat(pid)[19]))
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid, started in left:
        with contextlib.suppress(OSError):
            if _stat(pid)[19] == started:
                os.kill(pid, signal.SIGKILL)


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
    ap.add_argument("--no-squid", action="store_true", help="leave the Squid ssl-bump peer out (measured by default)")
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

    if not a.no_squid and (why := squid_missing()):
        print(f"{why}: run benchmarks/setup-squid.sh (as root; or set SQUID / SQUID_CERTGEN), or pass --no-squid "
              "to measure without the Squid ssl-bump peer", file=sys.stderr)  # fmt: skip
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    procs: list[subprocess.Popen] = []
    trees: tuple[int, ...] = ()
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
        squid_ca = None
        sport = 0
        if not a.no_squid:
            squid_proc, sport, squid_ca = start_squid(procs, tmp, ca)
            version = subprocess.run([SQUID, "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
            print(f"peer: {' '.join(version)}, ssl-bump ({SQUID})", flush=True)
            trees = (squid_proc.pid,)

        cells = []
        for conc in (int(c) for c in a.concurrency.split(",")):
            plan = [("direct", 0, ca), ("passthrough", gport, ca), ("inspected", gport, gw_ca)]
            if mitm_ca is not None:
                plan.append(("mitmproxy", mport, mitm_ca))
            if squid_ca is not None:
                plan.append(("squid", sport, squid_ca))
            for mode, pport, cafile in plan:
                total = a.requests if mode != "mitmproxy" else min(a.requests, 1000)
                proxy_pid = {"passthrough": gw_proc.pid, "inspected": gw_proc.pid}.get(mode)
                if mode == "mitmproxy":
                    proxy_pid = mitm_proc.pid
                elif mode == "squid":
                    proxy_pid = squid_proc.pid
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
        for conc in sorted({c["concurrency"] for c in cells}):
            ins, pas = by.get(("inspected", conc)), by[("passthrough", conc)]
            summary[conc] = {"passthrough_vs_direct": pas["rps_vs_direct"],
                             "inspected_added_p50_ms": ins["added_p50_ms"] if ins else None}  # fmt: skip
            for peer in ("mitmproxy", "squid"):
                # each TLS-inspection figure as a ratio from this one run: >1 = the gateway is ahead
                other = by.get((peer, conc))
                rps = round(ins["rps"] / other["rps"], 2) if ins and other else None
                summary[conc][f"inspected_vs_{peer}_rps"] = rps
                summary[conc][f"inspected_vs_{peer}_cpu_per_req"] = (
                    round(other["proxy_cpu_us_per_req"] / ins["proxy_cpu_us_per_req"], 2)
                    if ins and other and ins.get("proxy_cpu_us_per_req") else None)  # fmt: skip
        print(json.dumps({"summary": summary}, indent=1))
        if a.json:
            Path(a.json).write_text(json.dumps({"cells": cells, "summary": summary, "cpus": os.cpu_count()}, indent=1))
    finally:
        stop(procs, trees)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
