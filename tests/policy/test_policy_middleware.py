"""``network_middlewares`` with the ``openshell/regex`` built-in: what loads, what is refused (with FILE:LINE:COL),
which hosts a stage selects, and what a stage does to a body."""

from __future__ import annotations

import jsonschema
import pytest

from clawfleet.policy import PolicyError, compile_policy, digest, load_text, normalize
from clawfleet.policy.json_schema import JSON_SCHEMA
from clawfleet.policy.middleware import MAX_PAYLOAD_BYTES, RegexHook
from clawfleet.policy.yamlio import dump_yaml, load_document

TOKEN = "sk-ABCDEFGHIJKLMNOPQRST"


def policy(middlewares: str) -> str:
    return "version: 1\nnetwork_middlewares:\n" + middlewares


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_text(text, "policy.yaml")
    return [str(p) for p in info.value.problems]


def hook(config: str = "{}", **fields: str) -> RegexHook:
    extra = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    text = policy(f"  m:\n    middleware: openshell/regex\n    config: {config}\n{extra}"
                  "    endpoints: {include: [api.example.com]}\n")  # fmt: skip
    return compile_policy(load_text(text)).middlewares("api.example.com")[0]


# -- loading ---------------------------------------------------------------------------------------------------


def test_upstream_documented_example_loads():
    # docs/extensibility/supervisor-middleware.mdx, "Apply Middleware with Policy" (NVIDIA/OpenShell)
    text = policy("""\
  regex-redactor:
    name: Redact API tokens
    middleware: openshell/regex
    order: 10
    config:
      mode: redact
    on_error: fail_closed
    endpoints:
      include: ["*.example.com"]
      exclude: ["trusted.example.com"]
""")
    p = load_text(text)
    mw = p.network_middlewares["regex-redactor"]
    assert (mw.middleware, mw.order, mw.on_error, mw.supported) == ("openshell/regex", 10, "fail_closed", True)
    assert p.warnings == ()
    jsonschema.validate(load_document(text, "p.yaml").data, JSON_SCHEMA)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("content-guard-example", "operator-run middleware service, which clawfleet does not run"),
        ("openshell/nope", "is not a registered OpenShell built-in"),
    ],
)
def test_unknown_type_is_refused_naming_it(kind, says):
    (found,) = problems(policy(f"  m:\n    middleware: {kind}\n    endpoints: {{include: [x.com]}}\n"))
    assert found.startswith(f"policy.yaml:4:17: network_middlewares.m.middleware: unknown middleware type {kind!r}")
    assert says in found and "openshell/regex" in found


def test_known_type_twin_loads():
    p = load_text(policy("  m:\n    middleware: openshell/regex\n    endpoints: {include: [x.com]}\n"))
    assert p.network_middlewares["m"].supported


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{mode: zap}", "5:20: network_middlewares.m.config.mode: expected one of redact, detect, block, got 'zap'"),
        ("{direction: up}", "5:25: network_middlewares.m.config.direction: expected one of request, response, both"),
        ("{terms: [a]}", "5:21: network_middlewares.m.config.terms: unknown openshell/regex config key 'terms'"),
        ("{patterns: ['(a)\\1']}", "5:25: network_middlewares.m.config.patterns[0]: not a valid RE2 expression"),
        ("{patterns: ['(?<=a)b']}", "5:25: network_middlewares.m.config.patterns[0]: not a valid RE2 expression"),
        ("{patterns: ['a[']}", "5:25: network_middlewares.m.config.patterns[0]: not a valid RE2 expression"),
        ("{patterns: ['a*']}", "5:25: network_middlewares.m.config.patterns[0]: the expression matches the empty"),
        ("{patterns: [{name: k}]}", "5:25: network_middlewares.m.config.patterns[0]: missing required key 'regex'"),
        ("{patterns: [{regex: 'a', flags: i}]}", "network_middlewares.m.config.patterns[0].flags: unknown key"),
        ("{patterns: [{name: k, regex: 7}]}", "5:42: network_middlewares.m.config.patterns[0].regex: expected an"),
        ("{patterns: [a, {name: 'patterns[0]', regex: b}]}", "network_middlewares.m.config.patterns[1].regex: "
         "pattern name 'patterns[0]' is used twice"),
        ("{patterns: []}", "5:24: network_middlewares.m.config.patterns: expected at least one expression"),
        ("{patterns: x}", "5:24: network_middlewares.m.config.patterns: expected a list of expressions"),
        ("{mode: block, replacement: X}", "network_middlewares.m.config.replacement: replacement applies to mode:"
         " redact only"),
        ("[1]", "5:13: network_middlewares.m.config: expected a mapping"),
    ],
)  # fmt: skip
def test_bad_config_is_refused_at_its_position(config, expected):
    text = policy(f"  m:\n    middleware: openshell/regex\n    config: {config}\n    endpoints: {{include: [x.com]}}\n")
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all(p.startswith("policy.yaml:") for p in found)


