"""Parsers forked from one pre-imported interpreter instead of each importing its own (issue 16).

A privsep parser (:mod:`.privsep`) used to be a fresh ``python -m clawfleet.supervisor gateway-parser``: about
0.7 s of CPU importing the gateway before it could drop and accept, 1.4 s a sandbox on a loaded 2-core host, so 50
sandboxes waited 68 s for the last one. The daemon now starts one **forkserver** (``python -m
clawfleet.supervisor gateway-parser-forkserver FD DAEMON_PID``) that imports and preloads what a parser needs,
then forks one child per parser. The properties of a fresh interpreter are kept:

* the forkserver is started by the daemon as a fresh interpreter and never reads a setup: its memory holds no
  sandbox's CA key, secret or policy, so a forked parser inherits none of another sandbox's (its own setup comes
  on its own stdin, read by the child after the fork, exactly as before);
* each child drops to the gateway user, sets no_new_privs, becomes non-dumpable and checks that no privilege is
  left before it accepts (:func:`.privsep.parser_child`), as the fresh interpreter did;
* the forkserver dies with the daemon (``PR_SET_PDEATHSIG``) and each parser with the forkserver, so no parser
  outlives the daemon.

What a fork does not renew: every parser shares the forkserver's address-space layout (ASLR), stack canary,
CPython hash secret and pre-fork heap layout, where fresh interpreters had their own. Nothing secret is shared
(OpenSSL reseeds after a fork, ``random`` reseeds itself, ``os.urandom`` is the kernel's, no SSL context exists
before the fork), but a memory-disclosure bug in one sandbox's parser would tell an attacker the layout of the
others' (defence in depth, not isolation: they already share one uid and cannot ptrace each other). A pool of
pre-started fresh interpreters would keep both; it is not built.

Wire format, daemon to forkserver, on a ``SOCK_SEQPACKET`` socketpair: one datagram per parser, the JSON
``{"metrics_dir": DIR | null}`` with the child's descriptors (stdin, listener, channel, log, readiness pipe, and
the OCSF log when there is one); the answer is ``{"pid": N}`` or ``{"error": "..."}``. The forkserver reaps its
children itself (it is their parent): it logs each one's exit status on its stderr (the daemon's journal) and
sends it to the daemon as ``{"exited": PID, "status": N}`` (``Popen.returncode``'s convention: the exit code, or
minus the signal), never blocking on it. The daemon follows each child with a pidfd (:class:`ForkedProcess`) and,
once it has exited, takes its status from those reports (the decision log's ``parser_exited`` carries it).

A forked child keeps only the descriptors it was sent and 0-2: every other one the forkserver holds (its channel
to the daemon, its wake-up pipe, whatever an import opened) is closed before the child runs, so no parser can use
or leak a descriptor it was not meant to have.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

__all__ = ["UNKNOWN_STATUS", "ForkedProcess", "Forkserver", "close_unexpected", "forkserver_main", "received_fds"]

_MAX_FDS = 8
# The longest wait for the forkserver's answer (its first includes its imports): a wedged or stopped forkserver
# is killed and started again on the next request instead of holding every parser start behind its lock.
_REPLY_TIMEOUT = 120.0
_FD_SIZE = array.array("i").itemsize


#: ``returncode`` of a child whose exit status never came (the forkserver died first, or the report was dropped)
UNKNOWN_STATUS = -1
# How long :meth:`ForkedProcess.wait` (an executor thread, never the event loop) waits for the forkserver's report
# of a child it saw gone (it reaps on SIGCHLD: milliseconds).
_STATUS_WAIT = 0.5
_MAX_KEPT_EXITS = 1024  # reports nobody asked for yet (bounded: a report for a pid nobody follows is dropped)


class ForkedProcess:
    """What :class:`.privsep.Parser` uses of a ``subprocess.Popen``, for a child of the forkserver: the daemon is not
    its parent, so it follows it with a pidfd (signals cannot reach a recycled pid). Its exit status is the
    forkserver's to reap: ``status(pid, timeout)`` asks for the one it reported (:meth:`Forkserver.exit_status`);
    ``returncode`` is :data:`UNKNOWN_STATUS` until one comes. :meth:`poll` runs on the daemon's event loop (every
    sandbox's): it never waits, not even for the forkserver's lock that another parser's fork holds; only
    :meth:`wait` (an executor's) waits for the report, at most ``_STATUS_WAIT``."""

    def __init__(self, pid: int, stdin: IO[bytes], status: Callable[[int, float], int | None] | None = None) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        # opened before the setup is written: until it reads one the child waits on its stdin, so the pid is still its
        self._pidfd = os.pidfd_open(pid)
        self._status = status
        self._reported = False  # whether returncode is the forkserver's report (not UNKNOWN_STATUS for want of one)
        self.returncode: int | None = None

    def _take_status(self, timeout: float) -> None:
        """Take the forkserver's report for this child if there is one (waiting at most ``timeout``)."""
        if self._reported or self._status is None:
            return
        try:
            code = self._status(self.pid, timeout)
        except Exception:  # a broken channel leaves the status unknown; it never makes poll() raise
            return
        if code is not None:
            self.returncode, self._reported = code, True

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            # the descriptor is given up and the exit recorded before anything else can raise: a later poll never
            # selects on, or closes, a number the process may since have reused
            fd, self._pidfd = self._pidfd, -1
            os.close(fd)
            self.returncode = UNKNOWN_STATUS
            self._take_status(0)  # non-blocking: a report already here (or readable without the lock held)
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.poll() is not None:
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Until the child exits (``timeout``), then its reported status, waiting at most ``_STATUS_WAIT`` for the
        report (blocking: from an executor thread, not the event loop)."""
        if self.returncode is None:
            select.select([self._pidfd], [], [], timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        self._take_status(_STATUS_WAIT)
        assert self.returncode is not None
        return self.returncode


class Forkserver:
    """The daemon's handle on its forkserver, started on first use and again after it died."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._env = dict(environment)
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # one request at a time (the daemon asks from its executor threads)
        self._exits: dict[int, int] = {}  # pid -> exit status, as the forkserver reported them

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> socket.socket:
        if self._proc is not None and self._proc.poll() is None and self._sock is not None:
            return self._sock
        if self._sock is not None:
            self._sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "clawfleet.supervisor", "gateway-parser-forkserver", str(theirs.fileno()),
                 str(os.getpid())], stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), env=self._env, cwd="/",
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def fork(self, fds: Sequence[int], metrics_dir: str | None) -> int:
        """A new parser with ``fds`` (stdin, listener, channel, log, readiness, [OCSF log]); its pid. Blocking: call
        it from an executor. OSError when the forkserver cannot fork it."""
        with self._lock:
            sock = self._start()
            payload = json.dumps({"metrics_dir": metrics_dir}).encode()
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            try:
                sock.settimeout(_REPLY_TIMEOUT)
                sock.sendmsg([payload], rights)
                while True:  # waits for the forkserver's imports on its first request
                    answer = sock.recv(4096)
                    if not self._kept_exit(answer):
                        break
            except TimeoutError as exc:
                self.close(kill=True)
                raise OSError(f"the parser forkserver did not answer in {_REPLY_TIMEOUT:.0f} s (restarted)") from exc
            except OSError:
                self.close()
                raise
            if not answer:
                self.close()
                raise OSError("the parser forkserver exited")
            reply = json.loads(answer)
            if "pid" not in reply:
                raise OSError(f"the parser forkserver could not fork: {reply.get('error')}")
            pid = int(reply["pid"])
            # a report kept for an earlier child with this (recycled) pid is not this one's; this one's cannot be
            # here yet (the forkserver answers before it reaps again)
            self._exits.pop(pid, None)
            return pid

    def _kept_exit(self, datagram: bytes) -> bool:
        """Whether ``datagram`` was an exit report (then kept for :meth:`exit_status`), not an answer."""
        if not datagram.startswith(b'{"exited"'):
            return False
        with contextlib.suppress(ValueError, TypeError, KeyError):
            report = json.loads(datagram)
            self._exits[int(report["exited"])] = int(report["status"])
            while len(self._exits) > _MAX_KEPT_EXITS:
                del self._exits[next(iter(self._exits))]
        return True

    def exit_status(self, pid: int, timeout: float = 0.0) -> int | None:
        """The exit status the forkserver reported for its child ``pid`` (``None``: no report within ``timeout``
        seconds, or a fork request holds the channel). Reads only reports: an answer is never waiting here, as
        requests and their answers happen under the lock."""
        deadline = time.monotonic() + timeout
        got = self._lock.acquire(timeout=timeout) if timeout > 0 else self._lock.acquire(blocking=False)
        if not got:
            return None
        try:
            while pid not in self._exits and self._sock is not None:
                left = deadline - time.monotonic()
                if not select.select([self._sock], [], [], max(left, 0))[0]:
                    break
                try:
                    data = self._sock.recv(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    break
                if not data:
                    break  # the forkserver exited (it is restarted on the next fork)
                self._kept_exit(data)
            return self._exits.pop(pid, None)
        finally:
            self._lock.release()

    def close(self, kill: bool = False) -> None:
        if self._sock is not None:
            self._sock.close()  # the forkserver exits at the end of its channel; its parsers die with it
            self._sock = None
        if self._proc is not None:
            if kill:  # wedged or stopped: it would not read the end of its channel
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in a ``recvmsg`` answer's ``SCM_RIGHTS`` messages (also the identification channel's)."""
    fds: list[int] = []
    for level, kind, blob in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(blob[: len(blob) - len(blob) % _FD_SIZE])
            fds.extend(arr)
    return fds


def _receive(sock: socket.socket) -> tuple[dict, list[int]] | None:
    data, anc, flags, _ = sock.recvmsg(4096, socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE))
    fds = received_fds(anc)
    if not data and not fds:
        return None
    try:
        request = json.loads(data)
    except ValueError:
        request = None
    if not isinstance(request, dict) or flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or not 5 <= len(fds) <= 6:
        for fd in fds:
            os.close(fd)
        return {}, []
    return request, fds


def close_unexpected(keep: Sequence[int]) -> None:
    """Close every descriptor but 0-2 and ``keep`` (in a forked child, before it runs): ``os.closerange`` over the
    gaps between them, up to the highest descriptor open (``/proc/self/fd``), so the ranges stay short."""
    top = max((int(n) for n in os.listdir("/proc/self/fd")), default=2) + 1
    low = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(top, low))


def _reap(sock: socket.socket) -> None:
    """Reap every child that exited: its status on stderr and, without ever blocking, to the daemon."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(Exception):
            print(f"clawfleet gateway parser {pid} exited: status {code}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):  # a full channel drops the report: the daemon then says "unknown"
            sock.send(json.dumps({"exited": pid, "status": code}).encode(), socket.MSG_DONTWAIT)


def forkserver_main(chan_fd: int, daemon_pid: int, child: Callable[[list[int], str | None, int], int]) -> int:
    """The forkserver's loop (``child(fds, metrics_dir, forkserver_pid)`` runs in each forked child and returns its
    exit status). Called once everything a parser needs is imported (see :func:`.privsep.forkserver`)."""
    from .privsep import prctl

    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: with the daemon
    if os.getppid() != daemon_pid:
        return 1
    # SIGCHLD wakes the loop (a byte on the wake-up pipe) so that exited parsers are reaped at once, not at the
    # next request; the handler itself does nothing (reaping happens in the loop, between requests)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
    sock = socket.socket(fileno=chan_fd)
    me = os.getpid()
    while True:
        if wake_r in select.select([sock.fileno(), wake_r], [], [])[0]:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
            _reap(sock)
            continue
        got = _receive(sock)
        if got is None:
            return 0  # the daemon closed the channel
        request, fds = got
        if not fds:
            sock.send(b'{"error": "malformed request"}')
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"error": str(exc)}).encode())
            continue
        if pid == 0:
            code = 70
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                sock.close()
                os.close(wake_r)
                os.close(wake_w)
                # what else the forkserver holds (an import's file, anything) is not the child's
                close_unexpected(fds)
                metrics_dir = request.get("metrics_dir")
                code = child(fds, metrics_dir if isinstance(metrics_dir, str) else None, me)
            except BaseException as exc:  # a child must never return into the forkserver's loop
                with contextlib.suppress(Exception):
                    print(f"clawfleet gateway parser: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
