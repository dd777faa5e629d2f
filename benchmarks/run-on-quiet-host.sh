#!/usr/bin/env bash
# Run the side-by-side benchmarks on a quiet host with no package index (the lent GPU machine): everything is
# installed from a directory prepared here with
#   clawfleet bundle build --out .devbundle --target 3.12-x86_64
#   (cd .devbundle && apt-get download bubblewrap)
#   pip wheel --no-deps -w .devbundle/mitm pyperclip==1.9.0
#   pip download --only-binary=:all: --find-links .devbundle/mitm --python-version 3.12 ... -d .devbundle/mitm mitmproxy==12.1.2
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_28_x86_64 -d .devbundle/litellm $(benchmarks/setup-litellm-venv.sh --print-requirements)
# (the LiteLLM proxy, bench_router.py's peer: its pinned list lives in setup-litellm-venv.sh; ~120 MB of wheels).
#   mkdir -p .devbundle/squid && (cd .devbundle/squid && apt-get download squid-openssl squid-common \
#     squid-langpack libecap3 libltdl7 libnetfilter-conntrack3 libnfnetlink0 libmnl0)
# (Squid with ssl-bump, bench_gateway.py's second TLS-inspecting peer; ~4 MB: squid-openssl and what its binary
# and certgen helper load that a stock Ubuntu 22.04 / DGX OS 6 may lack or has too old; libc, libstdc++, libssl3,
# krb5, libsystemd, nettle come from the host). THESE ARE DEBIAN 12 PACKAGES, not Ubuntu's: they are unpacked
# (dpkg -x), never installed - dpkg -i would want newer libltdl7/libsasl2 than jammy's and replace system
# libraries - and run with their own libraries first on the path. They may still not run there; then the
# gateway bench runs with --no-squid and says so in gateway.txt.
# The router's own uvloop and httptools are runtime pins, so the bundle's wheels already carry them.
# Figures go to ${OUT:-/tmp/bench-out}. Each benchmark compares against its baseline in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/bench-out}
mkdir -p "$out"
python3 -m venv /tmp/cf-venv && /tmp/cf-venv/bin/pip install -q --no-index --find-links .devbundle/wheels clawfleet
python3 -m venv /tmp/cf-mitm && /tmp/cf-mitm/bin/pip install -q --no-index --find-links .devbundle/mitm mitmproxy
LITELLM_VENV=/tmp/cf-litellm PIP_NO_INDEX=1 PIP_FIND_LINKS=.devbundle/litellm bash benchmarks/setup-litellm-venv.sh
mkdir -p /tmp/bwrap && dpkg -x .devbundle/bubblewrap_*.deb /tmp/bwrap
export PATH=/tmp/bwrap/usr/bin:$PATH MITM_VENV=/tmp/cf-mitm LITELLM_VENV=/tmp/cf-litellm
# squid from Debian's debs (above): unpacked under /tmp/squid-root, each binary behind a wrapper that puts the
# unpacked libraries first (certgen inherits it from squid); the bench gets them through SQUID / SQUID_CERTGEN /
# SQUID_SHARE. If squid or its certgen does not run here, the gateway bench measures without it.
squid_flag=--no-squid
sq=/tmp/squid-root
if ls .devbundle/squid/*.deb >/dev/null 2>&1; then
  rm -rf "$sq" && mkdir -p "$sq/bin"
  for deb in .devbundle/squid/*.deb; do dpkg -x "$deb" "$sq"; done
  for exe in usr/sbin/squid usr/lib/squid/security_file_certgen; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/usr/lib/x86_64-linux-gnu:%s/lib/x86_64-linux-gnu exec %s/%s "$@"\n' \
      "$sq" "$sq" "$sq" "$exe" >"$sq/bin/$(basename "$exe")"
  done
  chmod 755 "$sq" "$sq/bin"/*
  if "$sq/bin/squid" -v 2>"$out/squid-check.txt" | grep -q -- --with-openssl \
    && "$sq/bin/security_file_certgen" -c -s /tmp/squid-check-db -M 4MB >>"$out/squid-check.txt" 2>&1; then
    squid_flag=
    export SQUID=$sq/bin/squid SQUID_CERTGEN=$sq/bin/security_file_certgen SQUID_SHARE=$sq/usr/share/squid
  fi
  rm -rf /tmp/squid-check-db
fi
if [ -n "$squid_flag" ]; then
  msg="squid: the Debian 12 squid-openssl debs in .devbundle/squid are missing or do not run on this host"
  echo "$msg ($(uname -a); see squid-check.txt): gateway bench runs --no-squid, no Squid peer figures" \
    | tee "$out/squid-skipped.txt"
fi
{ uname -r; nproc; python3 --version; uptime; } >"$out/host.txt"
py=/tmp/cf-venv/bin/python
timeout 120 $py benchmarks/bench_policy.py >"$out/policy.txt" 2>&1
timeout 180 $py benchmarks/bench_sandbox_start.py -n 30 >"$out/sandbox.txt" 2>&1
{ [ -z "$squid_flag" ] || cat "$out/squid-skipped.txt"
  timeout 300 $py benchmarks/bench_gateway.py --requests 2000 $squid_flag; } >"$out/gateway.txt" 2>&1
# the router beside the fake upstream and the LiteLLM proxy (peer) in one loop; it stops if the peer is missing
timeout 420 $py benchmarks/bench_router.py --requests 400 >"$out/router.txt" 2>&1
timeout 120 $py benchmarks/bench_classifier.py >"$out/classifier.txt" 2>&1
# one daemon, sandbox B measured while sandbox A attacks; more of A's request loops and B's samples on a big host;
# each sandbox's proxy in its own unprivileged process, as the gateway role deploys it (gateway_user)
id clawfleet-gateway >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin clawfleet-gateway
timeout 600 $py benchmarks/bench_gateway_isolation.py --requests 1000 --workers 8 --gateway-user clawfleet-gateway \
  >"$out/isolation.txt" 2>&1
# how cost grows with the work (issue 16): policy size, sandboxes per daemon (privilege-separated parsers),
# connections per gateway
timeout 900 $py benchmarks/bench_scaling.py --gateway-user clawfleet-gateway --json "$out/scaling.json" \
  >"$out/scaling.txt" 2>&1
# rollout time at 5 / 10 / 20 hosts: systemd containers, so only where Docker and the base image are (not the lent
# GPU machine), with a venv that has Ansible and pyinfra (ROLLOUT_PY, default the dev .venv); a host without them
# records why it skipped
rpy=${ROLLOUT_PY:-.venv/bin/python}
if command -v docker >/dev/null && docker image inspect clawfleet/systemd-debian:bookworm >/dev/null 2>&1 \
  && [ -x "$(dirname "$rpy")/ansible-playbook" ]; then
  for n in 5 10 20; do
    timeout 1800 "$rpy" benchmarks/bench_rollout.py --hosts "$n" >"$out/rollout-$n.txt" 2>&1
  done
else
  echo "skipped: no Docker engine, clawfleet/systemd-debian:bookworm image (tests/infra/base-images.sh) or $rpy" \
    >"$out/rollout.txt"
fi
tail -n 30 "$out"/*.txt
