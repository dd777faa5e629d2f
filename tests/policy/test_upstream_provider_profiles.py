"""Upstream OpenShell's built-in provider profiles (tests/data/openshell-providers, copied unchanged), and the two
upstream spellings its ``github`` profile needs, read with upstream's semantics:

* a rule (or endpoint) path ``"**"`` matches every path (upstream's Rego, sandbox-policy.rego:
  ``path_matches(_, "**") if true``) and ``**/x`` matches ``/x``, ``/a/x``, ... (its glob's ``**`` crosses ``/``);
  clawfleet reads them as ``/**`` and ``/**/x`` (request paths always start with ``/``);
* ``access`` on a ``protocol: graphql`` endpoint stands for GraphQL operation rules (upstream's
  ``access_preset_rules``, crates/openshell-supervisor-network/src/l7/mod.rs): ``read-only`` = queries,
  ``read-write`` = queries and mutations, ``full`` = any operation.

Every attack (a mutation through the read-only GraphQL endpoint, a push to github.com, another host) sits beside
its allowed twin."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from clawfleet.policy import PolicyError, compile_policy, compose, digest, load_text, normalize
from clawfleet.policy.json_schema import JSON_SCHEMA
from clawfleet.policy.profiles import load_profile_file, load_profile_text, normalize_profile, profile_digest
from clawfleet.policy.yamlio import dump_yaml

CORPUS = Path(__file__).resolve().parents[1] / "data" / "openshell-providers"

#: The profiles clawfleet loads unchanged: all thirteen (refresh blocks, SigV4 signing and inner-label host
#: wildcards load since Providers v2 minting; tests/policy/test_profile_refresh_signing.py checks them).
LOADS = ["aws", "aws-bedrock", "aws-s3", "claude-code", "codex", "copilot", "cursor", "deepinfra", "github",
         "google-cloud", "google-vertex-ai", "nvidia", "pypi"]  # fmt: skip

GH, GIT = "/usr/bin/gh", "/usr/bin/git"


def test_the_corpus_is_every_upstream_profile():
    assert sorted(p.stem for p in CORPUS.glob("*.yaml")) == sorted(LOADS)


@pytest.mark.parametrize("name", LOADS)
def test_upstream_profiles_load_unchanged(name):
    profile = load_profile_file(CORPUS / f"{name}.yaml")
    assert profile.id == name
    again = normalize_profile(profile)
    assert json.loads(json.dumps(again)) == again


# -- the github profile, as upstream ships it -------------------------------------------------------------


@pytest.fixture(scope="module")
def github():
    return load_profile_file(CORPUS / "github.yaml")


@pytest.fixture(scope="module")
def engine(github):
    return compile_policy(compose(load_text("version: 1\nnetwork_policies: {}\n", "p.yaml"), {"gh": github}))


def test_github_profile_reads_upstreams_spellings(github):
    rest, graphql, git = github.endpoints
    assert graphql.protocol == "graphql" and graphql.access == "read-only" and graphql.path == "/graphql"
    assert [r.operation_type for r in graphql.allow_rules] == ["query"]
    assert [r.path for r in git.rules] == ["/**", "/**", "/**", "/**/git-upload-pack"]
    assert rest.access == "read-only" and rest.allow_rules == ()


def test_the_profile_digest_is_the_same_for_the_slashed_and_spelled_out_forms(github):
    text = (CORPUS / "github.yaml").read_text()
    spelled = text.replace('path: "**"', 'path: "/**"').replace(
        "protocol: graphql\n    access: read-only", "protocol: graphql\n    rules: [{allow: {operation_type: query}}]"
    )
    assert spelled.count('"/**"') == 3 and "operation_type: query" in spelled
    assert profile_digest(load_profile_text(spelled, "b.yaml")) == profile_digest(github)
    widened = spelled.replace("operation_type: query", "operation_type: mutation")
    assert profile_digest(load_profile_text(widened, "c.yaml")) != profile_digest(github)


@pytest.mark.parametrize("path", ["/", "/owner/repo", "/owner/repo.git/info/refs", "/a/b/c/", "/x?service=y"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_git_transport_rule_path_star_star_matches_every_path(engine, method, path):
    assert engine.decide(GIT, (), "github.com", 443, method=method, path=path).decision == "allow"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/owner/repo.git/git-receive-pack"),  # a push
        ("PUT", "/owner/repo"),
        ("DELETE", "/owner/repo"),
        ("PATCH", "/owner/repo"),
        ("POST", "/owner/repo.git/git-upload-pack/../git-receive-pack"),
    ],
)
def test_git_transport_denies_what_the_rules_do_not_list(engine, method, path):
    assert engine.decide(GIT, (), "github.com", 443, method=method, path=path).decision == "deny"


def test_git_transport_clone_is_allowed_push_is_not(engine):
    clone = engine.decide(GIT, (), "github.com", 443, method="POST", path="/owner/repo.git/git-upload-pack")
    push = engine.decide(GIT, (), "github.com", 443, method="POST", path="/owner/repo.git/git-receive-pack")
    assert clone.decision == "allow" and push.decision == "deny"


@pytest.mark.parametrize(
    ("host", "port"),
    [("gist.github.com", 443), ("github.com.evil.example", 443), ("evil.example", 443), ("github.com", 80),
     ("raw.githubusercontent.com", 443)],
)  # fmt: skip
def test_star_star_does_not_reach_another_host_or_port(engine, host, port):
    assert engine.decide(GIT, (), "github.com", 443, method="GET", path="/a/b").decision == "allow"  # twin
    assert engine.decide(GIT, (), host, port, method="GET", path="/a/b").decision == "deny"


def test_star_star_is_only_for_the_profile_binaries(engine):
    assert engine.decide(GIT, (), "github.com", 443, method="GET", path="/a").decision == "allow"
    assert engine.decide("/usr/bin/curl", (), "github.com", 443, method="GET", path="/a").decision == "deny"


def gql(engine, query, method="POST", path="/graphql", host="api.github.com"):
    if method == "POST":
        return engine.decide(GH, (), host, 443, method="POST", path=path, body=json.dumps({"query": query}).encode(),
                             content_type="application/json")  # fmt: skip
    from urllib.parse import quote

    return engine.decide(GH, (), host, 443, method="GET", path=f"{path}?query={quote(query)}", body=b"")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_read_only_graphql_allows_a_query_and_denies_a_mutation(engine, method):
    ok = gql(engine, "query Me { viewer { login } }", method)
    assert ok.decision == "allow" and "access: read-only" in ok.reason
    assert gql(engine, "{ viewer { login } }", method).decision == "allow"  # shorthand = a query
    bad = gql(engine, 'mutation { deleteRepository(input: {repositoryId: "x"}) { clientMutationId } }', method)
    assert bad.decision == "deny" and "access: read-only" in bad.reason and "mutation" in bad.reason


@pytest.mark.parametrize(
    "query",
    [
        "subscription { issueChanged { id } }",
        "query A { viewer { login } } mutation B { addStar(input: {}) { clientMutationId } }",
        "mutation { __typename }",
        "query { viewer { login } ",  # unparseable: denied by default
    ],
)
def test_read_only_graphql_denies_every_other_operation(engine, query):
    assert gql(engine, query).decision == "deny"


def test_a_mutation_cannot_take_the_read_only_rest_endpoint_instead(engine):
    # api.github.com's REST endpoint (access: read-only) allows GET on every path, /graphql included; the GraphQL
    # endpoint covers /graphql, so only its operation rules may grant the request (as upstream's Rego)
    assert engine.decide(GH, (), "api.github.com", 443, method="GET", path="/user").decision == "allow"
    assert gql(engine, "mutation { addStar(input: {}) { clientMutationId } }", "GET").decision == "deny"
    assert engine.decide(GH, (), "api.github.com", 443, method="POST", path="/user/repos").decision == "deny"


def test_a_hash_only_persisted_query_is_denied_under_read_only(engine):
    body = json.dumps({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}}).encode()
    d = engine.decide(GH, (), "api.github.com", 443, method="POST", path="/graphql", body=body,
                      content_type="application/json")  # fmt: skip
    assert d.decision == "deny"


# -- the two spellings in policies ------------------------------------------------------------------------

POLICY = """\
version: 1
network_policies:
  api:
    endpoints:
      - host: gql.example.com
        port: 443
        protocol: graphql
        ACCESS
    binaries: [{path: /usr/bin/x}]
