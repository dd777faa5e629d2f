"""The gateway's half of router attribution: strip the sandbox's identity headers, add the signed ones.

Every request the gateway forwards loses any ``x-clawfleet-sandbox`` / ``x-clawfleet-identity`` header the
sandbox wrote (so it can neither forge nor suppress them); requests to the privacy router's endpoint then
get the gateway's own pair, signed with the per-host key (:mod:`clawfleet.router.identity`). Other
destinations never see the proof.

Settings come from the environment of the gateway process, so this module needs nothing from the gateway
config schema:

* ``CLAWFLEET_ROUTER_IDENTITY_KEY``: the key file (default ``/etc/clawfleet/router/identity.key``; absent
  file: no proof is added, the router attributes the requests to ``unknown`` or refuses them);
* ``CLAWFLEET_ROUTER_ENDPOINTS``: ``host:port`` list, comma-separated (default ``inference.local:8484``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from clawfleet.router.identity import HEADER_PROOF, HEADER_SANDBOX, IdentityKeyError, load_key, sandbox_key, sign_as

DEFAULT_KEY_FILE = "/etc/clawfleet/router/identity.key"
DEFAULT_ENDPOINTS = "inference.local:8484"
_STRIP = frozenset({HEADER_SANDBOX.encode(), HEADER_PROOF.encode()})

__all__ = ["RouterIdentity"]


def _endpoints(text: str) -> frozenset[tuple[str, int]]:
    out = set()
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            out.add((host.lower().rstrip("."), int(port)))
    return frozenset(out)


class RouterIdentity:
    """Signs one sandbox's requests to the router. ``key`` is that sandbox's derived key
    (:func:`clawfleet.router.identity.sandbox_key`), not the host key."""

    def __init__(self, sandbox: str, key: bytes | None, endpoints: Iterable[tuple[str, int]]) -> None:
        self.sandbox = sandbox
        self._key = key
        self.endpoints = frozenset((h.lower().rstrip("."), p) for h, p in endpoints)

    def __repr__(self) -> str:
        return f"RouterIdentity(sandbox={self.sandbox!r}, signing={self._key is not None})"

    @classmethod
    def from_environment(cls, sandbox: str, env: Mapping[str, str] | None = None) -> RouterIdentity:
        env = os.environ if env is None else env
        key_file = env.get("CLAWFLEET_ROUTER_IDENTITY_KEY", DEFAULT_KEY_FILE)
        try:
            # Only this sandbox's derived key is kept: never the host key.
            key: bytes | None = sandbox_key(load_key(key_file), sandbox)
        except IdentityKeyError:
            key = None  # no key on this host: requests reach the router unattributed, never mis-attributed
        return cls(sandbox, key, _endpoints(env.get("CLAWFLEET_ROUTER_ENDPOINTS", DEFAULT_ENDPOINTS)))

    def apply(self, host: str, port: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The headers to forward: the sandbox's identity headers removed, the gateway's added for the router."""
        out = [(k, v) for k, v in headers if k.lower() not in _STRIP]
        if self._key is not None and (host.lower().rstrip("."), port) in self.endpoints:
            out.append((HEADER_SANDBOX.encode(), self.sandbox.encode()))
            out.append((HEADER_PROOF.encode(), sign_as(self._key, self.sandbox).encode()))
        return out
