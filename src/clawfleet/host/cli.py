"""``clawfleet host check [--json]``: the local preflight; exit 0 only if every required check passes."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("host", help="host preflight checks")
    sub = parser.add_subparsers(dest="host_command", metavar="SUBCOMMAND")
    sub.required = True
    check = sub.add_parser("check", help="check kernel, Landlock, seccomp, namespaces, cgroups, RAM, disk, GPU")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--root", default="/", help="read facts from a copied tree under this prefix (tests)")
    check.add_argument("--disk-path", default="/var/lib", help="filesystem that must have free space")
    check.set_defaults(func=run_check)


def run_check(args) -> int:
    from clawfleet.host import checks, facts

    report = checks.evaluate(facts.read(args.root, args.disk_path))
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
