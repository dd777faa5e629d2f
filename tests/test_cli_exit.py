"""`clawfleet sandbox run` leaves without tearing the interpreter down (clawfleet.cli.exit_without_teardown): what
a normal exit does that matters must still happen - atexit handlers, flushed standard streams, the exit code,
waiting for a thread that is still running - and a stream that cannot be flushed must not pass for success."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _py(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip


def test_exit_code_buffered_output_and_atexit_handlers_survive():
    proc = _py("""
        import atexit, sys
        from clawfleet.cli import exit_without_teardown
        atexit.register(lambda: print("atexit ran"))
        sys.stdout.write("buffered, no newline; ")
        sys.stderr.write("to stderr")
        exit_without_teardown(7)
        print("not reached")
    """)
    assert proc.returncode == 7
    assert proc.stdout == "buffered, no newline; atexit ran\n"
    assert proc.stderr == "to stderr"


def test_a_running_thread_gets_the_normal_exit_that_waits_for_it():
    proc = _py("""
        import threading, time
        from clawfleet.cli import exit_without_teardown
        t = threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished")))
        t.start()
        exit_without_teardown(3)
        print("returned")
    """)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["returned", "thread finished"]


def test_an_unflushable_stdout_is_not_a_success():
    proc = _py("""
        import io, sys
        from clawfleet.cli import exit_without_teardown
        class Broken(io.StringIO):
            def flush(self):
                raise BrokenPipeError(32, "Broken pipe")
        sys.stdout = Broken()
        exit_without_teardown(0)
    """)
    assert proc.returncode == 120


def test_commands_other_than_run_exit_the_normal_way():
    # `policy` commands (and every other one) do not ask for it: only `sandbox run` / `gateway run` do.
    from clawfleet.cli import build_parser

    args = build_parser(["sandbox"]).parse_args(["sandbox", "run", "--policy", "p", "--", "true"])
    assert args.exit_without_teardown is True
    args = build_parser(["gateway"]).parse_args(["gateway", "check", "--config", "c"])
    assert not getattr(args, "exit_without_teardown", False)
