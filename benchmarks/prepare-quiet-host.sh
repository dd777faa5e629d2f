#!/usr/bin/env bash
# Prepare the two payloads that benchmarks/run-on-quiet-host.sh installs from on the lent quiet host (the device
# tool's many-core machine: Python 3.12, x86_64, no package index, Ubuntu 22.04 userland).
#
#   bash benchmarks/prepare-quiet-host.sh            # here, with PyPI and Debian's archive reachable
#
# It writes .devbundle-a/payload.tar.xz (sandbox start, policy, gateway beside mitmproxy and Squid, classifier)
# and .devbundle-b/payload.tar.xz (router beside LiteLLM), both git-ignored, and checks each against the device's
# limit: the working tree plus what a call carries must stay under 64 MiB, so the two phases go in two calls,
#   run(carry=[".devbundle-a"], command="bash benchmarks/run-on-quiet-host.sh a", timeout_s=560)
#   run(carry=[".devbundle-b"], command="bash benchmarks/run-on-quiet-host.sh b", timeout_s=560)
# one right after the other, so both run on the same warm machine (about 11 minutes of its 15).
#
# What keeps them small (measured 2026-12-07; deflated wheels would be 113 MB for LiteLLM alone):
# - every wheel is re-zipped STORED (a valid wheel: the format allows it) and the tar is xz-compressed, which
#   packs about 35 % smaller than the wheels' own deflate (LiteLLM's wheel: 43.8 MB deflated, 22.8 MB here);
# - LiteLLM's admin UI (litellm/proxy/_experimental/out, 19.5 MB unpacked) is left out of its wheel: the
#   benchmark calls the API only;
# - the LiteLLM venv takes, through a .pth file, what the device's own Python already holds (numpy, tokenizers,
#   tiktoken, huggingface_hub, aiohttp, ...: DEVICE_HAS below, from the device tool's package list of
#   2026-11-17), and boto3/botocore/s3transfer are left out (AWS providers only; the proxy starts and serves
#   without them: checked with bench_router.py against a venv without them);
# - a wheel that LiteLLM and clawfleet both pin (the same file) is carried once, in wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY_TARGET=${PY_TARGET:-3.12}
LIMIT_MB=${LIMIT_MB:-64}
PLATFORMS=(--platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# packages the device image already holds (its python3, /opt/torch/.venv): not carried for LiteLLM
DEVICE_HAS=(aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi charset-normalizer click filelock
  frozenlist fsspec h11 hf-xet httpcore httpx huggingface-hub idna jinja2 markdown-it-py markupsafe mdurl multidict
  numpy packaging propcache protobuf psutil pygments python-dateutil pyyaml regex requests rich shellingham six
  tiktoken tokenizers tqdm typer typing-extensions urllib3 yarl zipp)
NOT_NEEDED=(boto3 botocore s3transfer)
MITMPROXY_VERSION=12.1.2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*" >&2; }

step "clawfleet wheels for Python $PY_TARGET x86_64"
PATH=$ROOT/.venv/bin:$PATH clawfleet bundle build --out "$work/cf" --target "$PY_TARGET-x86_64" --force >&2
mkdir -p "$work/a/wheels" "$work/b/wheels"
cp "$work"/cf/wheels/*.whl "$work/a/wheels/"
cp "$work"/cf/wheels/*.whl "$work/b/wheels/"

step "bubblewrap and Squid (ssl-bump) from Debian 12, unpacked there, never installed"
# apt-get download takes this machine's release: the run script's library paths and checks are Debian 12's
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || { echo "this is not Debian 12 (bookworm): its squid debs would differ" >&2; exit 2; }
mkdir -p "$work/a/squid"
(cd "$work/a" && apt-get download -q bubblewrap >&2)
(cd "$work/a/squid" && apt-get download -q squid-openssl squid-common squid-langpack libecap3 libltdl7 \
  libnetfilter-conntrack3 libnfnetlink0 libmnl0 >&2)

step "mitmproxy $MITMPROXY_VERSION"
mkdir -p "$work/a/mitm"
python3 -m pip wheel -q --no-deps -w "$work/a/mitm" pyperclip==1.9.0 >&2
python3 -m pip download -q --only-binary=:all: --find-links "$work/a/mitm" --python-version "$PY_TARGET" \
  --implementation cp "${PLATFORMS[@]}" -d "$work/a/mitm" "mitmproxy==$MITMPROXY_VERSION" >&2

step "LiteLLM proxy (bench_router.py's peer), less what the device has"
mkdir -p "$work/ll" "$work/b/litellm"
# shellcheck disable=SC2046
python3 -m pip download -q --only-binary=:all: --python-version "$PY_TARGET" --implementation cp "${PLATFORMS[@]}" \
  -d "$work/ll" $(bash benchmarks/setup-litellm-venv.sh --print-requirements) >&2
python3 - "$work/ll" "$work/b/litellm" "$work/b/wheels" "${DEVICE_HAS[@]}" -- "${NOT_NEEDED[@]}" <<'EOF'
import os, re, shutil, sys
src, dst, shared, *rest = sys.argv[1:]
split = rest.index("--")
skip = {n.lower() for n in rest[:split] + rest[split + 1:]}
have = set(os.listdir(shared))
reused = []
for f in sorted(os.listdir(src)):
    name = re.split(r"-\d", f)[0].lower().replace("_", "-")
    if name in skip:
        print(f"  not carried: {f}", file=sys.stderr)
    elif f in have:  # the very same wheel is in wheels/: the install takes it from there
        reused.append(f)
    else:
        shutil.copy2(os.path.join(src, f), dst)
with open(os.path.join(dst, "from-wheels.txt"), "w") as out:
    out.write("".join(f + "\n" for f in reused))
EOF

step "re-zip every wheel STORED (xz packs the tar better than deflate does)"
python3 - "$work/a" "$work/b" <<'EOF'
import os, sys, zipfile
UI = "litellm/proxy/_experimental/out/"
for top in sys.argv[1:]:
    for folder, _, files in os.walk(top):
        for f in files:
            if not f.endswith(".whl"):
                continue
            path = os.path.join(folder, f)
            tmp = path + ".tmp"
            with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
                for info in zin.infolist():
                    if info.filename.startswith(UI):
                        continue  # the admin UI: static files the API benchmark never serves
                    zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_STORED)
            os.replace(tmp, path)
EOF

# what travels with a call: tracked files and untracked ones git does not ignore (a deleted tracked file: none)
tree_mb=$(git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
paths = sys.stdin.buffer.read().split(b"\0")
print(f"{sum(os.path.getsize(p) for p in paths if p and os.path.isfile(p)) / 1048576:.1f}")')
status=0
for phase in a b; do
  step "payload $phase (xz; a minute or two)"
  mkdir -p ".devbundle-$phase"
  tar -C "$work/$phase" -cf - . | xz -T0 -6 >".devbundle-$phase/payload.tar.xz"
  mb=$(du -b ".devbundle-$phase/payload.tar.xz" | awk '{printf "%.1f", $1/1048576}')
  total=$(awk -v a="$mb" -v b="$tree_mb" 'BEGIN{printf "%.1f", a+b}')
  echo "payload $phase: $mb MiB + tracked tree $tree_mb MiB = $total MiB (device limit $LIMIT_MB MiB)"
  if awk -v t="$total" -v l="$LIMIT_MB" 'BEGIN{exit !(t >= l)}'; then
    echo "payload $phase is over the device's limit" >&2
    status=1
  fi
done
exit $status
