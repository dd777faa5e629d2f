#!/usr/bin/env bash
# Make sure a Docker engine runs on this machine: install docker.io if missing and start dockerd if it is not
# answering. Idempotent: a second call does nothing. See README.md, "CI".
set -euo pipefail

log() { printf '[docker-engine] %s\n' "$*"; }

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  tests/infra/apt-install.sh docker.io iptables
fi

if docker info >/dev/null 2>&1; then
  log "engine already running"
  exit 0
fi

log "starting dockerd"
# setsid: dockerd must outlive the shell that started it (CI steps run in their own shells).
setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine ready ($(docker info --format '{{.Driver}}') storage)"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2
exit 1
