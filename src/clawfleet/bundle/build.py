"""Build a bundle: ``pip download`` the pinned runtime dependencies for every target (Python version x machine),
``pip wheel`` clawfleet itself, copy policies and artifacts, and write SHA256SUMS + manifest.json.

Rebuilding with unchanged inputs is a no-op, so the digest stays the same and fleet runs stay idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from clawfleet.agent import AgentError
from clawfleet.agent.bundled import add_runtime, runtime_key
from clawfleet.agent.fetch import cache_root
from clawfleet.bundle.verify import MANIFEST, SUMS, BundleError, bundle_digest, sha256_file

FORMAT = 1
_PLATFORM_TAGS = {
    # manylinux tags pip may take for a glibc >= 2.28 host (Debian 11+, Ubuntu 20.04+), newest first.
    "x86_64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "aarch64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
}


@dataclass(frozen=True)
class Target:
    python: str  # "3.10"
    machine: str  # "x86_64" | "aarch64"

    @classmethod
    def parse(cls, text: str) -> Target:
        python, _, machine = text.partition("-")
        machine = machine or "x86_64"
        parts = python.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or (int(parts[0]), int(parts[1])) < (3, 10):
            raise BundleError(f"target {text!r}: expected PYTHON[-MACHINE] with Python >= 3.10, e.g. 3.11-x86_64")
        if machine not in _PLATFORM_TAGS:
            raise BundleError(f"target {text!r}: machine must be one of {sorted(_PLATFORM_TAGS)}")
        return cls(python, machine)

    @property
    def name(self) -> str:
        return f"py{self.python.replace('.', '')}-{self.machine}"


@dataclass(frozen=True)
class BuildResult:
    directory: Path
    digest: str
    rebuilt: bool
    files: int


def runtime_requirements() -> list[str]:
    """The pinned runtime dependencies of the installed clawfleet distribution (no extras)."""
    requires = metadata.requires("clawfleet") or []
    return sorted(r for r in requires if "extra ==" not in r)


def _tree_digest(paths: list[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(path.relative_to(base).as_posix().encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BundleError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{tail}")


def _download(target: Target, requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", target.python, "--implementation", "cp",
           "--abi", f"cp{target.python.replace('.', '')}"]  # fmt: skip
    for tag in [*_PLATFORM_TAGS[target.machine], "any"]:
        cmd += ["--platform", tag]
    _run(cmd + requirements)


def _write_sums(root: Path) -> int:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (SUMS, MANIFEST))
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}" for p in files]
    (root / SUMS).write_text("\n".join(lines) + "\n")
    return len(files)


def _wheel_source(project: Path, dest: Path) -> Path:
    """A copy of what ``pip wheel`` reads from the checkout: pyproject.toml, the readme and licence files it names
    or finds, and the package (without byte code)."""
    dest.mkdir()
    for path in [*sorted(project.glob("LICEN[CS]E*")), project / "pyproject.toml", project / "README.md"]:
        if path.is_file():
            shutil.copy2(path, dest / path.name)
    shutil.copytree(project / "src" / "clawfleet", dest / "src" / "clawfleet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    return dest


def build_bundle(
    out: str | Path,
    project: str | Path,
    targets: list[Target],
    policies: str | Path | None = None,
    artifacts: list[str | Path] | None = None,
    force: bool = False,
    agents: list[str] | None = None,
    cache: str | Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> BuildResult:
    out, project = Path(out), Path(project).resolve()
    if not targets:
        raise BundleError("no targets: give at least one PYTHON[-MACHINE], e.g. 3.11-x86_64")
    agents = agents or []
    machines = sorted({t.machine for t in targets})
    try:
        agent_key = runtime_key(agents, machines)
    except AgentError as exc:
        raise BundleError(str(exc)) from exc
    requirements = runtime_requirements()
    artifact_paths = [Path(a).resolve() for a in artifacts or []]
    for path in artifact_paths:
        if not path.exists():
            raise BundleError(f"{path}: artifact not found")
    # Only what goes into the wheels: pip writes build/ and *.egg-info into the checkout while building.
    inputs = [project / "pyproject.toml", project / "src" / "clawfleet", *artifact_paths]
    if policies:
        inputs.append(Path(policies).resolve())
    key = hashlib.sha256(
        json.dumps({"targets": sorted(t.name for t in targets), "requirements": requirements}).encode()
        + (json.dumps(agent_key, sort_keys=True).encode() if agent_key else b"")
        + _tree_digest(inputs[:2], project).encode()
        + b"".join(_tree_digest([p], p.parent).encode() for p in inputs[2:])
    ).hexdigest()
    manifest_path = out / MANIFEST
    if not force and manifest_path.is_file():
        try:
            if json.loads(manifest_path.read_text()).get("inputs") == key:
                digest = bundle_digest(out)
                return BuildResult(out, digest, False, len((out / SUMS).read_text().splitlines()))
        except (ValueError, BundleError):
            pass  # unreadable old bundle: rebuild it
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent if out.parent.exists() else None))
    try:
        wheels = staging / "wheels"
        wheels.mkdir()
        for target in targets:
            _download(target, requirements, wheels)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # stable zip timestamps in our own wheel
        # Built from a private copy: setuptools writes build/ and *.egg-info beside the sources and removes its
        # build directory when done, so two builds of one checkout at once (CI runs scenarios side by side) could
        # pack each other's half-removed tree. The copy holds exactly the wheel's inputs.
        source = _wheel_source(project, staging / "source")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BundleError(f"pip wheel {project} failed:\n{proc.stderr[-2000:]}")
        shutil.rmtree(source)
        if policies:
            shutil.copytree(policies, staging / "policies")
        for path in artifact_paths:
            dest = staging / "artifacts" / path.name
            dest.parent.mkdir(exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, dest)
        try:
            agent_section = add_runtime(staging, agents, machines, Path(cache) if cache else cache_root(), progress)
        except AgentError as exc:
            raise BundleError(str(exc)) from exc
        count = _write_sums(staging)
        manifest = {
            "format": FORMAT,
            "clawfleet_version": metadata.version("clawfleet"),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "targets": [t.name for t in targets],
            "requirements": requirements,
            "inputs": key,
        }
        if agent_section:
            manifest["agents"] = agent_section
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return BuildResult(out, bundle_digest(out), True, count)
