"""What an HTTP request must look like before it is judged: one canonical target, no body where none belongs.

The gateway judges and forwards the same thing: the canonical target from
:func:`clawfleet.policy.request_target.canonicalize_target` is what the engine decides on and what the origin
receives, never the raw text the client sent (see docs/gateway.md, "What is judged is what is forwarded").

A ``GET``, ``HEAD``, ``OPTIONS`` or ``TRACE`` with a body is refused: many origins ignore such a body's framing
and read it as the next request on the connection, which the gateway never judged (request smuggling).
"""

from __future__ import annotations

from collections.abc import Sequence

from clawfleet.policy.request_target import CanonicalTarget, TargetRefused, canonicalize_target

__all__ = ["BODYLESS_METHODS", "RequestRefused", "checked_target"]

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class RequestRefused(ValueError):
    def __init__(self, status: int, detail: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.detail, self.reason = status, detail, reason


def _has_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip(b" \t0"):  # h11 checked it is digits: any non-zero digit
            return True
    return False


def checked_target(method: str, raw_target: str, path: str, headers: Sequence[tuple[bytes, bytes]]) -> CanonicalTarget:
    """The canonical target of one request (``path``: its origin-form part), or :class:`RequestRefused`.

    ``raw_target`` is the request line's target as sent (absolute or origin form): a ``#`` anywhere in it is
    refused, even where a parser already dropped the fragment from ``path``.
    """
    if method in BODYLESS_METHODS and _has_body(headers):
        raise RequestRefused(400, f"{method} request with a body",
                             f"{method} requests may not carry a body (Content-Length other than 0 or"
                             " Transfer-Encoding): an origin may read it as a second request")  # fmt: skip
    if "#" in raw_target:
        raise RequestRefused(400, "request target with a fragment", "a '#' fragment is never sent to a server")
    try:
        return canonicalize_target(path)
    except TargetRefused as exc:
        detail = "request target too long" if exc.status == 414 else f"ambiguous request target {raw_target[:200]!r}"
        raise RequestRefused(exc.status, detail, str(exc)) from None
