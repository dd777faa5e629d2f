#!/bin/sh
# Verify a clawfleet bundle on the host before anything from it is used (the host has no clawfleet yet, so this
# is plain POSIX sh + coreutils): the digest of SHA256SUMS, every listed file, and no unlisted file.
#   usage: verify-bundle.sh DIR sha256:HEX
set -eu
dir=$1
expected=${2:-}
[ -n "$expected" ] || { echo "$dir: no expected digest given: refusing an unverified bundle"; exit 1; }
cd "$dir"
[ -f SHA256SUMS ] || { echo "$dir/SHA256SUMS: missing: not a clawfleet bundle"; exit 1; }
actual="sha256:$(sha256sum SHA256SUMS | cut -d' ' -f1)"
[ "$actual" = "$expected" ] || { echo "$dir/SHA256SUMS: digest $actual is not the expected $expected"; exit 1; }
failed=$(sha256sum --check --strict --quiet SHA256SUMS 2>&1) || { echo "$dir: files that do not match SHA256SUMS: $failed"; exit 1; }
listed=$(mktemp)
trap 'rm -f "$listed"' EXIT
sed 's/^[0-9a-f]\{64\}  //' SHA256SUMS | sort >"$listed"
# An unlisted wheel would be picked up by pip --find-links: nothing but the listed files may be there.
unlisted=$(find . -type f ! -name SHA256SUMS ! -name manifest.json | sed 's|^\./||' | sort | comm -23 - "$listed" | tr '\n' ' ')
[ -z "$unlisted" ] || { echo "$dir: files not listed in SHA256SUMS: $unlisted"; exit 1; }
echo "$dir: verified $(wc -l < SHA256SUMS) files, $actual"
