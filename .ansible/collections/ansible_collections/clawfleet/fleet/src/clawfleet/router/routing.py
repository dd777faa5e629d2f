"""Ordered routing rules -> one decision per request.

Each class found in a request is decided by the first rule (in file order)
that names it, directly, through a group, or through ``any``; a rule without
``classes`` matches every class and is the default for requests with no
findings. When a request carries several classes, the strictest of their
actions wins: block > local > redact > cloud (ties: the earlier rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clawfleet.router.config import ACTIONS, RouterConfig, Rule

_STRICTNESS = {action: i for i, action in enumerate(ACTIONS)}


@dataclass(frozen=True)
class Decision:
    action: str  # block | local | redact | cloud
    rule: str
    provider: str | None
    fallback: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def sensitive(self) -> bool:
        return bool(self.classes)

    @property
    def may_fall_back(self) -> bool:
        """Non-sensitive requests may fall back between cloud providers; local routes only to other local
        providers (checked at config load); sensitive requests sent to the cloud never fall back."""
        if self.action == "local":
            return True
        return self.action == "cloud" and not self.sensitive


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.rules: tuple[Rule, ...] = config.rules
        self._default = next(r for r in self.rules if r.classes is None)
        self._cache: dict[str, tuple[int, Rule]] = {}

    def rule_for(self, cls: str) -> tuple[int, Rule]:
        hit = self._cache.get(cls)
        if hit is None:
            hit = next((i, r) for i, r in enumerate(self.rules) if r.matches(cls))
            self._cache[cls] = hit
        return hit

    def decide(self, classes: Iterable[str]) -> Decision:
        found = tuple(sorted(set(classes)))
        if not found:
            r = self._default
            return Decision(r.action, r.name, r.provider, r.fallback, ())
        best: tuple[int, int, Rule] | None = None
        for cls in found:
            index, rule = self.rule_for(cls)
            key = (_STRICTNESS[rule.action], index)
            if best is None or key < best[:2]:
                best = (*key, rule)
        assert best is not None
        rule = best[2]
        return Decision(rule.action, rule.name, rule.provider, rule.fallback, found)
