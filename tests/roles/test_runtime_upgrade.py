"""Runtime upgrades take effect: the runtime link switches atomically between per-digest venvs, and only the
services still running the old code are restarted, router first, then gateway, then sandboxes.

Drives the role's own scripts (roles/clawfleet_runtime/files) against a FAKE systemctl (tests/fakes) on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "clawfleet_runtime" / "files"
FAKE_SYSTEMCTL = REPO / "tests" / "fakes" / "fake_systemctl.py"
GROUPS = ["clawfleet-router.service", "clawfleet-gateway.service", "clawfleet-sandbox@*.service"]


def _now_usec() -> int:
    return int(time.monotonic() * 1_000_000)


@pytest.fixture
def systemd(tmp_path: Path):
    """A fake systemd: returns (write_units, read_state, env) for running restart-stale.py against it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "systemctl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SYSTEMCTL}" "$@"\n')
    wrapper.chmod(0o755)
    state_file = tmp_path / "systemd.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SYSTEMCTL_STATE": str(state_file)}

    def write_units(units: dict) -> None:
        state_file.write_text(json.dumps({"units": units, "log": []}))

    def read_state() -> dict:
        return json.loads(state_file.read_text())

    return write_units, read_state, env


@pytest.fixture
def link(tmp_path: Path) -> Path:
    """The runtime link, switched just now (its mtime is the cut between stale and current units)."""
    (tmp_path / "venvs" / "new").mkdir(parents=True)
    path = tmp_path / "venv"
    path.symlink_to(tmp_path / "venvs" / "new")
    return path


def _restart_stale(link: Path, env: dict, *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(FILES / "restart-stale.py"), "--since", str(link), "--timeout", "2", *extra, *GROUPS],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_stale_units_restart_router_then_gateway_then_sandboxes(systemd, link):
    write_units, read_state, env = systemd
    old = _now_usec() - 3_600_000_000
    # Listed out of order on purpose: the order must come from the groups, not from the unit list.
    write_units({
        "clawfleet-sandbox@b.service": {"active": True, "started": old},
        "clawfleet-sandbox@a.service": {"active": True, "started": old},
        "clawfleet-gateway.service": {"active": True, "started": old},
        "clawfleet-router.service": {"active": True, "started": old},
    })  # fmt: skip
    rc, report = _restart_stale(link, env)
    assert rc == 0, report
    expected = ["clawfleet-router.service", "clawfleet-gateway.service",
                "clawfleet-sandbox@a.service", "clawfleet-sandbox@b.service"]  # fmt: skip
    assert report["restarted"] == expected
    assert report["changed"] is True
    assert read_state()["log"] == [f"restart {unit}" for unit in expected]


def test_units_started_after_the_switch_are_left_alone(systemd, link):
    write_units, read_state, env = systemd
    old, fresh = _now_usec() - 3_600_000_000, _now_usec() + 60_000_000
    write_units({
        "clawfleet-router.service": {"active": True, "started": fresh},
        "clawfleet-gateway.service": {"active": True, "started": old},
        "clawfleet-sandbox@a.service": {"active": True, "started": fresh},
        "clawfleet-sandbox@stopped.service": {"active": False, "started": 0},
    })  # fmt: skip
    rc, report = _restart_stale(link, env)
    assert rc == 0, report
    assert report["restarted"] == ["clawfleet-gateway.service"]
    assert report["current"] == ["clawfleet-router.service", "clawfleet-sandbox@a.service"]
    assert read_state()["log"] == ["restart clawfleet-gateway.service"]


def test_failed_unit_is_restarted_but_a_stopped_one_is_not(systemd, link):
    # After a rollback the gateway that failed on the new code must come back on the old one; a unit an operator
    # stopped stays stopped.
    write_units, read_state, env = systemd
    old = _now_usec() - 3_600_000_000
    write_units({
        "clawfleet-gateway.service": {"active": False, "failed": True, "started": old},
        "clawfleet-sandbox@stopped.service": {"active": False, "started": old},
    })  # fmt: skip
    rc, report = _restart_stale(link, env)
    assert (rc, report["restarted"]) == (0, ["clawfleet-gateway.service"])
    assert read_state()["log"] == ["restart clawfleet-gateway.service"]


def test_second_run_restarts_nothing(systemd, link):
    # Idempotence: after one pass every unit started after the link changed.
    write_units, read_state, env = systemd
    old = _now_usec() - 3_600_000_000
    write_units({"clawfleet-router.service": {"active": True, "started": old},
                 "clawfleet-sandbox@a.service": {"active": True, "started": old}})  # fmt: skip
    assert _restart_stale(link, env)[0] == 0
    rc, report = _restart_stale(link, env)
    assert (rc, report["changed"], report["restarted"]) == (0, False, [])
    assert len(read_state()["log"]) == 2


def test_check_mode_reports_without_restarting(systemd, link):
    write_units, read_state, env = systemd
    write_units({"clawfleet-gateway.service": {"active": True, "started": _now_usec() - 3_600_000_000}})
    rc, report = _restart_stale(link, env, "--check")
    assert (rc, report["restarted"]) == (0, ["clawfleet-gateway.service"])
    assert read_state()["log"] == []


