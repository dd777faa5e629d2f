#!/usr/bin/env bash
# Installs Squid built with OpenSSL (Debian's `squid-openssl`: ssl-bump and security_file_certgen), the second
# TLS-inspecting peer in bench_gateway.py beside mitmproxy. Needs root (apt-get).
# The bench runs its own throwaway squid (config, certgen db, logs under its tempdir, in the foreground); this
# script only installs the package, and stops the system service the package starts, so no daemon is left
# listening on :3128 (the bench never uses that one).
# Offline (the quiet host, Ubuntu): benchmarks/run-on-quiet-host.sh unpacks Debian's .deb files instead (no
# install), and points the bench at them with SQUID, SQUID_CERTGEN and SQUID_SHARE.
# Idempotent: re-running installs nothing when squid with ssl-bump support is already there.
set -euo pipefail

have_bump() {
  # `squid -v` lists the configure options: the ssl-bump build has --with-openssl
  command -v squid >/dev/null 2>&1 && squid -v 2>/dev/null | grep -q -- '--with-openssl' \
    && [[ -x /usr/lib/squid/security_file_certgen ]]
}

if have_bump; then
  echo "squid-openssl already installed: nothing to do"
else
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d answering 101: the package's postinst must not start the system squid on a bench host. A host
  # that already has one (container images do) keeps it untouched; only a file made here is removed again.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    echo "made /usr/sbin/policy-rc.d (exit 101) for the install; it is removed afterwards"
  fi
  echo "installing squid-openssl with apt-get"
  apt-get install -y -q --no-install-recommends squid-openssl
  # belt and braces where policy-rc.d was not honoured (systemd hosts start units through deb-systemd-invoke)
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet squid 2>/dev/null; then
    systemctl stop squid && echo "stopped the system squid service the package started"
  fi
  have_bump || { echo "squid installed but without ssl-bump support (no --with-openssl)" >&2; exit 1; }
fi
squid -v | head -1
echo "certgen helper: /usr/lib/squid/security_file_certgen"
