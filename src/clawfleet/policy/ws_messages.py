"""GraphQL-over-WebSocket: the client text messages of a ``protocol: websocket`` endpoint with GraphQL operation
policy (upstream's ``websocket_graphql_policy``; docs/policy.md "WebSocket messages").

Each message is read as upstream reads it (its ``classify_graphql_websocket_message``): a JSON object with a
string ``type``;

* ``subscribe`` (graphql-transport-ws) and ``start`` (the legacy graphql-ws) carry an operation: they need a
  non-empty string ``id`` and an object ``payload``, which is parsed as a GraphQL-over-HTTP JSON request
  (:mod:`.l7_body`: strict JSON, every operation of the document judged, hash-only persisted queries only when
  registered) and judged by the endpoint's GraphQL deny rules, then its GraphQL allow rules;
* the protocol's lifecycle messages (``connection_init``, ``connection_terminate``, ``ping``, ``pong``,
  ``complete``, ``stop``) pass without rules, as upstream;
* anything else (not JSON, duplicate keys, another ``type``, a missing ``id``) is denied.

The transport rules (``WEBSOCKET_TEXT`` deny rules by upgrade path) are applied by the engine before this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .l7_body import (
    BodyError,
    GraphqlOperation,
    describe_operation,
    operation_matches,
    parse_graphql_payload,
    parse_json_strict,
    rule_text,
)
from .model import Endpoint, L7Rule

__all__ = ["CONTROL_TYPES", "OPERATION_TYPES", "graphql_message_verdict", "parse_graphql_message"]

#: graphql-transport-ws and graphql-ws lifecycle messages: no operation, allowed without rules (as upstream).
CONTROL_TYPES = frozenset({"connection_init", "connection_terminate", "ping", "pong", "complete", "stop"})
#: The client messages that carry an operation: graphql-transport-ws ``subscribe``, graphql-ws ``start``.
OPERATION_TYPES = frozenset({"subscribe", "start"})


def parse_graphql_message(
    message: bytes, registered: Mapping[str, L7Rule] | None
) -> tuple[str, list[GraphqlOperation]]:
    """``(message type, operations)`` of one client text message (no operations for a lifecycle message);
    :class:`BodyError` for a message that is refused by construction."""
    doc: Any = parse_json_strict(message)
    if not isinstance(doc, dict):
        raise BodyError("not a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise BodyError("no string 'type'")
    if kind in CONTROL_TYPES:
        return kind, []
    if kind not in OPERATION_TYPES:
        raise BodyError(f"unsupported client message type {kind[:40]!r}")
    msg_id = doc.get("id")
    if not isinstance(msg_id, str) or not msg_id:
        raise BodyError(f"{kind} without a non-empty string id")
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise BodyError(f"{kind} without an object payload")
    return kind, parse_graphql_payload(payload, registered)


def graphql_message_verdict(endpoint: Endpoint, message: bytes) -> tuple[str, L7Rule | None, str]:
    """``("allow"|"denyrule"|"nomatch", rule, detail)`` for one client text message on ``endpoint``."""
    where = endpoint.describe()
    registered = (dict(endpoint.graphql_persisted_queries)
                  if endpoint.persisted_queries == "allow_registered" else None)  # fmt: skip
    try:
        kind, ops = parse_graphql_message(message, registered)
    except BodyError as exc:
        return "nomatch", None, f"GraphQL WebSocket message refused: {exc}"
    if not ops:
        return "allow", None, f"GraphQL WebSocket lifecycle message {kind} on {where}"
    for op in ops:
        for rule in endpoint.deny_rules:
            if rule.is_graphql and operation_matches(rule, op, deny=True):
                return "denyrule", rule, f"deny rule {rule_text(rule)} matches {kind} {describe_operation(op)}"
    rules = [r for r in endpoint.rules if r.is_graphql]
    first: L7Rule | None = None
    for op in ops:
        hit = next((r for r in rules if operation_matches(r, op, deny=False)), None)
        if hit is None:
            return "nomatch", None, f"no GraphQL rule on {where} allows {kind} {describe_operation(op)}"
        first = first or hit
    detail = ", ".join(describe_operation(op) for op in ops[:4]) + (", ..." if len(ops) > 4 else "")
    return "allow", first, f"{kind} {detail} allowed by rule {rule_text(first) if first else ''}"
