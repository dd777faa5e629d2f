"""normalize / digest / merge / diff."""

from __future__ import annotations

from policy_testpaths import COMPAT

from clawfleet.policy import (
    diff,
    digest,
    load_file,
    load_preset_text,
    load_text,
    merge,
    normalize,
)
from clawfleet.policy.yamlio import dump_yaml

A = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /etc]
  read_write: [/sandbox]
process: {run_as_user: sandbox}
network_policies:
  gh:
    name: gh
    endpoints:
      - host: API.GitHub.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow: {method: get, path: "/repos/**"}
          - allow: {method: POST, path: "/graphql"}
    binaries: [{path: /usr/bin/gh}, {path: /usr/bin/curl}]
"""

# Same policy: keys reordered, flow vs block style, defaults spelled out or left out,
# list order changed, host case, method case, single port as a ports list.
A_REWRITTEN = """\
network_policies:
  gh:
    binaries:
      - path: /usr/bin/curl
      - path: /usr/bin/gh
      - path: /usr/bin/curl
    endpoints:
      - rules:
          - allow: {path: "/graphql", method: post}
          - allow: {path: "/repos/**", method: GET}
        protocol: rest
        ports: [443]
        host: api.github.com.
process:
  run_as_user: sandbox
filesystem_policy:
  read_write: [/sandbox/]
  read_only: [/etc, /usr, /usr]
  include_workdir: true
version: 1
"""


def test_digest_ignores_formatting_order_and_defaults():
    a, b = load_text(A), load_text(A_REWRITTEN)
    assert normalize(a) == normalize(b)
    assert digest(a) == digest(b)
    assert digest(a).startswith("sha256:") and len(digest(a)) == 71


def test_digest_changes_with_meaning():
    base = digest(load_text(A))
    assert digest(load_text(A.replace("port: 443", "port: 8443"))) != base
    assert digest(load_text(A.replace("method: get", "method: PUT"))) != base
    assert digest(load_text(A.replace("[/usr, /etc]", "[/usr]"))) != base
    assert digest(load_text(A.replace("enforcement: enforce", "enforcement: audit"))) != base


def test_normalize_has_stable_key_order():
    data = normalize(load_text(A_REWRITTEN))
    assert list(data) == ["version", "filesystem_policy", "process", "network_policies"]
    ep = data["network_policies"]["gh"]["endpoints"][0]
    assert list(ep) == ["host", "port", "protocol", "rules"]
    assert ep["rules"][0] == {"allow": {"method": "GET", "path": "/repos/**"}}


def test_canonical_yaml_round_trips_and_quotes_yaml11_words():
    text = A.replace("process: {run_as_user: sandbox}", "process: {run_as_user: 'yes'}")
    policy = load_text(text)
    dumped = dump_yaml(normalize(policy))
    assert 'run_as_user: "yes"' in dumped
    assert digest(load_text(dumped)) == digest(policy)


def test_compat_files_round_trip_through_canonical_yaml():
    guard = COMPAT / "openshell/supervisor-middleware-content-guard_policy.yaml"  # refused: an operator-run service
    for path in [COMPAT / "nemoclaw/openclaw-sandbox.yaml", *COMPAT.glob("openshell/*policy*.yaml")]:
        if path == guard:
            continue
        policy = load_file(path)
        again = load_text(dump_yaml(normalize(policy)), "again.yaml")
        assert normalize(again) == normalize(policy), path


PRESET = """\
preset: {name: extra, description: test}
network_policies:
  gh:
    endpoints: [{host: api.github.com, port: 443, protocol: rest, access: read-only}]
    binaries: [{path: /usr/bin/gh}]
  pypi:
    endpoints: [{host: pypi.org, port: 443}]
    binaries: [{path: /usr/bin/pip}]
