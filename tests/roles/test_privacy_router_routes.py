"""The privacy_router role's routing table, built by the role itself (tasks/build.yml, on the controller) and loaded
with the router's own config loader: without a local model no sensitive class may reach a cloud provider as is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from clawfleet.router.cli import classify_input
from clawfleet.router.config import load_config

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PII = "Send the invoice to jane.roe@example.org, card 4111 1111 1111 1111, SSN 123-45-6789."
SECRET = "deploy with AKIAZ7QWERTYUIOPASDF and the password: Hunter2-Prod-2026!"
HEALTH = "The patient was diagnosed with diabetes and takes metformin 500 mg."
NAME = "Please write to Dr. Margaret Thornbury at 221 Baker Street, London NW1 6XE."


def build(tmp_path: Path, role_vars: dict, local_key: bool = False) -> Path:
    """Run the role's build.yml (after local_key.yml with ``local_key``) on localhost and write the config it builds;
    returns the file. With ``local_key`` the key it chose is written to ``chosen-key`` beside it."""
    out = tmp_path / "router.yaml"
    playbook = tmp_path / "play.yml"
    choose = [
        {"name": "Key", "ansible.builtin.include_role": {"name": "privacy_router", "tasks_from": "local_key"}},
        {"name": "Show", "ansible.builtin.copy": {"content": "{{ privacy_router__local_api_key }}",
                                                  "dest": str(tmp_path / "chosen-key"), "mode": "0600"}},
    ]  # fmt: skip
    playbook.write_text(json.dumps([{
        "name": "Build the router config", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": (choose if local_key else []) + [
            {"name": "Build", "ansible.builtin.include_role": {"name": "privacy_router", "tasks_from": "build"}},
            {"name": "Write", "ansible.builtin.copy": {
                "content": "{{ privacy_router_config | to_nice_yaml(sort_keys=false) }}", "dest": str(out),
                "mode": "0644"}},
        ],
    }]))  # fmt: skip
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(role_vars))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": sys.executable}  # fmt: skip
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


CLOUD = {
    "privacy_router_cloud_providers": {
        "openai": {"type": "openai", "models": {"default": "gpt-5-mini"}},
        "anthropic": {"type": "anthropic", "models": {"default": "claude-sonnet-4-5"}},
    },
    "privacy_router_api_keys": {"openai": "sk-not-a-real-key", "anthropic": "also-not-real"},
    "privacy_router_fallback": ["anthropic"],
}


@pytest.mark.parametrize("no_local_action", ["block", "redact"])
def test_no_local_model_never_sends_sensitive_data_to_the_cloud(tmp_path, no_local_action):
    path = build(tmp_path, {**CLOUD, "privacy_router_local_enabled": False,
                            "privacy_router_no_local_action": no_local_action})  # fmt: skip
    config = load_config(path, read_secrets=False)
    assert "local" not in config.providers
    for text in (PII, SECRET, HEALTH):
        result = classify_input(config, text)
        assert result["sensitive"], text
        assert result["action"] in ("block", "redact"), (text, result)
        assert result["action"] == no_local_action or result["action"] == "block"
    # Nothing that names a class goes to the cloud unredacted; only the default route does.
    data = YAML(typ="safe").load(path.read_text())
    for route in data["routes"]:
        if "classes" in route:
            assert route["action"] in ("block", "redact"), route
    # Content the classifier cannot read (images) cannot be redacted: blocked either way.
    image = json.dumps({"model": "default", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})  # fmt: skip
    assert classify_input(config, image)["action"] == "block"
    # Plain requests still work: the cloud provider of the default route.
    plain = classify_input(config, "Explain what a context manager is in Python.")
    assert plain["action"] == "cloud" and plain["provider"] == "openai"


def test_default_without_vllm_blocks(tmp_path):
    # vllm_enabled undefined (no vllm role, no GPU): the default is no local model and block.
    path = build(tmp_path, CLOUD)
    config = load_config(path, read_secrets=False)
    assert classify_input(config, PII)["action"] == "block"
    assert "sensitive-blocked-no-local-model" in path.read_text()


def test_local_model_serves_sensitive_requests(tmp_path):
    path = build(tmp_path, {**CLOUD, "vllm_enabled": True, "vllm_port": 8001, "vllm_served_model_name": "nemo"})
    config = load_config(path, read_secrets=False)
    assert config.providers["local"].base_url.startswith("http://127.0.0.1:8001/v1")
    for text in (PII, SECRET, HEALTH):
        result = classify_input(config, text)
        assert (result["action"], result["provider"]) == ("local", "local"), (text, result)
    assert classify_input(config, NAME)["action"] in ("redact", "local")
    assert (
        classify_input(config, "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----")["action"]
        == "block"
    )


def test_keys_are_credentials_never_in_the_config(tmp_path):
    path = build(tmp_path, {**CLOUD, "privacy_router_local_enabled": True, "privacy_router_local_api_key": "vk-1"})
    text = path.read_text()
    assert "sk-not-a-real-key" not in text and "also-not-real" not in text and "vk-1" not in text
    data = YAML(typ="safe").load(text)
    assert data["providers"]["openai"]["credential"] == "openai"
    assert data["providers"]["local"]["credential"] == "local"


@pytest.mark.parametrize("inventory_key", ["", "vk-from-the-vault"])
def test_the_router_presents_the_generated_local_model_key_unless_the_inventory_gives_one(tmp_path, inventory_key):
    key_file = tmp_path / "local-model-key"
    key_file.write_text("generated-on-the-host-0123456789\n")
    role_vars = {**CLOUD, "privacy_router_local_enabled": True, "privacy_router_local_api_key": inventory_key,
                 "clawfleet_local_model_key": str(key_file)}  # fmt: skip
    data = YAML(typ="safe").load(build(tmp_path, role_vars, local_key=True).read_text())
    assert data["providers"]["local"]["credential"] == "local"
    assert (tmp_path / "chosen-key").read_text() == (inventory_key or "generated-on-the-host-0123456789")


def test_without_a_generated_key_or_an_inventory_key_the_local_model_gets_none(tmp_path):
    role_vars = {**CLOUD, "privacy_router_local_enabled": True, "privacy_router_local_api_key": "",
                 "clawfleet_local_model_key": str(tmp_path / "absent")}  # fmt: skip
    data = YAML(typ="safe").load(build(tmp_path, role_vars, local_key=True).read_text())
    assert "credential" not in data["providers"]["local"]
    assert (tmp_path / "chosen-key").read_text() == ""


def test_no_provider_at_all_blocks_everything(tmp_path):
    path = build(tmp_path, {"privacy_router_cloud_providers": {}, "privacy_router_local_enabled": False})
    config = load_config(path, read_secrets=False)
    assert classify_input(config, "hello")["action"] == "block"
    assert classify_input(config, PII)["action"] == "block"


def test_cloud_provider_without_a_key_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(AssertionError) as failed:
        build(tmp_path, {"privacy_router_api_keys": {}})
    assert "no API key for cloud provider(s) openai" in str(failed.value)


@pytest.mark.parametrize(
    ("host_vars", "action"),
    [
        ({"nvidia_gpu_present": True}, "local"),  # the vllm role serves a model here (its own default)
        ({"nvidia_gpu_present": True, "vllm_enabled": False}, "block"),  # GPU, but no model served
        ({"nvidia_gpu_present": False}, "block"),
    ],
)
def test_local_model_default_follows_vllm(tmp_path, host_vars, action):
    config = load_config(build(tmp_path, {**CLOUD, **host_vars}), read_secrets=False)
    assert classify_input(config, PII)["action"] == action


def test_identity_limits_state_and_metrics_come_from_the_inventory(tmp_path):
    limits = {"sandbox": {"requests_per_min": 60}, "sandboxes": {"alpha": {"tokens_per_min": 5000}}}
    path = build(tmp_path, {**CLOUD, "privacy_router_limits": limits, "privacy_router_identity_unknown": "refuse"})
    config = load_config(path, read_secrets=False)
    assert config.state_dir == "/var/lib/clawfleet-router"  # the unit's StateDirectory=clawfleet-router
    assert (config.metrics_host, config.metrics_port) == ("127.0.0.1", 9484)
    assert config.identity is not None and config.identity.configured and config.identity.unknown == "refuse"
    assert config.limits is not None
    assert config.limits.for_sandbox("alpha").requests_per_min == 60
    assert config.limits.for_sandbox("alpha").tokens_per_min == 5000
    assert config.limits.for_sandbox("beta").tokens_per_min is None
    data = YAML(typ="safe").load(path.read_text())
    assert data["identity"] == {"unknown": "refuse", "credential": "router-identity"}  # a credential, no key inside


def test_file_delivery_points_the_router_at_its_own_copy_of_the_identity_key(tmp_path):
    path = build(tmp_path, {**CLOUD, "privacy_router_key_delivery": "file"})
    data = YAML(typ="safe").load(path.read_text())
    assert data["identity"] == {"unknown": "allow", "key_file": "/etc/clawfleet/router-keys/identity"}


def test_local_replicas_replace_the_single_base_url(tmp_path):
    urls = [f"http://127.0.0.1:{8000 + i}/v1" for i in range(3)]
    path = build(tmp_path, {**CLOUD, "vllm_enabled": True, "privacy_router_local_replicas": urls})
    config = load_config(path, read_secrets=False)
    assert config.providers["local"].replicas == tuple(urls)
    assert "base_url" not in YAML(typ="safe").load(path.read_text())["providers"]["local"]
    assert classify_input(config, PII)["action"] == "local"


def test_vllm_replicas_become_the_local_providers_replicas(tmp_path):
    path = build(tmp_path, {**CLOUD, "vllm_enabled": True, "vllm_replicas": 3, "vllm_port": 8100})
    config = load_config(path, read_secrets=False)
    assert config.providers["local"].replicas == tuple(f"http://127.0.0.1:{p}/v1" for p in (8100, 8101, 8102))
    (tmp_path / "one").mkdir()
    one = load_config(build(tmp_path / "one", {**CLOUD, "vllm_enabled": True}), read_secrets=False)
    assert one.providers["local"].replicas == ("http://127.0.0.1:8000/v1",)
