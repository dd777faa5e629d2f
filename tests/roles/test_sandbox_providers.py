"""Providers v2 from the inventory (issue 17 item 1, the Ansible path): `providers: {NAME: {profile, credentials}}`
on a sandbox stores each credential from the vault root-only like any other secret, writes the profile next to the
definitions, and gives the definition a gateway `providers:` section that passes `clawfleet gateway check`; the
sandbox gets placeholders only, and no value is ever printed (a failed item, -vvv).

Controller side: the filter directly; the sandbox role's secrets task, profile task and definition template through
ansible-playbook on this machine (temporary directories)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from clawfleet.gateway.config import load_gateway_section
from clawfleet.policy import load_profile_data

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOKEN = "FAKE-gcp-provider-VALUE-5Rt8Wq"

PROFILE = {
    "id": "gcp-token",
    "category": "data",
    "credentials": [{"name": "token", "env_vars": ["GCP_TOKEN"], "required": True, "auth_style": "bearer"}],
}
# the sandbox's policy binds the endpointless provider (docs/policy.md, Providers)
BINDING = """\
  gcp_storage:
    endpoints:
      - host: storage.googleapis.com
        port: 443
        protocol: rest
        access: read-only
        credential_binding: {provider: work-gcp}
    binaries: [{path: /usr/bin/curl}]
