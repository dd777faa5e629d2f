#!/usr/bin/env bash
# The whole test suite - the README's test command, and what CI runs.
#   bash scripts/test.sh          everything: lint, syntax checks, pytest, every Molecule scenario
#   bash scripts/test.sh lint     ruff + mypy + ansible-lint + syntax checks only
# Sets up what it needs first (venv, Docker engine, systemd base images); each of those steps is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Tools the tests drive for real: bubblewrap (sandbox baseline), curl, git, node and the system pip (clients in the
# sandbox/gateway tests). With CLAWFLEET_FORBID_SKIPS a missing one would fail the run, so they are installed here.
tests/infra/apt-install.sh bubblewrap curl git iproute2 util-linux procps python3 python3-pip nodejs libseccomp2 passwd

results=()
failed=0
step() {
  local name=$1
  shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@"; then
    results+=("$name ok ($((SECONDS - start)) s)")
  else
    results+=("$name FAILED ($((SECONDS - start)) s)")
    failed=$((failed + 1))
  fi
}

syntax_check_all() {
  local pb rc=0
  for pb in site.yml playbooks/*.yml; do
    [ -e "$pb" ] || continue
    ansible-playbook --syntax-check "$pb" >/dev/null || { echo "syntax-check failed: $pb"; rc=1; }
  done
  return $rc
}

molecule_all() {
  local dir rc=0 start times=()
  for dir in molecule/*/; do
    [ -f "$dir/molecule.yml" ] || continue
    start=$SECONDS
    if molecule test -s "$(basename "$dir")"; then
      times+=("$(basename "$dir") ok ($((SECONDS - start)) s)")
    else
      times+=("$(basename "$dir") FAILED ($((SECONDS - start)) s)")
      rc=1
    fi
  done
  # Molecule is most of CI's time: each scenario's share, to see which one to make faster
  printf '  molecule %s\n' "${times[@]}"
  return $rc
}

step ruff ruff check .
step ruff-format ruff format --check .
step mypy mypy
step ansible-lint env ANSIBLE_VAULT_PASSWORD_FILE=inventories/example-vault-password ansible-lint --profile production
step syntax-check syntax_check_all
if [ "$what" = all ]; then
  tests/infra/docker-engine.sh
  tests/infra/base-images.sh
  # Presidio (with a blank spaCy pipeline) in its own venv: the router's optional engine is tested against it.
  bash benchmarks/setup-bench-venv.sh
  step pytest env CLAWFLEET_FORBID_SKIPS=1 pytest
  step molecule molecule_all
fi

echo
echo "=== summary"
printf '  %s\n' "${results[@]}"
echo "checks: $(( ${#results[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
