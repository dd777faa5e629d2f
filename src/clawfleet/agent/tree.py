"""Pack and unpack an installed npm tree as a reproducible tarball (sorted members, fixed owner and times)."""

from __future__ import annotations

import copy
import gzip
import posixpath
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


def _checked(member: tarfile.TarInfo, links: set[str]) -> tarfile.TarInfo:
    """What tarfile's "data" filter does, for Pythons without it (Debian 12 ships 3.11.2; the filter came in 3.11.4):
    the same refusals for what a packed tree can hold, and the same mode and owner clean-up."""
    name = posixpath.normpath(member.name)
    parts = name.split("/")
    if member.name.startswith("/") or ".." in parts or name == "..":
        raise tarfile.TarError(f"{member.name!r}: outside the destination")
    # A member below a link the archive made earlier would be written wherever that link points.
    if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
        raise tarfile.TarError(f"{member.name!r}: below a link")
    if member.issym() or member.islnk():
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise tarfile.TarError(f"{member.name!r}: link to {member.linkname!r} outside the destination")
        links.add(name)
    elif not (member.isfile() or member.isdir()):
        raise tarfile.TarError(f"{member.name!r}: not a file, directory or link")
    clean = copy.copy(member)
    clean.uid = clean.gid = 0
    clean.uname = clean.gname = ""
    if member.isfile() or member.isdir():
        # No set-id, sticky or group/other write bits; owner read/write kept (the data filter's rule).
        clean.mode = (member.mode & 0o755) | 0o600 if member.isfile() else (member.mode & 0o755) | 0o700
    return clean


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        # The "data" filter refuses absolute paths, links out of the tree and device files.
        tar.extractall(dest, filter="data")
        return
    links: set[str] = set()
    members = [_checked(m, links) for m in tar.getmembers()]
    tar.extractall(dest, members=members, numeric_owner=True)  # noqa: S202 - every member checked above


def unpack_tree(tarball: Path, dest: Path) -> None:
    """Unpack ``tarball`` as ``dest`` (replaced whole), refusing members that would land outside it."""
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            _extract(tar, partial)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise AgentError(f"{tarball}: cannot unpack the OpenClaw tree: {exc}") from exc
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
