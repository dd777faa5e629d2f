#!/usr/bin/env bash
# Creates /work/main/.venv-bench (or $BENCH_VENV) with Presidio's analyzer and spaCy, for the side-by-side
# classifier evaluation. No model is downloaded: the comparison uses a blank spaCy pipeline (spacy.blank("en")),
# so Presidio runs its pattern recognizers (with their checksums and context words) offline, as our router must.
# Idempotent: re-running only installs what is missing. The main test suite does not need this venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
PYTHON="${PYTHON:-python3}"
PRESIDIO_VERSION="${PRESIDIO_VERSION:-2.2.366}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import presidio_analyzer, spacy" >/dev/null 2>&1; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "presidio-analyzer==${PRESIDIO_VERSION}"
fi
# Our own package, without its dependencies' extras, so eval_classifier.py can import clawfleet.router.classifier;
# of its runtime pins, the classifier needs ruamel.yaml and google-re2 (the pin is read from pyproject.toml).
if ! "$VENV/bin/python" -c "import clawfleet.router.classifier" >/dev/null 2>&1; then
  RE2_PIN="$(grep -o 'google-re2==[0-9.]*' "$ROOT/pyproject.toml" | head -n 1)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "ruamel.yaml==0.19.1" "$RE2_PIN"
fi
"$VENV/bin/python" - <<'PY'
import spacy
import presidio_analyzer

spacy.blank("en")  # must work without a download
print(f"bench venv ready: presidio-analyzer {presidio_analyzer.__version__ if hasattr(presidio_analyzer, '__version__') else '?'}, spacy {spacy.__version__}")
PY
