"""Fixtures shared by every test directory. pytest puts this directory on sys.path (it holds a conftest.py), so the
helper modules next to it (policy_daemon.py) import by name from any test."""

from __future__ import annotations

import os
import pwd

import pytest

from policy_daemon import GatewayDaemon, sandbox_user


@pytest.fixture(scope="session")
def user() -> pwd.struct_passwd:
    """The unprivileged user the root-only tests run their sandboxes as (created once if missing)."""
    return sandbox_user()


@pytest.fixture
def daemon(tmp_path):
    """A real gateway daemon running one real sandbox whose policy lives in a policy directory (root only)."""
    d = GatewayDaemon(tmp_path)
    d.start()
    yield d
    d.stop()


# "No skip counted as a pass": scripts/test.sh (the CI command) sets CLAWFLEET_FORBID_SKIPS=1, and then any skipped
# test fails the run. Skips stay for people running part of the suite without root or Docker, where they say why.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and os.environ.get("CLAWFLEET_FORBID_SKIPS") == "1":
        print(f"\nCLAWFLEET_FORBID_SKIPS=1 and {len(_skipped)} test(s) skipped; in CI nothing may skip:")
        for line in _skipped:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
