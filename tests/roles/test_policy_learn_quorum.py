"""playbooks/policy_learn.yml on the controller: what one host observed does not become the fleet's rule.

The merge play runs for real (``--limit localhost``); the hosts' observations are inventory variables in the shape
roles/policy/tasks/learn.yml records them (``policy_learned``), so no host needs a gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _rule(host: str) -> dict:
    return {
        "name": f"learned_{host.replace('.', '_')}_443",
        "endpoints": [{"host": host, "port": 443}],
        "binaries": [{"path": "/usr/bin/curl"}],
    }


def _learned(*hosts: str) -> dict:
    return {
        "agent": {
            "pending": [],
            "suggested": {
                "version": 1,
                "network_policies": {f"learned_{h.replace('.', '_')}_443": _rule(h) for h in hosts},
            },
        }
    }


def _learn(tmp_path: Path, observed: dict[str, tuple[str, ...]], extra: dict | None = None) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((REPO / "policies/base.yaml").read_text())
    inventory = {
        "all": {
            "hosts": {
                "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                **{
                    h: {"policy_learned": _learned(*seen), "policy_set": {"agent": {"policy": base}}}
                    for h, seen in observed.items()
                },
            }
        }
    }
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory))
    out = tmp_path / "learned"
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inv),
            "playbooks/policy_learn.yml",
            "--limit",
            "localhost",
            "-e",
            json.dumps({"clawfleet_learn_output_dir": str(out), **(extra or {})}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "fleet-report.json").read_text())["agent"]
    preset = out / "agent.preset.yaml"
    report["preset_rules"] = sorted(yaml.safe_load(preset.read_text())["network_policies"]) if preset.exists() else []
    return report


def test_a_rule_one_host_of_many_observed_is_held_back(tmp_path: Path) -> None:
    # Attack: one compromised host of three talks to exfil.test; its observation must not become every host's rule.
    report = _learn(
        tmp_path,
        {
            "h1": ("pypi.org", "exfil.test"),
            "h2": ("pypi.org",),
            "h3": ("pypi.org", "api.github.com"),
        },
    )
    assert report["preset_rules"] == ["learned_pypi_org_443"]  # the only rule 2 of 3 hosts observed
    assert sorted(report["held_back_rules"]) == ["learned_api_github_com_443", "learned_exfil_test_443"]
    assert report["held_back_rules"]["learned_exfil_test_443"] == ["h1"]


def test_rules_the_fleet_agrees_on_are_kept(tmp_path: Path) -> None:
    report = _learn(tmp_path, {"h1": ("pypi.org", "exfil.test"), "h2": ("pypi.org",), "h3": ("pypi.org",)})
    assert report["preset_rules"] == ["learned_pypi_org_443"]
    assert report["learned_rules"] == ["learned_pypi_org_443"]
    assert list(report["held_back_rules"]) == ["learned_exfil_test_443"]


def test_a_single_host_fleet_and_an_explicit_quorum(tmp_path: Path) -> None:
    one = _learn(tmp_path / "one", {"h1": ("pypi.org",)})
    assert one["preset_rules"] == ["learned_pypi_org_443"]
    # The operator may ask for the union (quorum 0: at least one host) knowingly.
    union = _learn(
        tmp_path / "union",
        {"h1": ("exfil.test",), "h2": ("pypi.org",), "h3": ("pypi.org",)},
        {"clawfleet_learn_min_host_fraction": 0},
    )
    assert union["preset_rules"] == ["learned_exfil_test_443", "learned_pypi_org_443"]
