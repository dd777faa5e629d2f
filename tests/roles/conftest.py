"""Helpers for the role tests: run a role against this machine with ansible-playbook and read the recap."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class PlaybookRun:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        match = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", self.output)
        self.ok, self.changed, self.unreachable, self.failed = (int(g) for g in match.groups()) if match else (0,) * 4


@pytest.fixture
def run_role(tmp_path: Path):
    """run_role(role, vars, check=False, tasks_from=None, verbosity=0) -> PlaybookRun, against localhost
    (connection local); verbosity 3 is -vvv."""

    def _run(
        role: str, role_vars: dict, check: bool = False, tasks_from: str | None = None, verbosity: int = 0
    ) -> PlaybookRun:
        if os.geteuid() != 0:
            pytest.skip("needs root (the role runs with become on this machine)")
        include = {"name": role, **({"tasks_from": tasks_from} if tasks_from else {})}
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            json.dumps(
                [
                    {
                        "name": f"Run {role} against this machine",
                        "hosts": "localhost",
                        "connection": "local",
                        "gather_facts": True,
                        "tasks": [{"name": f"Apply {role}", "ansible.builtin.include_role": include}],
                    }
                ]
            )
        )
        extra = tmp_path / "vars.json"
        extra.write_text(json.dumps(role_vars))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}"]
        if check:
            cmd.append("--check")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_FACT_CACHING": "memory",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        }
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
        return PlaybookRun(proc)

    return _run