def test_good_config_twin_loads():
    config = ("{mode: redact, direction: both, replacement: '<x>', patterns: ['(?i)secret-[0-9]+',"
              " {name: aws, regex: 'AKIA[0-9A-Z]{16}'}]}")  # fmt: skip
    text = policy(f"  m:\n    middleware: openshell/regex\n    config: {config}\n    endpoints: {{include: [x.com]}}\n")
    assert load_text(text).network_middlewares["m"].config["replacement"] == "<x>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    middleware: openshell/regex\n", "4:5: network_middlewares.m: missing required key 'endpoints'"),
        ("    middleware: openshell/regex\n    endpoints: {exclude: [x.com]}\n",
         "5:16: network_middlewares.m.endpoints: the host selector must include at least one host pattern"),
        ("    middleware: openshell/regex\n    endpoints: {include: [" + ", ".join(f"h{i}.com" for i in range(33))
         + "]}\n", "network_middlewares.m.endpoints: at most 32 include and exclude patterns in all"),
        ("    middleware: openshell/regex\n    endpoints: {include: ['a.**.com']}\n",
         "network_middlewares.m.endpoints.include[0]: a wildcard after the first label must be the whole label"),
    ],
)  # fmt: skip
def test_bad_selector_is_refused(body, expected):
    found = problems(policy("  m:\n" + body))
    assert any(expected in p for p in found), found


def test_duplicate_order_is_refused_unique_orders_load():
    two = "  a: {{middleware: openshell/regex, order: 5, endpoints: {{include: [x.com]}}}}\n" \
          "  b: {{middleware: openshell/regex, order: {}, endpoints: {{include: [y.com]}}}}\n"  # fmt: skip
    (found,) = problems(policy(two.format(5)))
    assert found.startswith("policy.yaml:4:43: network_middlewares.b.order: order 5 is also the order of")
    assert set(load_text(policy(two.format(6))).network_middlewares) == {"a", "b"}


# -- selection --------------------------------------------------------------------------------------------------


def test_stages_are_selected_by_host_and_run_by_order():
    text = policy("""\
  late: {middleware: openshell/regex, order: 20, endpoints: {include: ["**.example.com"]}}
  early: {middleware: openshell/regex, order: -1, endpoints: {include: ["*.example.com"], exclude: [ok.example.com]}}
  exact: {middleware: openshell/regex, order: 3, endpoints: {include: [EXAMPLE.com, "*-api.example.org"]}}
""")
    engine = compile_policy(load_text(text))
    keys = lambda host: [h.key for h in engine.middlewares(host)]  # noqa: E731
    assert keys("api.example.com") == ["early", "late"]
    assert keys("API.Example.COM.") == ["early", "late"]  # normalised like a request host
    assert keys("ok.example.com") == ["late"]  # exclude wins
    assert keys("a.b.example.com") == ["late"]  # * is one label, ** one or more
    assert keys("example.com") == ["exact"]  # neither * nor ** matches the bare suffix
    assert keys("eu-api.example.org") == ["exact"] and keys("eu-web.example.org") == []
    assert keys("other.net") == []


# -- what a stage does --------------------------------------------------------------------------------------------


def test_redact_default_is_upstreams_pattern_and_replacement():
    h = hook()
    result = h.apply(f'{{"password":"top-secret","token":"{TOKEN}"}}'.encode())
    assert result.body == b'{"password":"top-secret","token":"[REDACTED]"}'  # keyword values are not inferred
    assert result.matches == (("openai", 1),) and h.request and not h.response
    untouched = h.apply(b'{"token":"sk-short"}')
    assert untouched.body is None and untouched.matches == ()


def test_replacement_is_literal_not_a_group_reference():
    h = hook(r"{patterns: ['(sk-)([A-Z]{16,})'], replacement: '\1\2 \g<2>'}")
    assert h.apply(TOKEN.encode()).body == rb"\1\2 \g<2>"  # the secret is not copied back through a group