"""


def _filters():
    sys.path.insert(0, str(REPO / "filter_plugins"))
    try:
        import clawfleet_sandboxes
    finally:
        sys.path.pop(0)
    return clawfleet_sandboxes


def _sandboxes(**provider) -> list[dict]:
    spec = {"profile": PROFILE, "credentials": {"GCP_TOKEN": TOKEN}, **provider}
    return [{"name": "cloud", "presets": ["pypi"], "providers": {"work-gcp": spec}}, {"name": "quiet"}]


def test_provider_credentials_become_stored_secrets_and_the_values_leave_the_specs():
    f = _filters()
    expanded = f.sandbox_channels(_sandboxes())[0]
    assert expanded["secrets"] == {"GCP_TOKEN": {"value": TOKEN, "provider": "work-gcp"}}
    assert expanded["providers"] == {"work-gcp": {"profile": PROFILE, "credentials": {"GCP_TOKEN": {"secret": True}}}}
    public = f.sandboxes_without_secret_values(_sandboxes())
    assert TOKEN not in json.dumps(public)
    assert f.sandbox_secret_files(_sandboxes(), "/etc/clawfleet/secrets") == [
        {"sandbox": "cloud", "secret": "GCP_TOKEN", "path": "/etc/clawfleet/secrets/sandbox-cloud-GCP_TOKEN"}
    ]
    assert f.sandbox_provider_profiles(_sandboxes(), "/etc/clawfleet/sandboxes/providers") == [
        {
            "sandbox": "cloud",
            "provider": "work-gcp",
            "path": "/etc/clawfleet/sandboxes/providers/cloud-work-gcp.yaml",
            "profile": PROFILE,
        }
    ]
    load_profile_data(PROFILE)  # the profile the inventory holds is one the gateway accepts


def test_a_credential_already_on_the_host_is_named_by_its_file():
    f = _filters()
    expanded = f.sandbox_channels(_sandboxes(credentials={"GCP_TOKEN": {"file": "/srv/keys/gcp"}}))[0]
    assert expanded["secrets"] == {}
    assert expanded["providers"]["work-gcp"]["credentials"] == {"GCP_TOKEN": {"file": "/srv/keys/gcp"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"credentials": {"GCP_TOKEN": ""}},
            "clawfleet_sandboxes[0] (cloud): providers.work-gcp.credentials.GCP_TOKEN must be a non-empty string (the"
            " vault's)",
        ),
        (
            {"credentials": {"GCP TOKEN": TOKEN}},
            "clawfleet_sandboxes[0] (cloud): providers.work-gcp: 'GCP TOKEN' is not a variable name",
        ),
        (
            {"credentials": {"GCP_TOKEN": {"file": "relative"}}},
            "clawfleet_sandboxes[0] (cloud): providers.work-gcp.credentials.GCP_TOKEN: a value (the vault's) or {file:"
            " /absolute/path}",
        ),
        (
            {"profile": "gcp-token.yaml"},
            "clawfleet_sandboxes[0] (cloud): providers.work-gcp needs 'profile' (a"
            " mapping: the provider profile) and 'credentials'",
        ),
    ],
    ids=["empty", "bad-name", "relative-file", "profile-not-a-mapping"],
)
def test_provider_errors_name_the_setting_never_the_value(change, message):
    with pytest.raises(Exception) as info:
        _filters().sandbox_channels(_sandboxes(**change))
    assert str(info.value) == message and TOKEN not in str(info.value)


def test_a_provider_credential_clashing_with_a_secret_is_refused():
    sandboxes = _sandboxes()
    sandboxes[0]["secrets"] = {"GCP_TOKEN": {"value": "x", "hosts": ["a.example"]}}
    with pytest.raises(Exception) as info:
        _filters().sandbox_channels(sandboxes)
    assert (
        str(info.value)
        == "clawfleet_sandboxes[0] (cloud): providers.work-gcp defines GCP_TOKEN, which secrets also defines"
    )


def _render(tmp_path: Path, sandboxes: list[dict], policy_extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The sandbox role's secrets task, its provider-profile task and its definition template (`validate:` with
    `gateway check`, which reads the profile and the secret file), run by ansible-playbook into temporary dirs."""
    policies, out = tmp_path / "policies", tmp_path / "definitions"
    (tmp_path / "secrets").mkdir(mode=0o700)
    policies.mkdir()
    (out / "providers").mkdir(parents=True)
    base = (REPO / "policies" / "base.yaml").read_text().replace("run_as_user: sandbox", "run_as_user: nobody")
    assert base.endswith("\nnetwork_policies: {}\n")
    for sb in sandboxes:
        extra = policy_extra if sb.get("providers") else ""
        (policies / f"{sb['name']}.yaml").write_text(
            base.replace("\nnetwork_policies: {}\n", "\nnetwork_policies:\n" + extra) if extra else base
        )
    main = YAML(typ="safe").load((REPO / "roles/sandbox/tasks/main.yml").read_text())
    (profiles_task,) = [t for t in main if t.get("name") == "Write the sandboxes' provider profiles"]
    play = [
        {
            "name": "Render the sandbox definitions",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [
                str(REPO / "roles/clawfleet/defaults/main.yml"),
                str(REPO / "roles/sandbox/defaults/main.yml"),
            ],
            "tasks": [
                {
                    "name": "Store the secrets",
                    "ansible.builtin.import_tasks": str(REPO / "roles/sandbox/tasks/secrets.yml"),
                },
                {**profiles_task, "ansible.builtin.copy": {**profiles_task["ansible.builtin.copy"], "group": "root"}},
                {
                    "name": "Write the definitions",
                    "ansible.builtin.template": {
                        "src": str(REPO / "roles/sandbox/templates/definition.yaml.j2"),
                        "dest": str(out) + "/{{ item['name'] }}.yaml",
                        "mode": "0640",
                        "validate": str(VENV_BIN / "clawfleet") + " gateway check --config %s",
                    },
                    "loop": "{{ clawfleet_sandboxes | clawfleet.fleet.clawfleet_sandboxes_without_secret_values }}",
                    "loop_control": {"label": "{{ item['name'] }}"},
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    extra = {"clawfleet_sandboxes": sandboxes, "clawfleet_policy_dir": str(policies),
             "clawfleet_secrets_dir": str(tmp_path / "secrets"), "clawfleet_sandbox_definitions_dir": str(out),
             "clawfleet_venv": str(VENV_BIN.parent)}  # fmt: skip
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}  # fmt: skip
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path / 'vars.json'}", "-vvv"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300, check=False)  # fmt: skip
    return proc, out


@pytest.mark.root  # the secrets task writes root-owned files
@pytest.mark.slow
def test_the_definition_names_the_provider_and_passes_gateway_check(tmp_path):
    proc, out = _render(tmp_path, _sandboxes(), BINDING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert TOKEN not in proc.stdout + proc.stderr
    stored = tmp_path / "secrets" / "sandbox-cloud-GCP_TOKEN"
    assert stored.read_text() == TOKEN + "\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stored.stat().st_uid == 0
    text = (out / "cloud.yaml").read_text()
    assert TOKEN not in text
    definition = YAML(typ="safe").load(text)
    assert definition["credentials"] == ["GCP_TOKEN"] and "secrets" not in definition
    profile = str(out / "providers" / "cloud-work-gcp.yaml")
    assert definition["gateway"]["providers"] == {
        "work-gcp": {"profile": profile, "credentials": {"GCP_TOKEN": str(stored)}}
    }
    config = load_gateway_section({"policy": "p", **definition["gateway"]})
    assert config.providers["work-gcp"].id == "gcp-token" and config.secrets[0].provider == "work-gcp"
    quiet = YAML(typ="safe").load((out / "quiet.yaml").read_text())
    assert "credentials" not in quiet and "providers" not in quiet["gateway"]


@pytest.mark.root
@pytest.mark.slow
def test_a_policy_binding_an_unknown_provider_fails_the_definitions_check(tmp_path):
    proc, _ = _render(tmp_path, _sandboxes(), BINDING.replace("work-gcp", "nobody"))
    assert proc.returncode != 0
    assert "provider 'nobody' is not configured for this sandbox (the gateway's providers: work-gcp)" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr


# -- gateway-minted credentials: refresh material from the vault ---------------------------------------------
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nFAKE-material-VALUE-9Qx2\n-----END PRIVATE KEY-----"
GCP_PROFILE = YAML(typ="safe").load((REPO / "tests/data/openshell-providers/google-cloud.yaml").read_text())


def _minting(**material) -> list[dict]:
    refresh = {"GCP_SA_ACCESS_TOKEN": {"client_email": "agent@p.iam.gserviceaccount.com", "private_key": KEY_PEM,
                                       **material}}  # fmt: skip
    return [{"name": "cloud", "providers": {"work-gcp": {"profile": GCP_PROFILE, "refresh": refresh}}}]


def test_refresh_material_becomes_gateway_only_secrets():
    f = _filters()
    expanded = f.sandbox_channels(_minting())[0]
    assert expanded["secrets"]["GCP_SA_ACCESS_TOKEN__private_key"] == {
        "value": KEY_PEM, "provider": "work-gcp", "material": True}  # fmt: skip
    assert expanded["providers"]["work-gcp"]["refresh"] == {"GCP_SA_ACCESS_TOKEN": {
        "client_email": {"secret": "GCP_SA_ACCESS_TOKEN__client_email"},
        "private_key": {"secret": "GCP_SA_ACCESS_TOKEN__private_key"}}}  # fmt: skip
    assert expanded["providers"]["work-gcp"]["minted"] == ["GCP_SA_ACCESS_TOKEN"]
    assert KEY_PEM not in json.dumps(f.sandboxes_without_secret_values(_minting()))
    on_host = f.sandbox_channels(_minting(private_key={"file": "/srv/keys/sa.pem"}))[0]
    assert on_host["providers"]["work-gcp"]["refresh"]["GCP_SA_ACCESS_TOKEN"]["private_key"] == {
        "file": "/srv/keys/sa.pem"}  # fmt: skip


@pytest.mark.parametrize(
    ("refresh", "message"),
    [
        ({"GCP_TOKEN": {"x": "y"}}, "providers.work-gcp.refresh.GCP_TOKEN: not a credential with a refresh block"),
        ({"GCP_SA_ACCESS_TOKEN": {"private_key": ""}}, "providers.work-gcp.refresh.GCP_SA_ACCESS_TOKEN.private_key must"
         " be a non-empty string (the vault's)"),
        ({"GCP_SA_ACCESS_TOKEN": {"private_key": {"file": "rel"}}}, "private_key: a value (the vault's) or {file:"),
    ],
)  # fmt: skip
def test_refresh_errors_name_the_setting_never_the_value(refresh, message):
    sandboxes = [{"name": "cloud", "providers": {"work-gcp": {"profile": GCP_PROFILE, "refresh": refresh}}}]
    with pytest.raises(Exception) as info:
        _filters().sandbox_channels(sandboxes)
    assert message in str(info.value) and KEY_PEM not in str(info.value)


@pytest.mark.root
@pytest.mark.slow
def test_the_definition_names_the_refresh_material_and_passes_gateway_check(tmp_path):
    binding = BINDING.replace("work-gcp", "work-gcp")  # the policy binds the endpointless google-cloud provider
    proc, out = _render(tmp_path, _minting(), binding)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEY_PEM not in proc.stdout + proc.stderr
    stored = tmp_path / "secrets" / "sandbox-cloud-GCP_SA_ACCESS_TOKEN__private_key"
    assert stored.read_text() == KEY_PEM + "\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stored.stat().st_uid == 0
    text = (out / "cloud.yaml").read_text()
    assert KEY_PEM not in text
    definition = YAML(typ="safe").load(text)
    assert definition["credentials"] == ["GCP_SA_ACCESS_TOKEN"]  # the placeholder, never the material
    assert definition["gateway"]["providers"]["work-gcp"]["refresh"] == {"GCP_SA_ACCESS_TOKEN": {
        "client_email": str(tmp_path / "secrets" / "sandbox-cloud-GCP_SA_ACCESS_TOKEN__client_email"),
        "private_key": str(stored)}}  # fmt: skip
    config = load_gateway_section({"policy": "p", **definition["gateway"]})
    assert config.refresh["work-gcp"]["GCP_SA_ACCESS_TOKEN"]["private_key"] == str(stored)
    assert [b.minted_by for b in config.secrets] == ["GCP_SA_ACCESS_TOKEN"]
