"""The real OpenClaw runtime, installed once per test session with `clawfleet agent install` into the checkout's
``.cache/agent/`` (git-ignored), keyed by the pinned version and lockfile digest: a second run finds it there and
does nothing. The downloads (Node wheel, packed tree) go to the user's build cache (``~/.cache/clawfleet``, as
`clawfleet bundle build` uses), which outlives a fresh clone: a CI run on a new clone unpacks but downloads
nothing (the way tests/infra/base-images.sh keeps its images outside the clone)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet.agent.pins import lock_digest, openclaw_version

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def openclaw_runtime() -> dict:
    cache = REPO / ".cache" / "agent"
    prefix = cache / f"openclaw-{openclaw_version()}-{lock_digest()}"
    proc = subprocess.run([sys.executable, "-m", "clawfleet.cli", "agent", "install", "openclaw", "--prefix",
                           str(prefix), "--json"],
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
