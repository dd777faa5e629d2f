"""Bundle build and verification: a real build from this checkout (wheels from the package index, built for two
Python versions), unchanged inputs give the same digest, and every kind of tampering is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet.bundle import BundleError, Target, build_bundle, bundle_digest, verify_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    result = build_bundle(out, REPO, [Target.parse("3.10-x86_64"), Target.parse("3.13-aarch64")], REPO / "policies")
    assert result.rebuilt
    return out


def test_build_has_wheels_for_every_target(built):
    names = {p.name for p in (built / "wheels").iterdir()}
    assert any(n.startswith("clawfleet-0.1.0-") for n in names)
    # cffi is compiled: one wheel per Python version and machine.
    assert any("cp310" in n and "x86_64" in n for n in names if n.startswith("cffi-"))
    assert any("cp313" in n and "aarch64" in n for n in names if n.startswith("cffi-"))
    # google-re2 (the regex middleware's engine) is compiled too, and has wheels for every target
    assert any("cp310" in n and "x86_64" in n for n in names if n.startswith("google_re2-"))
    assert any("cp313" in n and "aarch64" in n for n in names if n.startswith("google_re2-"))
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["targets"] == ["py310-x86_64", "py313-aarch64"]
    assert "ruamel.yaml==0.19.1" in manifest["requirements"]
    assert verify_bundle(built, bundle_digest(built))


def test_rebuild_with_unchanged_inputs_keeps_the_digest(built):
    before = bundle_digest(built)
    again = build_bundle(built, REPO, [Target.parse("3.10-x86_64"), Target.parse("3.13-aarch64")], REPO / "policies")
    assert not again.rebuilt
    assert again.digest == before


def test_tampering_is_caught(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    digest = bundle_digest(copy)
    wheel = next((copy / "wheels").glob("h11-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"x")
    with pytest.raises(BundleError, match=f"{wheel.name}: sha256 mismatch"):
        verify_bundle(copy, digest)


def test_unlisted_and_missing_files_and_wrong_digest(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"evil-1\.0-py3-none-any\.whl: not listed"):
        verify_bundle(copy)
    (copy / "wheels" / "evil-1.0-py3-none-any.whl").unlink()
    next((copy / "wheels").glob("idna-*.whl")).unlink()
    with pytest.raises(BundleError, match="listed in SHA256SUMS but missing"):
        verify_bundle(copy)
    with pytest.raises(BundleError, match="not the expected"):
        verify_bundle(built, "sha256:" + "f" * 64)
    with pytest.raises(BundleError, match="empty expected digest"):
        verify_bundle(built, "")


@pytest.mark.parametrize("bad", ["3.9-x86_64", "3-x86_64", "3.11-riscv64", "python3"])
def test_bad_targets_are_refused(bad):
    with pytest.raises(BundleError):
        Target.parse(bad)


def test_cli_verify_exit_codes(built, tmp_path):
    cli = [sys.executable, "-m", "clawfleet.cli", "bundle"]
    ok = subprocess.run([*cli, "verify", str(built), "--digest", bundle_digest(built)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cli, "verify", str(built), "--digest", "sha256:00"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "not the expected" in bad.stderr
