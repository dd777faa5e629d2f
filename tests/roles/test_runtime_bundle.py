"""A tampered or unexpected bundle stops the clawfleet_runtime role before anything is installed."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


def _make_bundle(root: Path) -> str:
    """A small bundle in the real format (SHA256SUMS + manifest.json); returns its digest."""
    (root / "wheels").mkdir(parents=True)
    (root / "wheels" / "example-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 not really a wheel")
    (root / "policies").mkdir()
    (root / "policies" / "base.yaml").write_text("version: 1\n")
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(root).as_posix()}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    (root / "manifest.json").write_text('{"format": 1}\n')
    return "sha256:" + hashlib.sha256((root / "SHA256SUMS").read_bytes()).hexdigest()


@pytest.fixture
def role_vars(tmp_path: Path):
    def _vars(bundle: Path, digest: str) -> dict:
        return {
            "clawfleet_runtime_bundle_dir": str(bundle),
            "clawfleet_runtime_bundle_build": False,
            "clawfleet_runtime_bundle_digest": digest,
            "clawfleet_runtime_bundles_dir": str(tmp_path / "host-bundles"),
            "clawfleet_venv": str(tmp_path / "venv"),
            "clawfleet_runtime_venvs_dir": str(tmp_path / "venvs"),
        }

    return _vars


def test_tampered_wheel_stops_the_play_and_names_the_file(run_role, role_vars, tmp_path):
    bundle = tmp_path / "bundle"
    digest = _make_bundle(bundle)
    with (bundle / "wheels" / "example-1.0-py3-none-any.whl").open("ab") as fh:
        fh.write(b"backdoor")
    run = run_role("clawfleet_runtime", role_vars(bundle, digest))
    assert run.rc != 0
    assert "bundle verification failed, nothing installed" in run.output
    assert "wheels/example-1.0-py3-none-any.whl: FAILED" in run.output
    assert not (tmp_path / "venv").exists()
    assert not (tmp_path / "host-bundles" / digest[7:23]).exists()  # the bad copy is not left to block the good one


def test_bundle_other_than_the_pinned_digest_is_refused(run_role, role_vars, tmp_path):
    bundle = tmp_path / "bundle"
    _make_bundle(bundle)
    run = run_role("clawfleet_runtime", role_vars(bundle, "sha256:" + "0" * 64))
    assert run.rc != 0
    assert "is not the expected sha256:0000" in run.output
    assert not (tmp_path / "venv").exists()


def test_unlisted_wheel_is_refused(run_role, role_vars, tmp_path):
    bundle = tmp_path / "bundle"
    digest = _make_bundle(bundle)
    shutil.copy(bundle / "wheels" / "example-1.0-py3-none-any.whl", bundle / "wheels" / "evil-9.9-py3-none-any.whl")
    run = run_role("clawfleet_runtime", role_vars(bundle, digest))
    assert run.rc != 0
    assert "files not listed in SHA256SUMS: wheels/evil-9.9-py3-none-any.whl" in run.output


def test_intact_bundle_passes_verification(run_role, role_vars, tmp_path):
    # The allowed path: the same bundle untouched gets through verification and fails only later, at pip,
    # because its wheel is a stand-in; the failure must not be a verification failure.
    bundle = tmp_path / "bundle"
    digest = _make_bundle(bundle)
    run = run_role("clawfleet_runtime", role_vars(bundle, digest))
    assert "bundle verification failed" not in run.output
    host_copy = tmp_path / "host-bundles" / digest[7:23]
    assert (host_copy / "SHA256SUMS").read_bytes() == (bundle / "SHA256SUMS").read_bytes()
    assert "clawfleet==0.1.0" in run.output  # it went on to the pip install step


def test_failed_install_leaves_the_runtime_link_and_names_host_and_step(run_role, role_vars, tmp_path):
    # The install goes into a venv of its own beside the live one: a failure there never touches what runs.
    bundle = tmp_path / "bundle"
    digest = _make_bundle(bundle)
    (tmp_path / "venvs" / "live").mkdir(parents=True)
    (tmp_path / "venv").symlink_to(tmp_path / "venvs" / "live")
    run = run_role("clawfleet_runtime", role_vars(bundle, digest))
    assert run.rc != 0
    step = "Install the runtime from the verified bundle"
    assert f'localhost: runtime upgrade to {digest} failed at "{step}"' in run.output
    assert f"The runtime link was not switched: {tmp_path / 'venv'} is unchanged." in run.output
    assert (tmp_path / "venv").readlink() == tmp_path / "venvs" / "live"
    assert not (tmp_path / "venvs" / digest[7:23] / ".clawfleet-complete").exists()


def test_check_mode_on_a_fresh_host_fails_nothing_and_installs_nothing(run_role, role_vars, tmp_path):
    bundle = tmp_path / "bundle"
    digest = _make_bundle(bundle)
    run = run_role("clawfleet_runtime", role_vars(bundle, digest), check=True)
    assert run.rc == 0, run.output
    assert "runtime upgrade to" not in run.output
    assert not (tmp_path / "venv").exists() and not (tmp_path / "venv").is_symlink()
    assert not (tmp_path / "venvs").exists()
