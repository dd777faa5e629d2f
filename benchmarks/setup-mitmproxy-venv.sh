#!/usr/bin/env bash
# Creates /work/main/.venv-mitm (or $MITM_VENV) with mitmproxy from PyPI, the peer in bench_gateway.py.
# mitmproxy pins its own dependency versions, so it never goes into the project's .venv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MITM_VENV:-$ROOT/.venv-mitm}"
PYTHON="${PYTHON:-python3}"
MITMPROXY_VERSION="${MITMPROXY_VERSION:-11.0.2}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/mitmdump" --version 2>/dev/null | grep -q "Mitmproxy: ${MITMPROXY_VERSION}"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "mitmproxy==${MITMPROXY_VERSION}"
fi
"$VENV/bin/mitmdump" --version | head -1
