#!/usr/bin/env bash
# Run the side-by-side benchmarks on the lent quiet host (many cores, Python 3.12, no package index), in two
# phases that each fit one device call (under 10 minutes, tree + payload under 64 MiB, at most 8 files back):
#   a: policy engine, sandbox start (beside bwrap), gateway (beside mitmproxy and Squid ssl-bump), classifier
#   b: router (beside the fake upstream called directly and the LiteLLM proxy)
# Their payloads come from benchmarks/prepare-quiet-host.sh, run here first; it prints the two device calls.
# Raw outputs come back as $OUT/phase-PHASE.tar.gz plus $OUT/summary-PHASE.txt (the tails); keep them under
# docs/device-runs/. Each benchmark compares against its peers in the same run. Not run there: bench_scaling.py and
# bench_gateway_isolation.py (long; measured on the development VM: docs/gateway.md "Scaling") and bench_rollout.py
# (it needs Docker and systemd containers, which the device lacks): `bash benchmarks/run-on-quiet-host.sh extra`
# runs the first two where time allows.
#
# Squid and bubblewrap are Debian 12 packages, unpacked (dpkg -x), never installed - dpkg -i would want newer
# libltdl7/libsasl2 than jammy's and replace system libraries - and run with their own libraries first on the
# path (libc, libstdc++, libssl3, krb5, libsystemd, nettle come from the host). If Squid does not run there, the
# gateway bench runs with --no-squid and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: run-on-quiet-host.sh a|b|extra}
out=${OUT:-/tmp/bench-out}
raw=/tmp/bench-raw-$phase
rm -rf "$raw" && mkdir -p "$raw" "$out"
payload=/tmp/quiet-payload-$phase
case $phase in a | b) ;; extra) payload=/tmp/quiet-payload-a ;; *) echo "unknown phase $phase" >&2; exit 2 ;; esac
if [ "$phase" != extra ]; then
  rm -rf "$payload" && mkdir -p "$payload"
  xz -dc ".devbundle-$phase/payload.tar.xz" | tar -x -C "$payload" || { echo "no payload: run prepare-quiet-host.sh" >&2; exit 2; }
  rm -rf /tmp/cf-venv
  python3 -m venv /tmp/cf-venv && /tmp/cf-venv/bin/pip install -q --no-index --find-links "$payload/wheels" clawfleet \
    || { echo "clawfleet did not install from the payload" >&2; exit 2; }
fi
py=/tmp/cf-venv/bin/python
[ -x "$py" ] || { echo "no /tmp/cf-venv: run phase a on this machine first" >&2; exit 2; }
{ date -u; uname -a; nproc; python3 --version; free -g | head -2; uptime; } >"$raw/host.txt" 2>&1
t() { # t SECONDS NAME COMMAND...: run one benchmark under its time limit, output in NAME.txt, timing in times.txt
  local limit=$1 name=$2 start=$SECONDS rc
  shift 2
  timeout -k 10 "$limit" "$@" >"$raw/$name.txt" 2>&1  # the command's process group: its servers go with it
  rc=$?
  echo "$name rc=$rc $((SECONDS - start))s (limit ${limit}s)" | tee -a "$raw/times.txt"
}
case $phase in
a)
  python3 -m venv /tmp/cf-mitm && /tmp/cf-mitm/bin/pip install -q --no-index --find-links "$payload/mitm" mitmproxy \
    || { echo "mitmproxy did not install from the payload" >&2; exit 2; }
  mkdir -p /tmp/bwrap && dpkg -x "$payload"/bubblewrap_*.deb /tmp/bwrap || { echo "no bubblewrap" >&2; exit 2; }
  export PATH=/tmp/bwrap/usr/bin:$PATH MITM_VENV=/tmp/cf-mitm
  # squid from Debian's debs: unpacked under /tmp/squid-root, each binary behind a wrapper that puts the unpacked
  # libraries first (certgen inherits it from squid); the bench gets them through SQUID / SQUID_CERTGEN / SQUID_SHARE
  squid_flag=--no-squid
  sq=/tmp/squid-root
  rm -rf "$sq" && mkdir -p "$sq/bin"
  for deb in "$payload"/squid/*.deb; do dpkg -x "$deb" "$sq"; done
  for exe in usr/sbin/squid usr/lib/squid/security_file_certgen; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/usr/lib/x86_64-linux-gnu:%s/lib/x86_64-linux-gnu exec %s/%s "$@"\n' \
      "$sq" "$sq" "$sq" "$exe" >"$sq/bin/$(basename "$exe")"
  done
  chmod 755 "$sq" "$sq/bin"/*
  # grep reads all of it (no -q): under pipefail an early exit would fail squid with SIGPIPE
  if "$sq/bin/squid" -v 2>"$raw/squid-check.txt" | grep -- --with-openssl >/dev/null \
    && "$sq/bin/security_file_certgen" -c -s /tmp/squid-check-db -M 4MB >>"$raw/squid-check.txt" 2>&1; then
    squid_flag=
    export SQUID=$sq/bin/squid SQUID_CERTGEN=$sq/bin/security_file_certgen SQUID_SHARE=$sq/usr/share/squid
  else
    echo "squid: the Debian 12 debs do not run on this host (see squid-check.txt): no Squid peer figures" \
      | tee "$raw/squid-skipped.txt"
  fi
  rm -rf /tmp/squid-check-db
  t 60 policy $py benchmarks/bench_policy.py
  t 110 sandbox $py benchmarks/bench_sandbox_start.py -n 30
  t 230 gateway $py benchmarks/bench_gateway.py --requests 2000 $squid_flag
  t 120 classifier $py benchmarks/bench_classifier.py
  ;;
b)
  # LiteLLM's venv takes what the device's Python already holds (numpy, tokenizers, ...) through a .pth file
  # after its own site-packages, so only what the payload lacks comes from there
  rm -rf /tmp/cf-litellm && python3 -m venv /tmp/cf-litellm
  device_site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
  own_site=$(/tmp/cf-litellm/bin/python -c 'import site; print(site.getsitepackages()[0])')
  echo "$device_site" >"$own_site/zz-device-packages.pth"
  # shellcheck disable=SC2046
  /tmp/cf-litellm/bin/pip install -q --no-index --no-deps "$payload"/litellm/*.whl \
    $(sed "s|^|$payload/wheels/|" "$payload/litellm/from-wheels.txt") >"$raw/litellm-install.txt" 2>&1 \
    || echo "LiteLLM did not install from the payload: the router bench stops without its peer" | tee -a "$raw/times.txt"
  LITELLM_LOCAL_MODEL_COST_MAP=True /tmp/cf-litellm/bin/litellm --version >>"$raw/litellm-install.txt" 2>&1
  export LITELLM_VENV=/tmp/cf-litellm
  t 420 router $py benchmarks/bench_router.py --requests "${ROUTER_REQUESTS:-400}"
  ;;
extra)
  id clawfleet-gateway >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin clawfleet-gateway
  t 280 isolation $py benchmarks/bench_gateway_isolation.py --requests 1000 --workers 8 --gateway-user clawfleet-gateway
  t 280 scaling $py benchmarks/bench_scaling.py --gateway-user clawfleet-gateway --json "$raw/scaling.json"
  ;;
esac
tar -czf "$out/phase-$phase.tar.gz" -C "$raw" .
for f in "$raw"/*.txt; do printf '\n==> %s <==\n' "$(basename "$f")"; tail -n 30 "$f"; done >"$out/summary-$phase.txt"
cat "$out/summary-$phase.txt"