def test_detect_and_block_report_without_rewriting():
    for mode in ("detect", "block"):
        result = hook(f"{{mode: {mode}}}").apply(f"{TOKEN} {TOKEN}".encode())
        assert result.body is None and result.matches == (("openai", 2),)


def test_patterns_match_characters_not_bytes_and_case_flags_work():
    h = hook("{patterns: [{name: word, regex: 'caf.'}, '(?i)internal']}")
    result = h.apply("café INTERNAL".encode())
    assert result.body == b"[REDACTED] [REDACTED]"  # '.' took the whole two-byte character
    assert result.matches == (("word", 1), ("patterns[1]", 1))


def test_body_that_is_not_utf8_is_a_failure_not_a_pass():
    result = hook().apply(b"\xff" + TOKEN.encode())
    assert result.error is not None and "UTF-8" in result.error and result.body is None
    assert hook().apply(TOKEN.encode()).error is None  # the UTF-8 twin


def test_pathological_input_is_matched_without_backtracking():
    # (a+)+$ on "aaaa...b" is exponential for a backtracking engine; RE2 answers in one pass. The body is the
    # largest one a stage inspects, so this is the worst case the gateway can meet.
    h = hook("{mode: detect, patterns: ['(a+)+$']}")
    body = b"a" * (MAX_PAYLOAD_BYTES - 1) + b"b"
    assert h.apply(body).matches == ()
    assert h.apply(b"a" * MAX_PAYLOAD_BYTES).matches == (("patterns[0]", 1),)


def test_direction_selects_request_response_or_both():
    assert (hook("{direction: response}").request, hook("{direction: response}").response) == (False, True)
    assert (hook("{direction: both}").request, hook("{direction: both}").response) == (True, True)


def test_default_config_values_do_not_change_the_digest():
    def one(config: str) -> str:
        return digest(load_text(policy(f"  m:\n    middleware: openshell/regex\n    config: {config}\n"
                                       "    endpoints: {include: [x.com]}\n")))  # fmt: skip

    same = one("{}")
    assert one("{mode: redact, direction: request, replacement: '[REDACTED]'}") == same
    assert one("{mode: detect}") != same and one("{direction: both}") != same and one("{replacement: '*'}") != same


@pytest.mark.parametrize(
    ("endpoint", "selector"),
    [
        ("db.example.com", "[db.example.com]"),
        ("db.example.com", '["*.example.com"]'),
        ("'*.example.com'", "[db.example.com]"),
        ("'**.example.com'", '["*.api.example.com"]'),
    ],
)
def test_fail_closed_selector_over_a_tls_skip_endpoint_is_refused(endpoint, selector):
    text = f"""\
version: 1
network_policies:
  raw:
    endpoints: [{{host: {endpoint}, port: 5432, tls: skip}}]
    binaries: [{{path: /usr/bin/psql}}]
network_middlewares:
  m:
    middleware: openshell/regex
    endpoints: {{include: {selector}}}
"""
    (found,) = problems(text)
    assert found.startswith("policy.yaml:8:5: network_middlewares.m: fail_closed middleware 'm' may select")
    assert "tls: skip endpoint of 'raw'" in found
    # the twins: fail_open, or a selector that excludes the host, load
    assert load_text(text.replace("    endpoints: {include", "    on_error: fail_open\n    endpoints: {include"))
    other = load_text(text.replace(f"include: {selector}", "include: [web.example.org]"))
    assert other.network_middlewares["m"].include == ("web.example.org",)


def test_middleware_round_trips_through_canonical_yaml():
    text = policy("""\
  guard:
    name: Guard
    middleware: openshell/regex
    order: 3
    on_error: fail_open
    config:
      mode: block
      direction: both
      patterns: ["ghp_[A-Za-z0-9]{36}", {name: aws, regex: "AKIA[0-9A-Z]{16}"}]
    endpoints: {include: ["*.Example.com", api.example.org], exclude: [ok.example.com]}
""")
    p = load_text(text)
    again = load_text(dump_yaml(normalize(p)), "again.yaml")
    assert normalize(again) == normalize(p) and digest(again) == digest(p)
    assert normalize(p)["network_middlewares"]["guard"]["endpoints"]["include"] == ["*.example.com", "api.example.org"]
