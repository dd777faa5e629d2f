"""Table-driven decisions: the compiled engine, and the naive reference, give the expected answers."""

from __future__ import annotations

import pytest

from clawfleet.policy import compile_policy, load_text
from clawfleet.policy.reference import reference_decide

POLICY = """
version: 1
network_policies:
  github_ro:
    endpoints:
      - {host: api.github.com, port: 443, protocol: rest, access: read-only}
    binaries: [{path: /usr/bin/curl}, {path: /usr/bin/gh}]
  github_git:
    endpoints:
      - host: github.com
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: "/**/info/refs*"}
          - allow: {method: POST, path: "/**/git-upload-pack"}
    binaries: [{path: /usr/bin/git}]
  wildcard_single:
    endpoints: [{host: "*.example.com", port: 443}]
    binaries: [{path: /usr/bin/curl}]
  wildcard_multi:
    endpoints: [{host: "**.deep.test", ports: [80, 443, 8443]}]
    binaries: [{path: "/opt/tools/**"}]
  vertex:
    endpoints: [{host: "*-aiplatform.googleapis.com", port: 443}]
    binaries: [{path: "/usr/bin/python3*"}]
  api_rw:
    endpoints:
      - host: api.rw.test
        port: 443
        protocol: rest
        access: read-write
        deny_rules:
          - {method: POST, path: "/admin/**"}
          - {path: "/secrets/*"}
    binaries: [{path: /usr/local/bin/agent}]
  api_full:
    endpoints:
      - host: full.test
        port: 443
        protocol: rest
        access: full
        deny_rules: [{method: DELETE, path: "/protected/**"}]
    binaries: [{path: /usr/local/bin/agent}]
  audited:
    endpoints:
      - host: audit.test
        port: 443
        protocol: rest
        enforcement: audit
        rules:
          - allow: {method: GET, path: "/public/**"}
        deny_rules:
          - {method: DELETE}
    binaries: [{path: /usr/local/bin/agent}]
  query_rules:
    endpoints:
      - host: search.test
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: /search, query: {repo: "NVIDIA/*"}}
          - allow: {method: GET, path: /multi, query: {lang: {any: [en, fr]}, page: "*"}}
    binaries: [{path: /usr/bin/curl}]
  scoped_path:
    endpoints: [{host: scoped.test, port: 443, protocol: rest, path: "/v1/**", access: full}]
    binaries: [{path: /usr/bin/curl}]
  private_db:
    endpoints: [{host: db.internal.test, port: 5432, protocol: tcp, allowed_ips: [10.0.0.0/8]}]
    binaries: [{path: /usr/bin/psql}]
  node_registry:
    endpoints: [{host: registry.npmjs.org, port: 443, protocol: rest, access: read-only}]
    binaries: [{path: /usr/bin/node}]
  no_binaries:
    endpoints: [{host: nobody.test, port: 443}]
  home_glob:
    endpoints: [{host: copilot.test, port: 443}]
    binaries: [{path: "/home/*/.local/bin/copilot"}]
  ip_literal:
    endpoints: [{host: 10.200.0.1, port: 11434, allowed_ips: [10.200.0.1/32]}]
    binaries: [{path: /usr/bin/curl}]
  public_ip:
    endpoints: [{host: 1.1.1.1, port: 443}]
    binaries: [{path: /usr/bin/curl}]
  loopback:
    endpoints: [{host: 127.0.0.1, port: 8080}]
    binaries: [{path: /usr/bin/curl}]
  local_model:
    endpoints: [{host: 127.0.0.1, port: 8000, allowed_ips: [127.0.0.1/32]}]
    binaries: [{path: /usr/bin/curl}]
  wide_private:
    endpoints: [{host: "*.corp.test", port: 80, allowed_ips: [10.0.0.0/8]}]
    binaries: [{path: /usr/bin/curl}]
  overlap_a:
    endpoints: [{host: overlap.test, port: 443}]
    binaries: [{path: /usr/bin/curl}]
  overlap_b:
    endpoints:
      - {host: overlap.test, port: 443, protocol: rest, access: read-only, deny_rules: [{path: "/blocked/**"}]}
    binaries: [{path: /usr/bin/curl}]
  audit_and_enforce:
    endpoints:
      - {host: mixed.test, port: 443, protocol: rest, enforcement: audit, access: read-only}
      - {host: mixed.test, port: 443, protocol: rest, rules: [{allow: {method: POST, path: /ok}}]}
    binaries: [{path: /usr/bin/curl}]
"""

