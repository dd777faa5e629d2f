"""Every upstream file in tests/data/openshell-policies loads unchanged (or is refused clearly)."""

from __future__ import annotations

import jsonschema
import pytest
from policy_testpaths import COMPAT
from ruamel.yaml import YAML

from clawfleet.policy import (
    JSON_SCHEMA,
    Policy,
    PolicyError,
    Preset,
    compile_policy,
    load_any_file,
    load_file,
    load_preset_file,
    load_text,
    merge,
)

ALL = sorted(COMPAT.glob("*/*.yaml"))
ROUTES = COMPAT / "openshell" / "local-inference_routes.yaml"
PRESETS = sorted(p for p in COMPAT.glob("nemoclaw/*.yaml") if p.name != "openclaw-sandbox.yaml")
# An operator-run middleware service (``content-guard-example``) that upstream itself refuses unless the operator
# registered it in the gateway TOML; clawfleet runs built-ins only, so the file is refused, naming the type.
CONTENT_GUARD = COMPAT / "openshell" / "supervisor-middleware-content-guard_policy.yaml"
POLICIES = sorted(p for p in ALL if p not in PRESETS and p not in (ROUTES, CONTENT_GUARD))


def test_corpus_is_present():
    # If the corpus moved, the tests below would silently parametrize over nothing.
    assert len(ALL) == 19
    assert len(PRESETS) == 9
    assert len(POLICIES) == 8


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_files_load_as_policies(path):
    policy = load_file(path)
    assert isinstance(policy, Policy)
    assert policy.version == 1
    assert policy.network_policies
    assert all(p.severity == "warning" for p in policy.warnings)
    compile_policy(policy)  # compiles without error


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_nemoclaw_presets_load_as_presets(path):
    preset = load_preset_file(path)
    assert isinstance(preset, Preset)
    assert preset.info.name == path.stem
    assert preset.network_policies
    with pytest.raises(PolicyError, match=r"this is a NemoClaw preset"):
        load_file(path)


def test_routes_file_is_recognised_and_rejected():
    for loader in (load_file, load_any_file, load_preset_file):
        with pytest.raises(PolicyError) as info:
            loader(ROUTES)
        (problem,) = info.value.problems
        assert "this is an inference routes file, not a sandbox policy" in problem.message
        assert (problem.file, problem.line, problem.col) == (str(ROUTES), 13, 1)


def test_presets_merge_into_the_nemoclaw_base():
    base = load_file(COMPAT / "nemoclaw" / "openclaw-sandbox.yaml")
    merged, report = merge(base, [load_preset_file(p) for p in PRESETS])
    # the base already has a 'discord' rule; the discord preset replaces it (later wins) and says so
    assert [e.key for e in report.overridden] == []  # identical definitions are not overrides
    assert any(e.key == "discord" and e.action == "identical" for e in report.entries)
    assert {"slack", "pypi", "atlassian", "docker_registries"} <= set(merged.network_policies)


def test_compat_features_are_modelled():
    tcp = load_file(COMPAT / "openshell" / "transparent-tcp-redis_policy.yaml")
    ep = tcp.network_policies["redis"].endpoints[0]
    assert ep.protocol == "tcp" and ep.allowed_ips == ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    with pytest.raises(PolicyError) as info:
        load_file(CONTENT_GUARD)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.col) == (str(CONTENT_GUARD), 9, 17)
    assert "unknown middleware type 'content-guard-example'" in problem.message
    assert "operator-run middleware service" in problem.message
    # the same file with the built-in the gateway runs loads, and its config keys upstream's example uses are
    # checked by that built-in (terms is the operator service's key, not the built-in's)
    text = CONTENT_GUARD.read_text().replace("content-guard-example", "openshell/regex")
    with pytest.raises(PolicyError, match=r"unknown openshell/regex config key 'terms'"):
        load_text(text, "guard.yaml")
    builtin = load_text(text.replace("      terms:\n        - prototype-secret\n        - internal-only\n", ""))
    guard = builtin.network_middlewares["prototype-content-guard"]
    assert guard.middleware == "openshell/regex" and guard.order == 10 and guard.supported
    assert guard.include == ("httpbin.org",) and guard.config["replacement"] == "[FILTERED]"
    jira = load_preset_file(COMPAT / "nemoclaw" / "jira.yaml")
    assert jira.network_policies["atlassian"].endpoints[0].host == "*.atlassian.net"
    prover = load_file(COMPAT / "openshell" / "openshell-prover_testdata_policy.yaml")
    assert prover.process.run_as_user == "sandbox"
    assert prover.landlock.compatibility == "best_effort"
    assert "/sandbox" in prover.filesystem.read_write and prover.filesystem.include_workdir


@pytest.mark.parametrize("path", POLICIES + PRESETS, ids=lambda p: p.name)
def test_json_schema_accepts_compat_files(path):
    data = YAML(typ="safe").load(path.read_text())
    jsonschema.validate(data, JSON_SCHEMA)


def test_json_schema_rejects_routes_and_unknown_keys():
    validator = jsonschema.Draft202012Validator(JSON_SCHEMA)
    assert not validator.is_valid(YAML(typ="safe").load(ROUTES.read_text()))
    assert not validator.is_valid({"version": 1, "bogus": 1})
    assert not validator.is_valid({"version": 2})
    assert not validator.is_valid(
        {"version": 1, "network_policies": {"a": {"endpoints": [{"host": "x.com", "port": 70000}]}}}
    )
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)


def test_json_schema_accepts_the_repository_policies():
    from policy_testpaths import POLICIES as REPO_POLICIES

    files = sorted(REPO_POLICIES.glob("**/*.yaml"))
    assert len(files) == 13  # base, openclaw-sandbox (the agent role's base) + 11 presets
    for path in files:
        jsonschema.validate(YAML(typ="safe").load(path.read_text()), JSON_SCHEMA)
