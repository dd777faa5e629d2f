"""``clawfleet fleet ...``: policy rollouts over SSH/Docker/local through pyinfra (see docs/fleet.md)."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``fleet`` and its subcommands to the top-level ``clawfleet`` parser."""
    from .push import register_fleet_subcommands

    parser = subparsers.add_parser(
        "fleet",
        help="push policies to many hosts in verified batches (fast path, pyinfra)",
        description="Policy rollouts without Ansible: canary and batches, hot reload, verify, automatic rollback.",
    )
    sub = parser.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    sub.required = True
    register_fleet_subcommands(sub)
