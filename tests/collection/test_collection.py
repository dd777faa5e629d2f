"""The clawfleet.fleet collection: what the tarball holds, playbooks by FQCN from it alone, and the EE context.

The Molecule `site` scenario converges the installed tarball on real systemd hosts; these tests are the fast
checks: a file the tarball lacks, or a playbook Ansible cannot resolve from the installed collection alone
(no repository roles or filters on any path), fails here first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("collections")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-collection.sh"), str(dest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dest


def _members() -> set[str]:
    with tarfile.open(ROOT / "dist" / f"clawfleet-fleet-{VERSION}.tar.gz") as tar:
        return set(tar.getnames())


def test_tarball_holds_what_hosts_and_controller_need_and_nothing_else(installed):
    names = _members()
    for needed in (
        "MANIFEST.json",
        "meta/runtime.yml",
        "playbooks/site.yml",
        "playbooks/services.yml",
        "playbooks/policy_rollout.yml",
        "roles/gateway/tasks/main.yml",
        "roles/sandbox/tasks/start.yml",
        "roles/policy/meta/argument_specs.yml",
        "roles/clawfleet/defaults/main.yml",
        "roles/clawfleet/tasks/wait_for_policy.yml",
        "policies/base.yaml",
        "pyproject.toml",
        "src/clawfleet/__init__.py",
        "filter_plugins/clawfleet_policy.py",
        "plugins/filter",
    ):
        assert needed in names, needed
    for unwanted in ("tests", "molecule", ".venv", "benchmarks", ".git", "scripts", "dist"):
        assert not any(n == unwanted or n.startswith(unwanted + "/") for n in names), unwanted
    # the filters are reachable where collections look for them
    plugins = installed / "ansible_collections" / "clawfleet" / "fleet" / "plugins" / "filter"
    assert (plugins / "clawfleet_policy.py").is_file()


def _fqcn(installed: Path, playbook: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),
        "ANSIBLE_FILTER_PLUGINS": str(tmp_path / "no-filters"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", playbook, "--syntax-check"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("playbook", ["site", "services", "verify", "policy_rollout", "policy_status", "uninstall"])
def test_playbooks_run_by_fqcn_from_the_installed_collection_alone(installed, tmp_path, playbook):
    proc = _fqcn(installed, f"clawfleet.fleet.{playbook}", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ansible_collections/clawfleet/fleet/playbooks/{playbook}.yml" in proc.stdout


def test_a_role_missing_from_the_collection_fails_the_fqcn_run(installed, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(installed, broken, symlinks=True)
    shutil.rmtree(broken / "ansible_collections" / "clawfleet" / "fleet" / "roles" / "clawfleet_runtime")
    proc = _fqcn(broken, "clawfleet.fleet.site", tmp_path)
    assert proc.returncode != 0
    assert "clawfleet_runtime" in proc.stdout + proc.stderr


def test_execution_environment_context_renders(installed, tmp_path):
    """ansible-builder validates execution-environment.yml and renders the build context (no image is built)."""
    work = tmp_path / "ee"
    (work / "dist").mkdir(parents=True)
    shutil.copy(ROOT / "execution-environment.yml", work)
    shutil.copy(ROOT / "dist" / f"clawfleet-fleet-{VERSION}.tar.gz", work / "dist")
    # ansible-builder only copies the wheel into the context: a stand-in file of that name is enough here
    (work / "dist" / f"clawfleet-{VERSION}-py3-none-any.whl").write_bytes(b"stand-in wheel")
    proc = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (work / "context" / "Dockerfile").read_text()
    assert f"clawfleet-fleet-{VERSION}.tar.gz" in containerfile
    assert f"clawfleet-{VERSION}-py3-none-any.whl" in containerfile
    requirements = yaml.safe_load((work / "context" / "_build" / "requirements.yml").read_text())
    assert {c["name"] for c in requirements["collections"]} >= {"ansible.posix", "community.general"}
    assert (work / "context" / "_build" / "clawfleet" / f"clawfleet-fleet-{VERSION}.tar.gz").is_file()


def test_no_role_embeds_plugins_that_a_collection_would_not_load():
    """Ansible loads a collection's plugins from plugins/ only: a role's own filter_plugins/ works from the
    repository and silently vanishes from the installed collection (the site converge then fails mid-run)."""
    plugin_dirs = ("filter_plugins", "library", "module_utils", "lookup_plugins", "action_plugins", "test_plugins")
    embedded = [str(p.relative_to(ROOT)) for d in plugin_dirs for p in (ROOT / "roles").glob(f"*/{d}")]
    assert embedded == []


def test_roles_and_playbooks_call_the_collection_filters_by_fqcn():
    """Inside an installed collection Ansible resolves filters only by FQCN (short names work from the clone's
    filter_plugins/ alone), so every call must read clawfleet.fleet.NAME."""
    import re

    defined: set[str] = set()
    for plugin in (ROOT / "filter_plugins").glob("*.py"):
        block = re.search(r"def filters\(self\)[^{]*\{(.*?)\}", plugin.read_text(), re.S)
        assert block, plugin
        defined |= set(re.findall(r'"([a-z_0-9]+)"\s*:', block.group(1)))
    assert "clawfleet_policy_merge" in defined
    short = re.compile(r"(?<![\w.])(" + "|".join(sorted(defined)) + r")\b")
    offenders = []
    for folder in ("roles", "playbooks"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".yml", ".yaml", ".j2") and short.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
