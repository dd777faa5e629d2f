"""Human-readable difference between two policies.

Works on the canonical forms, so formatting and ordering never show up as changes.
Changes to static sections (``version``, ``filesystem_policy``, ``landlock``,
``process``) are fixed at sandbox creation and flagged "needs sandbox restart";
``network_policies`` and ``network_middlewares`` are hot-reloadable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .canonical import digest, normalize
from .model import STATIC_SECTIONS, Policy, Preset

__all__ = ["Change", "Diff", "diff"]


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


@dataclass(frozen=True)
class Change:
    kind: str  # "added" | "removed" | "changed"
    section: str
    key: str | None
    details: tuple[str, ...] = ()
    static: bool = False

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}" if self.key else self.section

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "section": self.section,
            "key": self.key,
            "details": list(self.details),
            "needs_restart": self.static,
        }


@dataclass(frozen=True)
class Diff:
    old_digest: str
    new_digest: str
    changes: tuple[Change, ...] = field(default=())
    old_name: str = "old"
    new_name: str = "new"

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def needs_restart(self) -> bool:
        """True when a static section changed: the sandbox must be recreated to apply it."""
        return any(c.static for c in self.changes)

    def render(self) -> str:
        lines = [f"--- {self.old_name}  {self.old_digest}", f"+++ {self.new_name}  {self.new_digest}"]
        if not self.changes:
            lines.append("no changes (same canonical policy)")
            return "\n".join(lines)
        sign = {"added": "+", "removed": "-", "changed": "~"}
        for title, static in (("static part (needs sandbox restart)", True), ("hot-reloadable part", False)):
            group = [c for c in self.changes if c.static == static]
            if not group:
                continue
            lines.append(f"{title}:")
            for c in group:
                lines.append(f"  {sign[c.kind]} {c.label}: {c.kind}")
                lines.extend(f"      {d}" for d in c.details)
        if self.needs_restart:
            lines.append("result: needs sandbox restart (static sections changed)")
        else:
            lines.append("result: hot-reloadable (network sections only)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_digest": self.old_digest,
            "new_digest": self.new_digest,
            "changed": self.changed,
            "needs_restart": self.needs_restart,
            "changes": [c.to_dict() for c in self.changes],
        }


def _list_delta(name: str, old: list[Any], new: list[Any]) -> list[str]:
    old_k = {_short(v): v for v in old}
    new_k = {_short(v): v for v in new}
    out = [f"{name}: + {k}" for k in new_k if k not in old_k]
    out += [f"{name}: - {k}" for k in old_k if k not in new_k]
    return out


def _dict_delta(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k in list(old) + [k for k in new if k not in old]:
        name = f"{prefix}{k}"
        if k not in new:
            out.append(f"{name}: removed (was {_short(old[k])})")
        elif k not in old:
            out.append(f"{name}: added {_short(new[k])}")
        elif old[k] != new[k]:
            if isinstance(old[k], list) and isinstance(new[k], list):
                out.extend(_list_delta(name, old[k], new[k]))
            else:
                out.append(f"{name}: {_short(old[k])} -> {_short(new[k])}")
    return out


def _ep_id(ep: dict[str, Any]) -> str:
    ports = ep.get("ports", [ep.get("port")])
    return f"{ep['host']}:{','.join(str(p) for p in ports)}"


def _rule_details(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if old["name"] != new["name"]:
        out.append(f"name: {old['name']} -> {new['name']}")
    old_eps: dict[str, list[dict[str, Any]]] = {}
    new_eps: dict[str, list[dict[str, Any]]] = {}
    for ep in old["endpoints"]:
        old_eps.setdefault(_ep_id(ep), []).append(ep)
    for ep in new["endpoints"]:
        new_eps.setdefault(_ep_id(ep), []).append(ep)
    for ident in list(old_eps) + [i for i in new_eps if i not in old_eps]:
        o, n = old_eps.get(ident, []), new_eps.get(ident, [])
        if o == n:
            continue
        if len(o) == 1 and len(n) == 1:
            out.extend(_dict_delta(f"endpoint {ident}: ", o[0], n[0]))
        else:
            out.extend(f"endpoint {ident}: - {_short(e)}" for e in o if e not in n)
            out.extend(f"endpoint {ident}: + {_short(e)}" for e in n if e not in o)
    out.extend(_list_delta("binaries", [b["path"] for b in old["binaries"]], [b["path"] for b in new["binaries"]]))
    return out


def _summary(rule: dict[str, Any]) -> list[str]:
    eps = ", ".join(_ep_id(e) for e in rule.get("endpoints", []))
    out = [f"endpoints: {eps or '(none)'}"]
    if "binaries" in rule:
        out.append(f"binaries: {', '.join(b['path'] for b in rule['binaries']) or '(none: matches no process)'}")
    if "middleware" in rule:
        out.append(f"middleware: {rule['middleware']}")
    return out


def diff(old: Policy | Preset, new: Policy | Preset) -> Diff:
    """Compare two policies; ``Diff.needs_restart`` tells whether a hot reload is enough."""
    a, b = normalize(old), normalize(new)
    changes: list[Change] = []
    for section in (*STATIC_SECTIONS, "preset"):
        if a.get(section) == b.get(section):
            continue
        static = section in STATIC_SECTIONS
        if section not in b:
            changes.append(Change("removed", section, None, (f"was {_short(a[section])}",), static))
        elif section not in a:
            changes.append(Change("added", section, None, (_short(b[section]),), static))
        elif isinstance(a[section], dict) and isinstance(b[section], dict):
            changes.append(Change("changed", section, None, tuple(_dict_delta("", a[section], b[section])), static))
        else:
            changes.append(Change("changed", section, None, (f"{_short(a[section])} -> {_short(b[section])}",), static))
    for section in ("network_policies", "network_middlewares"):
        old_map: dict[str, Any] = a.get(section, {})
        new_map: dict[str, Any] = b.get(section, {})
        for key in sorted(set(old_map) | set(new_map)):
            if key not in new_map:
                changes.append(Change("removed", section, key, tuple(_summary(old_map[key]))))
            elif key not in old_map:
                changes.append(Change("added", section, key, tuple(_summary(new_map[key]))))
            elif old_map[key] != new_map[key]:
                if section == "network_policies":
                    details = _rule_details(old_map[key], new_map[key])
                else:
                    details = _dict_delta("", old_map[key], new_map[key])
                changes.append(Change("changed", section, key, tuple(details)))
    return Diff(digest(a), digest(b), tuple(changes), old.source, new.source)
