"""Typed, immutable policy model.

Objects here are produced by :mod:`clawfleet.policy.schema` after validation, so they
always hold valid values: consumers (sandbox, gateway) never re-check them.
Fields mirror the upstream OpenShell schema (``version: 1``); see docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

from .errors import Problem

__all__ = [
    "ACCESS_METHODS",
    "BODY_PROTOCOLS",
    "GRAPHQL_ACCESS_OPERATIONS",
    "STATIC_SECTIONS",
    "WEBSOCKET_ACCESS_METHODS",
    "WEBSOCKET_ACTIONS",
    "WEBSOCKET_BINARY",
    "WEBSOCKET_TEXT",
    "Binary",
    "CredentialBinding",
    "Endpoint",
    "FilesystemPolicy",
    "L7Rule",
    "LandlockPolicy",
    "Middleware",
    "NetworkRule",
    "Policy",
    "Preset",
    "PresetInfo",
    "ProcessPolicy",
]

#: ``access`` presets expanded to HTTP methods ("*" = any method).
ACCESS_METHODS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "read-only": frozenset({"GET", "HEAD", "OPTIONS"}),
        "read-write": frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"}),
        "full": frozenset({"*"}),
    }
)

#: The actions a ``protocol: websocket`` endpoint judges after the upgrade, one per client-to-server message
#: (policy/ws_messages.py). ``WEBSOCKET_TEXT`` is upstream's synthetic method for a text message;
#: ``WEBSOCKET_BINARY`` is clawfleet's for a binary one (upstream relays binary messages unjudged; clawfleet denies
#: them unless a rule names this action or ``*``). Neither is an HTTP method: a request that sends one is refused.
WEBSOCKET_TEXT = "WEBSOCKET_TEXT"
WEBSOCKET_BINARY = "WEBSOCKET_BINARY"
WEBSOCKET_ACTIONS = frozenset({WEBSOCKET_TEXT, WEBSOCKET_BINARY})

#: ``access`` presets on a ``protocol: websocket`` endpoint, as upstream expands them (``access_preset_rules``):
#: read-only is the upgrade handshake only, read-write adds client text messages, full is every action.
WEBSOCKET_ACCESS_METHODS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "read-only": frozenset({"GET"}),
        "read-write": frozenset({"GET", WEBSOCKET_TEXT}),
        "full": frozenset({"*"}),
    }
)

#: ``access`` presets on a ``protocol: graphql`` endpoint, as upstream expands them (its
#: ``access_preset_rules``, crates/openshell-supervisor-network/src/l7/mod.rs): GraphQL operation types allowed
#: ("*" = any). A read-only endpoint allows queries; mutations and subscriptions are denied.
GRAPHQL_ACCESS_OPERATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "read-only": ("query",),
        "read-write": ("query", "mutation"),
        "full": ("*",),
    }
)

#: Endpoint protocols whose requests are judged by their body (policy/l7_body.py).
BODY_PROTOCOLS = frozenset({"graphql", "mcp", "json-rpc"})

#: Top-level sections fixed at sandbox creation: changing them needs a sandbox restart.
STATIC_SECTIONS = ("version", "filesystem_policy", "landlock", "process")


@dataclass(frozen=True)
class FilesystemPolicy:
    include_workdir: bool = False
    read_only: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()


@dataclass(frozen=True)
class LandlockPolicy:
    compatibility: str = "best_effort"  # "best_effort" | "hard_requirement"


@dataclass(frozen=True)
class ProcessPolicy:
    run_as_user: str | None = None  # name or numeric id as a string; never root / 0
    run_as_group: str | None = None


@dataclass(frozen=True)
class L7Rule:
    """One ``rules[].allow`` or ``deny_rules[]`` entry. ``None`` selectors match anything."""

    method: str | None = None  # upper-case HTTP method or "*"
    path: str | None = None  # glob: ``*`` stays within a segment, ``**`` crosses ``/``
    query: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (param, any-of globs), sorted by param
    # Body selectors (protocol graphql / mcp / json-rpc; see policy/l7_body.py). On mcp and json-rpc
    # endpoints ``method`` holds the JSON-RPC method name, case kept, instead of an HTTP method.
    tool: tuple[str, ...] = ()  # MCP tools/call params.name: any-of globs (``tool`` or ``params: {name}``)
    operation_type: str | None = None  # GraphQL: query | mutation | subscription
    operation_name: str | None = None  # GraphQL operation name glob
    fields: tuple[str, ...] = ()  # GraphQL root field globs

    @property
    def is_body(self) -> bool:
        return bool(self.tool or self.operation_type or self.operation_name or self.fields)

    @property
    def is_graphql(self) -> bool:
        """A GraphQL operation rule (on ``protocol: graphql``, or GraphQL-over-WebSocket on ``websocket``)."""
        return bool(self.operation_type or self.operation_name or self.fields)

    def describe(self) -> str:
        if self.operation_type or self.operation_name or self.fields:
            parts = [self.operation_type or "any-operation"]
            if self.operation_name:
                parts.append(f"name={self.operation_name}")
            if self.fields:
                parts.append(f"fields={'|'.join(self.fields)}")
            return " ".join(parts)
        if self.tool:
            return f"{self.method or '*'} tool={'|'.join(self.tool)}"
        parts = [self.method or "*", self.path or "/**"]
        if self.query:
            parts.append("?" + "&".join(f"{k}={'|'.join(v)}" for k, v in self.query))
        return " ".join(parts)


@cache
def _graphql_preset_rules(access: str) -> tuple[L7Rule, ...]:
    return tuple(L7Rule(operation_type=t) for t in GRAPHQL_ACCESS_OPERATIONS[access])


@dataclass(frozen=True)
class CredentialBinding:
    """``credential_binding: {provider: NAME}`` on an endpoint (upstream Providers v2): the static credentials of
    the provider instance ``NAME`` may be put into requests to this endpoint. Where it was written is kept (not
    compared) because whether ``NAME`` is configured is known only where the policy meets the gateway's
    providers, and that refusal must still point at the line (:mod:`clawfleet.policy.providers`)."""

    provider: str
    source: str = field(default="<policy>", compare=False)
    line: int | None = field(default=None, compare=False)
    col: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Endpoint:
    host: str  # lower-case; may carry a first-label wildcard (*.x.com, **.x.com, *-a.x.com), inner '*' labels
    ports: tuple[int, ...]
    path: str | None = None
    protocol: str | None = None  # None = L4 passthrough
    enforcement: str = "enforce"  # "enforce" | "audit"
    access: str | None = None  # "read-only" | "read-write" | "full"
    rules: tuple[L7Rule, ...] = ()
    deny_rules: tuple[L7Rule, ...] = ()
    allowed_ips: tuple[str, ...] = ()  # normalised CIDRs
    tls: str | None = None
    # Body inspection (protocol graphql / mcp / json-rpc): the upstream option values as written.
    max_body_bytes: int | None = None  # mcp.max_body_bytes / json_rpc.max_body_bytes / graphql_max_body_bytes
    mcp_strict_tool_names: bool | None = None
    mcp_allow_all_known_methods: bool | None = None
    persisted_queries: str | None = None  # "deny" | "allow_registered"
    graphql_persisted_queries: tuple[tuple[str, L7Rule], ...] = ()  # hash or saved-query id -> operation
    credential_binding: CredentialBinding | None = None
    # upstream's opt-in: provider credential placeholders in a JSON or form request body are filled too
    request_body_credential_rewrite: bool = False
    # upstream's opt-in: provider credential placeholders in client WebSocket text messages are filled too
    websocket_credential_rewrite: bool = False
    # upstream's recorded exception: a provider credential may be bound to an L4 or tls: skip endpoint
    allow_uninspected_credentials: bool = False
    # upstream's proxy-side AWS SigV4 signing: the gateway re-signs each request with the provider's real keys
    credential_signing: str | None = None  # "sigv4" | "sigv4:body" | "sigv4:no_body"
    signing_service: str | None = None  # the SigV4 service name (s3, bedrock, sts)
    signing_region: str | None = None  # None: taken from the request's host name

    @property
    def allow_rules(self) -> tuple[L7Rule, ...]:
        """The allow rules requests are judged by: ``rules``, or on a ``protocol: graphql`` endpoint the operation
        rules its ``access`` preset stands for (upstream expands it so; an HTTP preset is a method set instead,
        :data:`ACCESS_METHODS`)."""
        if self.access is not None and self.protocol == "graphql":
            return _graphql_preset_rules(self.access)
        return self.rules

    @property
    def websocket_graphql(self) -> bool:
        """A ``protocol: websocket`` endpoint with GraphQL operation policy (upstream's ``websocket_graphql_policy``):
        its client text messages are read as graphql-transport-ws / graphql-ws messages and their operations judged
        by the GraphQL rules, instead of by ``WEBSOCKET_TEXT`` rules."""
        return self.protocol == "websocket" and (
            any(r.is_graphql for r in (*self.rules, *self.deny_rules))
            or self.persisted_queries == "allow_registered"
            or bool(self.graphql_persisted_queries)
        )

    @property
    def inspects_body(self) -> bool:
        """Whether each request's body (GraphQL: or its query string) is parsed and judged."""
        return self.protocol in BODY_PROTOCOLS

    @property
    def inspects_l7(self) -> bool:
        """Whether requests through this endpoint are checked by method/path."""
        return self.protocol not in (None, "tcp") or bool(self.rules or self.access or self.deny_rules)

    def describe(self) -> str:
        ports = ",".join(str(p) for p in self.ports)
        return f"{self.host}:{ports}"


@dataclass(frozen=True)
class Binary:
    path: str  # absolute path, or a glob with * / ** / ?

    @property
    def is_glob(self) -> bool:
        return any(c in self.path for c in "*?[")


@dataclass(frozen=True)
class NetworkRule:
    key: str
    name: str
    endpoints: tuple[Endpoint, ...] = ()
    binaries: tuple[Binary, ...] = ()


@dataclass(frozen=True)
class Middleware:
    key: str
    middleware: str  # the middleware type
    name: str | None = None
    order: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    on_error: str = "fail_closed"  # "fail_closed" | "fail_open"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    supported: bool = True  # the gateway runs this type (a loaded policy refuses any other; kept for callers)


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Policy:
    """A full sandbox policy.

    ``filesystem``, ``landlock`` and ``process`` are always present (defaults when the
    file omits the section); ``declared`` says which top-level sections the file wrote,
    so normalisation and merges keep an omitted section omitted.
    """

    version: int = 1
    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    landlock: LandlockPolicy = field(default_factory=LandlockPolicy)
    process: ProcessPolicy = field(default_factory=ProcessPolicy)
    network_policies: Mapping[str, NetworkRule] = field(default_factory=dict)
    network_middlewares: Mapping[str, Middleware] = field(default_factory=dict)
    declared: frozenset[str] = frozenset({"version"})
    source: str = "<policy>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Preset:
    """A NemoClaw preset: ``preset: {name, description}`` plus network sections, merged into a base."""

    info: PresetInfo
    network_policies: Mapping[str, NetworkRule] = field(default_factory=dict)
    network_middlewares: Mapping[str, Middleware] = field(default_factory=dict)
    source: str = "<preset>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
