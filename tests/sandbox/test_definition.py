"""Sandbox definition files (``clawfleet.sandbox.definition``): positioned errors, checks, and one way from a
policy to a SandboxSpec (a definition and ``sandbox run``'s flags give the same spec). No root needed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clawfleet.policy import PolicyError
from clawfleet.sandbox.definition import DefinitionError, load_definition
from clawfleet.sandbox.environment import EnvError
from clawfleet.sandbox.run_args import add_run_arguments, spec_from_args

POLICY = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /etc]
  read_write: [/tmp]
process:
  run_as_user: nobody
network_policies: {}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "agent-policy.yaml"
    path.write_text(POLICY)
    return path


def _definition(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_a_definition_gives_the_spec_that_sandbox_run_gives_for_the_same_policy(tmp_path, policy):
    (tmp_path / "work").mkdir()
    text = "name: agent\ncommand: [/bin/true, x]\npolicy: agent-policy.yaml\nworkdir: work\n"
    d = load_definition(str(_definition(tmp_path, text + "limits: {memory_max: 96M, pids_max: 64}\n")))
    d.check()
    spec = d.to_spec({"PATH": "/usr/bin"})
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = parser.parse_args(["--policy", str(policy), "--workdir", str(tmp_path / "work"), "--memory-max", "96M",
                              "--pids-max", "64", "--", "/bin/true", "x"])  # fmt: skip
    assert spec == spec_from_args(args, {"PATH": "/usr/bin"})
    assert spec.user == "nobody" and "/sandbox" in spec.read_write and spec.memory_max == 96 << 20
    assert d.policy == str(policy)  # relative to the definition file


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("command: [a]\npolicy: p.yaml\n", ":1:1: ", "'name' is required"),
        ("name: a\ncommand: [a]\npolicy: p.yaml\nbogus: 1\n", ":4:1: bogus: ", "unknown keys: bogus"),
        ("name: a\ncommand: [a]\npolicy: p.yaml\nmode: audit\n", ":4:7: mode: ", "mode must be enforce or monitor"),
        ("name: a\ncommand: [a, 1]\npolicy: p.yaml\n", ":2:10: command: ", "a string or a list of strings"),
        ("name: a\ncommand: [a]\npolicy: p.yaml\nlimits:\n  cpu: 2\n", ":5:3: limits.cpu: ", "unknown limits: cpu"),
        (
            "name: a\ncommand: [a]\npolicy: p.yaml\nlimits: {memory_max: lots}\n",
            ":4:22: limits.memory_max: ",
            "not a size",
        ),
        ("name: a\nname: b\ncommand: [a]\npolicy: p.yaml\n", ":2:1: ", "duplicate key"),
        ("name: a\ncommand: [a]\npolicy: p.yaml\nenv: [A]\n", ":4:6: env: ", "expected a mapping"),
    ],
)
def test_a_bad_definition_is_refused_at_file_line_column(tmp_path, text, where, message):
    path = _definition(tmp_path, text)
    with pytest.raises(DefinitionError) as exc:
        load_definition(str(path)).check()
    assert str(exc.value).startswith(f"{path}{where}"), str(exc.value)
    assert message in str(exc.value)


def test_check_finds_policy_and_environment_problems_before_any_start(tmp_path, policy):
    missing = _definition(tmp_path, "name: a\ncommand: [a]\npolicy: nowhere.yaml\n")
    with pytest.raises(PolicyError, match=r"nowhere\.yaml"):
        load_definition(str(missing)).check()
    leaky = _definition(tmp_path, f"name: a\ncommand: [a]\npolicy: {policy}\nenv: {{GITHUB_TOKEN: ghp_realvalue}}\n")
    with pytest.raises(EnvError, match="looks like a credential"):
        load_definition(str(leaky)).check()
