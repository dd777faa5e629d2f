"""Strict YAML loading and schema validation: every problem is positioned and says what was expected."""

from __future__ import annotations

import pytest

from clawfleet.policy import PolicyError, load_data, load_file, load_preset_text, load_text

GOOD_RULE = """\
version: 1
network_policies:
  gh:
    endpoints:
      - host: api.github.com
        port: 443
    binaries:
      - path: /usr/bin/curl
"""


def problems(text: str, loader=load_text) -> list[str]:
    with pytest.raises(PolicyError) as info:
        loader(text, "policy.yaml")
    return [str(p) for p in info.value.problems]


def only(text: str, loader=load_text) -> str:
    found = problems(text, loader)
    assert len(found) == 1, found
    return found[0]


def test_good_policy_loads():
    policy = load_text(GOOD_RULE, "policy.yaml")
    rule = policy.network_policies["gh"]
    assert rule.name == "gh"  # name defaults to the key
    assert rule.endpoints[0].ports == (443,)
    assert policy.warnings == ()


# -- YAML traps ------------------------------------------------------------------------------
def test_duplicate_key_is_an_error_with_both_lines():
    text = GOOD_RULE + "  gh:\n    endpoints: []\n"
    msg = only(text)
    assert msg.startswith("policy.yaml:9:3: network_policies.gh: duplicate key 'gh' (first defined on line 3)")


def test_duplicate_nested_key():
    text = GOOD_RULE.replace("        port: 443\n", "        port: 443\n        port: 80\n")
    assert only(text).startswith("policy.yaml:7:9: network_policies.gh.endpoints[0].port: duplicate key 'port'")


def test_tab_indentation_is_an_error():
    text = "version: 1\nnetwork_policies:\n\tgh: {}\n"
    assert only(text) == "policy.yaml:3:1: tab character in indentation: YAML indents with spaces only"


@pytest.mark.parametrize("word", ["on", "yes", "no", "off", "y", "N", "Yes", "OFF"])
def test_yaml11_boolean_where_a_string_is_expected(word):
    text = GOOD_RULE.replace("host: api.github.com", f"host: {word}")
    msg = only(text)
    assert msg.startswith("policy.yaml:5:15: network_policies.gh.endpoints[0].host: unquoted")
    assert "YAML 1.1" in msg and "quote it" in msg


def test_quoted_yaml11_word_is_a_plain_string():
    policy = load_text(GOOD_RULE.replace("host: api.github.com", 'host: "on.example"').replace("gh:", '"yes":'))
    assert "yes" in policy.network_policies


def test_unquoted_yaml11_key_is_an_error():
    msg = only(GOOD_RULE.replace("  gh:", "  on:"))
    assert msg.startswith("policy.yaml:3:3: network_policies.on: unquoted key 'on' is a boolean in YAML 1.1")


def test_yaml11_word_for_a_boolean_field():
    text = "version: 1\nfilesystem_policy:\n  include_workdir: yes\n"
    msg = only(text)
    assert msg.startswith("policy.yaml:3:20: filesystem_policy.include_workdir: expected true or false")
    assert "write true or false" in msg


def test_leading_zero_integer_is_ambiguous():
    msg = only(GOOD_RULE.replace("port: 443", "port: 0443"))
    assert msg.startswith("policy.yaml:6:15: network_policies.gh.endpoints[0].port: '0443' is ambiguous")
    assert "0443 -> 291" in msg


def test_boolean_where_string_expected():
    text = GOOD_RULE.replace("host: api.github.com", "host: true")
    assert "expected a host name, got boolean true" in only(text)


def test_merge_keys_anchors_tags_and_multiple_documents():
    found = problems("version: 1\nnetwork_policies: &b {}\n<<: *b\n")
    assert found == ["policy.yaml:3:1: YAML merge keys (<<) are not allowed in a policy: write the keys out"]
    assert "policy.yaml:1:10: version: YAML tag !custom is not allowed in a policy" in problems("version: !custom 1\n")
    assert "expected a single document" in only("version: 1\n---\nversion: 1\n")
    assert only("") == "policy.yaml:1:1: empty document: expected a policy mapping"
    assert "invalid YAML" in only("version: [1\n")


def test_billion_laughs_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    msg = only("\n".join(lines) + "\n")
    assert "alias expansions" in msg


