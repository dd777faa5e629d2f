"""Merging presets (and overlay policies) into a base policy.

Upstream semantics: ``network_policies`` and ``network_middlewares`` are maps of
*named* rules; merging adds new names and replaces an existing name wholesale, the
later source winning. An overlay that is a full policy also replaces each static
section (``filesystem_policy``, ``landlock``, ``process``) it declares. Every
replacement is reported so a preset cannot silently widen or narrow a base rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .canonical import canonical_middleware, canonical_rule
from .model import Middleware, NetworkRule, Policy, Preset

__all__ = ["MergeEntry", "MergeReport", "merge"]


@dataclass(frozen=True)
class MergeEntry:
    action: str  # "added" | "overridden" | "identical"
    section: str  # "network_policies" | "network_middlewares" | a static section
    key: str | None
    source: str
    previous_source: str | None = None

    def render(self) -> str:
        what = f"{self.section}.{self.key}" if self.key else self.section
        if self.action == "added":
            return f"added {what} from {self.source}"
        if self.action == "identical":
            return f"{what} from {self.source} is identical to the one from {self.previous_source}"
        return f"overridden {what}: {self.source} replaces the definition from {self.previous_source}"


@dataclass(frozen=True)
class MergeReport:
    entries: tuple[MergeEntry, ...] = field(default=())

    @property
    def overridden(self) -> tuple[MergeEntry, ...]:
        return tuple(e for e in self.entries if e.action == "overridden")

    def render(self) -> str:
        if not self.entries:
            return "nothing merged"
        return "\n".join(e.render() for e in self.entries)


def merge(base: Policy, presets: Sequence[Preset | Policy] = ()) -> tuple[Policy, MergeReport]:
    """Merge ``presets`` into ``base`` in order; return the merged policy and what happened."""
    entries: list[MergeEntry] = []
    policies = dict(base.network_policies)
    middlewares = dict(base.network_middlewares)
    origin_p = {k: base.source for k in policies}
    origin_m = {k: base.source for k in middlewares}
    merged = base
    warnings = list(base.warnings)
    for overlay in presets:
        src = overlay.source
        warnings.extend(overlay.warnings)
        if isinstance(overlay, Policy):
            for section, attr in (
                ("filesystem_policy", "filesystem"),
                ("landlock", "landlock"),
                ("process", "process"),
            ):
                if section not in overlay.declared:
                    continue
                old = getattr(merged, attr)
                new = getattr(overlay, attr)
                if section in merged.declared:
                    action = "identical" if old == new else "overridden"
                    entries.append(MergeEntry(action, section, None, src, merged.source))
                else:
                    entries.append(MergeEntry("added", section, None, src))
                merged = replace(merged, **{attr: new}, declared=merged.declared | {section})
        for section, target, origin, incoming in (
            ("network_policies", policies, origin_p, overlay.network_policies),
            ("network_middlewares", middlewares, origin_m, overlay.network_middlewares),
        ):
            for key, value in incoming.items():
                if key in target:
                    same = _same(target[key], value)
                    entries.append(MergeEntry("identical" if same else "overridden", section, key, src, origin[key]))
                else:
                    entries.append(MergeEntry("added", section, key, src))
                target[key] = value  # type: ignore[assignment]  # each section pairs its own value type
                origin[key] = src
    result = replace(
        merged,
        network_policies=policies,
        network_middlewares=middlewares,
        warnings=tuple(warnings),
    )
    return result, MergeReport(tuple(entries))


def _same(a: NetworkRule | Middleware, b: NetworkRule | Middleware) -> bool:
    if isinstance(a, NetworkRule) and isinstance(b, NetworkRule):
        return canonical_rule(a) == canonical_rule(b)
    if isinstance(a, Middleware) and isinstance(b, Middleware):
        return canonical_middleware(a) == canonical_middleware(b)
    return False
