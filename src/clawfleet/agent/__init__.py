"""Real agents in the sandboxes: install a pinned agent runtime (Node + OpenClaw) from the bundle or the
registries, and write its configuration for a sandbox home."""

from __future__ import annotations


class AgentError(Exception):
    """An agent runtime cannot be fetched, installed or configured; the message says which file or option."""