def test_aliases_within_limits_are_expanded():
    text = """\
version: 1
network_policies:
  a:
    endpoints: [{host: a.test, port: 443}]
    binaries: &bins [{path: /usr/bin/curl}]
  b:
    endpoints: [{host: b.test, port: 443}]
    binaries: *bins
"""
    policy = load_text(text)
    assert policy.network_policies["b"].binaries == policy.network_policies["a"].binaries


# -- schema errors: (mutation of GOOD_RULE or full text, expected "LINE:COL: path: message" prefix) ----
CASES = [
    ("unknown-top", GOOD_RULE + "extra: 1\n", "9:1: extra: unknown key 'extra'"),
    (
        "typo-top",
        GOOD_RULE.replace("network_policies", "network_policy"),
        "2:1: network_policy: unknown key 'network_policy' (did you mean 'network_policies'?)",
    ),
    (
        "unknown-endpoint-key",
        GOOD_RULE.replace("port: 443", "port: 443\n        portt: 1"),
        "7:9: network_policies.gh.endpoints[0].portt: unknown key 'portt' (did you mean 'port'?)",
    ),
    (
        "upstream-only-key",
        GOOD_RULE.replace("port: 443", "port: 443\n        allow_encoded_slash: true"),
        "7:9: network_policies.gh.endpoints[0].allow_encoded_slash: 'allow_encoded_slash' is an upstream",
    ),
    ("version-2", GOOD_RULE.replace("version: 1", "version: 2"), "1:10: version: version must be 1"),
    ("version-string", GOOD_RULE.replace("version: 1", 'version: "1"'), "1:10: version: version must be 1"),
    ("version-missing", GOOD_RULE.replace("version: 1\n", ""), "1:1: missing required key 'version'"),
    (
        "port-high",
        GOOD_RULE.replace("port: 443", "port: 70000"),
        "6:15: network_policies.gh.endpoints[0].port: a port must be between 1 and 65535, got 70000",
    ),
    ("port-zero", GOOD_RULE.replace("port: 443", "port: 0"), "6:15: network_policies.gh.endpoints[0].port: a port"),
    (
        "port-string",
        GOOD_RULE.replace("port: 443", 'port: "443"'),
        "6:15: network_policies.gh.endpoints[0].port: expected a port (an integer 1..65535), got string '443'",
    ),
    (
        "ports-bad-item",
        GOOD_RULE.replace("port: 443", "ports: [443, 0]"),
        "6:22: network_policies.gh.endpoints[0].ports[1]: a port must be between 1 and 65535",
    ),
    (
        "port-and-ports",
        GOOD_RULE.replace("port: 443", "port: 443\n        ports: [80]"),
        "7:9: network_policies.gh.endpoints[0].ports: use either 'port' or 'ports'",
    ),
    (
        "no-port",
        GOOD_RULE.replace("        port: 443\n", ""),
        "5:9: network_policies.gh.endpoints[0]: endpoint needs 'port' or 'ports'",
    ),
    (
        "host-mid-wildcard",
        GOOD_RULE.replace("api.github.com", "api.*-x.com"),
        "5:15: network_policies.gh.endpoints[0].host: a wildcard after the first label must be the whole label",
    ),
    (
        "host-bare-star",
        GOOD_RULE.replace("host: api.github.com", 'host: "*"'),
        "5:15: network_policies.gh.endpoints[0].host: a host wildcard must keep at least one fixed label",
    ),
    (
        "host-bad-char",
        GOOD_RULE.replace("api.github.com", "api.git hub.com"),
        "5:15: network_policies.gh.endpoints[0].host: label 'git hub' is not a valid host name label",
    ),
    (
        "protocol",
        GOOD_RULE.replace("port: 443", "port: 443\n        protocol: http"),
        "7:19: network_policies.gh.endpoints[0].protocol: expected one of rest, websocket",
    ),
    (
        "enforcement",
        GOOD_RULE.replace("port: 443", "port: 443\n        protocol: rest\n        enforcement: warn"),
        "8:22: network_policies.gh.endpoints[0].enforcement: expected one of enforce, audit, got 'warn'",
    ),
    (
        "access",
        GOOD_RULE.replace("port: 443", "port: 443\n        protocol: rest\n        access: readonly"),
        "8:17: network_policies.gh.endpoints[0].access: expected one of read-only, read-write, full, got 'readonly'"
        " (did you mean 'read-only'?)",
    ),
    (
        "access-and-rules",
        GOOD_RULE.replace("port: 443", "port: 443\n        access: full\n        rules: [{allow: {method: GET}}]"),
        "7:9: network_policies.gh.endpoints[0].access: use either 'access' or 'rules'",
    ),
    (
        "rules-on-tcp",
        GOOD_RULE.replace("port: 443", "port: 443\n        protocol: tcp\n        access: full"),
        "7:19: network_policies.gh.endpoints[0].protocol: protocol tcp carries no HTTP requests",
    ),
    (
        "rule-without-allow",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{method: GET}]"),
        "7:18: network_policies.gh.endpoints[0].rules[0].method: unknown key 'method'",
    ),
    (
        "rule-bad-method",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{allow: {method: 'GET /'}}]"),
        "7:34: network_policies.gh.endpoints[0].rules[0].allow.method: 'GET /' is not an HTTP method",
    ),
    (
        "rule-relative-path",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{allow: {path: repos}}]"),
        "7:32: network_policies.gh.endpoints[0].rules[0].allow.path: a path glob must start with '/'",
    ),
    (
        "rule-brace-glob",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{allow: {path: '/{a,b}'}}]"),
        "7:32: network_policies.gh.endpoints[0].rules[0].allow.path: a path glob supports only *, ** and ?",
    ),
    (
        "query-empty-any",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{allow: {query: {q: {any: []}}}}]"),
        "7:43: network_policies.gh.endpoints[0].rules[0].allow.query.q.any: 'any' needs at least one glob",
    ),
    (
        "body-selector-on-rest",
        GOOD_RULE.replace("port: 443", "port: 443\n        rules: [{allow: {operation_type: query}}]"),
        "7:26: network_policies.gh.endpoints[0].rules[0].allow.operation_type: 'operation_type' is a body selector",
    ),
    (
        "deny-with-allow",
        GOOD_RULE.replace("port: 443", "port: 443\n        deny_rules: [{allow: {method: GET}}]"),
        "7:23: network_policies.gh.endpoints[0].deny_rules[0].allow: deny_rules entries carry method/path/query",
    ),
    (
        "allowed-ips-bad",
        GOOD_RULE.replace("port: 443", "port: 443\n        allowed_ips: [10.0.0.0/33]"),
        "7:23: network_policies.gh.endpoints[0].allowed_ips[0]: '10.0.0.0/33' is not an IP address or CIDR range",
    ),
    (
        "allowed-ips-everything",
        GOOD_RULE.replace("port: 443", "port: 443\n        allowed_ips: [0.0.0.0/0]"),
        "7:23: network_policies.gh.endpoints[0].allowed_ips[0]: 0.0.0.0/0 is or starts at the unspecified address",
    ),
    (
        "tls",
        GOOD_RULE.replace("port: 443", "port: 443\n        tls: mitm"),
        "7:14: network_policies.gh.endpoints[0].tls: expected one of skip, terminate, passthrough",
    ),
    (
        "binary-relative",
        GOOD_RULE.replace("path: /usr/bin/curl", "path: curl"),
        "8:15: network_policies.gh.binaries[0].path: an absolute executable path or glob must start with '/'",
    ),
    (
        "binary-dotdot",
        GOOD_RULE.replace("path: /usr/bin/curl", "path: /usr/../bin/sh"),
        "8:15: network_policies.gh.binaries[0].path: an absolute executable path or glob must not contain '..'",
    ),
    (
        "binary-string",
        GOOD_RULE.replace("- path: /usr/bin/curl", "- /usr/bin/curl"),
        "8:9: network_policies.gh.binaries[0]: expected a mapping ({path: /usr/bin/tool}), got string",
    ),
    (
        "rule-not-mapping",
        "version: 1\nnetwork_policies:\n  gh: [1]\n",
        "3:7: network_policies.gh: expected a mapping, got a list",
    ),
    (
        "bad-policy-name",
        GOOD_RULE.replace("  gh:", "  'has space':"),
        "3:3: network_policies.has space: name 'has space' must be 1-128 characters",
    ),
    (
        "inference-key",
        GOOD_RULE + "inference:\n  provider: x\n",
        "9:1: inference: the 'inference' key was removed upstream",
    ),
    (
        "fs-relative",
        "version: 1\nfilesystem_policy:\n  read_only: [usr]\n",
        "3:15: filesystem_policy.read_only[0]: path must be absolute",
    ),
    (
        "fs-dotdot",
        "version: 1\nfilesystem_policy:\n  read_only: [/usr/../etc]\n",
        "3:15: filesystem_policy.read_only[0]: path must not contain '..'",
    ),
    (
        "fs-root-rw",
        "version: 1\nfilesystem_policy:\n  read_write: [/]\n",
        "3:16: filesystem_policy.read_write[0]: '/' may not be read-write",
    ),
    (
        "fs-too-long",
        "version: 1\nfilesystem_policy:\n  read_only: [/" + "a" * 4096 + "]\n",
        "3:15: filesystem_policy.read_only[0]: path is longer than 4096 characters",
    ),
    (
        "fs-too-many",
        "version: 1\nfilesystem_policy:\n  read_only: [" + ", ".join(f"/p{i}" for i in range(257)) + "]\n",
        "2:1: filesystem_policy: at most 256 filesystem paths are allowed, got 257",
    ),
    (
        "fs-unknown",
        "version: 1\nfilesystem_policy:\n  readonly: []\n",
        "3:3: filesystem_policy.readonly: unknown key 'readonly' (did you mean 'read_only'?)",
    ),
    (
        "landlock",
        "version: 1\nlandlock:\n  compatibility: strict\n",
        "3:18: landlock.compatibility: expected one of best_effort, hard_requirement, got 'strict'",
    ),
    (
        "run-as-root",
        "version: 1\nprocess:\n  run_as_user: root\n",
        "3:16: process.run_as_user: running as root is not allowed",
    ),
    (
        "run-as-zero",
        "version: 1\nprocess:\n  run_as_group: 0\n",
        "3:17: process.run_as_group: running as root (id 0) is not allowed",
    ),
    (
        "run-as-zero-string",
        "version: 1\nprocess:\n  run_as_user: '0'\n",
        "3:16: process.run_as_user: running as root is not allowed",
    ),
    (
        "middleware-too-many",
        "version: 1\nnetwork_middlewares:\n" + "".join(f"  m{i}: {{middleware: x}}\n" for i in range(11)),
        "2:1: network_middlewares: at most 10 network_middlewares are allowed, got 11",
    ),
    (
        "middleware-missing-type",
        "version: 1\nnetwork_middlewares:\n  m: {order: 1}\n",
        "3:6: network_middlewares.m: missing required key 'middleware'",
    ),
    (
        "middleware-on-error",
        "version: 1\nnetwork_middlewares:\n  m: {middleware: x, on_error: ignore}\n",
        "3:32: network_middlewares.m.on_error: expected one of fail_closed, fail_open",
    ),
    ("top-not-mapping", "- 1\n", "1:1: expected a policy mapping at the top level, got a list"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schema_problem(text, expected):
    found = problems(text)
    assert any(p.startswith(f"policy.yaml:{expected}") for p in found), found


def test_yaml_and_schema_problems_are_reported_together():
    text = GOOD_RULE.replace("port: 443", "port: 443\n        port: 0\n        protocol: http")
    found = problems(text)
    assert [p.split(": ")[1] for p in found] == [
        "network_policies.gh.endpoints[0].port",
        "network_policies.gh.endpoints[0].protocol",
    ]
    assert "duplicate key 'port'" in found[0] and "expected one of rest" in found[1]


def test_every_problem_is_reported_not_just_the_first():
    text = GOOD_RULE.replace("port: 443", "port: 0\n        protocol: http").replace("version: 1", "version: 3")
    found = problems(text)
    assert len(found) == 3
    assert [p.split(":")[1] for p in found] == ["1", "6", "7"]  # sorted by line


def test_warnings_are_positioned_and_do_not_fail():
    text = """\
version: 1
network_policies:
  a:
    endpoints:
      - {host: a.test, port: 443, tls: terminate, rules: [{allow: {method: GET}}]}
"""
    policy = load_text(text, "policy.yaml")
    messages = [str(w) for w in policy.warnings]
    assert any(m.startswith("policy.yaml:5:40: warning: network_policies.a.endpoints[0].tls:") for m in messages)
    assert any("matches no process" in m for m in messages)
    assert any("inspects this endpoint as protocol: rest" in m for m in messages)


def test_preset_rules():
    good = "preset: {name: x, description: d}\nnetwork_policies: {}\n"
    assert load_preset_text(good).info.name == "x"
    msg = only("preset: {name: x}\nversion: 1\n", load_preset_text)
    assert msg.startswith("policy.yaml:2:1: version: a preset may only carry preset, network_policies")
    assert "needs a 'preset: {name, description}' block" in only("network_policies: {}\n", load_preset_text)


def test_load_data_without_positions():
    with pytest.raises(PolicyError) as info:
        load_data({"version": 1, "network_policies": {"a": {"endpoints": [{"host": "x.test", "port": True}]}}})
    assert str(info.value) == (
        "<data>: network_policies.a.endpoints[0].port: expected a port (an integer 1..65535), got boolean true"
    )
    policy = load_data({"version": 1, "network_policies": {}})
    assert policy.network_policies == {}


def test_missing_file_and_binary_garbage(tmp_path):
    with pytest.raises(PolicyError, match=r"cannot read file"):
        load_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(PolicyError, match=r"not valid UTF-8"):
        load_file(bad)


# -- size caps (issue 16): what aliases expand to is capped, not the nodes a file holds -----------------------------


def _rules(n: int) -> str:
    """A policy of ``n`` ordinary rules, no alias: about 18 nodes a rule, as the scaling bench's."""
    out = ["version: 1", "network_policies:"]
    for i in range(n):
        out += [f"  r{i}:", "    endpoints:", f"      - {{host: h{i}.example.com, port: 443, protocol: rest,",
                "         rules: [{allow: {method: GET, path: /v1/**}}]}", "    binaries:",
                "      - path: /usr/bin/curl", "      - path: /usr/bin/python3"]  # fmt: skip
    return "\n".join(out) + "\n"


def test_a_policy_with_more_nodes_than_the_alias_cap_loads(monkeypatch):
    """The allowed twin of the bombs below: the 10,000-rule policy of the scaling bench (about 180,000 nodes, no
    alias) was refused by a flat 100,000-node cap. Here the expansion cap is lowered to 1,000 so that a 120-rule
    file (about 2,000 nodes) stands for it without a 45 s load."""
    from clawfleet.policy import yamlio

    monkeypatch.setattr(yamlio, "MAX_EXPANDED_NODES", 1_000)
    policy = load_text(_rules(120), "policy.yaml")
    assert len(policy.network_policies) == 120


def test_aliases_expanding_past_the_cap_are_refused_at_their_line(monkeypatch):
    """The attack twin, same lowered cap: 3 aliases of a 400-item list expand to 1,200 nodes (3 expansions, far
    under the 100 allowed)."""
    from clawfleet.policy import yamlio

    monkeypatch.setattr(yamlio, "MAX_EXPANDED_NODES", 1_000)
    items = ", ".join(f"/b{i}" for i in range(400))
    text = f"version: 1\nx: &big [{items}]\ny: [*big, *big, *big]\n"
    # the position is the anchored node's (the composer resolves an alias to that node), the path the alias's
    assert only(text).startswith("policy.yaml:2:") and ": y[2][" in only(text), only(text)
    assert "aliases expand to more than 1000 nodes" in only(text)


def test_a_wide_alias_bomb_is_refused_at_full_scale():
    """Under 100 alias expansions, but each names a 2,000-node list: 198,000 nodes from a 2-line file."""
    items = ", ".join(["x"] * 2000)
    text = f"a: &a [{items}]\nb: [" + ", ".join(["*a"] * 99) + "]\n"
    msg = only(text)
    assert msg.startswith("policy.yaml:1:") and ": b[" in msg and "aliases expand to more than 100000 nodes" in msg, msg


def test_an_oversized_file_is_refused_before_parsing():
    text = GOOD_RULE + "# " + "x" * (4 * 1024 * 1024) + "\n"
    assert only(text) == "policy.yaml:1:1: file is larger than 4194304 bytes"