"""


def test_merge_adds_overrides_and_reports():
    base = load_text(A, "base.yaml")
    preset = load_preset_text(PRESET, "extra.yaml")
    merged, report = merge(base, [preset])
    assert set(merged.network_policies) == {"gh", "pypi"}
    assert merged.network_policies["gh"] == preset.network_policies["gh"]  # later wins, wholesale
    assert merged.filesystem == base.filesystem
    (over,) = report.overridden
    assert (over.key, over.source, over.previous_source) == ("gh", "extra.yaml", "base.yaml")
    assert "overridden network_policies.gh: extra.yaml replaces the definition from base.yaml" in report.render()
    assert "added network_policies.pypi from extra.yaml" in report.render()


def test_merge_order_matters_and_identical_is_not_an_override():
    base = load_text(A, "base.yaml")
    p1 = load_preset_text(PRESET, "p1.yaml")
    p2 = load_preset_text(PRESET.replace("read-only", "full"), "p2.yaml")
    m12, _ = merge(base, [p1, p2])
    m21, _ = merge(base, [p2, p1])
    assert m12.network_policies["gh"].endpoints[0].access == "full"
    assert m21.network_policies["gh"].endpoints[0].access == "read-only"
    _, report = merge(base, [p1, p1])
    assert [e.action for e in report.entries if e.source == "p1.yaml" and e.key == "gh"] == [
        "overridden",
        "identical",
    ]


def test_merge_with_a_policy_overlay_replaces_static_sections():
    base = load_text(A, "base.yaml")
    overlay = load_text("version: 1\nlandlock: {compatibility: hard_requirement}\nprocess: {run_as_user: agent}\n", "o")
    merged, report = merge(base, [overlay])
    assert merged.landlock.compatibility == "hard_requirement"
    assert merged.process.run_as_user == "agent"
    assert {(e.section, e.action) for e in report.entries} == {("landlock", "added"), ("process", "overridden")}


def test_merge_nothing_is_identity():
    base = load_text(A)
    merged, report = merge(base, [])
    assert merged == base and digest(merged) == digest(base) and report.entries == ()


def test_diff_identical():
    d = diff(load_text(A), load_text(A_REWRITTEN))
    assert not d.changed and not d.needs_restart
    assert "no changes" in d.render()


def test_diff_network_only_is_hot_reloadable():
    old = load_text(A, "old.yaml")
    new = load_text(
        A.replace('          - allow: {method: POST, path: "/graphql"}\n', "").replace(
            "{path: /usr/bin/curl}", "{path: /usr/bin/wget}"
        )
        + "  pypi:\n    endpoints: [{host: pypi.org, port: 443}]\n    binaries: [{path: /usr/bin/pip}]\n",
        "new.yaml",
    )
    d = diff(old, new)
    assert d.changed and not d.needs_restart
    text = d.render()
    assert "+ network_policies.pypi: added" in text
    assert "~ network_policies.gh: changed" in text
    assert 'endpoint api.github.com:443: rules: - {"allow": {"method": "POST", "path": "/graphql"}}' in text
    assert "binaries: + /usr/bin/wget" in text and "binaries: - /usr/bin/curl" in text
    assert "result: hot-reloadable" in text
    assert "static part" not in text


def test_diff_static_change_needs_restart():
    old = load_text(A, "old.yaml")
    new = load_text(A.replace("[/usr, /etc]", "[/usr, /etc, /opt]"), "new.yaml")
    d = diff(old, new)
    assert d.needs_restart
    text = d.render()
    assert "static part (needs sandbox restart):" in text
    assert "read_only: + /opt" in text
    assert "result: needs sandbox restart" in text
    as_dict = d.to_dict()
    assert as_dict["needs_restart"] is True and as_dict["changes"][0]["section"] == "filesystem_policy"


def test_diff_removed_rule_and_removed_section():
    old = load_text(A, "old.yaml")
    new = load_text("version: 1\nnetwork_policies: {}\n", "new.yaml")
    d = diff(old, new)
    kinds = {(c.kind, c.label) for c in d.changes}
    assert ("removed", "network_policies.gh") in kinds
    assert ("removed", "filesystem_policy") in kinds and ("removed", "process") in kinds
    assert d.needs_restart