"""


def gql_policy(access_line: str):
    return load_text(POLICY.replace("ACCESS", access_line), "p.yaml")


def judge(policy, query: str) -> str:
    body = json.dumps({"query": query}).encode()
    return compile_policy(policy).decide("/usr/bin/x", (), "gql.example.com", 443, method="POST", path="/",
                                         body=body, content_type="application/json").decision  # fmt: skip


Q = "query { a }"
M = "mutation { b }"
S = "subscription { c }"


@pytest.mark.parametrize(
    ("access", "query", "mutation", "subscription"),
    [("read-only", "allow", "deny", "deny"), ("read-write", "allow", "allow", "deny"),
     ("full", "allow", "allow", "allow")],
)  # fmt: skip
def test_graphql_access_presets_are_operation_types(access, query, mutation, subscription):
    policy = gql_policy(f"access: {access}")
    assert (judge(policy, Q), judge(policy, M), judge(policy, S)) == (query, mutation, subscription)


@pytest.mark.parametrize(
    ("access", "rules"),
    [
        ("read-only", "[{allow: {operation_type: query}}]"),
        ("read-write", "[{allow: {operation_type: mutation}}, {allow: {operation_type: query}}]"),
        ("full", "[{allow: {operation_type: '*'}}]"),
    ],
)
def test_a_graphql_preset_and_its_rules_are_one_policy(access, rules):
    preset, spelled = gql_policy(f"access: {access}"), gql_policy(f"rules: {rules}")
    assert normalize(preset) == normalize(spelled) and digest(preset) == digest(spelled)
    assert digest(load_text(dump_yaml(normalize(preset)), "again.yaml")) == digest(preset)


def test_graphql_presets_differ_from_each_other():
    digests = {digest(gql_policy(f"access: {a}")) for a in ("read-only", "read-write", "full")}
    assert len(digests) == 3


def test_a_graphql_preset_with_deny_rules_keeps_them():
    policy = gql_policy("access: read-only\n        deny_rules: [{operation_type: query, fields: [secret]}]")
    assert judge(policy, "query { a }") == "allow"
    assert judge(policy, "query { secret }") == "deny"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("access: read-only\n        rules: [{allow: {operation_type: query}}]", "use either 'access' or 'rules'"),
        ("access: read_only", "expected one of read-only, read-write, full"),
    ],
)
def test_graphql_access_refusals_beside_the_accepted_twin(line, message):
    gql_policy("access: read-only")  # the twin loads
    with pytest.raises(PolicyError) as info:
        gql_policy(line)
    assert message in str(info.value) and "p.yaml:8:" in str(info.value)


@pytest.mark.parametrize("protocol", ["mcp", "json-rpc"])
def test_access_is_still_refused_on_json_rpc_endpoints(protocol):
    text = POLICY.replace("graphql", protocol).replace("ACCESS", "access: read-only")
    with pytest.raises(PolicyError, match="'access' presets are HTTP methods"):
        load_text(text, "p.yaml")


REST = """\
version: 1
network_policies:
  api:
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        EPATH
        rules: [{allow: {method: GET, path: RPATH}}]
        deny_rules: [{method: DELETE, path: DPATH}]
    binaries: [{path: /usr/bin/x}]
