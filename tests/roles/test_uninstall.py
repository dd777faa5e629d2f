"""playbooks/uninstall.yml on this machine, every path in a temporary directory: it refuses to run unconfirmed,
removes what the roles installed and keeps the state, and removes the state, users and group only when told.
(Stopping the units needs systemd, which this machine does not run as PID 1: Molecule's hosts do.)"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _layout(root: Path) -> dict[str, Path]:
    paths = {
        "venv": root / "opt/clawfleet/venv",
        "venvs": root / "opt/clawfleet/venvs",
        "openclaw": root / "opt/clawfleet/openclaw",
        "vllm_venv": root / "opt/clawfleet/vllm",
        "probe": root / "usr/local/lib/clawfleet-probe",
        "config": root / "etc/clawfleet",
        "run": root / "run/clawfleet",
        "units": root / "etc/systemd/system",
        "logrotate": root / "etc/logrotate.d/clawfleet",
        "state": root / "var/lib/clawfleet",
        "log": root / "var/log/clawfleet",
        "vllm_home": root / "var/lib/clawfleet-vllm",
        "cache": root / "var/cache/clawfleet",
    }
    for key, path in paths.items():
        if key == "logrotate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# test\n")
        elif key == "venv":
            # The runtime link to one digest's venv, as clawfleet_runtime leaves it.
            (root / "opt/clawfleet/venvs/0123456789abcdef").mkdir(parents=True)
            path.symlink_to(root / "opt/clawfleet/venvs/0123456789abcdef")
        else:
            path.mkdir(parents=True, exist_ok=True)
    # Two OpenClaw versions and the live link, as the agent role leaves them.
    for version in ("2026.9.5", "2026.9.6"):
        (paths["openclaw"] / version / "bin").mkdir(parents=True)
    (paths["openclaw"] / "current").symlink_to("2026.9.6")
    (paths["config"] / "secrets").mkdir()
    (paths["config"] / "secrets" / "sandbox-a-TOKEN").write_text("x\n")
    (paths["state"] / "policy-ledger.jsonl").write_text("{}\n")
    (paths["units"] / "clawfleet-gateway.service").write_text("[Service]\n")
    (paths["units"] / "clawfleet-sandbox@.service").write_text("[Service]\n")
    (paths["units"] / "unrelated.service").write_text("[Service]\n")
    return paths


def _run(paths: dict[str, Path], tmp_path: Path, names: dict[str, str], **extra) -> subprocess.CompletedProcess:
    variables = {
        "clawfleet_venv": str(paths["venv"]),
        "clawfleet_runtime_venvs_dir": str(paths["venvs"]),
        "clawfleet_openclaw_root": str(paths["openclaw"]),
        "vllm_venv_dir": str(paths["vllm_venv"]),
        "probe_dir": str(paths["probe"]),
        "clawfleet_config_dir": str(paths["config"]),
        "clawfleet_run_dir": str(paths["run"]),
        "clawfleet_state_dir": str(paths["state"]),
        "clawfleet_log_dir": str(paths["log"]),
        "vllm_home_dir": str(paths["vllm_home"]),
        "clawfleet_uninstall_unit_dir": str(paths["units"]),
        "clawfleet_uninstall_logrotate_file": str(paths["logrotate"]),
        "clawfleet_uninstall_cache_dir": str(paths["cache"]),
        "clawfleet_sandboxes": [{"name": "a", "user": names["user"]}],
        "clawfleet_group": names["group"],
        "privacy_router_user": names["user"],
        "vllm_user": names["user"],
        "gateway_user": names["user"],
        **extra,
    }
    extra_file = tmp_path / "vars.json"
    extra_file.write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FACT_CACHING": "memory", "ANSIBLE_PYTHON_INTERPRETER": sys.executable}  # fmt: skip
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "playbooks/uninstall.yml",
           "-e", f"@{extra_file}"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def names():
    """A throwaway user and group standing for the sandbox and service users and the clawfleet group."""
    if os.geteuid() != 0:
        pytest.skip("needs root (users and groups)")
    suffix = uuid.uuid4().hex[:8]
    user, group = f"cfu-{suffix}", f"cfg-{suffix}"
    subprocess.run(["groupadd", "--system", group], check=True)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    yield {"user": user, "group": group}
    subprocess.run(["userdel", user], capture_output=True)
    subprocess.run(["groupdel", group], capture_output=True)


def test_without_confirmation_nothing_is_removed(tmp_path, names):
    paths = _layout(tmp_path / "host")
    proc = _run(paths, tmp_path, names)
    assert proc.returncode != 0
    assert "clawfleet_uninstall_confirm=true" in proc.stdout
    assert all(p.exists() for p in paths.values())


def test_removes_what_the_roles_installed_and_keeps_the_state(tmp_path, names):
    paths = _layout(tmp_path / "host")
    proc = _run(paths, tmp_path, names, clawfleet_uninstall_confirm=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for gone in ("venv", "venvs", "openclaw", "vllm_venv", "probe", "config", "run", "logrotate"):
        assert not paths[gone].exists() and not paths[gone].is_symlink(), gone
    assert not (paths["units"] / "clawfleet-gateway.service").exists()
    assert not (paths["units"] / "clawfleet-sandbox@.service").exists()
    assert (paths["units"] / "unrelated.service").exists()
    for kept in ("state", "log", "vllm_home", "cache"):
        assert paths[kept].exists(), kept
    assert (paths["state"] / "policy-ledger.jsonl").read_text() == "{}\n"
    pwd.getpwnam(names["user"]), grp.getgrnam(names["group"])  # still there (they own the kept state)
    # A second run finds nothing left to do.
    again = _run(paths, tmp_path, names, clawfleet_uninstall_confirm=True)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout


def test_removes_the_state_users_and_group_only_when_told(tmp_path, names):
    paths = _layout(tmp_path / "host")
    proc = _run(paths, tmp_path, names, clawfleet_uninstall_confirm=True, clawfleet_uninstall_remove_state=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not any(paths[k].exists() for k in ("state", "log", "vllm_home", "cache", "config", "venv"))
    with pytest.raises(KeyError):
        pwd.getpwnam(names["user"])
    with pytest.raises(KeyError):
        grp.getgrnam(names["group"])
