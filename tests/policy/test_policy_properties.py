"""Property tests (hypothesis): canonical form, digest, merge identity, loader robustness, engine == oracle."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawfleet.policy import (
    Policy,
    PolicyError,
    compile_policy,
    digest,
    load_any_text,
    load_data,
    load_text,
    merge,
    normalize,
)
from clawfleet.policy.reference import reference_decide
from clawfleet.policy.yamlio import dump_yaml

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOST_PATTERNS = [
    "a.example.com",
    "api.example.com",
    "*.example.com",
    "**.test",
    "*-1.example.com",
    "a.test",
    "10.0.0.1",
    "8.8.8.8",
]
BINARIES = ["/usr/bin/curl", "/usr/bin/git", "/opt/t/**", "/usr/bin/py*", "/home/*/bin/x"]
PATH_GLOBS = ["/**", "/a/*", "/a/**", "/v1/**", "/admin/**", "/**/x", "/a"]
METHODS = ["GET", "POST", "DELETE", "PUT", "*"]

selector = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(METHODS),
        "path": st.sampled_from(PATH_GLOBS),
        "query": st.dictionaries(
            st.sampled_from(["q", "r"]),
            st.one_of(
                st.sampled_from(["1", "a/*", "*"]),
                st.fixed_dictionaries({"any": st.lists(st.sampled_from(["1", "2", "a/*"]), min_size=1, max_size=2)}),
            ),
            max_size=2,
        ),
    },
)

# allow rules mostly name a method, so the method check is not masked by catch-all rules
allow_selector = (
    st.builds(
        lambda method, rest: {"method": method, **rest}, st.sampled_from(["GET", "POST", "DELETE", "PUT"]), selector
    )
    | selector
)


@st.composite
def endpoints(draw):
    ep: dict = {"host": draw(st.sampled_from(HOST_PATTERNS))}
    ports = draw(st.lists(st.sampled_from([80, 443, 8443]), min_size=1, max_size=2, unique=True))
    if len(ports) == 1 and draw(st.booleans()):
        ep["port"] = ports[0]
    else:
        ep["ports"] = ports
    protocol = draw(st.sampled_from([None, "rest", "tcp"]))
    if protocol:
        ep["protocol"] = protocol
    if protocol != "tcp":
        kind = draw(st.sampled_from(["none", "access", "rules"]))
        if kind == "access":
            ep["access"] = draw(st.sampled_from(["read-only", "read-write", "full"]))
        elif kind == "rules":
            ep["rules"] = [{"allow": s} for s in draw(st.lists(allow_selector, min_size=1, max_size=3))]
        if draw(st.booleans()):
            ep["deny_rules"] = draw(st.lists(selector.filter(bool), min_size=1, max_size=2))
        if draw(st.booleans()):
            ep["path"] = draw(st.sampled_from(PATH_GLOBS))
        if draw(st.booleans()):
            ep["enforcement"] = draw(st.sampled_from(["enforce", "audit"]))
    if draw(st.booleans()):
        ep["allowed_ips"] = draw(st.lists(st.sampled_from(["10.0.0.0/8", "10.0.0.1", "8.8.8.0/24"]), max_size=2))
    return ep


@st.composite
def policies(draw):
    rules = {}
    for i in range(draw(st.integers(0, 5))):
        rule: dict = {"endpoints": draw(st.lists(endpoints(), min_size=1, max_size=3))}
        if draw(st.integers(0, 5)):
            rule["binaries"] = [
                {"path": p} for p in draw(st.lists(st.sampled_from(BINARIES), min_size=1, max_size=3, unique=True))
            ]
        if draw(st.booleans()):
            rule["name"] = f"rule-{i}"
        rules[f"r{i}"] = rule
    data: dict = {"version": 1, "network_policies": rules}
    if draw(st.booleans()):
        data["filesystem_policy"] = {
            "include_workdir": draw(st.booleans()),
            "read_only": draw(st.lists(st.sampled_from(["/usr", "/etc", "/lib"]), max_size=3)),
            "read_write": draw(st.lists(st.sampled_from(["/tmp", "/sandbox"]), max_size=2)),
        }
    if draw(st.booleans()):
        data["landlock"] = {"compatibility": draw(st.sampled_from(["best_effort", "hard_requirement"]))}
    if draw(st.booleans()):
        data["process"] = {"run_as_user": draw(st.sampled_from(["sandbox", 1000, "agent"]))}
    return data


def shuffled(value, rnd: random.Random):
    """Same meaning, different text: reorder every mapping and the order-insensitive lists."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        items = [shuffled(v, rnd) for v in value]
        if items and all(isinstance(v, dict) for v in items):  # endpoints, binaries, rules
            rnd.shuffle(items)
        return items
    return value


