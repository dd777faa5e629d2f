"""Unit-level checks of the docker role's pieces that the Molecule scenario cannot reach:
the docker_ce repository file (download.docker.com is unreachable from CI) and the daemon.json merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "docker"


def _render_sources(**facts) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined)
    return env.get_template("docker.sources.j2").render(
        ansible_managed="managed",
        ansible_facts=facts,
        docker_ce_repo_base_url="https://download.docker.com/linux",
        docker_ce_channel="stable",
        docker_ce_keyring="/etc/apt/keyrings/docker.asc",
        docker__apt_arch="arm64" if facts["architecture"] == "aarch64" else "amd64",
    )


@pytest.mark.parametrize(
    ("distribution", "release", "arch", "uri", "apt_arch"),
    [
        ("Debian", "bookworm", "x86_64", "https://download.docker.com/linux/debian", "amd64"),
        ("Debian", "trixie", "x86_64", "https://download.docker.com/linux/debian", "amd64"),
        ("Ubuntu", "noble", "aarch64", "https://download.docker.com/linux/ubuntu", "arm64"),
    ],
)
def test_docker_ce_sources_file_is_deb822_signed_by_the_pinned_key(distribution, release, arch, uri, apt_arch):
    text = _render_sources(distribution=distribution, distribution_release=release, architecture=arch)
    fields = dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert fields == {
        "Types": "deb",
        "URIs": uri,
        "Suites": release,
        "Components": "stable",
        "Architectures": apt_arch,
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }


def _daemon_config(tmp_path: Path, extra: dict) -> dict:
    """Evaluate the role's defaults + vars for docker__daemon_config with real Ansible templating."""
    playbook = tmp_path / "merge.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Evaluate docker__daemon_config",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
                    "tasks": [{"name": "Show it", "ansible.builtin.debug": {"var": "docker__daemon_config"}}],
                }
            ]
        )
    )
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            f"@{tmp_path / 'extra.json'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    result = json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result["docker__daemon_config"]


def test_daemon_json_defaults_rotate_logs_and_use_the_systemd_cgroup_driver(tmp_path):
    config = _daemon_config(tmp_path, {})
    assert config == {
        "exec-opts": ["native.cgroupdriver=systemd"],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }


def test_gpu_fact_wires_the_nvidia_runtime_and_operator_keys_merge_recursively(tmp_path):
    config = _daemon_config(
        tmp_path,
        {
            "nvidia_gpu_container_runtime": True,
            "docker_nvidia_default_runtime": True,
            "docker_daemon_config": {"log-opts": {"max-size": "50m"}, "storage-driver": "overlay2"},
        },
    )
    assert config["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
    assert config["default-runtime"] == "nvidia"
    assert config["log-opts"] == {"max-size": "50m", "max-file": "3"}
    assert config["storage-driver"] == "overlay2"


def test_nvidia_runtime_off_without_the_gpu_fact(tmp_path):
    config = _daemon_config(tmp_path, {"docker_nvidia_default_runtime": True})
    assert "runtimes" not in config and "default-runtime" not in config
