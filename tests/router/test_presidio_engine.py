"""The optional Presidio engine: a clear error where it is not installed (the runtime venv), and a working
offline engine where it is (the bench venv that scripts/test.sh builds with benchmarks/setup-bench-venv.sh)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from clawfleet.router.classifier.presidio_engine import PresidioEngine

REPO = Path(__file__).resolve().parents[2]
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"


def test_missing_presidio_is_a_clear_error_in_the_runtime_venv():
    if importlib.util.find_spec("presidio_analyzer") is not None:
        found = {f.type for f in PresidioEngine()("mail me at someone@example.org")}
        assert "email" in found
        return
    with pytest.raises(ImportError, match="presidio-analyzer is not installed"):
        PresidioEngine()


def test_presidio_engine_runs_offline_in_the_bench_venv():
    if not BENCH_PYTHON.exists():
        pytest.skip("needs .venv-bench (bash benchmarks/setup-bench-venv.sh; scripts/test.sh builds it)")
    code = (
        "from clawfleet.router.classifier.presidio_engine import PresidioEngine\n"
        "print(sorted({f.type for f in PresidioEngine()('mail me at someone@example.org')}))\n"
    )
    out = subprocess.run(
        [str(BENCH_PYTHON), "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "email" in out.stdout
