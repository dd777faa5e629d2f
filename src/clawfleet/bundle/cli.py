"""`clawfleet bundle build|verify|digest`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("bundle", help="build and verify offline fleet bundles")
    sub = parser.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND")
    sub.required = True

    build = sub.add_parser("build", help="build a bundle (a no-op when nothing changed)")
    build.add_argument("--out", required=True, help="bundle directory to create or refresh")
    build.add_argument("--project", default=".", help="the clawfleet checkout to package (default: .)")
    build.add_argument("--target", action="append", default=[], metavar="PYTHON[-MACHINE]",
                       help="e.g. 3.10-x86_64, 3.11-aarch64; repeat for every Python/machine in the fleet")  # fmt: skip
    build.add_argument("--policies", help="policy directory to include")
    build.add_argument("--artifact", action="append", default=[], help="file or directory to include")
    build.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    build.add_argument(
        "--agent",
        action="append",
        default=[],
        choices=("openclaw",),
        help="include this agent's runtime (Node + the pinned tree) for every target machine",
    )
    build.add_argument("--cache-dir", metavar="DIR",
                       help="where downloaded agent runtimes are kept between builds (~/.cache/clawfleet)")  # fmt: skip
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=_build)

    verify = sub.add_parser("verify", help="check every file against SHA256SUMS and the expected digest")
    verify.add_argument("directory")
    verify.add_argument("--digest", help="expected bundle digest (sha256:...)")
    verify.set_defaults(func=_verify)

    digest = sub.add_parser("digest", help="print the bundle digest")
    digest.add_argument("directory")
    digest.set_defaults(func=_digest)


def _build(args: argparse.Namespace) -> int:
    from clawfleet.bundle import BundleError, Target, build_bundle

    try:
        result = build_bundle(
            args.out,
            args.project,
            [Target.parse(t) for t in args.target],
            args.policies,
            args.artifact,
            args.force,
            args.agent,
            args.cache_dir,
            _progress(not args.json and sys.stderr.isatty()),
        )
    except BundleError as exc:
        print(f"clawfleet bundle build: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"directory": str(result.directory), "digest": result.digest, "changed": result.rebuilt,
                          "files": result.files}))  # fmt: skip
    else:
        state = "built" if result.rebuilt else "unchanged"
        print(f"{result.directory}: {state}, {result.files} files, {result.digest}")
    return 0


def _progress(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(f"clawfleet bundle build: {message}", file=sys.stderr, flush=True)

    return say


def _verify(args: argparse.Namespace) -> int:
    from clawfleet.bundle import BundleError, verify_bundle

    try:
        entries = verify_bundle(Path(args.directory), args.digest)
    except BundleError as exc:
        print(f"clawfleet bundle verify: {exc}", file=sys.stderr)
        return 1
    print(f"{args.directory}: {len(entries)} files verified")
    return 0


def _digest(args: argparse.Namespace) -> int:
    from clawfleet.bundle import BundleError, bundle_digest

    try:
        print(bundle_digest(args.directory))
    except BundleError as exc:
        print(f"clawfleet bundle digest: {exc}", file=sys.stderr)
        return 1
    return 0
