"""`clawfleet gpu detect|plan`: the same code the nvidia_gpu and vllm roles run on hosts."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("gpu", help="detect NVIDIA GPUs and size vLLM for them")
    sub = parser.add_subparsers(dest="gpu_command", metavar="SUBCOMMAND")
    sub.required = True

    detect = sub.add_parser("detect", help="report the GPUs of this machine (or of captured facts) as JSON")
    detect.add_argument("--from-dir", help="read captured host facts from this directory instead of the machine")
    detect.add_argument("--root", default="/", help="filesystem root to read /proc and /sys from (tests)")
    detect.set_defaults(func=_detect)

    plan = sub.add_parser("plan", help="choose tensor parallel size, memory fraction and context length")
    plan.add_argument("--profile", required=True, help="model profile name (see --list-profiles)")
    plan.add_argument("--from-dir", help="read captured host facts from this directory instead of the machine")
    plan.add_argument("--facts", help="a JSON file written by `clawfleet gpu detect`")
    plan.add_argument("--target-utilization", type=float, default=0.90)
    plan.add_argument("--target-context", type=int)
    plan.add_argument("--list-profiles", action="store_true", help="list the built-in profiles and exit")
    plan.set_defaults(func=_plan)


def _report(args: argparse.Namespace):
    from clawfleet.gpu.detect import Gpu, GpuReport, detect, detect_from_dir

    if getattr(args, "facts", None):
        with open(args.facts, encoding="utf-8") as fh:
            data = json.load(fh)
        return GpuReport(tuple(Gpu(**g) for g in data["gpus"]), data.get("driver_version"))
    return detect_from_dir(args.from_dir) if args.from_dir else detect(root=getattr(args, "root", "/"))


def _detect(args: argparse.Namespace) -> int:
    print(json.dumps(_report(args).to_dict(), indent=2))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from clawfleet.gpu.profiles import PROFILES
    from clawfleet.gpu.sizing import SizingError, plan_vllm

    if args.list_profiles:
        for p in PROFILES.values():
            print(f"{p.name:32} {p.weights_gib:7.1f} GiB  {p.hf_model}")
        return 0
    profile = PROFILES.get(args.profile)
    if profile is None:
        print(f"clawfleet gpu plan: unknown profile {args.profile!r}; known: {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    try:
        plan = plan_vllm(
            list(_report(args).gpus),
            profile,
            target_utilization=args.target_utilization,
            target_context=args.target_context,
        )
    except SizingError as exc:
        print(f"clawfleet gpu plan: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(plan.to_dict(), indent=2))
    return 0
