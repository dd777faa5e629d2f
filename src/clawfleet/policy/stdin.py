"""The policy's bytes for ``clawfleet policy apply -``: read from stdin (one remote command per host and sandbox, no
upload step), bounded before anything is done with them. The bytes are applied from memory (``apply_bytes``): no
copy of them is written anywhere but the live policy file."""

from __future__ import annotations

import sys

from .errors import PolicyError, Problem
from .yamlio import MAX_BYTES

__all__ = ["read_stdin"]


def read_stdin(label: str) -> bytes:
    """All of stdin, at most the loader's MAX_BYTES: a larger input is refused before it is written anywhere."""
    data = sys.stdin.buffer.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise PolicyError([Problem(label, None, None, "", f"more than {MAX_BYTES} bytes on stdin (the size limit)")])
    return data
