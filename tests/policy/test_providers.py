"""Providers v2 in the policy layer: ``credential_binding`` on endpoints, provider profiles, and the check where a
policy meets the providers configured for its sandbox. Every refusal is tested with its message and position,
beside an accepted twin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawfleet.policy import (
    PolicyError,
    check_bindings,
    compose,
    credential_scopes,
    diff,
    digest,
    load_data,
    load_preset_text,
    load_profile_data,
    load_profile_text,
    load_text,
    merge,
    normalize,
    normalize_profile,
    profile_digest,
    require_bindings,
)

# Upstream's example (docs/sandboxes/providers-v2.mdx, "Use an explicit sandbox policy binding").
BOUND = """\
version: 1
network_policies:
  gcp_storage:
    endpoints:
      - host: storage.googleapis.com
        port: 443
        protocol: rest
        access: full
        credential_binding:
          provider: work-gcp
    binaries:
      - path: /usr/bin/curl
"""

ENDPOINTLESS = """\
id: gcp-token
display_name: GCP token
category: data
credentials:
  - name: token
    env_vars: [GCP_TOKEN]
    required: true
    auth_style: bearer
"""

# Upstream's built-in github profile, unchanged (tests/data/openshell-providers/github.yaml; its "**" rule paths
# and read-only GraphQL endpoint: tests/policy/test_upstream_provider_profiles.py).
GITHUB = (Path(__file__).resolve().parents[1] / "data" / "openshell-providers" / "github.yaml").read_text()


def problems(text: str, loader=load_text) -> list[str]:
    with pytest.raises(PolicyError) as info:
        loader(text, "p.yaml")
    return [str(p) for p in info.value.problems]


def only(text: str, loader=load_text) -> str:
    found = problems(text, loader)
    assert len(found) == 1, found
    return found[0]


# -- credential_binding in a policy ----------------------------------------------------------------------
def test_a_policy_that_binds_a_provider_validates_on_its_own():
    policy = load_text(BOUND, "p.yaml")
    binding = policy.network_policies["gcp_storage"].endpoints[0].credential_binding
    assert binding is not None and binding.provider == "work-gcp"
    assert (binding.source, binding.line, binding.col) == ("p.yaml", 10, 11)
    ep = normalize(policy)["network_policies"]["gcp_storage"]["endpoints"][0]
    assert ep["credential_binding"] == {"provider": "work-gcp"}


def test_the_binding_is_part_of_the_digest_and_the_diff():
    bound = load_text(BOUND, "p.yaml")
    unbound = load_text(BOUND.replace("        credential_binding:\n          provider: work-gcp\n", ""), "p.yaml")
    other = load_text(BOUND.replace("work-gcp", "home-gcp"), "p.yaml")
    assert len({digest(bound), digest(unbound), digest(other)}) == 3
    change = diff(bound, other)
    assert change.changed and not change.needs_restart
    assert "home-gcp" in change.render() and "work-gcp" in change.render()


def test_the_binding_digest_ignores_where_it_was_written():
    flow = BOUND.replace("        credential_binding:\n          provider: work-gcp\n",
                         "        credential_binding: {provider: work-gcp}\n")  # fmt: skip
    a, b = load_text(flow, "a.yaml"), load_text(BOUND, "b.yaml")
    assert digest(a) == digest(b)
    assert a.network_policies == b.network_policies  # the position is kept, not compared


def test_a_preset_carries_a_binding_through_a_merge():
    preset = load_preset_text(
        "preset: {name: gcp}\n" + BOUND.split("version: 1\n", 1)[1].replace("work-gcp", "home-gcp"), "gcp.yaml"
    )
    merged, report = merge(load_text(BOUND, "p.yaml"), [preset])
    ep = merged.network_policies["gcp_storage"].endpoints[0]
    assert ep.credential_binding is not None and ep.credential_binding.provider == "home-gcp"
    assert [e.action for e in report.entries] == ["overridden"]


def test_a_binding_handed_over_as_data_has_no_position():
    data = {"version": 1, "network_policies": {"s": {"endpoints": [
        {"host": "x.example", "port": 443, "protocol": "rest", "access": "full",
         "credential_binding": {"provider": "p1"}}], "binaries": [{"path": "/usr/bin/curl"}]}}}  # fmt: skip
    policy = load_data(data)
    b = policy.network_policies["s"].endpoints[0].credential_binding
    assert b is not None and (b.provider, b.line) == ("p1", None)
    data["network_policies"]["s"]["endpoints"][0]["credential_binding"] = {"provider": ""}
    with pytest.raises(PolicyError) as info:
        load_data(data)
    assert str(info.value) == (
        "<data>: network_policies.s.endpoints[0].credential_binding.provider: expected a provider instance name,"
        " got an empty string"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "        credential_binding:\n          provider: work-gcp\n",
            "        credential_binding: work-gcp\n",
            "p.yaml:9:29: network_policies.gcp_storage.endpoints[0].credential_binding: expected a mapping"
            " ({provider: NAME}), got string 'work-gcp'",
        ),
        (
            "          provider: work-gcp\n",
            "          name: work-gcp\n",
            "p.yaml:10:11: network_policies.gcp_storage.endpoints[0].credential_binding.name: unknown key 'name';"
            " expected one of: provider\n"
            "p.yaml:10:11: network_policies.gcp_storage.endpoints[0].credential_binding: missing required key"
            " 'provider'",
        ),
        (
            "          provider: work-gcp\n",
            "          provider: work gcp\n",
            "p.yaml:10:21: network_policies.gcp_storage.endpoints[0].credential_binding.provider: provider name"
            " 'work gcp' must be 1-128 letters, digits and . _ -, starting and ending with a letter or digit",
        ),
        (
            "          provider: work-gcp\n",
            "          provider: yes\n",
            "p.yaml:10:21: network_policies.gcp_storage.endpoints[0].credential_binding.provider: unquoted 'yes' is a"
            ' boolean or number in YAML 1.1 (Ansible, PyYAML read it so); quote it ("yes") if a string is meant',
        ),
        (
            "        protocol: rest\n        access: full\n",
            "",
            "p.yaml:7:9: network_policies.gcp_storage.endpoints[0].credential_binding: a credential can only be bound"
            " to an endpoint whose requests the gateway parses; this is an L4 endpoint (no protocol): set protocol:"
            " rest (or another HTTP protocol) with access or rules",
        ),
        (
            "        protocol: rest\n        access: full\n",
            "        protocol: tcp\n",
            "p.yaml:8:9: network_policies.gcp_storage.endpoints[0].credential_binding: a credential can only be bound"
            " to an endpoint whose requests the gateway parses; this is protocol tcp: set protocol: rest (or another"
            " HTTP protocol) with access or rules",
        ),
        (
            "        access: full\n",
            "        access: full\n        tls: skip\n",
            "p.yaml:10:9: network_policies.gcp_storage.endpoints[0].credential_binding: a credential cannot be bound"
            " to a tls: skip endpoint: its requests are never seen (set allow_uninspected_credentials: true to record"
            " the exception, as upstream)",
        ),
        (
            "  gcp_storage:\n",
            "  _provider_gcp:\n",
            "p.yaml:3:3: network_policies._provider_gcp: _provider_* names are reserved for the rules derived from"
            " provider profiles (as upstream): rename the rule",
        ),
    ],
    ids=["not-a-mapping", "unknown-key", "bad-name", "yaml11-name", "l4", "tcp", "tls-skip", "reserved-key"],
)
def test_binding_refusals_are_positioned(old, new, message):
    assert old in BOUND
    assert "\n".join(problems(BOUND.replace(old, new))) == message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("          provider: work-gcp\n", "          provider: Work.GCP_2\n"),
        ("        protocol: rest\n        access: full\n", "        access: full\n"),  # inspected as rest
        ("        protocol: rest\n", "        protocol: graphql\n        rules: [{allow: {operation_type: query}}]\n"),
        ("        access: full\n", "        access: full\n        tls: terminate\n"),
        ("  gcp_storage:\n", "  provider_gcp:\n"),
    ],
    ids=["name", "rest-by-rules", "graphql", "tls-terminate", "ordinary-key"],
)
def test_binding_accepted_twins(old, new):
    text = BOUND.replace(old, new)
    if "graphql" in new:
        text = text.replace("        access: full\n", "")
    load_text(text, "p.yaml")


UNINSPECTED = "        allow_uninspected_credentials: true\n"


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("        access: full\n", "        access: full\n        tls: skip\n", 11),
        ("        protocol: rest\n        access: full\n", "", 8),
    ],
    ids=["tls-skip", "l4"],
)
def test_allow_uninspected_credentials_records_the_exception_for_a_binding(old, new, line):
    # the twins of the "tls-skip" and "l4" refusals above: the same endpoint, the exception recorded
    policy = load_text(BOUND.replace(old, new + UNINSPECTED), "p.yaml")
    (ep,) = policy.network_policies["gcp_storage"].endpoints
    assert ep.allow_uninspected_credentials and ep.credential_binding is not None
    assert [str(w) for w in policy.warnings] == [
        f"p.yaml:{line}:9: warning: network_policies.gcp_storage.endpoints[0].credential_binding:"
        " allow_uninspected_credentials:"
        " the credential is bound to an endpoint whose traffic the gateway may not parse (its L7 rules cannot apply;"
        " over tls: skip the placeholder is relayed as is, never the value)"
    ]


def test_allow_uninspected_credentials_is_part_of_the_digest_and_needs_a_boolean():
    plain = load_text(BOUND, "p.yaml")
    flagged = load_text(BOUND.replace("        access: full\n", "        access: full\n" + UNINSPECTED), "p.yaml")
    assert not flagged.warnings  # on an inspected endpoint it changes nothing, so nothing to warn about
    ep = normalize(flagged)["network_policies"]["gcp_storage"]["endpoints"][0]
    assert ep["allow_uninspected_credentials"] is True
    assert digest(flagged) != digest(plain)
    assert diff(plain, flagged).changed
    text = BOUND.replace("        access: full\n", "        access: full\n        allow_uninspected_credentials: 1\n")
    assert "allow_uninspected_credentials" in only(text)


def test_credential_signing_without_a_service_is_refused():
    option = "        credential_signing: sigv4\n"
    text = BOUND.replace("        access: full\n", "        access: full\n" + option)
    assert only(text) == (
        "p.yaml:9:9: network_policies.gcp_storage.endpoints[0].credential_signing:"
        " credential_signing needs signing_service (s3, bedrock, sts, ...)"
    )


REWRITE = "        request_body_credential_rewrite: true\n"


def test_request_body_credential_rewrite_loads_on_a_rest_endpoint():
    policy = load_text(BOUND.replace("        access: full\n", "        access: full\n" + REWRITE), "p.yaml")
    ep = policy.network_policies["gcp_storage"].endpoints[0]
    assert ep.request_body_credential_rewrite is True
    assert normalize(policy)["network_policies"]["gcp_storage"]["endpoints"][0]["request_body_credential_rewrite"]
    no = REWRITE.replace("true", "false")
    off = load_text(BOUND.replace("        access: full\n", "        access: full\n" + no))
    assert digest(off) == digest(load_text(BOUND)) != digest(policy)  # false is the default: dropped


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "        access: full\n",
            "        access: full\n" + REWRITE.replace("true", "yes"),
            "p.yaml:9:42: network_policies.gcp_storage.endpoints[0].request_body_credential_rewrite: expected true or"
            " false, got string 'yes' (YAML 1.1 words like yes/no/on/off are ambiguous: write true or false)",
        ),
        (
            "        access: full\n",
            "        access: full\n        tls: skip\n" + REWRITE,
            "p.yaml:10:9: network_policies.gcp_storage.endpoints[0].request_body_credential_rewrite: request body"
            " credential rewriting needs protocol: rest (not a body-judging, WebSocket or L4 endpoint, nor tls: skip)\n"
            "p.yaml:11:9: network_policies.gcp_storage.endpoints[0].credential_binding: a credential cannot be bound"
            " to a tls: skip endpoint: its requests are never seen (set allow_uninspected_credentials: true to record"
            " the exception, as upstream)",
        ),
        (
            "        protocol: rest\n        access: full\n",
            "        protocol: graphql\n        rules: [{allow: {operation_type: query}}]\n" + REWRITE,
            "p.yaml:9:9: network_policies.gcp_storage.endpoints[0].request_body_credential_rewrite: request body"
            " credential rewriting needs protocol: rest (not a body-judging, WebSocket or L4 endpoint, nor tls: skip)",
        ),
    ],
    ids=["not-a-boolean", "tls-skip", "graphql"],
)
def test_request_body_credential_rewrite_refusals(old, new, message):
    assert "\n".join(problems(BOUND.replace(old, new))) == message


# -- provider profiles -----------------------------------------------------------------------------------
def test_the_upstream_github_profile_loads():
    profile = load_profile_text(GITHUB, "github.yaml")
    assert profile.id == "github" and profile.category == "source_control"
    assert profile.env_vars == ("GITHUB_TOKEN", "GH_TOKEN")
    assert profile.credentials[0].auth_style == "bearer"
    assert [ep.host for ep in profile.endpoints] == ["api.github.com", "api.github.com", "github.com"]
    assert [b.path for b in profile.binaries][:2] == ["/usr/bin/gh", "/usr/local/bin/gh"]


def test_a_profile_digest_ignores_order_and_defaults():
    reordered = GITHUB.replace(
        "binaries: [/usr/bin/gh, /usr/local/bin/gh, /usr/bin/git, /usr/local/bin/git]",
        "binaries:\n  - /usr/local/bin/git\n  - {path: /usr/bin/git}\n  - /usr/local/bin/gh\n  - /usr/bin/gh",
    ).replace("category: source_control\n", "category: source_control\ninference_capable: false\n")
    assert reordered.count("\n") == GITHUB.count("\n") + 5  # both replacements took
    a, b = load_profile_text(GITHUB, "a.yaml"), load_profile_text(reordered, "b.yaml")
    assert normalize_profile(a) == normalize_profile(b)
    assert profile_digest(a) == profile_digest(b)
    assert profile_digest(a) != profile_digest(load_profile_text(GITHUB.replace("GH_TOKEN", "GH2_TOKEN"), "c"))
    assert normalize_profile(a)["binaries"] == sorted(normalize_profile(a)["binaries"])


def test_a_profile_as_data_validates_without_lines():
    profile = load_profile_data({"id": "x", "credentials": [{"name": "k", "env_vars": ["X_KEY"]}]})
    assert profile.env_vars == ("X_KEY",)
    with pytest.raises(PolicyError) as info:
        load_profile_data({"id": "X"})
    assert str(info.value) == "<data>: id: profile id 'X' must be lower-case kebab-case (a-z, 0-9, '-'), as upstream"


def _profile_only(text: str) -> str:
    return only(text, load_profile_text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "id: gcp-token\n",
            "id: GCP_token\n",
            "p.yaml:1:5: id: profile id 'GCP_token' must be lower-case kebab-case (a-z, 0-9, '-'), as upstream",
        ),
        (
            "id: gcp-token\n",
            "id: gcp-token\ndisplayname: x\n",
            "p.yaml:2:1: displayname: unknown key 'displayname' (did you mean 'display_name'?); expected one of: id,"
            " resource_version, annotations, display_name, description, category, inference_capable, credentials,"
            " discovery, endpoints, binaries",
        ),
        (
            "category: data\n",
            "category: storage\n",
            "p.yaml:3:11: category: expected one of other, inference, agent, source_control, messaging, data,"
            " knowledge, got 'storage'",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: bearer\n    refresh: {strategy: static}\n",
            "p.yaml:9:25: credentials[0].refresh.strategy: strategy static: a static credential needs no refresh"
            " block: give its value in the provider's credential file",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: header\n",
            "p.yaml:8:17: credentials[0].auth_style: auth_style: header needs 'header_name'",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: cookie\n",
            "p.yaml:8:17: credentials[0].auth_style: expected one of basic, bearer, header, query, path, got 'cookie'",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: path\n    path_template: /v1/{credential}x/items\n",
            "p.yaml:9:20: credentials[0].path_template: {credential} must fill the rest of its path segment (the"
            " gateway never puts a value between text of the sandbox's)",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: path\n    path_template: /v1/items\n",
            "p.yaml:9:20: credentials[0].path_template: a path template needs {credential} exactly once, as upstream",
        ),
        (
            "    auth_style: bearer\n",
            "    auth_style: query\n    query_param: 'api key'\n",
            "p.yaml:9:18: credentials[0].query_param: 'api key' is not a query parameter name",
        ),
        (
            "    env_vars: [GCP_TOKEN]\n",
            "    env_vars: [v2_GCP_TOKEN]\n",
            "p.yaml:6:16: credentials[0].env_vars[0]: 'v2_GCP_TOKEN': the v<digits>_ prefix is reserved upstream for"
            " revision-scoped placeholders",
        ),
        (
            "    env_vars: [GCP_TOKEN]\n",
            "    env_vars: [GCP_TOKEN, GCP_TOKEN]\n",
            "p.yaml:6:27: credentials[0].env_vars[1]: GCP_TOKEN is also declared at credentials[0].env_vars[0]",
        ),
        (
            "category: data\n",
            "category: data\ndiscovery: {credentials: [secret]}\n",
            "p.yaml:4:27: discovery.credentials[0]: 'secret' is not a credential declared under credentials",
        ),
    ],
    ids=[
        "id",
        "unknown-key",
        "category",
        "refresh",
        "header-needs-name",
        "style",
        "path-mid-segment",
        "path-no-slot",
        "query-param",
        "reserved-env",
        "duplicate-env",
        "discovery",
    ],
)
def test_profile_refusals_are_positioned(old, new, message):
    assert old in ENDPOINTLESS
    assert _profile_only(ENDPOINTLESS.replace(old, new)) == message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    auth_style: bearer\n", "    auth_style: header\n    header_name: X-Api-Key\n"),
        ("    auth_style: bearer\n", "    auth_style: path\n    path_template: /bot{credential}/getMe\n"),
        ("    auth_style: bearer\n", "    auth_style: query\n    query_param: api_key\n"),
        ("category: data\n", "category: data\ndiscovery: {credentials: [token]}\nresource_version: 3\n"),
        ("category: data\n", "category: data\nannotations: {example.com/source: platform}\n"),
    ],
    ids=["header", "path", "query", "discovery", "annotations"],
)
def test_profile_accepted_twins(old, new):
    profile = load_profile_text(ENDPOINTLESS.replace(old, new), "p.yaml")
    assert profile.env_vars == ("GCP_TOKEN",)


def test_a_profile_header_name_is_kept_lower_case():
    text = ENDPOINTLESS.replace("    auth_style: bearer\n", "    auth_style: header\n    header_name: X-Api-Key\n")
    assert load_profile_text(text, "p.yaml").credentials[0].header_name == "x-api-key"


ENDPOINT = "endpoints:\n  - host: api.example.com\n    port: 443\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "",
            "p.yaml:10:5: endpoints[0]: this profile declares credentials, so each of its endpoints must be"
            " inspected: set protocol: rest (or another HTTP protocol) and do not use tls: skip, or record the"
            " exception with allow_uninspected_credentials: true (as upstream)",
        ),
        (
            "    protocol: rest\n    access: full\n    tls: skip\n",
            "p.yaml:10:5: endpoints[0]: this profile declares credentials, so each of its endpoints must be"
            " inspected: set protocol: rest (or another HTTP protocol) and do not use tls: skip, or record the"
            " exception with allow_uninspected_credentials: true (as upstream)",
        ),
        (
            "    protocol: rest\n    access: full\n    credential_binding: {provider: x}\n",
            "p.yaml:14:5: endpoints[0].credential_binding: a profile's endpoints bind its credentials already;"
            " credential_binding belongs in a sandbox policy",
        ),
        (
            "    protocol: rest\n    access: fulll\n",
            "p.yaml:13:13: endpoints[0].access: expected one of read-only, read-write, full, got 'fulll' (did you mean"
            " 'full'?)",
        ),
    ],
    ids=["l4", "tls-skip", "binding", "endpoint-schema"],
)
def test_credentialed_profile_endpoint_refusals(extra, message):
    assert _profile_only(ENDPOINTLESS + ENDPOINT + extra) == message


def test_credentialed_profile_endpoint_twins():
    load_profile_text(ENDPOINTLESS + ENDPOINT + "    protocol: rest\n    access: read-only\n", "p.yaml")
    # the "l4" and "tls-skip" refusals with the exception recorded (upstream's copilot telemetry endpoints)
    flag = "    allow_uninspected_credentials: true\n"
    for extra in ("", "    protocol: rest\n    access: full\n    tls: skip\n"):
        profile = load_profile_text(ENDPOINTLESS + ENDPOINT + extra + flag, "p.yaml")
        assert profile.endpoints[0].allow_uninspected_credentials
        assert normalize_profile(profile)["endpoints"][0]["allow_uninspected_credentials"] is True
    # a profile without credentials (upstream's pypi) may list L4 endpoints
    load_profile_text("id: pypi\ncategory: data\n" + ENDPOINT, "p.yaml")


# -- where the policy meets the configured providers -----------------------------------------------------
def test_a_binding_to_a_provider_not_configured_is_refused_with_its_position():
    policy = load_text(BOUND, "p.yaml")
    found = [str(p) for p in check_bindings(policy, {})]
    assert found == [
        "p.yaml:10:11: network_policies.gcp_storage.endpoints[0].credential_binding.provider: provider 'work-gcp'"
        " is not configured for this sandbox (the gateway's providers: none)"
    ]
    with pytest.raises(PolicyError) as info:
        require_bindings(policy, {"home-gcp": load_profile_text(ENDPOINTLESS, "gcp.yaml")})
    assert "(the gateway's providers: home-gcp)" in str(info.value)


def test_a_binding_to_a_configured_endpointless_provider_is_accepted():
    policy = load_text(BOUND, "p.yaml")
    providers = {"work-gcp": load_profile_text(ENDPOINTLESS, "gcp.yaml")}
    assert check_bindings(policy, providers) == []
    require_bindings(policy, providers)
    scopes = credential_scopes(policy, providers)
    assert [(ep.host, ep.ports) for ep in scopes["work-gcp"]] == [("storage.googleapis.com", (443,))]


def test_a_binding_to_a_provider_whose_profile_has_endpoints_is_refused():
    policy = load_text(BOUND, "p.yaml")
    found = [str(p) for p in check_bindings(policy, {"work-gcp": load_profile_text(GITHUB, "gh.yaml")})]
    assert found == [
        "p.yaml:10:11: network_policies.gcp_storage.endpoints[0].credential_binding.provider: provider 'work-gcp'"
        " uses profile 'github', which names its own endpoints: its credentials go only there; bind a provider"
        " whose profile has no endpoints (as upstream)"
    ]


def test_a_profile_with_endpoints_scopes_its_credentials_to_them_only():
    policy = load_text(BOUND.replace("work-gcp", "other"), "p.yaml")
    providers = {"work-github": load_profile_text(GITHUB, "gh.yaml"),
                 "other": load_profile_text(ENDPOINTLESS, "gcp.yaml")}  # fmt: skip
    scopes = credential_scopes(policy, providers)
    assert {ep.host for ep in scopes["work-github"]} == {"api.github.com", "github.com"}
    unbound = credential_scopes(load_text(BOUND.replace("work-gcp", "nobody"), "p.yaml"), providers)
    assert unbound["other"] == ()  # an endpointless provider nobody binds: its credentials go nowhere


def test_compose_adds_the_provider_rules_as_upstream():
    policy = load_text(BOUND, "p.yaml")
    providers = {"work-github": load_profile_text(GITHUB, "gh.yaml"),
                 "work-gcp": load_profile_text(ENDPOINTLESS, "gcp.yaml")}  # fmt: skip
    effective = compose(policy, providers)
    assert list(effective.network_policies) == ["gcp_storage", "_provider_work_github"]
    rule = normalize(effective)["network_policies"]["_provider_work_github"]
    assert rule["binaries"][0] == {"path": "/usr/bin/gh"}
    assert digest(effective) != digest(policy)
    assert [c.label for c in diff(policy, effective).changes] == ["network_policies._provider_work_github"]
    assert compose(policy, {"work-gcp": providers["work-gcp"]}) is policy  # nothing to add


# -- `clawfleet policy profile` / `clawfleet policy bindings` ---------------------------------------------
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from clawfleet.cli import main

    code = main(["policy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_profile_prints_digests_and_positioned_problems(capsys, write):
    good = write("gh.yaml", GITHUB)
    bad = write("bad.yaml", ENDPOINTLESS.replace("category: data", "category: storage"))
    code, out, err = _cli(capsys, "profile", str(good), str(bad))
    assert code == 2
    assert out == f"{profile_digest(load_profile_text(GITHUB))}  {good}\n"
    assert err.startswith(f"{bad}:3:11: category: expected one of other")
    code, out, _ = _cli(capsys, "profile", "--normalize", str(good))
    assert code == 0 and json.loads(out)["id"] == "github"


def test_cli_bindings_refuses_an_unknown_provider_and_accepts_a_configured_one(capsys, write):
    policy = write("p.yaml", BOUND)
    profile = write("gcp.yaml", ENDPOINTLESS)
    code, _, err = _cli(capsys, "bindings", "--policy", str(policy), "--provider", f"home-gcp={profile}")
    assert code == 2
    assert err == (
        f"{policy}:10:11: network_policies.gcp_storage.endpoints[0].credential_binding.provider: provider"
        " 'work-gcp' is not configured for this sandbox (the gateway's providers: home-gcp)\n"
    )
    assert _cli(capsys, "bindings", "--policy", str(policy), "--provider", f"work-gcp={profile}") == (0, "", "")
    assert _cli(capsys, "bindings", "--policy", str(policy), "--provider", "work-gcp")[0] == 2


WS = """\
version: 1
network_policies:
  ws:
    endpoints:
      - host: gateway.discord.gg
        port: 443
        protocol: websocket
        rules: [{allow: {method: GET, path: "/**"}}]
        credential_binding: {provider: discord}
        websocket_credential_rewrite: true
    binaries: [{path: /usr/bin/node}]
"""


def test_websocket_credential_rewrite_loads_on_a_websocket_endpoint():
    policy = load_text(WS, "p.yaml")
    assert policy.network_policies["ws"].endpoints[0].websocket_credential_rewrite is True
    assert normalize(policy)["network_policies"]["ws"]["endpoints"][0]["websocket_credential_rewrite"] is True
    assert digest(policy) != digest(load_text(WS.replace("rewrite: true", "rewrite: false"), "p.yaml"))


def test_websocket_credential_rewrite_is_refused_where_the_gateway_never_upgrades():
    assert only(WS.replace("protocol: websocket", "protocol: rest")) == (
        "p.yaml:10:9: network_policies.ws.endpoints[0].websocket_credential_rewrite: WebSocket credential rewriting"
        " needs protocol: websocket (the only endpoints the gateway upgrades), not tls: skip"
    )
