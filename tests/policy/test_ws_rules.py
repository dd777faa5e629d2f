"""WebSocket message rules on ``protocol: websocket`` endpoints (issue 17 item 2): loading with positioned
refusals beside their accepted twins, canonical form and digest, diff, merge and decisions."""

from __future__ import annotations

import json

import pytest

from clawfleet.policy import PolicyError, compile_policy, diff, digest, merge
from clawfleet.policy.canonical import normalize
from clawfleet.policy.loader import load_text

NODE = "/usr/bin/node"


def _policy(rules: str, extra: str = "", protocol: str = "websocket") -> str:
    return f"""\
version: 1
network_policies:
  rt:
    endpoints:
      - host: rt.example.com
        port: 443
        protocol: {protocol}
        rules:
{rules}{extra}
    binaries: [{{path: {NODE}}}]
"""


TEXT = """\
          - allow: {method: GET, path: "/ws/**"}
          - allow: {method: websocket_text, path: "/ws/**"}
"""
GQL = """\
          - allow: {method: GET, path: /graphql}
          - allow: {operation_type: subscription, fields: [messageAdded]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_text(text, "p.yaml")
    return [str(p) for p in info.value.problems]


def only(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def _ep(text: str):
    return load_text(text, "p.yaml").network_policies["rt"].endpoints[0]


# -- loading: each refusal beside its accepted twin --------------------------------------------------------------


def test_websocket_text_rules_load_upper_cased():
    ep = _ep(_policy(TEXT))
    assert [r.method for r in ep.rules] == ["GET", "WEBSOCKET_TEXT"] and not ep.websocket_graphql


def test_a_message_action_on_a_rest_endpoint_is_refused():
    assert only(_policy(TEXT, protocol="rest")) == (
        "p.yaml:10:29: network_policies.rt.endpoints[0].rules[1].allow.method: WEBSOCKET_TEXT is a WebSocket message"
        " action: it applies on protocol: websocket endpoints (after the upgrade), never to an HTTP request"
    )


def test_an_unknown_websocket_method_is_a_warning_as_upstream():
    policy = load_text(_policy(TEXT.replace("websocket_text", "POST")), "p.yaml")
    assert [str(w) for w in policy.warnings] == [
        "p.yaml:10:29: warning: network_policies.rt.endpoints[0].rules[1].allow.method: unknown WebSocket method"
        " 'POST': a protocol: websocket endpoint judges GET (the upgrade), WEBSOCKET_TEXT and WEBSOCKET_BINARY (client"
        " messages) or '*'; this rule matches nothing"
    ]


def test_graphql_operation_rules_load_on_a_websocket_endpoint():
    ep = _ep(_policy(GQL, "        deny_rules: [{operation_type: mutation}]\n"))
    assert ep.websocket_graphql and [r.operation_type for r in ep.rules] == [None, "subscription"]


def test_a_graphql_rule_mixed_with_method_or_path_is_refused():
    text = _policy(GQL.replace("{operation_type: subscription,", "{path: /graphql, operation_type: subscription,"))
    assert only(text) == (
        "p.yaml:10:21: network_policies.rt.endpoints[0].rules[1].allow.path: a WebSocket GraphQL rule must not"
        " combine method/path/query with operation_type/operation_name/fields: allow the upgrade with its own GET rule"
    )


def test_a_graphql_allow_rule_needs_its_operation_type():
    text = _policy(GQL.replace("{operation_type: subscription, fields: [messageAdded]}", "{fields: [messageAdded]}"))
    assert only(text) == (
        "p.yaml:10:20: network_policies.rt.endpoints[0].rules[1].allow: a GraphQL allow rule needs 'operation_type'"
        " (query, mutation, subscription or '*')"
    )


def test_websocket_text_beside_graphql_operation_rules_is_refused():
    text = _policy(GQL + '          - allow: {method: WEBSOCKET_TEXT, path: "/graphql"}\n')
    assert only(text).startswith(
        "p.yaml:11:29: network_policies.rt.endpoints[0].rules[2].allow.method: a WebSocket endpoint with GraphQL"
        " operation policy judges client messages by its operation_type/operation_name/fields rules"
    )
    assert _ep(_policy(GQL + '          - allow: {method: WEBSOCKET_BINARY, path: "/graphql"}\n')).websocket_graphql


def test_websocket_text_beside_graphql_deny_rules_alone_is_refused():
    """The validator and the model agree on what makes an endpoint judge GraphQL: a deny rule alone does (the
    model would otherwise ignore the WEBSOCKET_TEXT allow rule the validator let through)."""
    text = _policy(TEXT, extra="        deny_rules:\n          - {operation_type: mutation}\n")
    assert "WEBSOCKET_TEXT allow rule would let any message past them" in only(text)
    assert not _ep(_policy(TEXT)).websocket_graphql


def test_mcp_selectors_are_refused_on_a_websocket_endpoint():
    text = _policy('          - allow: {method: GET, path: "/ws"}\n          - allow: {tool: search}\n')
    assert "'tool' is a body selector" in only(text) and "MCP and JSON-RPC over WebSocket" in only(text)


def test_persisted_queries_load_on_websocket_and_are_refused_on_rest():
    extra = "        persisted_queries: allow_registered\n        graphql_persisted_queries:\n" \
            "          abc: {operation_type: subscription, fields: [messageAdded]}\n"  # fmt: skip
    ep = _ep(_policy(TEXT.replace("websocket_text", "GET"), extra))
    assert ep.websocket_graphql and ep.graphql_persisted_queries[0][0] == "abc"
    assert (
        "applies only to protocol: graphql / websocket endpoints"
        in problems(_policy(TEXT.replace("websocket_text", "GET"), extra, protocol="rest"))[0]
    )


# -- canonical form, digest, diff, merge -------------------------------------------------------------------------


def test_canonical_form_round_trips_and_spellings_share_a_digest():
    policy = load_text(_policy(GQL, "        deny_rules: [{operation_type: mutation}]\n"), "p.yaml")
    eps = normalize(policy)["network_policies"]["rt"]["endpoints"]
    assert sorted(json.dumps(r) for r in eps[0]["rules"]) == sorted(json.dumps(r) for r in [
        {"allow": {"method": "GET", "path": "/graphql"}},
        {"allow": {"operation_type": "subscription", "fields": ["messageAdded"]}},
    ]) and eps[0]["deny_rules"] == [{"operation_type": "mutation"}]  # fmt: skip
    again = load_text(json.dumps(normalize(policy)), "again.json")
    assert digest(again) == digest(policy)
    lower = load_text(_policy(TEXT), "a.yaml")
    upper = load_text(_policy(TEXT.replace("websocket_text", "WEBSOCKET_TEXT")), "b.yaml")
    assert digest(lower) == digest(upper)


def test_diff_names_the_added_message_rule():
    old = load_text(_policy(TEXT.replace('          - allow: {method: websocket_text, path: "/ws/**"}\n', "")), "o")
    new = load_text(_policy(TEXT), "n")
    d = diff(old, new)
    assert d.changed and not d.needs_restart
    assert any("WEBSOCKET_TEXT" in line for c in d.changes for line in c.details)


def test_merge_keeps_the_message_rules():
    base = load_text(_policy(GQL), "base.yaml")
    merged, _report = merge(base, [load_text(_policy(TEXT).replace("  rt:\n", "  chat:\n"), "p.yaml")])
    assert digest(merged) != digest(base)
    assert normalize(merged)["network_policies"]["rt"] == normalize(base)["network_policies"]["rt"]
    assert normalize(merged)["network_policies"]["chat"]["endpoints"][0]["rules"][1]["allow"]["method"] == (
        "WEBSOCKET_TEXT"
    )


# -- decisions ----------------------------------------------------------------------------------------------------


def _decide(engine, method, path, body=None, message=True):
    return engine.decide(NODE, (), "rt.example.com", 443, method=method, path=path, body=body,
                         websocket_message=message)  # fmt: skip


@pytest.mark.parametrize(
    ("access", "get", "text", "binary"),
    [("read-only", True, False, False), ("read-write", True, True, False), ("full", True, True, True)],
)
def test_access_presets_expand_as_upstream(access, get, text, binary):
    text_policy = _policy("", f"        access: {access}\n").replace("        rules:\n", "")
    engine = compile_policy(load_text(text_policy, "p.yaml"))
    assert _decide(engine, "GET", "/x", message=False).allowed is get
    assert _decide(engine, "HEAD", "/x", message=False).allowed is (access == "full")  # upstream's presets: GET
    assert _decide(engine, "WEBSOCKET_TEXT", "/x", b"hi").allowed is text
    assert _decide(engine, "WEBSOCKET_BINARY", "/x").allowed is binary


def test_a_graphql_rule_never_allows_the_upgrade_or_a_raw_message():
    engine = compile_policy(load_text(_policy("          - allow: {operation_type: '*'}\n"), "p.yaml"))
    assert not _decide(engine, "GET", "/graphql", message=False).allowed  # no selector: it would match anything
    assert not _decide(engine, "WEBSOCKET_BINARY", "/graphql").allowed
    assert _decide(engine, "WEBSOCKET_TEXT", "/graphql", b'{"type":"ping"}').allowed


def test_a_message_action_is_never_an_http_method_and_the_reverse():
    engine = compile_policy(load_text(_policy(TEXT), "p.yaml"))
    assert "not an HTTP method" in _decide(engine, "websocket_text", "/ws/a", message=False).reason
    assert "not a WebSocket message action" in _decide(engine, "GET", "/ws/a", message=True).reason
    assert _decide(engine, "WEBSOCKET_TEXT", "/ws/a", b"x").allowed


def test_only_a_websocket_endpoint_allows_a_message():
    """A REST ``*`` rule on the same host:port never judged WebSocket messages: it cannot allow one."""
    text = _policy(TEXT.replace("websocket_text", "GET")).replace(
        "    binaries:", "      - host: rt.example.com\n        port: 443\n        protocol: rest\n"
        "        access: full\n    binaries:")  # fmt: skip
    engine = compile_policy(load_text(text, "p.yaml"))
    d = _decide(engine, "WEBSOCKET_TEXT", "/ws/a", b"x")
    assert not d.allowed and d.rule is None
