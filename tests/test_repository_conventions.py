"""Conventions every role and inventory in this repository must keep (checked statically, on the controller)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
VENV_BIN = Path(sys.executable).parent


def _yaml(path: Path):
    return YAML(typ="safe").load(path.read_text())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_variables_are_prefixed_and_declared(role: Path):
    defaults_file = role / "defaults" / "main.yml"
    defaults = (_yaml(defaults_file) or {}) if defaults_file.exists() else {}
    # A variable read only by another entry point (e.g. the sandbox role's `start`) is declared under that one.
    spec = {name: option for entry in _yaml(role / "meta" / "argument_specs.yml")["argument_specs"].values()
            for name, option in (entry.get("options") or {}).items()}  # fmt: skip
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{role.name}: default {name} lacks the role prefix"
        assert name in spec, f"{role.name}: default {name} is not declared in meta/argument_specs.yml"
    for name, option in spec.items():
        assert name.startswith(f"{role.name}_"), f"{role.name}: option {name} lacks the role prefix"
        if name in defaults and "default" in option:
            assert option["default"] == defaults[name], f"{role.name}: {name} default differs from defaults/main.yml"


def test_default_inventory_is_this_machine():
    out = subprocess.run(
        [VENV_BIN / "ansible-inventory", "--list"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    inventory = json.loads(out)
    hostvars = inventory["_meta"]["hostvars"]
    assert list(hostvars) == ["localhost"]
    assert hostvars["localhost"]["ansible_connection"] == "local"


def test_example_fleet_inventory_and_vault_decrypt():
    env = {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories/example-vault-password")}
    out = subprocess.run(
        [VENV_BIN / "ansible-inventory", "-i", "inventories/example", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    inventory = json.loads(out)
    assert set(inventory["vps"]["hosts"]) == {"vps-fra-01", "vps-fra-02", "vps-nyc-01"}
    assert set(inventory["dgx"]["hosts"]) == {"dgx-h200-01", "dgx-h100-01"}
    # The vault file is really encrypted on disk, and decrypts to the variables group_vars refers to.
    vault_file = REPO / "inventories/example/group_vars/all/vault.yml"
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    dgx = inventory["_meta"]["hostvars"]["dgx-h200-01"]
    assert dgx["vault_openai_api_key"].startswith("sk-example-")
    assert dgx["base_extra_packages"] == ["htop", "nvtop"]


def test_example_vault_refuses_wrong_password(tmp_path: Path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    proc = subprocess.run(
        [VENV_BIN / "ansible-inventory", "-i", "inventories/example", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(wrong)},
    )
    assert proc.returncode != 0
    assert "Decryption failed" in proc.stderr


def test_console_script_reports_version():
    out = subprocess.run([VENV_BIN / "clawfleet", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("clawfleet ")