CURL, GIT, AGENT = "/usr/bin/curl", "/usr/bin/git", "/usr/local/bin/agent"
HELPER = "/usr/lib/git-core/git-remote-https"
PY = "/usr/bin/python3.12"
TOOL = "/opt/tools/bin/fetch"

# (id, binary, ancestors, host, port, method, path, query, resolved_ip) -> (decision, policy key)
ROWS = [
    # access presets
    ("ro-get", CURL, (), "api.github.com", 443, "GET", "/repos/x", None, None, "allow", "github_ro"),
    ("ro-head", CURL, (), "api.github.com", 443, "HEAD", "/", None, None, "allow", "github_ro"),
    ("ro-options", CURL, (), "api.github.com", 443, "OPTIONS", "/x", None, None, "allow", "github_ro"),
    ("ro-post", CURL, (), "api.github.com", 443, "POST", "/repos", None, None, "deny", "github_ro"),
    ("ro-delete", CURL, (), "api.github.com", 443, "DELETE", "/repos/x", None, None, "deny", "github_ro"),
    ("ro-l4", CURL, (), "api.github.com", 443, None, None, None, None, "allow", "github_ro"),
    ("ro-other-binary", "/usr/bin/wget", (), "api.github.com", 443, None, None, None, None, "deny", None),
    ("ro-host-normalised", "/usr/bin/gh", (), "API.GitHub.com.", 443, "GET", "/", None, None, "allow", "github_ro"),
    ("ro-wrong-port", CURL, (), "api.github.com", 80, None, None, None, None, "deny", None),
    ("ro-lower-method", CURL, (), "api.github.com", 443, "get", "/", None, None, "allow", "github_ro"),
    # method/path rules
    (
        "git-refs",
        GIT,
        (),
        "github.com",
        443,
        "GET",
        "/o/r.git/info/refs?service=git-upload-pack",
        None,
        None,
        "allow",
        "github_git",
    ),
    ("git-upload", GIT, (), "github.com", 443, "POST", "/o/r.git/git-upload-pack", None, None, "allow", "github_git"),
    ("git-receive", GIT, (), "github.com", 443, "POST", "/o/r.git/git-receive-pack", None, None, "deny", "github_git"),
    ("git-browse", GIT, (), "github.com", 443, "GET", "/o/r", None, None, "deny", "github_git"),
    (
        "git-refs-get-upload",
        GIT,
        (),
        "github.com",
        443,
        "GET",
        "/o/r.git/git-upload-pack",
        None,
        None,
        "deny",
        "github_git",
    ),
    # ancestors
    (
        "helper-via-parent",
        HELPER,
        (GIT,),
        "github.com",
        443,
        "GET",
        "/a/b/info/refs",
        None,
        None,
        "allow",
        "github_git",
    ),
    ("helper-alone", HELPER, (), "github.com", 443, "GET", "/a/b/info/refs", None, None, "deny", None),
    (
        "helper-via-grandparent",
        HELPER,
        ("/usr/bin/bash", GIT, "/sbin/init"),
        "github.com",
        443,
        None,
        None,
        None,
        None,
        "allow",
        "github_git",
    ),
    (
        "unrelated-ancestors",
        "/usr/bin/wget",
        ("/usr/bin/bash",),
        "github.com",
        443,
        None,
        None,
        None,
        None,
        "deny",
        None,
    ),
    # host wildcards
    ("star-one-label", CURL, (), "foo.example.com", 443, None, None, None, None, "allow", "wildcard_single"),
    ("star-two-labels", CURL, (), "a.b.example.com", 443, None, None, None, None, "deny", None),
    ("star-apex", CURL, (), "example.com", 443, None, None, None, None, "deny", None),
    ("star-idna", CURL, (), "bücher.example.com", 443, None, None, None, None, "allow", "wildcard_single"),
    ("star-suffix-trick", CURL, (), "foo.example.com.evil.test", 443, None, None, None, None, "deny", None),
    ("dstar-one", TOOL, (), "a.deep.test", 8443, None, None, None, None, "allow", "wildcard_multi"),
    ("dstar-many", TOOL, (), "a.b.c.deep.test", 80, None, None, None, None, "allow", "wildcard_multi"),
    ("dstar-apex", TOOL, (), "deep.test", 443, None, None, None, None, "deny", None),
    ("dstar-port-not-listed", TOOL, (), "a.deep.test", 22, None, None, None, None, "deny", None),
    ("dstar-lookalike", TOOL, (), "a.notdeep.test", 443, None, None, None, None, "deny", None),
    (
        "first-label-glob",
        PY,
        (),
        "us-central1-aiplatform.googleapis.com",
        443,
        None,
        None,
        None,
        None,
        "allow",
        "vertex",
    ),
    ("first-label-glob-miss", PY, (), "aiplatform.googleapis.com", 443, None, None, None, None, "deny", None),
    (
        "first-label-glob-two-labels",
        PY,
        (),
        "x.us-aiplatform.googleapis.com",
        443,
        None,
        None,
        None,
        None,
        "deny",
        None,
    ),
    # binary globs
    ("bin-dstar", "/opt/tools/deep/er/x", (), "a.deep.test", 443, None, None, None, None, "allow", "wildcard_multi"),
    ("bin-dstar-prefix-trick", "/opt/toolsx/evil", (), "a.deep.test", 443, None, None, None, None, "deny", None),
    (
        "bin-star",
        "/usr/bin/python3",
        (),
        "eu-aiplatform.googleapis.com",
        443,
        None,
        None,
        None,
        None,
        "allow",
        "vertex",
    ),
    (
        "bin-star-no-slash",
        "/usr/bin/python3.12/evil",
        (),
        "eu-aiplatform.googleapis.com",
        443,
        None,
        None,
        None,
        None,
        "deny",
        None,
    ),
    (
        "bin-home-star",
        "/home/alice/.local/bin/copilot",
        (),
        "copilot.test",
        443,
        None,
        None,
        None,
        None,
        "allow",
        "home_glob",
    ),
    (
        "bin-home-star-deeper",
        "/home/alice/x/.local/bin/copilot",
        (),
        "copilot.test",
        443,
        None,
        None,
        None,
        None,
        "deny",
        None,
    ),
    ("no-binaries-matches-nothing", CURL, (), "nobody.test", 443, None, None, None, None, "deny", None),
    # read-write preset and deny_rules precedence
    ("rw-post", AGENT, (), "api.rw.test", 443, "POST", "/items", None, None, "allow", "api_rw"),
    ("rw-put", AGENT, (), "api.rw.test", 443, "PUT", "/items/1", None, None, "allow", "api_rw"),
    ("rw-patch", AGENT, (), "api.rw.test", 443, "PATCH", "/items/1", None, None, "allow", "api_rw"),
    ("rw-delete", AGENT, (), "api.rw.test", 443, "DELETE", "/items/1", None, None, "deny", "api_rw"),
    ("rw-deny-rule", AGENT, (), "api.rw.test", 443, "POST", "/admin/users", None, None, "deny", "api_rw"),
    ("rw-deny-rule-other-method", AGENT, (), "api.rw.test", 443, "GET", "/admin/users", None, None, "allow", "api_rw"),
    ("rw-deny-any-method", AGENT, (), "api.rw.test", 443, "GET", "/secrets/x", None, None, "deny", "api_rw"),
    ("rw-deny-single-segment", AGENT, (), "api.rw.test", 443, "GET", "/secrets/x/y", None, None, "allow", "api_rw"),
    ("full-delete", AGENT, (), "full.test", 443, "DELETE", "/anything", None, None, "allow", "api_full"),
    ("full-deny-rule", AGENT, (), "full.test", 443, "DELETE", "/protected/a/b", None, None, "deny", "api_full"),
    ("full-custom-verb", AGENT, (), "full.test", 443, "PROPFIND", "/x", None, None, "allow", "api_full"),
    ("overlap-l4-allows", CURL, (), "overlap.test", 443, "POST", "/x", None, None, "allow", "overlap_a"),
    ("overlap-deny-rule-wins", CURL, (), "overlap.test", 443, "GET", "/blocked/x", None, None, "deny", "overlap_b"),
    # audit enforcement
    ("audit-allowed", AGENT, (), "audit.test", 443, "GET", "/public/a", None, None, "allow", "audited"),
    ("audit-would-deny", AGENT, (), "audit.test", 443, "POST", "/public/a", None, None, "audit", "audited"),
    ("audit-deny-rule", AGENT, (), "audit.test", 443, "DELETE", "/public/a", None, None, "audit", "audited"),
    ("audit-l4", AGENT, (), "audit.test", 443, None, None, None, None, "allow", "audited"),
    ("audit-wrong-binary", CURL, (), "audit.test", 443, "GET", "/public/a", None, None, "deny", None),
    ("mixed-enforced-allows", CURL, (), "mixed.test", 443, "POST", "/ok", None, None, "allow", "audit_and_enforce"),
    ("mixed-audit-only", CURL, (), "mixed.test", 443, "PUT", "/ok", None, None, "audit", "audit_and_enforce"),
    # query rules
    (
        "query-ok",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search?repo=NVIDIA/OpenShell",
        None,
        None,
        "allow",
        "query_rules",
    ),
    (
        "query-wrong-value",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search?repo=evil/x",
        None,
        None,
        "deny",
        "query_rules",
    ),
    ("query-missing", CURL, (), "search.test", 443, "GET", "/search", None, None, "deny", "query_rules"),
    (
        "query-smuggled-second-value",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search?repo=NVIDIA/a&repo=evil/b",
        None,
        None,
        "deny",
        "query_rules",
    ),
    (
        "query-star-no-slash",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search?repo=NVIDIA/a/b",
        None,
        None,
        "deny",
        "query_rules",
    ),
    ("query-any", CURL, (), "search.test", 443, "GET", "/multi?lang=fr&page=2", None, None, "allow", "query_rules"),
    ("query-any-miss", CURL, (), "search.test", 443, "GET", "/multi?lang=de&page=2", None, None, "deny", "query_rules"),
    (
        "query-all-params-needed",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/multi?lang=en",
        None,
        None,
        "deny",
        "query_rules",
    ),
    (
        "query-as-mapping",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search",
        {"repo": "NVIDIA/x"},
        None,
        "allow",
        "query_rules",
    ),
    (
        "query-as-string",
        CURL,
        (),
        "search.test",
        443,
        "GET",
        "/search",
        "repo=NVIDIA%2Fx",
        None,
        "allow",
        "query_rules",
    ),
    # endpoint path
    ("endpoint-path-in", CURL, (), "scoped.test", 443, "GET", "/v1/models", None, None, "allow", "scoped_path"),
    ("endpoint-path-out", CURL, (), "scoped.test", 443, "GET", "/v2/models", None, None, "deny", "scoped_path"),
    # path canonicalisation
    ("dotdot", CURL, (), "api.github.com", 443, "GET", "/repos/../admin", None, None, "deny", "github_ro"),
    ("encoded-dotdot", AGENT, (), "api.rw.test", 443, "GET", "/x/%2e%2e/secrets/k", None, None, "deny", "api_rw"),
    ("encoded-slash", AGENT, (), "api.rw.test", 443, "GET", "/secrets%2Fk", None, None, "deny", "api_rw"),
    ("encoded-letters-decoded", AGENT, (), "api.rw.test", 443, "GET", "/%73ecrets/k", None, None, "deny", "api_rw"),
    # SSRF and allowed_ips
    (
        "private-in-allowed",
        "/usr/bin/psql",
        (),
        "db.internal.test",
        5432,
        None,
        None,
        None,
        "10.1.2.3",
        "allow",
        "private_db",
    ),
    (
        "private-outside-allowed",
        "/usr/bin/psql",
        (),
        "db.internal.test",
        5432,
        None,
        None,
        None,
        "192.168.1.1",
        "deny",
        "private_db",
    ),
    (
        "resolved-loopback",
        "/usr/bin/psql",
        (),
        "db.internal.test",
        5432,
        None,
        None,
        None,
        "127.0.0.1",
        "deny",
        "private_db",
    ),
    (
        "ip-literal-allowed",
        CURL,
        (),
        "10.200.0.1",
        11434,
        "POST",
        "/v1/chat/completions",
        None,
        None,
        "allow",
        "ip_literal",
    ),
    ("public-ip-literal", CURL, (), "1.1.1.1", 443, None, None, None, None, "allow", "public_ip"),
    (
        "public-host-resolving-private",
        CURL,
        (),
        "api.github.com",
        443,
        None,
        None,
        None,
        "10.0.0.5",
        "deny",
        "github_ro",
    ),
    (
        "public-host-resolving-metadata",
        CURL,
        (),
        "api.github.com",
        443,
        None,
        None,
        None,
        "169.254.169.254",
        "deny",
        "github_ro",
    ),
    ("loopback-literal-unlisted-denied", CURL, (), "127.0.0.1", 8080, None, None, None, None, "deny", "loopback"),
    ("loopback-listed-allowed", CURL, (), "127.0.0.1", 8000, None, None, None, None, "allow", "local_model"),
    ("loopback-listed-other-ip", CURL, (), "127.0.0.1", 8000, None, None, None, "127.0.0.2", "deny", "local_model"),
    ("private-wide-allowed", CURL, (), "git.corp.test", 80, None, None, None, "10.9.8.7", "allow", "wide_private"),
    (
        "metadata-not-in-private",
        CURL,
        (),
        "git.corp.test",
        80,
        None,
        None,
        None,
        "169.254.169.254",
        "deny",
        "wide_private",
    ),
    ("loopback-not-in-private", CURL, (), "git.corp.test", 80, None, None, None, "127.0.0.1", "deny", "wide_private"),
    # deny by default
    ("unknown-host", CURL, (), "unknown.test", 443, None, None, None, None, "deny", None),
    ("invalid-host", CURL, (), "exa mple.com", 443, None, None, None, None, "deny", None),
    ("invalid-port", CURL, (), "api.github.com", 0, None, None, None, None, "deny", None),
    (
        "node-registry-read",
        "/usr/bin/node",
        ("/usr/bin/bash",),
        "registry.npmjs.org",
        443,
        "GET",
        "/left-pad",
        None,
        None,
        "allow",
        "node_registry",
    ),
    (
        "node-registry-publish",
        "/usr/bin/node",
        (),
        "registry.npmjs.org",
        443,
        "PUT",
        "/left-pad",
        None,
        None,
        "deny",
        "node_registry",
    ),
]


