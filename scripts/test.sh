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

# One lane: its items one after another ("pytest" or a Molecule scenario), each one's output into LOG, a result
# line per item on stdout (and into LOG.results). Exit 1 if any item failed.
lane() {
  local log=$1 item start rc=0 cmd
  shift
  : >"$log"
  for item in "$@"; do
    start=$SECONDS
    if [ "$item" = pytest ]; then cmd=(env CLAWFLEET_FORBID_SKIPS=1 pytest); else cmd=(molecule test -s "$item"); fi
    echo "===== $item: ${cmd[*]}" >>"$log"
    if "${cmd[@]}" >>"$log" 2>&1; then
      echo "$item ok ($((SECONDS - start)) s)"
    else
      echo "$item FAILED ($((SECONDS - start)) s)"
      rc=1
    fi
  done | tee "$log.results"
  ! grep -q FAILED "$log.results" && [ "$rc" -eq 0 ]
}

# pytest and Molecule in two lanes side by side: on CI's 2 cores each spends much of its time waiting (containers,
# systemd, sandboxes, timeouts), so the two together take ~40 min instead of ~60 one after the other. Nothing is
# shared between the lanes: every scenario has its own containers and ephemeral directory, and a bundle build
# packs a private copy of the sources (clawfleet.bundle.build). Lane A: pytest, then the scenarios listed here;
# lane B: every other scenario (a new one lands there by itself). Each lane's full output is printed at the end.
LANE_A_SCENARIOS="agent runtime gpu"
tests_and_scenarios() {
  local dir name lane_b=() logs rc=0
  for dir in molecule/*/; do
    [ -f "$dir/molecule.yml" ] || continue
    name=$(basename "$dir")
    case " $LANE_A_SCENARIOS " in *" $name "*) ;; *) lane_b+=("$name") ;; esac
  done
  logs=$(mktemp -d)
  # shellcheck disable=SC2086  # the scenario list is words
  lane "$logs/lane-a.log" pytest $LANE_A_SCENARIOS &
  local pid_a=$!
  lane "$logs/lane-b.log" "${lane_b[@]}" &
  local pid_b=$!
  wait "$pid_a" || rc=1
  wait "$pid_b" || rc=1
  for log in "$logs"/lane-a.log "$logs"/lane-b.log; do
    echo
    echo "=== output of $(basename "$log" .log)"
    cat "$log"
  done
  echo
  echo "=== pytest and Molecule, each one's time"
  cat "$logs"/lane-a.log.results "$logs"/lane-b.log.results | sed 's/^/  /'
  rm -rf "$logs"
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
  step pytest+molecule tests_and_scenarios
fi

echo
echo "=== summary"
printf '  %s\n' "${results[@]}"
echo "checks: $(( ${#results[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
