"""filter_plugins/clawfleet_policy.py: direct calls, and one real ansible-playbook run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from policy_testpaths import COMPAT, POLICIES, REPO

from clawfleet.policy import digest, load_file

PLUGIN = REPO / "filter_plugins" / "clawfleet_policy.py"
PLAYBOOK = Path(__file__).parent / "filter_playbook.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


@pytest.fixture(scope="module")
def filters():
    spec = importlib.util.spec_from_file_location("clawfleet_policy_filters", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_filter_names(filters):
    assert set(filters) == {
        "clawfleet_policy_validate",
        "clawfleet_policy_merge",
        "clawfleet_policy_digest",
        "clawfleet_policy_diff",
        "clawfleet_policy_normalize",
        "clawfleet_policy_alias_binaries",
    }


AGENT_NODE = "/opt/clawfleet/openclaw/*/node/bin/node"


def test_alias_binaries_opens_a_node_rule_to_the_agents_node_only(filters):
    """An agent sandbox (OpenClaw on its own Node): the telegram preset, written for /usr/bin/node, also lets the
    agent's Node out; the twin, a rule for another binary, is left closed to it; the digest follows the change."""
    base = str(POLICIES / "openclaw-sandbox.yaml")
    merged = filters["clawfleet_policy_merge"](base, [str(POLICIES / "presets" / "telegram.yaml")], report=True)
    aliased = filters["clawfleet_policy_alias_binaries"](merged, {"/usr/bin/node": [AGENT_NODE]})
    rules = aliased["policy"]["network_policies"]
    assert {"path": AGENT_NODE} in rules["telegram"]["binaries"]
    # Upstream's clawhub rule names /usr/local/bin/openclaw, not node: the agent's Node gets nothing there.
    assert {"path": AGENT_NODE} not in rules["clawhub"]["binaries"]
    assert aliased["digest"] != merged["digest"]
    assert any("added " + AGENT_NODE in line for line in aliased["report"])
    # Applying it again changes nothing (the role runs it on every play).
    again = filters["clawfleet_policy_alias_binaries"](aliased, {"/usr/bin/node": [AGENT_NODE]})
    assert again["digest"] == aliased["digest"] and again["policy"] == aliased["policy"]
    # No aliases (a sandbox without an agent): the merged policy as it was.
    same = filters["clawfleet_policy_alias_binaries"](merged, {})
    assert same["digest"] == merged["digest"]


def test_accepts_path_text_and_dict(filters):
    path = COMPAT / "openshell" / "sandbox-policy-quickstart_policy.yaml"
    expected = digest(load_file(path))
    as_dict = filters["clawfleet_policy_normalize"](str(path))
    assert filters["clawfleet_policy_digest"](str(path)) == expected
    assert filters["clawfleet_policy_digest"](path.read_text()) == expected
    assert filters["clawfleet_policy_digest"](as_dict) == expected
    assert filters["clawfleet_policy_validate"](as_dict) is True
    preset = COMPAT / "nemoclaw" / "slack.yaml"
    assert filters["clawfleet_policy_validate"](str(preset)) is True


def test_invalid_policy_raises_ansible_filter_error(filters):
    with pytest.raises(AnsibleFilterError) as info:
        filters["clawfleet_policy_validate"]("version: 1\nversion: 2\n")
    assert "<policy>:2:1: version: duplicate key 'version'" in str(info.value)
    with pytest.raises(AnsibleFilterError) as info:
        filters["clawfleet_policy_digest"]({"version": 1, "process": {"run_as_user": "root"}})
    assert "<policy>: process.run_as_user: running as root is not allowed" in str(info.value)
    with pytest.raises(AnsibleFilterError, match="expected a policy as a dict"):
        filters["clawfleet_policy_digest"](42)
    routes = COMPAT / "openshell" / "local-inference_routes.yaml"
    with pytest.raises(AnsibleFilterError, match=f"{routes}:13:1: routes: this is an inference routes file"):
        filters["clawfleet_policy_validate"](str(routes))


def test_merge_and_diff(filters):
    base = str(POLICIES / "base.yaml")
    merged = filters["clawfleet_policy_merge"](base, [str(POLICIES / "presets" / "github.yaml")], report=True)
    assert "github" in merged["policy"]["network_policies"]
    assert merged["report"] and merged["overridden"] == []
    plain = filters["clawfleet_policy_merge"](base, str(POLICIES / "presets" / "github.yaml"))
    assert plain == merged["policy"]
    change = filters["clawfleet_policy_diff"](base, merged["policy"])
    assert change["changed"] and not change["needs_restart"]
    assert "+ network_policies.github: added" in change["text"]


def _play(extra: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # run outside the repo so its ansible.cfg (inventory, fact cache) stays out of the way
    env = {
        **os.environ,
        "ANSIBLE_FILTER_PLUGINS": str(REPO / "filter_plugins"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": "/tmp/.ansible-policy-tests",
        "PYTHONPATH": "",  # the plugin must find clawfleet by itself
    }
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(PLAYBOOK), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_real_playbook_uses_the_filters(tmp_path):
    proc = _play([], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DIGEST=sha256:" in proc.stdout
    assert "failed=0" in proc.stdout


def test_real_playbook_fails_with_positioned_message(tmp_path):
    proc = _play(["-e", "check_failure=true"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "<policy>:4:38: network_policies.a.endpoints[0].port: a port must be between 1 and 65535" in proc.stdout
