"""A sandbox run by the gateway daemon starts its command only once the gateway serves its namespace (issue 16).

``run_attached_sandbox`` publishes the sandbox's namespace and waits for ``NAME.attached`` naming its supervisor.
Before issue 16 it waited 15 s and then ran the command anyway ("offline"); from about 10 sandboxes on a loaded
host the gateway took longer, so commands ran unserved. Now the wait is bounded and fatal: the command never
runs, the exit status is EX_TEMPFAIL and the error says why. The allowed twin: a fake gateway that attaches late
(after 1.5 s) gets the command started, after it attached. Root only (CI runs as root, so nothing skips there)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from clawfleet.supervisor.attach import EX_TEMPFAIL, RuntimePaths, read_json, run_attached_sandbox
from policy_daemon import SANDBOX_USER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox launches need root; CI runs as root")

POLICY = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc]
  read_write: [/sandbox, /tmp, /dev/null]
network_policies: {}
"""


def _sandbox(tmp_path: Path, user) -> tuple[Path, RuntimePaths, Path]:
    tmp_path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    (tmp_path / "policy.yaml").write_text(POLICY)
    definition = tmp_path / "marker.yaml"
    command = ["/bin/sh", "-c", "date +%s.%N > /sandbox/ran"]
    definition.write_text(json.dumps({"name": "marker", "policy": "policy.yaml", "user": SANDBOX_USER,
                                      "workdir": str(work), "command": command}))  # fmt: skip
    runtime = tmp_path / "run"
    paths = RuntimePaths(str(runtime), "marker")
    os.makedirs(paths.bundle_dir)
    Path(paths.ca_bundle).write_text("")  # what the daemon writes first; the command here makes no TLS connection
    return definition, paths, work / "ran"


def fake_gateway_attaches(paths: RuntimePaths, delay: float, when: list[float]) -> threading.Thread:
    """A fake of the daemon's AttachedGateway: once the sandbox has published its namespace, waits ``delay`` and
    writes ``NAME.attached`` naming its supervisor (``when`` gets the wall time of the write)."""

    def attach() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = read_json(paths.pidfile)
            if record and isinstance(record.get("pid"), int):
                time.sleep(delay)
                when.append(time.time())
                Path(paths.attached).write_text(json.dumps({"pid": record["pid"], "gateway_pid": os.getpid()}))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=attach, daemon=True)
    thread.start()
    return thread


def test_no_gateway_no_command_a_bounded_wait_and_a_clear_error(tmp_path, user, capfd):
    definition, paths, marker = _sandbox(tmp_path, user)
    started = time.monotonic()
    code = run_attached_sandbox(str(definition), paths.runtime_dir, attach_timeout=2)
    assert code == EX_TEMPFAIL
    assert time.monotonic() - started < 20  # bounded
    assert not marker.exists(), "the command ran although no gateway served its namespace"
    err = capfd.readouterr().err
    assert "the gateway has not attached after 2 s: the command was not started" in err, err
    assert not os.path.exists(paths.pidfile)  # the published namespace is withdrawn


def test_a_gateway_that_attaches_late_gets_the_command_started_after_it(tmp_path, user):
    definition, paths, marker = _sandbox(tmp_path, user)
    when: list[float] = []
    thread = fake_gateway_attaches(paths, 1.5, when)
    code = run_attached_sandbox(str(definition), paths.runtime_dir, attach_timeout=30)
    thread.join(5)
    assert code == 0
    assert when and float(marker.read_text()) >= when[0], (marker.read_text(), when)
