"""The optional Presidio engine: clear error without it; works offline when installed (bench venv)."""

from __future__ import annotations

import importlib.util

import pytest

from clawfleet.router.classifier.presidio_engine import PresidioEngine

HAVE_PRESIDIO = importlib.util.find_spec("presidio_analyzer") is not None


@pytest.mark.skipif(HAVE_PRESIDIO, reason="presidio installed here")
def test_missing_presidio_is_a_clear_error():
    with pytest.raises(ImportError, match="presidio-analyzer is not installed"):
        PresidioEngine()


@pytest.mark.skipif(not HAVE_PRESIDIO, reason="needs presidio-analyzer (benchmarks/setup-bench-venv.sh)")
def test_presidio_engine_offline():
    engine = PresidioEngine()
    found = {f.type for f in engine("mail me at someone@example.org")}
    assert "email" in found
