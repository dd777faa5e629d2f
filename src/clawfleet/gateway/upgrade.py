"""Which requests may switch protocols, and to what.

After a ``101 Switching Protocols`` the gateway relays raw bytes that no policy rule can judge. So only an
endpoint declared ``protocol: websocket`` may upgrade, and only to WebSocket. Everywhere else the upgrade
offer is stripped (``Upgrade``, ``HTTP2-Settings`` and the ``upgrade``/``http2-settings`` tokens of
``Connection``) and the request goes on as plain HTTP/1.1, as RFC 9110 lets a server ignore ``Upgrade``:
``curl --http2 http://...`` still works, an ``h2c`` or ``websocket`` switch never happens. An origin that
answers ``101`` to a request that did not offer an upgrade is a protocol error (502), never relayed.
"""

from __future__ import annotations

from collections.abc import Sequence

from clawfleet.policy.model import Endpoint

__all__ = ["offers_websocket", "sanitize_upgrade", "switch_accepted"]

_DROP = (b"upgrade", b"http2-settings")


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def offers_websocket(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A well-formed WebSocket offer: exactly one ``Upgrade: websocket`` and ``upgrade`` in ``Connection``."""
    upgrades = [v for k, v in headers if k == b"upgrade"]
    connection = [t for k, v in headers if k == b"connection" for t in _tokens(v)]
    return len(upgrades) == 1 and _tokens(upgrades[0]) == [b"websocket"] and b"upgrade" in connection


def sanitize_upgrade(
    headers: list[tuple[bytes, bytes]], endpoint: Endpoint | None
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """(headers to forward, whether they carry a WebSocket offer). h11 gives lower-case header names."""
    if endpoint is not None and endpoint.protocol == "websocket" and offers_websocket(headers):
        return [(k, v) for k, v in headers if k != b"http2-settings"], True
    if not any(k in _DROP for k, _ in headers) and not any(
        k == b"connection" and b"upgrade" in v.lower() for k, v in headers
    ):
        return headers, False
    out = []
    for k, v in headers:
        if k in _DROP:
            continue
        if k == b"connection":
            kept = [t for t in _tokens(v) if t not in _DROP]
            if not kept:
                continue
            v = b", ".join(kept)
        out.append((k, v))
    return out, False


def switch_accepted(response_headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a 101 answer switches to WebSocket (the only switch the gateway relays)."""
    upgrades = [v for k, v in response_headers if k == b"upgrade"]
    return len(upgrades) == 1 and _tokens(upgrades[0]) == [b"websocket"]