@pytest.mark.parametrize("mode", ["restart", "start"])
def test_unit_that_does_not_come_back_fails_and_stops_the_order(systemd, link, mode):
    # "restart": systemctl restart itself fails; "start": it returns but the unit is failed right after.
    write_units, read_state, env = systemd
    old = _now_usec() - 3_600_000_000
    write_units({
        "clawfleet-router.service": {"active": True, "started": old},
        "clawfleet-gateway.service": {"active": True, "started": old, "fail": mode},
        "clawfleet-sandbox@a.service": {"active": True, "started": old},
    })  # fmt: skip
    rc, report = _restart_stale(link, env)
    assert rc == 1
    assert report["failed"] == "clawfleet-gateway.service"
    assert "clawfleet-gateway.service" in report["error"]
    # The sandboxes were not restarted against a gateway that is down.
    assert read_state()["log"] == ["restart clawfleet-router.service", "restart clawfleet-gateway.service"]


def test_missing_link_is_a_usage_error(systemd, tmp_path):
    write_units, _, env = systemd
    write_units({})
    rc, report = _restart_stale(tmp_path / "nowhere", env)
    assert rc == 2
    assert "nowhere" in report["error"]


def _switch(link: Path, target: Path, *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(FILES / "venv-link.py"), "--link", str(link), "--target", str(target), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_switch_replaces_the_link_and_records_the_previous_venv(tmp_path):
    venvs = tmp_path / "venvs"
    (venvs / "aaaa").mkdir(parents=True)
    (venvs / "bbbb").mkdir()
    link, record = tmp_path / "venv", venvs / ".previous"
    assert _switch(link, venvs / "aaaa", "--record", str(record)) == (
        0, {"changed": True, "previous": "", "current": str(venvs / "aaaa")})  # fmt: skip
    assert not record.exists()  # a fresh host has nothing to roll back to
    rc, result = _switch(link, venvs / "bbbb", "--record", str(record))
    assert (rc, result["changed"], result["previous"]) == (0, True, str(venvs / "aaaa"))
    assert os.readlink(link) == str(venvs / "bbbb")
    assert record.read_text() == f"{venvs / 'aaaa'}\n"
    assert not list(tmp_path.glob("venv.new-*"))  # the temporary link was renamed over, not left behind


def test_switch_to_the_current_venv_changes_nothing(tmp_path):
    (tmp_path / "venvs" / "aaaa").mkdir(parents=True)
    link = tmp_path / "venv"
    link.symlink_to(tmp_path / "venvs" / "aaaa")
    before = os.lstat(link).st_mtime_ns
    rc, result = _switch(link, tmp_path / "venvs" / "aaaa")
    assert (rc, result["changed"]) == (0, False)
    assert os.lstat(link).st_mtime_ns == before  # the cut for restart-stale.py did not move


def test_real_directory_becomes_the_legacy_venv_behind_the_link(tmp_path):
    # A host installed before per-digest venvs: its venv directory is kept (as the rollback), not deleted.
    old = tmp_path / "venv"
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "clawfleet").write_text("old runtime\n")
    (tmp_path / "venvs" / "bbbb").mkdir(parents=True)
    legacy = tmp_path / "venvs" / "legacy"
    rc, result = _switch(old, tmp_path / "venvs" / "bbbb", "--legacy", str(legacy))
    assert (rc, result["previous"]) == (0, str(legacy))
    assert os.readlink(old) == str(tmp_path / "venvs" / "bbbb")
    assert (legacy / "bin" / "clawfleet").read_text() == "old runtime\n"
    # And back: the rollback points the link at the legacy venv again.
    assert _switch(old, legacy)[0] == 0
    assert (old / "bin" / "clawfleet").read_text() == "old runtime\n"


def test_real_directory_without_a_legacy_place_is_refused(tmp_path):
    (tmp_path / "venv").mkdir()
    (tmp_path / "venvs" / "bbbb").mkdir(parents=True)
    rc, result = _switch(tmp_path / "venv", tmp_path / "venvs" / "bbbb")
    assert rc == 1
    assert "is a directory" in result["error"]
    assert (tmp_path / "venv").is_dir() and not (tmp_path / "venv").is_symlink()


def test_switch_to_a_missing_venv_leaves_the_link(tmp_path):
    (tmp_path / "venvs" / "aaaa").mkdir(parents=True)
    link = tmp_path / "venv"
    link.symlink_to(tmp_path / "venvs" / "aaaa")
    rc, result = _switch(link, tmp_path / "venvs" / "missing")
    assert rc == 1
    assert "no such venv" in result["error"]
    assert os.readlink(link) == str(tmp_path / "venvs" / "aaaa")


def test_prune_keeps_the_newest_and_always_the_live_and_previous_venvs(run_role, tmp_path):
    # Five digests, oldest first; the live one is the oldest (a rollback happened) and the previous one the next.
    venvs, bundles = tmp_path / "venvs", tmp_path / "bundles"
    names = ["aaaa", "bbbb", "cccc", "dddd", "eeee"]
    for age, name in enumerate(reversed(names)):
        for root in (venvs, bundles):
            (root / name).mkdir(parents=True, exist_ok=True)
            os.utime(root / name, (time.time() - 3600 * (age + 1),) * 2)
    link = tmp_path / "venv"
    link.symlink_to(venvs / "aaaa")
    (venvs / ".previous").write_text(f"{venvs / 'bbbb'}\n")
    run = run_role(
        "clawfleet_runtime",
        {
            "clawfleet_venv": str(link),
            "clawfleet_runtime_venvs_dir": str(venvs),
            "clawfleet_runtime_bundles_dir": str(bundles),
            "clawfleet_runtime__venv": str(venvs / "aaaa"),
        },
        tasks_from="prune.yml",
    )
    assert run.rc == 0, run.output
    for root in (venvs, bundles):
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["aaaa", "bbbb", "dddd", "eeee"], root
    assert (venvs / ".previous").exists()
