"""The supervisor's control socket protocol, spoken by the daemon (:mod:`clawfleet.supervisor.control_server`)
and its clients (``clawfleet sandbox list|status|...``, ``clawfleet policy apply|status``).

One JSON request line, then JSON answer lines until the server closes: ``{"cmd": "list"}``,
``{"cmd": "status", "name": N}``, ``{"cmd": "logs", "name": N, "follow": bool, "lines": 100}``,
``{"cmd": "stop", "name": N}``. An answer ``{"error": "..."}`` says why a request failed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

from clawfleet.paths import CONTROL_SOCKET

__all__ = ["encode", "request"]


def encode(message: Any) -> bytes:
    """One protocol line."""
    return json.dumps(message).encode() + b"\n"


def request(req: dict[str, Any], socket_path: str = CONTROL_SOCKET) -> Iterator[Any]:
    """Send one request, yield each answer line (decoded)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(socket_path)
        s.sendall(encode(req))
        with s.makefile("rb") as f:
            for line in f:
                yield json.loads(line)
