"""The bundle format, shared by `clawfleet bundle` (which builds and verifies bundles) and `clawfleet agent`
(which installs from them): SHA256SUMS, manifest.json, the digest, and verification. A module of its own, below
both packages, so neither imports the other to read a bundle. Checks a bundle directory against its SHA256SUMS
(the same checks the hosts run with sha256sum).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
# Files that describe the bundle rather than belong to it.
_META = {SUMS, MANIFEST}


class BundleError(Exception):
    """A bundle is incomplete, altered or not the one expected; the message names the file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_digest(directory: str | Path) -> str:
    """The bundle's identity: sha256 of its SHA256SUMS file."""
    sums = Path(directory) / SUMS
    if not sums.is_file():
        raise BundleError(f"{sums}: missing; not a clawfleet bundle")
    return "sha256:" + sha256_file(sums)


def read_sums(directory: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for lineno, line in enumerate((directory / SUMS).read_text().splitlines(), 1):
        checksum, sep, name = line.partition("  ")
        if not sep or len(checksum) != 64 or name.startswith("/") or ".." in Path(name).parts:
            raise BundleError(f"{directory / SUMS}:{lineno}: malformed line {line!r}")
        entries[name] = checksum
    return entries


def verify_bundle(directory: str | Path, expected_digest: str | None = None) -> dict[str, str]:
    """Raise BundleError unless every listed file matches and nothing unlisted is present."""
    root = Path(directory)
    digest = bundle_digest(root)
    if expected_digest is not None:
        if not expected_digest:
            raise BundleError(f"{root}: empty expected digest; refusing to use an unverified bundle")
        if digest != expected_digest:
            raise BundleError(f"{root / SUMS}: digest {digest} is not the expected {expected_digest}")
    entries = read_sums(root)
    problems = []
    for name, checksum in sorted(entries.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: listed in {SUMS} but missing")
        elif (actual := sha256_file(path)) != checksum:
            problems.append(f"{path}: sha256 mismatch (manifest {checksum}, file {actual})")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in entries and rel not in _META:
            problems.append(f"{path}: not listed in {SUMS} (an unlisted wheel could be installed)")
    if problems:
        raise BundleError("; ".join(problems))
    return entries
