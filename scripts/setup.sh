#!/usr/bin/env bash
# Set up the controller: OS packages, then the project's virtualenv (.venv) with every pinned Python dependency
# from pyproject.toml. Idempotent: the venv is only reinstalled when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages): sudo bash scripts/setup.sh" >&2
  exit 1
fi

# python3-venv for the venv, make for the Makefile, gcc + headers for any dependency built from source.
tests/infra/apt-install.sh python3 python3-venv python3-dev gcc make git libseccomp2

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: the controller needs Python >= 3.11 (ansible-core 2.19); found $(python3 --version)" >&2
  exit 1
fi

# The clone is also the collection clawfleet.fleet (galaxy.yml): roles call its filters by FQCN, so Ansible must
# find the collection when it runs from the clone too. ansible.cfg searches .cache/collections-dev first.
mkdir -p .cache/collections-dev/ansible_collections/clawfleet
ln -sfn ../../../.. .cache/collections-dev/ansible_collections/clawfleet/fleet

stamp=.venv/.clawfleet-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv up to date"
  exit 0
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "$want" >"$stamp"
echo "setup: .venv ready ($(.venv/bin/ansible --version | head -n1))"
