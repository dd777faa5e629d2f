#!/usr/bin/env bash
# Build the clawfleet.fleet collection from this repository and install the tarball into an EMPTY collections path,
# the way an Ansible user installs it (ansible-galaxy collection install). Used by `make collection` (build only)
# and by the Molecule `site` scenario, which then runs `clawfleet.fleet.site` by FQCN from that path only.
#   bash scripts/install-collection.sh [--build-only] [DEST]    DEST defaults to .cache/collections
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=false
if [ "${1:-}" = --build-only ]; then
  build_only=true
  shift
fi
dest=${1:-.cache/collections}
galaxy=.venv/bin/ansible-galaxy
[ -x "$galaxy" ] || galaxy=ansible-galaxy
mkdir -p dist
"$galaxy" collection build --force --output-path dist . >/dev/null
version=$(sed -n 's/^version: *//p' galaxy.yml)
tarball="dist/clawfleet-fleet-${version}.tar.gz"
echo "built $tarball"
$build_only && exit 0
rm -rf "$dest"
mkdir -p "$dest"
# --no-deps: the collections it depends on come with the `ansible` package of the controller's venv
ANSIBLE_COLLECTIONS_PATH="$dest" "$galaxy" collection install --no-deps -p "$dest" "$tarball" >/dev/null
echo "installed clawfleet.fleet ${version} into $dest"
