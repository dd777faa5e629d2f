#!/usr/bin/env bash
# Creates /work/main/.venv-litellm (or $LITELLM_VENV) with the LiteLLM proxy from PyPI, the peer in
# bench_router.py (a loopback `litellm --config` proxy in front of the same fake upstream as the router).
# LiteLLM pins dozens of its own dependencies, so it never goes into the project's .venv.
#
# litellm[proxy] 1.110.x requires the separate `litellm-proxy` (and `litellm-proxy-extras` ...post1) releases,
# which the index does not carry; the proxy's code is in the litellm wheel itself, so this installs litellm and
# the proxy extra's own runtime requirements (ranges copied from litellm 1.108.14's `proxy` extra, resolved
# versions pinned below) - what `litellm --config` imports to start. Nothing else (no DB, no cloud SDK extras).
# Offline (the quiet host): `pip download -d DIR -r <the list below>` here, then set PIP_FIND_LINKS=DIR and
# PIP_NO_INDEX=1 - see benchmarks/run-on-quiet-host.sh.
# Idempotent: re-running only installs what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LITELLM_VENV:-$ROOT/.venv-litellm}"
PYTHON="${PYTHON:-python3}"
LITELLM_VERSION="${LITELLM_VERSION:-1.110.2}"
REQUIREMENTS=(
  "litellm==${LITELLM_VERSION}"
  "fastapi==0.165.0" "uvicorn==0.55.0" "uvloop==0.23.0" "gunicorn==23.0.0" "backoff==2.2.1" "PyYAML==6.0.4"
  "rq==2.12.0" "orjson==3.13.0" "APScheduler==3.11.3" "fastapi-sso==0.23.0" "PyJWT==2.15.1"
  "python-multipart==0.0.34" "cryptography==50.0.2" "PyNaCl==1.6.2" "websockets==15.0.1" "mcp==2.3.0"
  "Expression==5.8.0" "soundfile==0.14.0" "semver==3.2.0"
)

if [[ "${1:-}" == "--print-requirements" ]]; then
  printf '%s\n' "${REQUIREMENTS[@]}"
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
export LITELLM_LOCAL_MODEL_COST_MAP=True  # offline: the price map in the wheel, no fetch
if ! "$VENV/bin/litellm" --version 2>/dev/null | grep -q "Current Version = ${LITELLM_VERSION}\$"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
fi
"$VENV/bin/litellm" --version | grep "Current Version"
