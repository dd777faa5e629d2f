#!/usr/bin/env bash
# Build the systemd base images the Molecule scenarios run on, with debootstrap + `docker import`
# (nothing can be pulled from a registry here). An image that already exists is reused, so a second run is fast.
#   usage: tests/infra/base-images.sh [SUITE...]    (default: bookworm trixie)
set -euo pipefail

MIRROR=${CLAWFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO=${CLAWFLEET_IMAGE_REPO:-clawfleet/systemd-debian}
# Packages a systemd test host needs: Ansible's Python, sudo, and the tools our roles and testinfra call.
INCLUDE=systemd,systemd-sysv,python3,python3-venv,sudo,iproute2,procps,ca-certificates,curl,iptables

log() { printf '[base-images] %s\n' "$*"; }

build() {
  local suite=$1 image="$REPO:$1" rootfs
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image cached ($(docker image inspect -f '{{.Created}}' "$image"))"
    return 0
  fi
  rootfs=$(mktemp -d "/var/tmp/clawfleet-rootfs-$suite.XXXXXX")
  log "debootstrap $suite into $rootfs"
  debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    rm -rf "$rootfs"
    return 1
  }
  rm -f "$rootfs.log"
  # A container has no console to start gettys on and no kernel modules to load.
  rm -f "$rootfs"/etc/systemd/system/getty.target.wants/* \
        "$rootfs"/lib/systemd/system/multi-user.target.wants/getty.target
  echo "clawfleet-test" >"$rootfs/etc/hostname"
  tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    - "$image" >/dev/null
  rm -rf "$rootfs"
  log "built $image"
}

tests/infra/apt-install.sh debootstrap
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
for suite in "${suites[@]}"; do
  build "$suite"
done
