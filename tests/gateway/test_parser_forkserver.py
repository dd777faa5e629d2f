"""The parser forkserver (:mod:`clawfleet.gateway.parser_forkserver`): a forked parser keeps only the descriptors it
was sent, and the status it exits with (reaped by the forkserver) reaches the daemon's handle."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from clawfleet.gateway import parser_forkserver
from clawfleet.gateway.parser_forkserver import UNKNOWN_STATUS, ForkedProcess, Forkserver, close_unexpected


@pytest.fixture
def server():
    s = Forkserver(os.environ)
    yield s
    s.close()


def _fds(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while listed
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return out


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _until(predicate, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    return predicate()


def test_close_unexpected_keeps_only_what_it_is_told():
    """Attack: a descriptor the forking process holds (an import's file, a channel) stays open in the child unless
    closed; the ones the child was sent (the allowed twin) stay usable."""
    extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]  # not CLOEXEC: a fork keeps them
    kept = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what it has open after close_unexpected (fstat: no descriptor of its own)
        code = 1
        try:
            close_unexpected([*kept, w])
            os.write(w, " ".join(str(fd) for fd in range(1024) if _is_open(fd)).encode())
            os.read(kept[0], 1)  # still a working descriptor
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    report = os.read(r, 4096).decode()
    _, status = os.waitpid(pid, 0)
    os.close(r)
    for fd in extra + kept:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert {int(x) for x in report.split()} == {0, 1, 2, *kept, w}


def test_a_forked_parser_holds_only_its_own_descriptors(server, monkeypatch, tmp_path):
    """Attack: the forkserver's own descriptors (its channel to the daemon, a socket; its wake-up pipe; here also a
    file it holds open, as an import might) must not reach a parser. Allowed: the parser keeps the five it was sent
    (stdin on 0, the four others as received)."""
    held = tmp_path / "held-by-the-forkserver"
    held.write_text("not the parser's")
    held_fd = os.open(held, os.O_RDONLY)  # inherited by the forkserver (pass_fds below), not CLOEXEC there
    popen = subprocess.Popen

    def with_a_held_file(*args, **kw):
        kw["pass_fds"] = (*kw.get("pass_fds", ()), held_fd)
        return popen(*args, **kw)

    monkeypatch.setattr(parser_forkserver.subprocess, "Popen", with_a_held_file)
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)  # the write end stays open: the child waits for its setup
    sent = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(4)]
    try:
        pid = server.fork([stdin_r, *sent], None)
        assert server._proc is not None
        forkserver_fds = _fds(server._proc.pid)
        assert any(t.startswith("socket:") for t in forkserver_fds.values())  # what there is to leak
        assert str(held) in forkserver_fds.values()
        child = _until(lambda: (lambda f: f if len(f) == 7 else None)(_fds(pid)))
        assert child is not None, _fds(pid)
        assert child[0].startswith("pipe:")
        above = {fd: t for fd, t in child.items() if fd > 2}
        assert sorted(above.values()) == ["/dev/null"] * 4, child
        assert not any(t.startswith("socket:") for t in child.values())
        proc = ForkedProcess(pid, os.fdopen(stdin_w, "wb"), server.exit_status)
        stdin_w = -1
        proc.kill()
        assert proc.wait(20) == -signal.SIGKILL
    finally:
        os.close(stdin_r)
        os.close(held_fd)
        if stdin_w != -1:
            os.close(stdin_w)
        for fd in sent:
            os.close(fd)


def test_the_exit_status_a_parser_ends_with_reaches_the_daemon(server):
    """A parser that fails (here: its stdin ends before any setup) exits 70: its handle says so, not "unknown"."""
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    sent = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(4)]
    try:
        pid = server.fork([stdin_r, *sent], None)
        proc = ForkedProcess(pid, os.fdopen(stdin_w, "wb"), server.exit_status)
        assert proc.stdin is not None
        proc.stdin.close()  # no setup: the child raises EOFError and exits 70
        assert proc.wait(30) == 70
        assert proc.returncode == 70 and proc.poll() == 70
    finally:
        os.close(stdin_r)
        for fd in sent:
            os.close(fd)


def test_a_status_never_reported_is_unknown_not_success(server):
    """A handle without a forkserver to ask (or a report that never came) says UNKNOWN_STATUS, never 0."""
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    sent = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(4)]
    try:
        pid = server.fork([stdin_r, *sent], None)
        proc = ForkedProcess(pid, os.fdopen(stdin_w, "wb"))
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == UNKNOWN_STATUS != 0
    finally:
        os.close(stdin_r)
        for fd in sent:
            os.close(fd)


def test_exit_reports_are_bounded_and_a_malformed_one_is_ignored():
    """Attack surface: reports nobody asks for (pids nobody follows) must not grow without bound, and a garbled one
    must not raise in the daemon; a well-formed one is answered once."""
    s = Forkserver(os.environ)  # never started: only its report book-keeping is used
    assert s._kept_exit(b'{"exited": "x"}') is True and s._exits == {}
    assert s._kept_exit(b'{"pid": 5}') is False  # an answer, not a report
    for pid in range(2000):
        s._kept_exit(f'{{"exited": {pid}, "status": 1}}'.encode())
    assert len(s._exits) == parser_forkserver._MAX_KEPT_EXITS and 0 not in s._exits
    s._kept_exit(b'{"exited": 77777, "status": -15}')
    assert s.exit_status(77777) == -15 and s.exit_status(77777) is None


def _gone_child() -> subprocess.Popen:
    """A child of the test that has exited but is not reaped yet (its pidfd is readable, its pid still its own)."""
    child = subprocess.Popen(["true"])
    for _ in range(500):  # polled until the kernel says zombie
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return child
        time.sleep(0.01)
    raise AssertionError("the child did not exit")


def test_poll_never_waits_for_the_status_and_wait_does():
    """Attack on the event loop: poll() (every sandbox's loop, every 0.2 s) must not wait for the forkserver's lock
    or report that another parser's fork holds. It asks with timeout 0; wait() (an executor's) may block for it."""
    asked: list[float] = []

    def late_status(pid: int, timeout: float) -> int | None:
        asked.append(timeout)
        return 9 if timeout > 0 else None  # not here yet (or the lock is held): only a wait gets it

    child = _gone_child()
    try:
        proc = ForkedProcess(child.pid, open(os.devnull, "wb"), late_status)  # noqa: SIM115
        assert proc.poll() == UNKNOWN_STATUS
        assert asked == [0]
        assert proc.poll() == UNKNOWN_STATUS and asked == [0]  # asked once, on the poll that saw it gone
        # allowed: the blocking wait (executor) takes the report that came later
        assert proc.wait(0) == 9 and proc.returncode == 9
        assert asked == [0, parser_forkserver._STATUS_WAIT]
        assert proc.wait(0) == 9 and len(asked) == 2  # a report taken is final
        proc.stdin.close()
    finally:
        child.wait()


def test_a_status_that_raises_leaves_no_descriptor_to_close_again(monkeypatch):
    """Attack: the status call raises; the pidfd is already given up and the exit recorded, so the next poll does
    not select on or close a descriptor number something else may have since opened."""

    def broken_status(pid: int, timeout: float) -> int | None:
        raise OSError("channel broken")

    child = _gone_child()
    try:
        proc = ForkedProcess(child.pid, open(os.devnull, "wb"), broken_status)  # noqa: SIM115
        assert proc.poll() == UNKNOWN_STATUS
        reused = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: most likely the pidfd's old one
        try:
            closed: list[int] = []
            monkeypatch.setattr(parser_forkserver.os, "close", lambda fd: closed.append(fd))
            assert proc.poll() == UNKNOWN_STATUS
            assert proc.wait(0) == UNKNOWN_STATUS  # the blocking ask raises too: still unknown, never 0
            assert closed == []
            monkeypatch.undo()
            os.fstat(reused)  # still open
        finally:
            os.close(reused)
        with pytest.raises(ProcessLookupError):
            proc.terminate()
        proc.stdin.close()
    finally:
        child.wait()
