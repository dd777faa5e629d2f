"""The k3s role's air-gap verification, run on the controller against this machine in check mode: every case
here must fail before anything reaches the host (the Molecule scenario covers the tampered binary on containers
and the whole install)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

VERSION = "v1.32.5+k3s1"


def _artifact_dir(tmp_path: Path, checksum_lines: list[str] | None = None) -> Path:
    d = tmp_path / "airgap"
    d.mkdir()
    (d / "k3s").write_text("#!/bin/sh\n# TEST STAND-IN, never executed by this test\nexit 1\n")
    (d / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"stand-in images")
    if checksum_lines is None:
        checksum_lines = [
            f"{hashlib.sha256((d / name).read_bytes()).hexdigest()}  {name}"
            for name in ("k3s", "k3s-airgap-images-amd64.tar.zst")
        ]
    (d / "sha256sum-amd64.txt").write_text("\n".join(checksum_lines) + "\n")
    return d


def _vars(d: Path, **extra) -> dict:
    return {"k3s_install_mode": "airgap", "k3s_airgap_dir": str(d), "k3s_version": VERSION, **extra}


def test_tampered_images_tarball_is_refused(tmp_path, run_role):
    d = _artifact_dir(tmp_path)
    (d / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"other images")
    result = run_role("k3s", _vars(d), check=True)
    assert result.rc != 0
    assert f"{d}/k3s-airgap-images-amd64.tar.zst has sha256 " in result.output
    assert "k3s air-gap artifact checksum mismatch" in result.output


def test_checksum_file_without_a_line_for_the_binary_is_refused(tmp_path, run_role):
    d = _artifact_dir(tmp_path, checksum_lines=["0" * 64 + "  k3s-arm64"])
    result = run_role("k3s", _vars(d, k3s_airgap_images=False), check=True)
    assert result.rc != 0
    assert "sha256sum-amd64.txt says (no line for this file)" in result.output


def test_missing_binary_is_refused(tmp_path, run_role):
    d = _artifact_dir(tmp_path)
    (d / "k3s").unlink()
    result = run_role("k3s", _vars(d, k3s_airgap_images=False), check=True)
    assert result.rc != 0
    assert f"{d}/k3s has sha256 (file missing)" in result.output


def test_agent_without_a_token_is_refused(tmp_path, run_role):
    d = _artifact_dir(tmp_path)
    result = run_role("k3s", _vars(d, k3s_role="agent", k3s_servers=["server-1"]), check=True)
    assert result.rc != 0
    assert "a token of at least 16 characters" in result.output


def test_token_in_k3s_config_is_refused(tmp_path, run_role):
    d = _artifact_dir(tmp_path)
    result = run_role("k3s", _vars(d, k3s_config={"token": "x" * 20}), check=True)
    assert result.rc != 0
    assert "k3s_config holds no token keys" in result.output


UNENCRYPTED = "sends pod traffic between nodes unencrypted"


@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_unencrypted_flannel_between_nodes_on_a_public_network_is_refused(tmp_path, run_role, backend):
    d = _artifact_dir(tmp_path)
    result = run_role("k3s", _vars(d, k3s_servers=["localhost", "server-2"], k3s_flannel_backend=backend), check=True)
    assert result.rc != 0
    assert f"k3s_flannel_backend is {backend} in a multi-node cluster, which {UNENCRYPTED}" in result.output


def test_vxlan_on_a_private_network_is_allowed(tmp_path, run_role):
    # The twin: the same cluster, declared private, gets past the network check (the run goes on to the
    # artifacts, which is all check mode on this machine can show).
    d = _artifact_dir(tmp_path)
    result = run_role(
        "k3s",
        _vars(d, k3s_servers=["localhost", "server-2"], k3s_flannel_backend="vxlan", k3s_network_is_private=True),
        check=True,
    )
    assert UNENCRYPTED not in result.output
    assert "Fetch and verify the k3s release files" in result.output


def test_default_backend_encrypts_between_nodes(tmp_path, run_role):
    d = _artifact_dir(tmp_path)
    result = run_role("k3s", _vars(d, k3s_servers=["localhost", "server-2"]), check=True)
    assert UNENCRYPTED not in result.output
    assert "Fetch and verify the k3s release files" in result.output
