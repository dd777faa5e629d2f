"""The vllm role's weight pin (tasks/weights.yml), run against a model cache laid out like Hugging Face's in a
temporary directory: the pinned snapshot passes; a tampered, missing or unpinned-revision one stops the role."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

MODEL = "nvidia/FAKE-test-model"
REVISION = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"architectures": ["FakeForCausalLM"]}\n', "model-00001-of-00001.safetensors": b"\0" * 4096}


def _cache(tmp_path: Path) -> Path:
    """HF_HOME with the snapshot's files as symlinks into blobs/, as the hub library writes them."""
    repo = tmp_path / "models" / "hub" / f"models--{MODEL.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, data in FILES.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)
    return tmp_path / "models"


def _vars(cache: Path, **extra) -> dict:
    return {
        "vllm_model_cache_dir": str(cache),
        "vllm_plan": {"model": MODEL},
        "vllm_model_revision": REVISION,
        "vllm_model_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()},
        **extra,
    }


def test_the_pinned_snapshot_passes(tmp_path, run_role):
    run = run_role("vllm", _vars(_cache(tmp_path)), tasks_from="weights")
    assert run.rc == 0, run.output
    assert run.failed == 0 and run.ok >= 4


def test_a_tampered_weight_file_stops_the_role(tmp_path, run_role):
    cache = _cache(tmp_path)
    blob = next((cache / "hub").rglob("blobs/*"))
    blob.write_bytes(blob.read_bytes()[:-1] + b"\1")  # one byte changed in place, the symlink still resolves
    run = run_role("vllm", _vars(cache), tasks_from="weights")
    assert run.rc != 0 and run.failed == 1, run.output
    assert "missing or different" in run.output


def test_a_missing_weight_file_stops_the_role(tmp_path, run_role):
    cache = _cache(tmp_path)
    (cache / "hub" / f"models--{MODEL.replace('/', '--')}" / "snapshots" / REVISION / "config.json").unlink()
    run = run_role("vllm", _vars(cache), tasks_from="weights")
    assert run.rc != 0 and "missing or different: config.json" in run.output, run.output


def test_another_revision_in_the_cache_does_not_pass(tmp_path, run_role):
    run = run_role("vllm", _vars(_cache(tmp_path), vllm_model_revision="f" * 40), tasks_from="weights")
    assert run.rc != 0 and "missing or different" in run.output, run.output


def test_hashes_without_a_full_revision_are_refused(tmp_path, run_role):
    run = run_role("vllm", _vars(_cache(tmp_path), vllm_model_revision="main"), tasks_from="weights")
    assert run.rc != 0 and "40 hex digits" in run.output, run.output


def test_no_pin_checks_nothing(tmp_path, run_role):
    run = run_role(
        "vllm", _vars(tmp_path / "empty", vllm_model_revision="", vllm_model_sha256={}), tasks_from="weights"
    )
    assert run.rc == 0 and run.failed == 0, run.output