@SETTINGS
@given(policies())
def test_normalize_is_idempotent(data):
    policy = load_data(data)
    canonical = normalize(policy)
    again = load_text(dump_yaml(canonical), "canonical.yaml")
    assert normalize(again) == canonical
    assert normalize(load_data(canonical)) == canonical


@SETTINGS
@given(policies(), st.randoms(use_true_random=False))
def test_digest_is_stable_under_reordering_and_formatting(data, rnd):
    reference = digest(load_data(data))
    block = dump_yaml(shuffled(data, rnd))
    flow = json.dumps(shuffled(data, rnd))  # JSON is YAML in flow style
    assert digest(load_text(block, "block.yaml")) == reference
    assert digest(load_text(flow, "flow.yaml")) == reference


@SETTINGS
@given(policies())
def test_merge_with_no_presets_is_identity(data):
    base = load_data(data)
    merged, report = merge(base, [])
    assert merged == base
    assert normalize(merged) == normalize(base)
    assert report.entries == ()


@SETTINGS
@given(st.one_of(st.text(max_size=300), st.binary(max_size=200)))
def test_loader_never_crashes_on_text(text):
    try:
        result = load_any_text(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file == "fuzz.yaml" and p.line is not None and p.line >= 1 and p.message
    else:
        assert result is not None


KEYS = [
    "version",
    "network_policies",
    "endpoints",
    "binaries",
    "host",
    "port",
    "ports",
    "rules",
    "allow",
    "deny_rules",
    "method",
    "path",
    "query",
    "any",
    "access",
    "protocol",
    "filesystem_policy",
    "read_only",
    "process",
    "run_as_user",
    "landlock",
    "network_middlewares",
    "middleware",
    "preset",
    "name",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True),
    st.sampled_from(["", "on", "/usr/bin/*", "*.x.com", "GET", "rest", "read-only", "a b", "0"]),
    st.text(max_size=8),
)
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(KEYS), kids, max_size=5)),
    max_leaves=30,
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=6))
def test_loader_never_crashes_on_structured_garbage(data):
    for attempt in (
        lambda: load_data(data, kind="any"),
        lambda: load_any_text(json.dumps(data, allow_nan=True), "fuzz.json"),
    ):
        try:
            attempt()
        except PolicyError as exc:
            assert exc.problems and all(p.message for p in exc.problems)


