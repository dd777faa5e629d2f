"""Pack and unpack an installed npm tree as a reproducible tarball (sorted members, fixed owner and times)."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

from clawfleet.agent import AgentError

_EPOCH = 315532800  # 1980-01-01, as the bundle's own wheel (SOURCE_DATE_EPOCH)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = _EPOCH
    if info.isfile() or info.isdir():
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def pack_tree(root: Path, dest: Path) -> None:
    """Write ``root``'s package.json, package-lock.json and node_modules/ into ``dest`` (.tar.gz)."""
    members = [root / "package.json", root / "package-lock.json", root / "node_modules"]
    paths: list[Path] = []
    for member in members:
        paths.append(member)
        if member.is_dir() and not member.is_symlink():
            paths.extend(sorted(member.rglob("*")))
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in paths:
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=_normalise)


def unpack_tree(tarball: Path, dest: Path) -> None:
    """Unpack ``tarball`` as ``dest`` (replaced whole), refusing members that would land outside it."""
    if not hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+: never unpack without it
        raise AgentError(f"{tarball}: unpacking safely needs Python >= 3.10.12 (tarfile's data filter)")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            # The "data" filter refuses absolute paths, links out of the tree and device files.
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise AgentError(f"{tarball}: cannot unpack the OpenClaw tree: {exc}") from exc
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
