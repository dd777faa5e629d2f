"""Canonical form and digest.

The canonical form is a plain, JSON-compatible dict with a fixed key order, defaults
written out or dropped consistently, and every order-insensitive list sorted and
de-duplicated. Two files that mean the same policy give the same canonical form, so
``digest`` (SHA-256 of its compact JSON encoding) identifies the policy, not its text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .middleware import REGEX, REGEX_DEFAULTS
from .model import BODY_PROTOCOLS, STATIC_SECTIONS, Endpoint, L7Rule, Middleware, NetworkRule, Policy, Preset

__all__ = [
    "canonical_endpoint",
    "canonical_json",
    "canonical_middleware",
    "canonical_rule",
    "digest",
    "normalize",
    "static_digest",
]


def _selector(rule: L7Rule, protocol: str | None = None) -> dict[str, Any]:
    # body selectors (and a websocket endpoint's GraphQL operation rules): only the keys the file may carry, as written
    if protocol in BODY_PROTOCOLS or (protocol == "websocket" and rule.is_graphql):
        body: dict[str, Any] = {}
        if rule.method is not None:
            body["method"] = rule.method
        if rule.tool:
            body["tool"] = rule.tool[0] if len(rule.tool) == 1 else {"any": list(rule.tool)}
        if rule.operation_type is not None:
            body["operation_type"] = rule.operation_type
        if rule.operation_name is not None:
            body["operation_name"] = rule.operation_name
        if rule.fields:
            body["fields"] = list(rule.fields)
        return body
    out: dict[str, Any] = {"method": rule.method or "*", "path": rule.path or "/**"}
    if rule.query:
        out["query"] = {k: (v[0] if len(v) == 1 else {"any": list(v)}) for k, v in rule.query}
    return out


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sorted_unique(items: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(_key(item), item)
    return [seen[k] for k in sorted(seen)]


def canonical_endpoint(ep: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"host": ep.host}
    if len(ep.ports) == 1:
        out["port"] = ep.ports[0]
    else:
        out["ports"] = list(ep.ports)
    if ep.path is not None:
        out["path"] = ep.path
    protocol = ep.protocol
    if protocol is None and ep.inspects_l7:
        protocol = "rest"  # clawfleet inspects access/rules without a protocol as REST
    if protocol is not None:
        out["protocol"] = protocol
    if ep.tls == "skip":  # terminate/passthrough are upstream no-ops
        out["tls"] = "skip"
    if ep.enforcement != "enforce":
        out["enforcement"] = ep.enforcement
    # A graphql preset is written as the operation rules it stands for (access: read-only and
    # rules: [{allow: {operation_type: query}}] are one policy); an HTTP preset is kept as written.
    if ep.access is not None and protocol not in BODY_PROTOCOLS:
        out["access"] = ep.access
    rules = ep.allow_rules
    if rules:
        out["rules"] = _sorted_unique([{"allow": _selector(r, protocol)} for r in rules])
    if ep.deny_rules:
        out["deny_rules"] = _sorted_unique([_selector(r, protocol) for r in ep.deny_rules])
    out.update(_body_options(ep))
    if ep.credential_binding is not None:
        out["credential_binding"] = {"provider": ep.credential_binding.provider}
    if ep.request_body_credential_rewrite:
        out["request_body_credential_rewrite"] = True
    if ep.websocket_credential_rewrite:
        out["websocket_credential_rewrite"] = True
    if ep.allow_uninspected_credentials:
        out["allow_uninspected_credentials"] = True
    for key in ("credential_signing", "signing_service", "signing_region"):
        if getattr(ep, key) is not None:
            out[key] = getattr(ep, key)
    if ep.allowed_ips:
        out["allowed_ips"] = list(ep.allowed_ips)
    return out


def _body_options(ep: Endpoint) -> dict[str, Any]:
    """The endpoint's body-inspection options in upstream's shape (defaults dropped)."""
    out: dict[str, Any] = {}
    if ep.protocol == "mcp":
        mcp: dict[str, Any] = {}
        if ep.max_body_bytes is not None:
            mcp["max_body_bytes"] = ep.max_body_bytes
        if ep.mcp_strict_tool_names is not None:
            mcp["strict_tool_names"] = ep.mcp_strict_tool_names
        if ep.mcp_allow_all_known_methods is not None:
            mcp["allow_all_known_mcp_methods"] = ep.mcp_allow_all_known_methods
        if mcp:
            out["mcp"] = mcp
    elif ep.protocol == "json-rpc" and ep.max_body_bytes is not None:
        out["json_rpc"] = {"max_body_bytes": ep.max_body_bytes}
    elif ep.protocol in ("graphql", "websocket"):  # websocket: GraphQL-over-WebSocket persisted queries
        if ep.max_body_bytes is not None:
            out["graphql_max_body_bytes"] = ep.max_body_bytes
        if ep.persisted_queries is not None:
            out["persisted_queries"] = ep.persisted_queries
        if ep.graphql_persisted_queries:
            out["graphql_persisted_queries"] = {k: _selector(r, "graphql") for k, r in ep.graphql_persisted_queries}
    return out


def canonical_rule(rule: NetworkRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "endpoints": _sorted_unique([canonical_endpoint(ep) for ep in rule.endpoints]),
        "binaries": [{"path": p} for p in sorted({b.path for b in rule.binaries})],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _middleware_config(mw: Middleware) -> dict[str, Any]:
    config = dict(mw.config)
    if mw.middleware == REGEX:  # defaults dropped: `config: {}` and `config: {mode: redact}` are one policy
        for key, default in REGEX_DEFAULTS.items():
            if config.get(key) == default:
                del config[key]
    return config


def canonical_middleware(mw: Middleware) -> dict[str, Any]:
    out: dict[str, Any] = {"name": mw.name or mw.key, "middleware": mw.middleware, "order": mw.order}
    config = _middleware_config(mw)
    if config:
        out["config"] = _plain(config)
    out["on_error"] = mw.on_error
    if mw.include or mw.exclude:
        out["endpoints"] = {}
        if mw.include:
            out["endpoints"]["include"] = sorted(set(mw.include))
        if mw.exclude:
            out["endpoints"]["exclude"] = sorted(set(mw.exclude))
    return out


def _network(obj: Policy | Preset, out: dict[str, Any]) -> None:
    out["network_policies"] = {k: canonical_rule(obj.network_policies[k]) for k in sorted(obj.network_policies)}
    if obj.network_middlewares:
        out["network_middlewares"] = {
            k: canonical_middleware(obj.network_middlewares[k]) for k in sorted(obj.network_middlewares)
        }


def normalize(obj: Policy | Preset) -> dict[str, Any]:
    """Return the canonical form of a policy (or preset) as plain data in a stable key order."""
    out: dict[str, Any] = {}
    if isinstance(obj, Preset):
        out["preset"] = {"name": obj.info.name, "description": obj.info.description}
        _network(obj, out)
        return out
    out["version"] = obj.version
    if "filesystem_policy" in obj.declared:
        fs = obj.filesystem
        out["filesystem_policy"] = {
            "include_workdir": fs.include_workdir,
            "read_only": sorted(set(fs.read_only)),
            "read_write": sorted(set(fs.read_write)),
        }
    if "landlock" in obj.declared:
        out["landlock"] = {"compatibility": obj.landlock.compatibility}
    if "process" in obj.declared:
        proc: dict[str, Any] = {}
        if obj.process.run_as_user is not None:
            proc["run_as_user"] = obj.process.run_as_user
        if obj.process.run_as_group is not None:
            proc["run_as_group"] = obj.process.run_as_group
        out["process"] = proc
    _network(obj, out)
    return out


def canonical_json(obj: Policy | Preset | dict[str, Any]) -> str:
    """Compact, key-sorted JSON of the canonical form: the exact bytes the digest covers."""
    data = obj if isinstance(obj, dict) else normalize(obj)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def digest(obj: Policy | Preset | dict[str, Any]) -> str:
    """``sha256:<hex>`` of :func:`canonical_json`: equal for policies that mean the same thing."""
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def static_digest(obj: Policy) -> str:
    """``sha256:<hex>`` of the sections a sandbox takes at start only (filesystem, Landlock, process, version).

    The gateway hot-reloads the network part, so the whole-policy digest it reports says nothing about what the
    running sandbox was started with; comparing this digest (recorded at start) with the current file's shows a
    static change that still waits for a restart."""
    data = normalize(obj)
    static = {k: v for k, v in data.items() if k in STATIC_SECTIONS}
    return "sha256:" + hashlib.sha256(canonical_json(static).encode("utf-8")).hexdigest()