REQ_BINARIES = ["/usr/bin/curl", "/usr/bin/git", "/opt/t/a/b", "/usr/bin/python3", "/home/u/bin/x", "/usr/bin/wget"]
REQ_HOSTS = [
    "a.example.com",
    "b.a.example.com",
    "x-1.example.com",
    "example.com",
    "a.test",
    "a.b.test",
    "test",
    "api.example.com",
    "10.0.0.1",
    "8.8.8.8",
    "A.Example.COM.",
]
requests = st.tuples(
    st.sampled_from(REQ_BINARIES),
    st.lists(st.sampled_from(REQ_BINARIES), max_size=2),
    st.sampled_from(REQ_HOSTS),
    st.sampled_from([80, 443, 8443, 22]),
    st.sampled_from([None, "GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "BREW"]),
    st.sampled_from([None, "/", "/a", "/a/b", "/v1/x", "/admin/x", "/x/y/x", "/a/../b", "/a?q=1", "/a?q=a/b&q=1"]),
    st.sampled_from([None, "q=1", "q=a/b", "r=2&q=2"]),
    st.sampled_from([None, "10.1.1.1", "8.8.8.8", "127.0.0.1"]),
)


def concrete(pattern: str, rnd: random.Random) -> str:
    """An instance of a host/path/binary glob (or something near it)."""
    out = pattern.replace("**", rnd.choice(["a/b", "a", "x"]) if "/" in pattern else rnd.choice(["a.b", "c"]))
    return out.replace("*", rnd.choice(["", "a", "bc"]))


@st.composite
def targeted_requests(draw, data):
    """Requests aimed at what the policy lists, so most of them reach binary and L7 matching."""
    rnd = draw(st.randoms(use_true_random=False))
    rules = list(data["network_policies"].values())
    if not rules or draw(st.integers(0, 4)) == 0:
        return draw(requests)
    rule = rnd.choice(rules)
    ep = rnd.choice(rule["endpoints"])
    host = concrete(ep["host"], rnd).strip(".") or "x.test"
    port = ep.get("port") or rnd.choice(ep["ports"])
    bins = [b["path"] for b in rule.get("binaries", [])] or ["/usr/bin/curl"]
    binary = concrete(rnd.choice(bins), rnd)
    ancestors = []
    if draw(st.booleans()):
        ancestors, binary = [binary], "/usr/bin/helper"
    sels = [r["allow"] for r in ep.get("rules", [])] + ep.get("deny_rules", [])
    sel = rnd.choice(sels) if sels else {}
    method = draw(st.sampled_from([None, sel.get("method", "GET").replace("*", "PATCH"), "GET", "POST", "DELETE"]))
    path = concrete(sel.get("path") or ep.get("path") or "/a", rnd)
    query = None
    if sel.get("query") and draw(st.booleans()):
        query = {k: concrete(v if isinstance(v, str) else v["any"][0], rnd) for k, v in sel["query"].items()}
    ip = draw(st.sampled_from([None, None, "10.0.0.1", "8.8.8.8", "127.0.0.1"]))
    return (binary, ancestors, host, port, method, path, query, ip)


@SETTINGS
@given(st.data())
def test_compiled_engine_agrees_with_linear_reference(draw):
    data = draw.draw(policies())
    reqs = draw.draw(st.lists(targeted_requests(data), min_size=1, max_size=15))
    policy = load_data(data)
    assert isinstance(policy, Policy)
    engine = compile_policy(policy)
    for binary, ancestors, host, port, method, path, query, ip in reqs:
        got = engine.decide(binary, ancestors, host, port, method, path, query, ip)
        want = reference_decide(policy, binary, ancestors, host, port, method, path, query, ip)
        assert (got.decision, got.policy_key) == (want.decision, want.policy_key), (got, want)


WORDY = st.one_of(
    st.sampled_from(
        [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "~",
            "null",
            "",
            "0443",
            "089",
            "1_000",
            "1:30",
            "1e3",
            ".inf",
            "0x1F",
            "2026-01-01",
            "-",
            "*.x.com",
            "/usr/bin/*",
            "a: b",
            "#x",
            "@x",
            "'q'",
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn")), max_size=12),
)


@SETTINGS
@given(st.dictionaries(WORDY, st.one_of(WORDY, st.lists(WORDY, max_size=3)), max_size=6))
def test_dumped_yaml_reads_the_same_in_yaml_1_1_and_1_2(data):
    import yaml as pyyaml  # PyYAML: a YAML 1.1 reader, as Ansible uses
    from ruamel.yaml import YAML

    text = dump_yaml(data)
    assert YAML(typ="safe", pure=True).load(text) == data
    assert pyyaml.safe_load(text) == data
