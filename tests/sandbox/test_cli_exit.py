"""`clawfleet sandbox run` exits without tearing the interpreter down (clawfleet.cli.exit_without_teardown): the
gateway's decision log must be complete on disk when the command returns, and the command's output, exit code
and the CLI's own error line must come through as before."""

from __future__ import annotations

import json


def test_gateway_log_is_complete_and_exit_code_passes_through(sandbox):
    log = sandbox.tmp / "gateway.jsonl"
    proc = sandbox.run(["/bin/sh", "-c", "echo from-inside; exit 7"], extra=("--gateway-log", str(log)))
    assert proc.returncode == 7 and proc.stdout == "from-inside\n", proc.stderr
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line.strip()]
    assert events[-1] == "process_exit" and "process_start" in events


def test_setup_failure_still_reports_its_reason(sandbox):
    proc = sandbox.run(["/nonexistent/command"])
    assert proc.returncode == 127
    assert "clawfleet sandbox:" in proc.stderr and "/nonexistent/command" in proc.stderr