@pytest.fixture(scope="module")
def policy():
    return load_text(POLICY, "decisions.yaml")


@pytest.fixture(scope="module")
def engine(policy):
    return compile_policy(policy)


def test_table_is_big_enough():
    assert len(ROWS) >= 60
    assert len({r[0] for r in ROWS}) == len(ROWS)
    assert {r[9] for r in ROWS} == {"allow", "deny", "audit"}


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_decision(row, engine, policy):
    _id, binary, ancestors, host, port, method, path, query, ip, want, key = row
    got = engine.decide(binary, ancestors, host, port, method=method, path=path, query=query, resolved_ip=ip)
    assert (got.decision, got.policy_key) == (want, key), got.reason
    assert got.reason
    ref = reference_decide(policy, binary, ancestors, host, port, method, path, query, ip)
    assert (ref.decision, ref.policy_key) == (want, key)


def test_decision_reports_the_rule_that_decided(engine):
    d = engine.decide(GIT, (), "github.com", 443, "POST", "/o/r.git/git-upload-pack")
    assert d.rule is not None and d.rule.path == "/**/git-upload-pack"
    assert d.endpoint is not None and d.endpoint.host == "github.com"
    d = engine.decide(AGENT, (), "api.rw.test", 443, "POST", "/admin/x")
    assert d.rule is not None and d.rule.path == "/admin/**" and "deny rule" in d.reason
    d = engine.decide(CURL, (), "unknown.test", 443)
    assert d.reason == "no matching policy for unknown.test:443"
    assert d.to_dict() == {"decision": "deny", "policy": None, "reason": d.reason}


def test_engine_carries_the_policy_digest(engine, policy):
    from clawfleet.policy import digest

    assert engine.digest == digest(policy)


def test_binary_cache_is_used(engine):
    engine.decide(CURL, ("/usr/bin/bash",), "api.github.com", 443)
    before = engine._rules_for_chain.cache_info().hits
    engine.decide(CURL, ("/usr/bin/bash",), "api.github.com", 443)
    assert engine._rules_for_chain.cache_info().hits == before + 1
