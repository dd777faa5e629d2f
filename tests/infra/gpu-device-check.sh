#!/usr/bin/env bash
# One-shot check on a real NVIDIA host (the lent GPU machine): live detection and vLLM sizing with the same code the
# nvidia_gpu and vllm roles run, next to the raw nvidia-smi output. Writes everything to ${OUT:-/tmp/gpu-check}.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
py=$(command -v python3 || command -v python)
{
  echo "## host"; uname -a; $py --version; nproc; free -g | head -2
  echo "## nvidia-smi"; nvidia-smi
  echo "## nvidia-smi --query-gpu"
  nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,memory.total,memory.used,memory.free,compute_cap,persistence_mode,mig.mode.current --format=csv,noheader,nounits
  echo "## lspci present?"; command -v lspci || echo "no lspci"
  echo "## /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version
  echo "## sysfs PCI 0x10de"
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x10de ] && echo "$d vendor=$(cat "$d/vendor") device=$(cat "$d/device") class=$(cat "$d/class")"
  done
} >"$out/raw.txt" 2>&1
echo "## clawfleet gpu detect (live)" >"$out/clawfleet.txt"
PYTHONPATH=src $py -m clawfleet.gpu detect >"$out/detect.json" 2>>"$out/clawfleet.txt"
cat "$out/detect.json" >>"$out/clawfleet.txt"
for profile in nemotron-nano-9b-v2 nemotron-nano-9b-v2-fp8 nemotron-3-nano-30b-a3b nemotron-3-nano-30b-a3b-fp8 \
               nemotron-super-49b-v1.5 nemotron-super-49b-v1.5-fp8 nemotron-ultra-253b-v1 nemotron-ultra-253b-v1-fp8; do
  echo "## plan $profile" >>"$out/clawfleet.txt"
  PYTHONPATH=src $py -m clawfleet.gpu plan --profile "$profile" --facts "$out/detect.json" >>"$out/clawfleet.txt" 2>&1
  echo "exit=$?" >>"$out/clawfleet.txt"
done
cat "$out/raw.txt" "$out/clawfleet.txt"
