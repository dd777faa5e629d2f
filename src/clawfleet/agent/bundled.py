"""The agent runtime's part of a bundle: per target machine, the Node wheel and the packed OpenClaw tree under
``agents/openclaw/MACHINE/``, listed in SHA256SUMS like every other file and described in manifest.json."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from clawfleet.agent import AgentError
from clawfleet.agent.fetch import Progress, node_wheel, openclaw_tarball
from clawfleet.agent.pins import AGENTS, NODE_VERSION, lock_digest, machine, openclaw_version


def runtime_key(agents: list[str], machines: list[str]) -> dict[str, Any]:
    """What the bundle's agent files depend on (part of the build's input key)."""
    for agent in agents:
        if agent not in AGENTS:
            raise AgentError(f"--agent {agent!r}: known agents are {list(AGENTS)}")
    if not agents:
        return {}
    return {"openclaw": {"version": openclaw_version(), "node": NODE_VERSION, "lock": lock_digest(),
                         "machines": sorted(set(machines))}}  # fmt: skip


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # the cache and the bundle usually share a filesystem: no 700 MB copy
    except OSError:
        shutil.copy2(src, dest)


def add_runtime(
    staging: Path, agents: list[str], machines: list[str], cache: Path, progress: Progress
) -> dict[str, Any]:
    """Put the runtime files into ``staging``; return the manifest's ``agents`` section."""
    key = runtime_key(agents, machines)
    if not key:
        return {}
    section = {**key["openclaw"], "machines": {}}
    for name in key["openclaw"]["machines"]:
        target = machine(name)
        rel = Path("agents") / "openclaw" / target.name
        wheel, tree = node_wheel(target, cache, progress), openclaw_tarball(target, cache, progress)
        _place(wheel, staging / rel / wheel.name)
        _place(tree, staging / rel / tree.name)
        section["machines"][target.name] = {"node_wheel": (rel / wheel.name).as_posix(),
                                            "tree": (rel / tree.name).as_posix()}  # fmt: skip
    return {"openclaw": section}
