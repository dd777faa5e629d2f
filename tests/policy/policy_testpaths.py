"""Paths shared by the policy tests (a uniquely named module: `conftest` names collide across test folders)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO / "tests" / "data" / "openshell-policies"
POLICIES = REPO / "policies"
