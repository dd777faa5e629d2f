"""Install the pinned Node + OpenClaw under a prefix, from a verified bundle or from the registries.

Layout: ``PREFIX/node`` (Node, from its wheel), ``PREFIX/openclaw/node_modules`` (the pinned tree),
``PREFIX/bin/openclaw`` (the entry: runs OpenClaw on that Node, whatever node is on PATH; Debian's is too old),
``PREFIX/agent.json`` (what is installed, written last: a second run with the same inputs changes nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clawfleet.agent import AgentError
from clawfleet.agent.fetch import Progress, cache_root, node_wheel, openclaw_tarball
from clawfleet.agent.nodewheel import unpack_node
from clawfleet.agent.pins import NODE_VERSION, check_version, machine, openclaw_version
from clawfleet.agent.tree import unpack_tree
from clawfleet.bundle_format import MANIFEST, BundleError, read_sums, sha256_file, verify_bundle

RECORD = "agent.json"
PENDING = ".openclaw-lifecycle-pending"  # OpenClaw's marker: its install scripts have not run yet


@dataclass(frozen=True)
class Installed:
    agent: str
    version: str
    node: str
    entry: str
    changed: bool

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Source:
    version: str
    node_wheel: Path
    tree: Path
    identity: dict[str, Any]  # what the record compares: versions, machine and both files' sha256


def from_bundle(bundle: Path, version: str | None, digest: str | None, progress: Progress) -> Source:
    progress(f"verifying {bundle}")
    try:
        verify_bundle(bundle, digest)
        sums = read_sums(bundle)
        entry = json.loads((bundle / MANIFEST).read_text()).get("agents", {}).get("openclaw")
    except (BundleError, OSError, ValueError) as exc:
        raise AgentError(f"bundle {bundle}: {exc}") from exc
    target = machine()
    files = (entry or {}).get("machines", {}).get(target.name)
    if not files:
        raise AgentError(f"{bundle / MANIFEST}: no OpenClaw runtime for {target.name} (build the bundle with "
                         f"'--agent openclaw' and a --target for {target.name})")  # fmt: skip
    for key in ("node_wheel", "tree"):
        # manifest.json is not itself in SHA256SUMS: it may only name files that are.
        if files.get(key) not in sums:
            raise AgentError(f"{bundle / MANIFEST}: {target.name} {key} {files.get(key)!r} is not listed in SHA256SUMS")
    bundled = check_version(version, str(entry["version"]), f"bundle {bundle}")
    identity = {"version": bundled, "node": entry.get("node"), "machine": target.name,
                "node_wheel": sums[files["node_wheel"]], "tree": sums[files["tree"]]}  # fmt: skip
    return Source(bundled, bundle / files["node_wheel"], bundle / files["tree"], identity)


def from_registries(version: str | None, cache: Path, progress: Progress) -> Source:
    pinned = check_version(version, openclaw_version(), "this clawfleet")
    target = machine()
    wheel = node_wheel(target, cache, progress)
    tree = openclaw_tarball(target, cache, progress)
    identity = {"version": pinned, "node": NODE_VERSION, "machine": target.name,
                "node_wheel": sha256_file(wheel), "tree": sha256_file(tree)}  # fmt: skip
    return Source(pinned, wheel, tree, identity)


def _entry_script(prefix: Path) -> str:
    node = prefix / "node" / "bin" / "node"
    main = prefix / "openclaw" / "node_modules" / "openclaw" / "openclaw.mjs"
    return (
        f'#!/bin/sh\n# Written by clawfleet agent install: OpenClaw on its pinned Node.\nexec "{node}" "{main}" "$@"\n'
    )


def _complete_lifecycle(prefix: Path, entry: Path, progress: Progress) -> None:
    """Run OpenClaw's own postinstall here, once, on the machine it will run on.

    The tree is packed without install scripts (they would run on the build host, for another machine), so
    OpenClaw finds its ``.openclaw-lifecycle-pending`` marker and completes its lifecycle on first start, which
    needs its package directory writable: inside a sandbox it is read-only and OpenClaw refuses to start. Its
    postinstall only prunes stale files and probes the native fs-safe module the tree already holds (offline).
    """
    marker = prefix / "openclaw" / "node_modules" / "openclaw" / PENDING
    if not marker.exists():
        return
    progress("completing the OpenClaw package lifecycle (its postinstall)")
    with tempfile.TemporaryDirectory(prefix="openclaw-home-") as home:
        env = {"PATH": f"{prefix / 'node' / 'bin'}:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
        proc = subprocess.run([str(entry), "--version"], capture_output=True, text=True, env=env, timeout=300,
                              check=False)  # fmt: skip
    if proc.returncode != 0 or marker.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise AgentError(f"{entry} --version did not complete the OpenClaw package lifecycle:\n{tail}")


def install(prefix: str | Path, version: str | None = None, bundle: str | Path | None = None,
            digest: str | None = None, cache: str | Path | None = None,
            progress: Progress = lambda _: None) -> Installed:  # fmt: skip
    prefix = Path(prefix).resolve()
    if bundle is not None:
        source = from_bundle(Path(bundle), version, digest, progress)
    else:
        source = from_registries(version, Path(cache) if cache else cache_root(), progress)
    node, entry = prefix / "node" / "bin" / "node", prefix / "bin" / "openclaw"
    result = Installed("openclaw", source.version, str(node), str(entry), True)
    record = prefix / RECORD
    try:
        current = json.loads(record.read_text())
    except (OSError, ValueError):
        current = None
    if current == source.identity and node.is_file() and entry.is_file():
        return Installed(**{**result.as_json(), "changed": False})
    prefix.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)  # an interrupted install is never taken for a complete one
    progress(f"unpacking Node {source.identity['node']} into {prefix / 'node'}")
    unpack_node(source.node_wheel, prefix / "node")
    progress(f"unpacking OpenClaw {source.version} into {prefix / 'openclaw'}")
    unpack_tree(source.tree, prefix / "openclaw")
    entry.parent.mkdir(exist_ok=True)
    entry.write_text(_entry_script(prefix))
    entry.chmod(0o755)
    _complete_lifecycle(prefix, entry, progress)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(source.identity, indent=2) + "\n")
    os.replace(tmp, record)
    return result
