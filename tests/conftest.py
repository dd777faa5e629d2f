"""Fixtures shared by every test directory. pytest puts this directory on sys.path (it holds a conftest.py), so the
helper modules next to it (policy_daemon.py) import by name from any test."""

from __future__ import annotations

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
