"""site.yml's staged rollout: the prepare, runtime and services plays' own batching keywords (serial,
max_fail_percentage, any_errors_fatal, vars_files), read from the real files, applied to a probe play on 50
local hosts that fails where told. The roles themselves are not run (they would change this machine).

A failed canary leaves every other host untouched; a later failed host stops the services play at its batch, while
the prepare and runtime plays tolerate up to clawfleet_max_fail_percentage of a batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOSTS = [f"h{i:02d}" for i in range(1, 51)]
KEYWORDS = ("serial", "max_fail_percentage", "any_errors_fatal", "vars_files")


def _staged_plays() -> dict[str, dict]:
    """The three batched plays of playbooks/site.yml, by role in the rollout, with vars_files made absolute."""
    site = yaml.safe_load((REPO / "playbooks/site.yml").read_text())
    prepare = yaml.safe_load((REPO / "playbooks/prepare_hosts.yml").read_text())[0]
    services = yaml.safe_load((REPO / "playbooks/services.yml").read_text())[0]
    runtime = next(p for p in site if "roles" in p and p["roles"][0]["role"] == "clawfleet_runtime")
    plays = {
        "prepare": (prepare, REPO / "playbooks"),
        "runtime": (runtime, REPO / "playbooks"),
        "services": (services, REPO / "playbooks"),
    }
    out = {}
    for name, (play, base) in plays.items():
        keywords = {k: play[k] for k in KEYWORDS if k in play}
        keywords["vars_files"] = [str(base / f) for f in keywords.get("vars_files", [])]
        out[name] = keywords
    return out


def _rollout(tmp_path: Path, play: str, fail: list[str]) -> tuple[int, list[list[str]]]:
    """Run the probe with `play`'s keywords; returns rc and the hosts that passed the failing task, per batch."""
    inventory = {"all": {"hosts": {h: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                                   for h in HOSTS}}}  # fmt: skip
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    probe = {
        "name": f"PROBE {play}",
        "hosts": "all",
        "gather_facts": False,
        **_staged_plays()[play],
        "tasks": [
            {
                "name": "Fail where told",
                "ansible.builtin.fail": {"msg": "told to"},
                "when": "inventory_hostname in fail",
            },
            {"name": "Touch", "ansible.builtin.debug": {"msg": "TOUCHED {{ inventory_hostname }}"}},
        ],
    }
    (tmp_path / "play.yml").write_text(json.dumps([probe]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FACT_CACHING": "memory", "ANSIBLE_FORKS": "20"}  # fmt: skip
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.json"), str(tmp_path / "play.yml"),
         "-e", json.dumps({"fail": fail})],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    batches: list[list[str]] = []
    for line in proc.stdout.splitlines():
        if line.startswith("PLAY [PROBE"):
            batches.append([])
        elif m := re.search(r"msg: TOUCHED (h\d\d)", line):
            batches[-1].append(m.group(1))
    return proc.returncode, batches


def _touched(batches: list[list[str]]) -> list[str]:
    return [host for batch in batches for host in batch]


def test_every_batched_play_reads_the_shared_inputs():
    plays = _staged_plays()
    for name, keywords in plays.items():
        assert keywords["serial"] == "{{ clawfleet_serial }}", name
        assert keywords["vars_files"] == [str(REPO / "playbooks/vars/rollout.yml")], name
    assert plays["prepare"]["max_fail_percentage"] == plays["runtime"]["max_fail_percentage"]
    assert plays["services"]["any_errors_fatal"] is True


def test_canary_first_then_batches_of_20_percent(tmp_path):
    rc, batches = _rollout(tmp_path, "runtime", fail=[])
    assert rc == 0
    assert [len(b) for b in batches] == [1, 10, 10, 10, 10, 9]
    assert sorted(_touched(batches)) == HOSTS


@pytest.mark.parametrize("play", ["prepare", "runtime", "services"])
def test_a_failed_canary_touches_no_other_host(tmp_path, play):
    rc, batches = _rollout(tmp_path, play, fail=["h01"])
    assert rc != 0
    assert _touched(batches) == []


@pytest.mark.parametrize("play", ["prepare", "runtime"])
def test_host_preparation_tolerates_one_failed_host_in_a_batch_of_ten(tmp_path, play):
    rc, batches = _rollout(tmp_path, play, fail=["h05"])
    assert rc != 0  # the failed host is reported
    assert sorted(_touched(batches)) == [h for h in HOSTS if h != "h05"]


def test_host_preparation_stops_when_more_than_the_limit_fails(tmp_path):
    rc, batches = _rollout(tmp_path, "prepare", fail=["h05", "h06"])  # 2 of 10: 20 % > 10 %
    assert rc != 0
    # Ansible stops the play right after the task where the limit was passed: no later task in that batch, no
    # later batch.
    assert _touched(batches) == ["h01"]


def test_services_stop_at_the_batch_of_a_failed_host(tmp_path):
    rc, batches = _rollout(tmp_path, "services", fail=["h05"])
    assert rc != 0
    # The canary ran; in h05's batch nobody passed the failing task; no later batch started.
    assert _touched(batches) == ["h01"]
