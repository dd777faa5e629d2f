"""``clawfleet host check [--json]``: the local preflight; exit 0 only if every required check passes."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("host", help="host preflight checks")
    sub = parser.add_subparsers(dest="host_command", metavar="SUBCOMMAND")
    sub.required = True
    check = sub.add_parser("check", help="check kernel, Landlock, seccomp, namespaces, cgroups, RAM, disk, GPU")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--root", default="/", help="read facts from a copied tree under this prefix (tests)")
    check.add_argument("--disk-path", default="/var/lib", help="filesystem that must have free space")
    check.add_argument("--min-kernel", default="5.13", help="lowest kernel version accepted (default 5.13)")
    check.add_argument("--min-landlock-abi", type=int, default=1, help="lowest Landlock ABI accepted (default 1)")
    check.add_argument("--min-memory-gib", type=float, default=7.5, help="RAM (+ swap) needed, GiB (default 7.5)")
    check.add_argument("--min-disk-gib", type=float, default=20, help="free disk needed, GiB (default 20)")
    check.add_argument("--min-cpus", type=int, default=2, help="CPUs needed (default 2)")
    check.add_argument("--ignore", action="append", default=[], metavar="CHECK",
                       help="turn this check's failure into a warning (an explicit operator override)")  # fmt: skip
    check.set_defaults(func=run_check)


def run_check(args) -> int:
    from clawfleet.host import checks, facts

    major, _, minor = args.min_kernel.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        print(f"clawfleet host check: --min-kernel {args.min_kernel!r}: expected MAJOR.MINOR", file=sys.stderr)
        return 2
    requirements = checks.Requirements(
        min_kernel=(int(major), int(minor)),
        min_landlock_abi=args.min_landlock_abi,
        min_memory=int(args.min_memory_gib * checks.GIB),
        min_disk=int(args.min_disk_gib * checks.GIB),
        min_cpus=args.min_cpus,
    )
    try:
        report = checks.evaluate(facts.read(args.root, args.disk_path), requirements, tuple(args.ignore))
    except ValueError as exc:
        print(f"clawfleet host check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"host {report['host']}: {'OK' if report['ok'] else 'NOT READY'}")
        for c in report["checks"]:
            flag = "" if c["required"] else " (optional)"
            print(f"  {c['verdict'].upper():4}  {c['name']:<16} {c['value']}  [{c['requirement']}]{flag}")
            if c["fix"] and c["verdict"] != "pass":
                print(f"        fix: {c['fix']}")
    return 0 if report["ok"] else 1
