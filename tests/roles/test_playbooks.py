"""Play keywords the playbooks must keep: every play that runs roles forces its handlers (a handler notified before a
later task fails still runs, so a host never keeps the old service running next to the new files on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))


def _plays(path: Path) -> list[dict]:
    return [p for p in YAML(typ="safe").load(path.read_text()) if "hosts" in p]


def _runs_roles(play: dict) -> bool:
    tasks = [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key) or []]
    return bool(play.get("roles")) or any(
        "ansible.builtin.include_role" in t or "ansible.builtin.import_role" in t for t in tasks
    )


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_plays_that_change_hosts_force_handlers(path: Path):
    for play in _plays(path):
        # verify.yml and the read-only plays (status, learn) include roles for their checks only: no handlers.
        read_only = (
            path.name in {"verify.yml", "policy_status.yml", "policy_learn.yml"} or play.get("hosts") == "localhost"
        )
        if _runs_roles(play) and not read_only and play.get("become"):
            assert play.get("force_handlers") is True, f"{path.name}: play {play['name']!r} lacks force_handlers: true"


def test_the_checked_plays_exist():
    # The test above must see the plays it guards (a rename would silently empty it).
    guarded = [
        (p.name, play["name"])
        for p in PLAYBOOKS
        for play in _plays(p)
        if _runs_roles(play)
        and play.get("become")
        and p.name not in {"verify.yml", "policy_status.yml", "policy_learn.yml"}
    ]
    assert len(guarded) >= 6, guarded
