"""Verify the k3s role against the stand-in air-gap directory: verified binary, HA config from a dict, token only
in a root-only environment file, services running from the role's units, GPU agent wiring."""

import hashlib
import os
from pathlib import Path

import pytest
import yaml

VERSION = "v1.32.5+k3s1"
TOKEN = "molecule-test-token-not-a-secret-0123456789"
FIRST = "clawfleet-k3s-bookworm"
ARTIFACTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "k3s-artifacts" / "good"


def _name(host) -> str:
    return host.backend.get_hostname()


def _is_agent(host) -> bool:
    return "agent" in _name(host)


def _online(host) -> bool:
    # The first server installs online from the release mirror on its own loopback (prepare.yml).
    return _name(host) == FIRST


def _config(host) -> dict:
    return yaml.safe_load(host.file("/etc/rancher/k3s/config.yaml").content_string)


def test_binary_is_the_verified_artifact(host):
    f = host.file("/usr/local/bin/k3s")
    assert f.user == "root" and f.mode == 0o755
    released = {
        line.split()[1]: line.split()[0] for line in (ARTIFACTS / "sha256sum-amd64.txt").read_text().splitlines()
    }
    assert f.sha256sum == released["k3s"]
    assert host.check_output("/usr/local/bin/k3s --version").splitlines()[0].startswith(f"k3s version {VERSION} ")


def test_images_tarball_is_in_place_for_import(host):
    if _online(host):
        assert not host.file("/var/lib/rancher/k3s/agent/images").exists
        return
    f = host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.gz")
    digest = hashlib.sha256((ARTIFACTS / "k3s-airgap-images-amd64.tar.gz").read_bytes()).hexdigest()
    assert f.sha256sum == digest


def test_online_mode_downloaded_through_the_release_mirror(host):
    if not _online(host):
        pytest.skip("air-gap host")
    staged = host.file(f"/var/cache/clawfleet/k3s/k3s-{VERSION}")
    assert staged.mode == 0o700
    assert staged.sha256sum == host.file("/usr/local/bin/k3s").sha256sum
    log = host.check_output("journalctl --unit k3s-release-mirror --no-pager")
    assert "GET /v1.32.5%2Bk3s1/sha256sum-amd64.txt" in log
    assert "GET /v1.32.5%2Bk3s1/k3s " in log


def test_install_script_is_kept_but_not_run(host):
    if _online(host):
        assert not host.file("/usr/local/bin/k3s-install.sh").exists
        return
    assert host.file("/usr/local/bin/k3s-install.sh").mode == 0o755
    assert not host.file("/etc/systemd/system/k3s.service.d").exists


@pytest.mark.parametrize("tool", ["kubectl", "crictl", "ctr"])
def test_tools_link_to_k3s(host, tool):
    f = host.file(f"/usr/local/bin/{tool}")
    assert f.is_symlink and f.linked_to == "/usr/local/bin/k3s"


def test_config_yaml_matches_the_node_role(host):
    f = host.file("/etc/rancher/k3s/config.yaml")
    assert f.user == "root" and f.mode == 0o600
    config = _config(host)
    assert not {"token", "agent-token", "token-file"} & set(config)
    if _is_agent(host):
        assert config == {
            "server": f"https://{FIRST}:6443",
            "node-label": ["nvidia.com/gpu.present=true"],
        }
    else:
        # Servers: no ingress or service load balancer on the node's addresses, pod traffic between nodes over
        # WireGuard (the network is not declared private).
        server = {
            "write-kubeconfig-mode": "0600",
            "disable": ["traefik", "servicelb"],
            "flannel-backend": "wireguard-native",
        }
        if _name(host) == FIRST:
            assert config == {"cluster-init": True, **server}
        else:
            assert config == {"server": f"https://{FIRST}:6443", **server}


def test_token_only_in_a_root_only_environment_file(host):
    service = "k3s-agent" if _is_agent(host) else "k3s"
    env = host.file(f"/etc/systemd/system/{service}.service.env")
    assert env.user == "root" and env.group == "root" and env.mode == 0o600
    assert f"K3S_TOKEN={TOKEN}" in env.content_string.splitlines()
    unit = host.file(f"/etc/systemd/system/{service}.service").content_string
    assert TOKEN not in unit
    assert TOKEN not in host.check_output("ps -eo args")


def test_service_runs_from_the_role_unit_with_the_token_from_the_environment(host):
    service = "k3s-agent" if _is_agent(host) else "k3s"
    svc = host.service(service)
    assert svc.is_running and svc.is_enabled
    unit = host.file(f"/etc/systemd/system/{service}.service").content_string
    mode = "agent" if _is_agent(host) else "server"
    assert f"ExecStart=/usr/local/bin/k3s {mode}\n" in unit
    assert "Type=notify" in unit
    started = dict(line.split("=", 1) for line in host.file("/run/k3s-standin/started").content_string.splitlines())
    assert started["mode"] == mode
    assert started["token_from_env"] == "yes"
    assert started["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_servers_deploy_the_nvidia_runtime_class(host):
    manifest = host.file("/var/lib/rancher/k3s/server/manifests/clawfleet-nvidia-runtimeclass.yaml")
    if _is_agent(host):
        assert not manifest.exists
        return
    doc = yaml.safe_load(manifest.content_string)
    assert doc == {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
