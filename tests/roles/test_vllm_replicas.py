"""The vllm role's replicas (vllm_replicas): placed on GPU sets of their own and ports vllm_port + i, one unit each,
rendered by the role itself on the controller (the Molecule gpu scenario has one fake GPU, so one replica)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PLAN = {
    "model": "nvidia/Some-Model",
    "gpu_indices": [2, 5],  # the sizing picks by free memory, not by index
    "tensor_parallel_size": 2,
    "args": ["serve", "nvidia/Some-Model", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.90"],
}
FACTS = {"present": True, "gpus": [{"index": i} for i in range(8)]}


def render(tmp_path: Path, replicas: int) -> subprocess.CompletedProcess:
    out = tmp_path / "units"
    out.mkdir()
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{
        "name": "Place and render", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [
            {"name": "Place", "ansible.builtin.include_role": {"name": "vllm", "tasks_from": "replicas",
                                                               "public": True}},
            {"name": "Render", "ansible.builtin.template": {
                "src": str(REPO / "roles/vllm/templates/clawfleet-vllm.service.j2"),
                "dest": str(out) + "/{{ vllm__replica['name'] }}.service", "mode": "0644"},
             "loop": "{{ vllm__replicas }}", "loop_control": {"loop_var": "vllm__replica"}},
        ],
    }]))  # fmt: skip
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"vllm_plan": PLAN, "nvidia_gpu_facts": FACTS, "vllm_replicas": replicas,
                                 "vllm_install_method": "none", "vllm_executable": "/usr/local/bin/vllm"}))  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": sys.executable}  # fmt: skip
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def test_each_replica_gets_its_own_gpus_port_and_unit(tmp_path):
    proc = render(tmp_path, 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    units = {p.name: p.read_text() for p in (tmp_path / "units").iterdir()}
    assert sorted(units) == ["clawfleet-vllm-1.service", "clawfleet-vllm-2.service", "clawfleet-vllm.service"]
    # replica 0 keeps the plan's GPUs, the others take unused ones in index order, tensor-parallel-size apiece
    for name, gpus, port in (("clawfleet-vllm", "2,5", 8000), ("clawfleet-vllm-1", "0,1", 8001),
                             ("clawfleet-vllm-2", "3,4", 8002)):  # fmt: skip
        unit = units[f"{name}.service"]
        assert f"Environment=CUDA_VISIBLE_DEVICES={gpus}\n" in unit, unit
        assert f"--port {port} " in unit and "--tensor-parallel-size 2" in unit


def test_more_replicas_than_gpu_sets_is_refused(tmp_path):
    # 8 GPUs hold four tensor-parallel-2 replicas, not five: refused before any unit is written.
    proc = render(tmp_path, 5)
    assert proc.returncode != 0
    assert "vllm_replicas 5 needs 5 x 2 GPU(s); the host has 8" in proc.stdout
    assert list((tmp_path / "units").iterdir()) == []
