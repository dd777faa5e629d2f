"""Attacker helper: a python3 process that tries to be identified as curl by sharing its proxy socket.

    python3 borrow_socket.py MODE PROXY_PORT CONNECT_TARGET

The socket is created unconnected and inherited by ``/usr/bin/curl -K -`` (curl then blocks reading its
config from stdin, holding the socket, never using it). Then, per MODE:

* ``hide``: a thread calls ``unshare(CLONE_FILES)`` (its own copy of the fd table keeps the socket), the main
  thread closes its copy, and the thread connects and sends ``CONNECT CONNECT_TARGET``: the only holder in
  ``/proc/<tgid>/fd`` is curl;
* ``share``: this process keeps the socket in its main table and connects (two binaries hold it);
* ``fork``: no curl: a forked python3 child holds the socket too (the same binary: the allowed twin);
* ``stale``: like ``share``, but first waits for a line on stdin, so the test can read this process's fd
  table while it is idle (a cache must not trust that old read).

Prints one JSON line: {"unshare": errno or null, "status": first response line or an error}.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading

CLONE_FILES = 0x400


def exchange(sock: socket.socket, port: int, target: str) -> str:
    try:
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = sock.recv(200)
        return data.split(b"\r\n", 1)[0].decode("latin-1") or "closed"
    except OSError as exc:
        return f"error: {exc}"


def main() -> None:
    mode, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "stale":
        sys.stdin.readline()
    sock = socket.socket()
    sock.set_inheritable(True)
    out: dict = {"unshare": None}
    helper = None
    if mode == "fork":
        child = os.fork()
        if child == 0:  # holds the socket, does nothing with it
            os.read(os.open("/dev/null", os.O_RDONLY), 1)
            threading.Event().wait(60)
            os._exit(0)
    else:
        helper = subprocess.Popen(["/usr/bin/curl", "-K", "-"], stdin=subprocess.PIPE, pass_fds=(sock.fileno(),))
    try:
        if mode == "hide":
            ready, done = threading.Event(), threading.Event()

            def hidden() -> None:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.unshare(CLONE_FILES) != 0:
                    out["unshare"] = ctypes.get_errno()
                ready.set()
                ready.wait()
                done.wait()
                out["status"] = exchange(sock, port, target)

            t = threading.Thread(target=hidden)
            t.start()
            ready.wait()
            if out["unshare"] is None:
                os.close(sock.fileno())  # the main table's copy; the thread's private copy stays
            done.set()
            t.join()
        else:
            out["status"] = exchange(sock, port, target)
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()
        elif mode == "fork":
            os.kill(child, 9)
            os.waitpid(child, 0)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
