"""`clawfleet bundle build --agent openclaw`: the runtime per target machine is in the bundle, listed in
SHA256SUMS and the manifest; a rebuild reuses the build cache (nothing downloaded); hosts install from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clawfleet.agent.install import install
from clawfleet.agent.pins import MACHINES, lock_digest, machine, openclaw_version
from clawfleet.bundle import Target, build_bundle, bundle_digest, verify_bundle
from clawfleet.bundle.verify import read_sums, sha256_file

from .fake_runtime import fake_node_wheel, fake_tree

REPO = Path(__file__).resolve().parents[2]
TARGETS = [Target.parse("3.11-x86_64"), Target.parse("3.11-aarch64")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A build cache already holding (FAKE) runtimes for both machines: the build must take them from here."""
    root = tmp_path_factory.mktemp("cache")
    (root / "node").mkdir()
    (root / "openclaw").mkdir()
    for m in MACHINES.values():
        fake_node_wheel(root / "node", m.wheel_tag)
        fake_tree(root / "openclaw" / f"openclaw-{openclaw_version()}-{lock_digest()}-{m.name}.tar.gz",
                  {f"node_modules/@koromix/koffi-linux-{m.npm_cpu}/koffi.node": m.name.encode()})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    assert build_bundle(out, REPO, TARGETS, agents=["openclaw"], cache=cache).rebuilt
    return out


def test_bundle_lists_the_runtime_of_every_machine(built, cache):
    manifest = json.loads((built / "manifest.json").read_text())
    section = manifest["agents"]["openclaw"]
    assert section["version"] == openclaw_version() and section["lock"] == lock_digest()
    assert sorted(section["machines"]) == ["aarch64", "x86_64"]
    sums = read_sums(built)
    for name, files in section["machines"].items():
        for rel in files.values():
            assert rel in sums and rel.startswith(f"agents/openclaw/{name}/")
        # taken from the cache, not downloaded again
        cached = cache / "openclaw" / Path(files["tree"]).name
        assert sums[files["tree"]] == sha256_file(cached)
    assert verify_bundle(built, bundle_digest(built))


def test_rebuild_with_nothing_changed_is_a_no_op(built, cache):
    before = bundle_digest(built)
    again = build_bundle(built, REPO, TARGETS, agents=["openclaw"], cache=cache)
    assert not again.rebuilt and again.digest == before


def test_adding_the_agent_changes_the_bundle(tmp_path, cache):
    plain = build_bundle(tmp_path / "b", REPO, TARGETS[:1], cache=cache)
    assert "agents" not in json.loads((tmp_path / "b" / "manifest.json").read_text())
    with_agent = build_bundle(tmp_path / "b", REPO, TARGETS[:1], agents=["openclaw"], cache=cache)
    assert with_agent.rebuilt and with_agent.digest != plain.digest


def test_host_installs_from_the_bundle_copy(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    result = install(tmp_path / "opt", bundle=copy, digest=bundle_digest(built))
    assert result.changed and Path(result.entry).is_file()
    here = machine()  # this machine's native packages, not the other machine's
    native = tmp_path / "opt" / "openclaw" / "node_modules" / "@koromix" / f"koffi-linux-{here.npm_cpu}" / "koffi.node"
    assert native.read_text() == here.name