"""


def rest(rpath: str, dpath: str = "/admin/**", epath: str = "") -> object:
    text = REST.replace("RPATH", rpath).replace("DPATH", dpath)
    return load_text(text.replace("EPATH", f"path: {epath}" if epath else ""), "p.yaml")


def test_star_star_and_slash_star_star_are_one_policy():
    assert digest(rest('"**"')) == digest(rest('"/**"'))
    assert digest(rest('"**"', dpath='"**"')) == digest(rest('"/**"', dpath='"/**"'))
    assert digest(rest('"**"', epath='"**"')) == digest(rest('"**"', epath='"/**"'))
    assert digest(rest('"**"')) != digest(rest('"/a/**"'))


@pytest.mark.parametrize("path", ["/", "/a", "/a/b/c", "/a/", "/%7Euser/x"])
def test_star_star_rule_path_matches_every_request_path(path):
    for policy in (rest('"**"'), rest('"/**"')):
        e = compile_policy(policy)
        assert e.decide("/usr/bin/x", (), "api.example.com", 443, method="GET", path=path).decision == "allow"
        assert e.decide("/usr/bin/x", (), "api.example.com", 443, method="POST", path=path).decision == "deny"


def test_a_star_star_deny_rule_denies_every_path():
    e = compile_policy(rest('"**"', dpath='"**"'))
    assert e.decide("/usr/bin/x", (), "api.example.com", 443, method="GET", path="/a").decision == "allow"
    assert e.decide("/usr/bin/x", (), "api.example.com", 443, method="DELETE", path="/a/b").decision == "deny"


@pytest.mark.parametrize("bad", ['"*"', '"repos/**"', '"***"', '" **"', '"**x"', '"*/x"', '"**/../x"'])
def test_other_paths_without_a_slash_are_still_refused(bad):
    rest('"**"')  # the twins load
    rest('"**/x"')
    with pytest.raises(PolicyError, match=r"a path glob must (start with '/' \(or be '\*\*'|not contain '\.\.')"):
        rest(bad)


def test_star_star_slash_prefix_is_the_slashed_glob():
    # upstream's path grammar (docs/sandboxes/policies.mdx): "must start with /, or be **, or start with **/"
    assert digest(rest('"**/git-upload-pack"')) == digest(rest('"/**/git-upload-pack"'))
    assert digest(rest('"**/git-upload-pack"', epath='"**/repo/**"')) == digest(
        rest('"/**/git-upload-pack"', epath='"/**/repo/**"')
    )


@pytest.mark.parametrize(
    ("path", "decision"),
    [("/git-upload-pack", "allow"), ("/a/git-upload-pack", "allow"), ("/a/b.git/git-upload-pack", "allow"),
     ("/a/xgit-upload-pack", "deny"), ("/a/git-upload-pack/x", "deny"), ("/a/git-receive-pack", "deny")],
)  # fmt: skip
def test_star_star_slash_prefix_matches_as_upstream(path, decision):
    e = compile_policy(rest('"**/git-upload-pack"'))
    assert e.decide("/usr/bin/x", (), "api.example.com", 443, method="GET", path=path).decision == decision


def test_a_binary_glob_star_star_is_still_refused():
    with pytest.raises(PolicyError, match="must start with '/'"):
        load_text(REST.replace("/usr/bin/x", "'**'").replace("RPATH", '"**"').replace("DPATH", "/a")
                  .replace("EPATH", ""), "p.yaml")  # fmt: skip


def test_the_json_schema_takes_both_spellings():
    for text in (REST.replace("RPATH", '"**"').replace("DPATH", '"**"').replace("EPATH", 'path: "**"'),
                 POLICY.replace("ACCESS", "access: read-only")):  # fmt: skip
        from ruamel.yaml import YAML

        jsonschema.validate(YAML(typ="safe").load(text), JSON_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(YAML(typ="safe").load(REST.replace("RPATH", '"*"').replace("DPATH", "/a")
                                                  .replace("EPATH", "")), JSON_SCHEMA)  # fmt: skip
