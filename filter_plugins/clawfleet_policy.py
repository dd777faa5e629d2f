"""Ansible filters for clawfleet sandbox policies (validate, merge, digest, diff, normalize).

Thin wrappers over :mod:`clawfleet.policy`, for playbooks on the controller::

    - ansible.builtin.assert:
        that: policy_file | clawfleet_policy_validate
    - ansible.builtin.set_fact:
        sandbox_policy: "{{ base | clawfleet_policy_merge([lookup('file', 'presets/pypi.yaml')]) }}"
        sandbox_policy_digest: "{{ sandbox_policy | clawfleet_policy_digest }}"

A policy argument may be a dict (parsed YAML from a variable), a YAML string, or a
path to a file. Invalid policies fail the task with every problem, positioned as
``FILE:LINE:COL: path: message`` (dicts have no lines: ``<data>: path: message``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - lets the module be imported (and tested) without Ansible

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        pass


def _import_policy() -> Any:
    try:
        import clawfleet.policy as policy
    except ImportError:
        # ansible-playbook run from a checkout without the package installed: use <repo>/src.
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        if src not in sys.path:
            sys.path.insert(0, src)
        import clawfleet.policy as policy
    return policy


_policy = _import_policy()


def _load(value: Any, *, what: str = "policy", kind: str = "policy") -> Any:
    """dict / YAML text / path -> Policy or Preset; PolicyError -> AnsibleFilterError."""
    try:
        if isinstance(value, (_policy.Policy, _policy.Preset)):
            return value
        if isinstance(value, Mapping):
            if kind == "any":
                kind = "preset" if "preset" in value else "policy"
            return _policy.load_data(value, filename=f"<{what}>", kind=kind)
        if isinstance(value, (str, bytes)):
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            if "\n" not in text and text.strip() and os.path.isfile(os.path.expanduser(text.strip())):
                path = os.path.expanduser(text.strip())
                return _policy.load_any_file(path) if kind == "any" else _load_file(path, kind)
            if kind == "any":
                return _policy.load_any_text(text, filename=f"<{what}>")
            loader = _policy.load_preset_text if kind == "preset" else _policy.load_text
            return loader(text, filename=f"<{what}>")
    except _policy.PolicyError as exc:
        raise AnsibleFilterError(f"invalid {what}:\n{exc}") from None
    raise AnsibleFilterError(
        f"{what}: expected a policy as a dict, YAML text or a file path, got {type(value).__name__}"
    )


def _load_file(path: str, kind: str) -> Any:
    return _policy.load_preset_file(path) if kind == "preset" else _policy.load_file(path)


def clawfleet_policy_validate(value: Any) -> bool:
    """True when the policy (or preset) is valid; fails the task with positioned problems otherwise."""
    _load(value, kind="any")
    return True


def clawfleet_policy_normalize(value: Any) -> dict[str, Any]:
    """The canonical form (plain dict, stable order): what the digest covers."""
    return _policy.normalize(_load(value, kind="any"))


def clawfleet_policy_digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical form: equal for policies that mean the same thing."""
    return _policy.digest(_load(value, kind="any"))


def clawfleet_policy_merge(base: Any, presets: Any = (), report: bool = False) -> Any:
    """Merge presets (later wins) into ``base``; returns the canonical merged policy.

    With ``report=True`` returns ``{"policy": ..., "digest": ..., "report": [lines], "overridden": [...]}``.
    """
    base_policy = _load(base, what="base policy")
    if isinstance(presets, (str, bytes, Mapping)):
        presets = [presets]
    overlays = [_load(p, what=f"preset {i}", kind="any") for i, p in enumerate(presets or ())]
    try:
        merged, merge_report = _policy.merge(base_policy, overlays)
    except _policy.PolicyError as exc:  # pragma: no cover - merge of valid inputs does not fail today
        raise AnsibleFilterError(f"cannot merge policies:\n{exc}") from None
    canonical = _policy.normalize(merged)
    if not report:
        return canonical
    return {
        "policy": canonical,
        "digest": _policy.digest(merged),
        "report": [e.render() for e in merge_report.entries],
        "overridden": [f"{e.section}.{e.key}" if e.key else e.section for e in merge_report.overridden],
    }


def clawfleet_policy_alias_binaries(merged: Mapping[str, Any], aliases: Mapping[str, Any]) -> dict[str, Any]:
    """Where a network rule of a merged policy (``clawfleet_policy_merge(..., report=true)``'s result) lists one of
    ``aliases``' keys as a binary, also list that key's values; the digest is recomputed and the report says so.

    For agents that bring their own interpreter: a preset written for ``/usr/bin/node`` must also open the same
    hosts to OpenClaw's pinned Node (``/opt/clawfleet/openclaw/*/node/bin/node``), and only those hosts.
    """
    policy = dict(merged["policy"])
    rules = {key: dict(rule) for key, rule in (policy.get("network_policies") or {}).items()}
    lines = list(merged.get("report") or [])
    for key, rule in rules.items():
        paths = [b["path"] for b in rule.get("binaries") or []]
        extra = [str(a) for p in paths if p in aliases for a in _as_list(aliases[p])]
        extra = sorted({a for a in extra if a not in paths})
        if extra:
            rule["binaries"] = [*rule["binaries"], *({"path": a} for a in extra)]
            lines.append(f"binaries of network_policies.{key}: added {', '.join(extra)} (the agent's own runtime)")
    policy["network_policies"] = rules
    canonical = _policy.normalize(_load(policy))
    return {**merged, "policy": canonical, "digest": _policy.digest(_load(canonical)), "report": lines}


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def clawfleet_policy_diff(old: Any, new: Any) -> dict[str, Any]:
    """``{changed, needs_restart, old_digest, new_digest, changes: [...], text}``."""
    result = _policy.diff(_load(old, what="old policy", kind="any"), _load(new, what="new policy", kind="any"))
    return {**result.to_dict(), "text": result.render()}


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "clawfleet_policy_validate": clawfleet_policy_validate,
            "clawfleet_policy_merge": clawfleet_policy_merge,
            "clawfleet_policy_digest": clawfleet_policy_digest,
            "clawfleet_policy_diff": clawfleet_policy_diff,
            "clawfleet_policy_alias_binaries": clawfleet_policy_alias_binaries,
            "clawfleet_policy_normalize": clawfleet_policy_normalize,
        }
