"""The inputs the roles share (roles/clawfleet) are declared once and checked once: a mistyped sandbox key or a name
that cannot be a unit name stops the play before any role acts on it, next to the same input spelled right. The
one wait for policy enforcement (roles/clawfleet/tasks/wait_for_policy.yml) runs against a real gateway daemon: it
passes when the gateway enforces the digest asked for and fails, naming the sandbox and the digest, when it does
not. The static checks keep every role on the shared declarations and the role__x naming."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
SHARED = YAML(typ="safe").load((ROLES / "clawfleet" / "defaults" / "main.yml").read_text())
VENV = str(Path(sys.executable).parent.parent)
# Role facts other roles, playbooks or tests read: the only set_fact/register names without a double underscore.
PUBLIC_FACTS = {
    "nvidia_gpu_present",
    "nvidia_gpu_container_runtime",
    "nvidia_gpu_facts",
    "nvidia_gpu_reboot_required",
    "policy_set",
    "sandbox_definitions_changed",
    "sandbox_workdirs",  # sandbox -> agent: where each workdir is
    "agent_restart_sandboxes",  # agent -> sandbox (start): sandboxes to restart into a new OpenClaw version
    "policy_learned",
    "policy_status_report",
    "probe_dir",
    "probe_staged",
    "probe_staging_dir",
    "vllm_plan",
    "privacy_router_config",
    "clawfleet_sandbox_status",
}


# What a role passes to the shared wait (include_role vars): the task file's own inputs.
WAIT_INPUTS = set(
    YAML(typ="safe").load((ROLES / "clawfleet" / "meta" / "argument_specs.yml").read_text())["argument_specs"][
        "wait_for_policy"
    ]["options"]
)


def _yaml(path: Path):
    return YAML(typ="safe").load(path.read_text())


def _role_files(role: Path):
    for sub in ("tasks", "handlers", "templates", "defaults"):
        yield from sorted((role / sub).glob("*")) if (role / sub).is_dir() else ()


def _task_names(tasks) -> set[str]:
    names: set[str] = set()
    for task in tasks or []:
        for key in ("block", "rescue", "always"):
            names |= _task_names(task.get(key))
        if "register" in task:
            names.add(task["register"])
        facts = task.get("ansible.builtin.set_fact") or {}
        names |= {k for k in facts if k != "cacheable"} if isinstance(facts, dict) else set()
        names |= set(task.get("vars") or {})
    return names


@pytest.mark.root
def test_a_mistyped_sandbox_key_is_refused_naming_it(run_role):
    run = run_role("clawfleet", {"clawfleet_sandboxes": [{"name": "agent-a", "presest": ["pypi"]}]})
    assert run.rc != 0 and run.failed == 1, run.output
    assert "presest" in run.output and "clawfleet_sandboxes" in run.output


@pytest.mark.root
def test_the_same_sandbox_spelled_right_passes(run_role):
    run = run_role("clawfleet", {"clawfleet_sandboxes": [{"name": "agent-a", "presets": ["pypi"], "inference": False}]})
    assert run.rc == 0 and run.failed == 0, run.output


@pytest.mark.root
@pytest.mark.parametrize(
    "names", [["../etc/passwd"], ["agent-a", "agent-a"], ["Agent A"], ["x" * 64]], ids=["path", "dup", "space", "long"]
)
def test_sandbox_names_that_cannot_be_unit_or_file_names_are_refused(run_role, names):
    run = run_role("clawfleet", {"clawfleet_sandboxes": [{"name": n} for n in names]})
    assert run.rc != 0 and run.failed == 1, run.output
    assert "every name must match" in run.output


@pytest.mark.root
def test_wait_for_policy_passes_when_the_gateway_enforces_the_digest(daemon, run_role):
    digest = daemon.status()["policy_digest"]
    run = run_role(
        "clawfleet",
        {"clawfleet_venv": VENV, "clawfleet_control_socket": str(daemon.socket),
         "clawfleet_wait_policies": [{"name": daemon.name, "digest": digest}], "clawfleet_wait_timeout": 5},
        tasks_from="wait_for_policy", verbosity=1,
    )  # fmt: skip
    assert run.rc == 0 and run.failed == 0, run.output
    # The status the caller gets back (printed at -v): the sandbox enforcing that digest.
    assert re.search(r"clawfleet_sandbox_status:\s+agent:.*policy_digest: " + re.escape(digest), run.output, re.S), (
        run.output
    )


@pytest.mark.root
def test_wait_for_policy_fails_when_the_gateway_enforces_another_digest(daemon, run_role):
    # The gateway runs the sandbox, but under the policy it had, not the one the rollout placed.
    expected = "sha256:" + "0" * 64
    run = run_role(
        "clawfleet",
        {"clawfleet_venv": VENV, "clawfleet_control_socket": str(daemon.socket),
         "clawfleet_wait_policies": [{"name": daemon.name, "digest": expected}], "clawfleet_wait_timeout": 2},
        tasks_from="wait_for_policy",
    )  # fmt: skip
    assert run.rc != 0 and run.failed == 1, run.output
    assert f"{daemon.name} enforcing {expected}" in run.output
    assert daemon.status()["policy_digest"] in run.output  # the last status the gateway gave is shown


@pytest.mark.root
def test_wait_for_policy_fails_for_a_sandbox_the_gateway_does_not_run(daemon, run_role):
    run = run_role(
        "clawfleet",
        {"clawfleet_venv": VENV, "clawfleet_control_socket": str(daemon.socket),
         "clawfleet_wait_policies": [{"name": "not-deployed", "digest": daemon.status()["policy_digest"]}],
         "clawfleet_wait_timeout": 2},
        tasks_from="wait_for_policy",
    )  # fmt: skip
    assert run.rc != 0 and run.failed == 1, run.output
    assert "not-deployed enforcing" in run.output


def test_shared_inputs_are_declared_once():
    spec = _yaml(ROLES / "clawfleet" / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(SHARED) == set(spec)
    for role in sorted(p for p in ROLES.iterdir() if p.name != "clawfleet"):
        defaults = _yaml(role / "defaults" / "main.yml") or {} if (role / "defaults" / "main.yml").exists() else {}
        # No role re-declares a shared input (or an alias defaulting to one).
        assert not set(defaults) & set(SHARED), role.name
        for name, value in defaults.items():
            alias = re.fullmatch(r"\{\{\s*(clawfleet_\w+)\s*(\|.*)?\}\}", str(value))
            assert not (alias and alias.group(1) in SHARED), f"{role.name}: {name} aliases {value}"
        # A role that reads a shared input has the role that declares it as a dependency.
        used = {n for f in _role_files(role) for n in SHARED if re.search(rf"\b{n}\b", f.read_text())}
        deps = [
            d["role"] if isinstance(d, dict) else d for d in _yaml(role / "meta" / "main.yml").get("dependencies") or []
        ]
        assert not used or "clawfleet" in deps, f"{role.name} reads {sorted(used)} without depending on clawfleet"


def test_no_role_hard_codes_a_shared_path():
    literal = re.compile(r"/etc/clawfleet\b|/var/lib/clawfleet\b(?!-)|/run/clawfleet\b|/opt/clawfleet/venv")
    for role in sorted(p for p in ROLES.iterdir() if p.name != "clawfleet"):
        for f in _role_files(role):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#", 1)[0] if f.suffix == ".yml" else ("" if line.lstrip().startswith("#") else line)
                assert not literal.search(code), f"{f.relative_to(REPO)}:{n}: {line.strip()}"


def test_internal_variables_are_named_role__x():
    for role in sorted(p for p in ROLES.iterdir() if (p / "tasks").is_dir()):
        names: set[str] = set()
        for f in sorted((role / "tasks").glob("*.yml")) + sorted((role / "handlers").glob("*.yml")):
            names |= _task_names(_yaml(f))
        bad = sorted(n for n in names if not n.startswith(f"{role.name}__") and n not in PUBLIC_FACTS | WAIT_INPUTS)
        assert not bad, f"{role.name}: internal variables not named {role.name}__x: {bad}"
