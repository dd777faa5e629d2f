"""Socket inode lookup for caller identification: reading ``/proc/<pid>/net/tcp`` (what clawfleet.gateway.ident
did, and still does where the kernel has no sock_diag) vs an exact 4-tuple query through sock_diag
(:mod:`clawfleet.gateway.sockdiag`, what it does now), while another network namespace holds N connections.

    sudo .venv/bin/python benchmarks/bench_inode_lookup.py [--conns 0,5000] [-n 100]

The kernel builds ``/proc/<pid>/net/tcp`` by walking the host's whole TCP hash table and skipping the sockets of
other namespaces, so its cost grows with every socket on the host; ``SOCK_DIAG_BY_FAMILY`` without ``NLM_F_DUMP``
looks the one socket up by its 4-tuple. The N connections are opened inside a fresh namespace (``unshare -n``)
standing in for another sandbox; the lookups are made for a connection in this one. Both methods must find the
same inode (checked). Root only (network namespaces). Prints the median time per lookup of each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

from clawfleet.gateway.sockdiag import SockDiag

HOLDER = r"""
import resource, socket, subprocess, sys
n = int(sys.argv[1])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
resource.setrlimit(resource.RLIMIT_NOFILE, (2 * n + 64, 2 * n + 64))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(4096)
held = []
for _ in range(n):
    held.append(socket.create_connection(srv.getsockname()))
    held.append(srv.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"""


def hex_addr(ip: str, port: int) -> str:
    (word,) = struct.unpack("<I", socket.inet_aton(ip))
    return f"{word:08X}:{port:04X}"


def proc_inode(local: tuple[str, int], remote: tuple[str, int]) -> int:
    with open("/proc/self/net/tcp", "rb") as f:
        data = f.read()
    i = data.find(f" {hex_addr(*local)} {hex_addr(*remote)} ".encode())
    return int(data[i : data.find(b"\n", i)].split()[8])


def timed(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", default="0,5000", help="connections held in the other namespace, per row")
    ap.add_argument("-n", type=int, default=100, help="lookups per method and row")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_inode_lookup: needs root (network namespaces)", file=sys.stderr)
        return 2
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    client = socket.create_connection(srv.getsockname())
    peer = srv.accept()[0]
    local, remote = client.getsockname(), client.getpeername()
    diag = SockDiag()
    want = int(os.readlink(f"/proc/self/fd/{client.fileno()}")[8:-1])
    print(f"{'other namespace':>16} {'/proc/net/tcp us':>17} {'sock_diag us':>13} {'ratio':>7}")
    for count in (int(c) for c in args.conns.split(",")):
        holder = subprocess.Popen(["unshare", "-n", "--", sys.executable, "-c", HOLDER, str(count)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "ready"
            assert proc_inode(local, remote) == diag.inode(local, remote) == want
            a = timed(lambda: proc_inode(local, remote), args.n)
            b = timed(lambda: diag.inode(local, remote), args.n)
        finally:
            holder.stdin.close()
            holder.wait()
        print(f"{count:>10} conns {a * 1e6:>17.0f} {b * 1e6:>13.1f} {a / b:>7.0f}")
    client.close()
    peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
