"""The fleet tests reuse the real gateway daemon helper of the policy tests (tests/policy/policy_daemon.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))
