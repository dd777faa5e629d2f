"""Running a middleware chain (``network_middlewares``, :mod:`clawfleet.policy.middleware`) on one body.

The proxy selects the stages by destination host (:meth:`~clawfleet.policy.engine.Engine.middlewares`), buffers
the body (bounded, :mod:`.body`) and calls :func:`run_chain`; stages run by ascending ``order``, each on the output
of the one before. What a stage can do, and what the proxy makes of it:

* ``mode: redact``: the matches are replaced; the proxy forwards the rewritten bytes with one exact
  ``Content-Length``;
* ``mode: detect``: the matches are logged; the body goes on unchanged;
* ``mode: block``: :class:`MiddlewareStop` with ``middleware_denied``: ``403``, the chain stops;
* a failure (the body is over the stage's limit, or not UTF-8): under ``on_error: fail_closed`` (the default)
  :class:`MiddlewareStop` with ``middleware_failed``; under ``fail_open`` the stage is skipped and the bypass is
  logged (upstream's "detection finding").

Every stage that matched, failed or was bypassed is one ``{"event": "middleware", ...}`` line in the decision log:
the pattern names and counts, never the matched text (the log must not become the place the secret leaks to).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clawfleet.policy.middleware import RegexHook

__all__ = ["MiddlewareStop", "event", "run_chain"]


class MiddlewareStop(Exception):
    """The chain refuses the body: ``error`` is ``middleware_denied`` (a block) or ``middleware_failed``."""

    def __init__(self, error: str, hook: RegexHook, reason: str, events: list[dict[str, Any]],
                 status: int | None = None) -> None:  # fmt: skip
        super().__init__(reason)
        self.error, self.hook, self.reason, self.events = error, hook, reason, events
        self.status = status  # the HTTP status when not the direction's default (413 for a body over the limit)


def event(hook: RegexHook, direction: str, outcome: str, **extra: Any) -> dict[str, Any]:
    """One log record for one stage (the proxy adds the request's context). ``action`` is what became of the
    traffic, as in decision lines (a gateway without a log file shows the ``deny`` ones on stderr)."""
    action = "deny" if outcome in ("blocked", "failed") else "allow"
    return {"event": "middleware", "middleware": hook.key, "name": hook.name, "type": hook.middleware,
            "mode": hook.mode, "direction": direction, "outcome": outcome, "action": action, **extra}  # fmt: skip


def run_chain(hooks: Sequence[RegexHook], body: bytes, direction: str) -> tuple[bytes, list[dict[str, Any]]]:
    """Run ``hooks`` on ``body`` (``direction``: ``request`` or ``response``): ``(body to forward, log records)``.

    Raises :class:`MiddlewareStop` when a stage blocks or fails closed (its ``events`` include that stage's)."""
    events: list[dict[str, Any]] = []
    for hook in hooks:
        status = None
        if len(body) > hook.limit:  # a body read for body selectors, whose limit may be larger
            failure: str | None = f"body of {len(body)} bytes is over the {hook.limit}-byte limit of middleware" \
                                  f" {hook.key}"  # fmt: skip
            status = 413
        else:
            result = hook.apply(body)
            failure = result.error
        if failure is not None:
            if hook.fail_open:
                events.append(event(hook, direction, "bypassed", reason=f"{failure} (on_error: fail_open)"))
                continue
            events.append(event(hook, direction, "failed", reason=failure))
            raise MiddlewareStop("middleware_failed", hook, failure, events, status)
        if not result.matches:
            continue
        found = dict(result.matches)
        if hook.mode == "block":
            events.append(event(hook, direction, "blocked", matches=found))
            what = ", ".join(f"{label} x{n}" for label, n in result.matches)
            raise MiddlewareStop("middleware_denied", hook, f"content matched pattern {what}", events)
        if hook.mode == "redact" and result.body is not None:
            events.append(event(hook, direction, "redacted", matches=found, bytes_in=len(body),
                                bytes_out=len(result.body)))  # fmt: skip
            body = result.body
        else:
            events.append(event(hook, direction, "detected", matches=found))
    return body, events
