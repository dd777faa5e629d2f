"""Chat channels from the inventory (issue 13 item 4): `channels: {telegram: {bot_token: ...}}` on a sandbox adds
the channel's preset and its bot token as a secret bound to the channel's API (Telegram: the /bot<token> path
segment), stored root-only; the definition the sandbox role writes passes `clawfleet gateway check` and gives the
sandbox the placeholder only. No token value is ever printed (a failed item, -vvv), like the other secrets.

Controller side: the filter directly, the sandbox role's secrets task and its definition template through
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

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TG = "7000000001:AAFake-telegram-VALUE-9Qx"
SLACK_BOT = "xoxb-FAKE-bot-VALUE-1111"
SLACK_APP = "xapp-FAKE-app-VALUE-2222"
DISCORD = "FAKE.discord.VALUE-3333"
VALUES = (TG, SLACK_BOT, SLACK_APP, DISCORD)


def _filters():
    sys.path.insert(0, str(REPO / "filter_plugins"))
    try:
        import clawfleet_sandboxes
    finally:
        sys.path.pop(0)
    return clawfleet_sandboxes


def _sandboxes() -> list[dict]:
    return [
        {
            "name": "chat",
            "presets": ["pypi"],
            "channels": {
                "telegram": {"bot_token": TG},
                "slack": {"bot_token": SLACK_BOT, "app_token": SLACK_APP},
                "discord": {"bot_token": DISCORD},
            },
        },
        {"name": "quiet", "presets": ["pypi"]},
    ]


def _assert_no_value(text: str) -> None:
    leaked = [v for v in VALUES if v in text]
    assert not leaked, f"a token value was printed: {len(leaked)} of them"


def test_channels_expand_into_presets_and_bound_secrets():
    f = _filters()
    sandboxes = _sandboxes()
    chat = f.sandbox_channels(sandboxes)[0]
    assert chat["presets"] == ["pypi", "telegram", "slack", "discord"]
    assert chat["channels"] == ["discord", "slack", "telegram"]
    assert chat["secrets"]["TELEGRAM_BOT_TOKEN"] == {
        "value": TG,
        "hosts": ["api.telegram.org"],
        "headers": [],
        "path": ["/bot"],
    }
    assert chat["secrets"]["SLACK_APP_TOKEN"]["schemes"] == ["bearer"]
    assert chat["secrets"]["DISCORD_BOT_TOKEN"] == {"value": DISCORD, "hosts": ["discord.com"], "schemes": ["bot"]}
    assert sandboxes[0]["channels"]["telegram"]["bot_token"] == TG  # the input is left as it was
    # The projection every loop uses holds no value, and the secret files include the channels' tokens.
    public = f.sandboxes_without_secret_values(sandboxes)
    _assert_no_value(json.dumps(public))
    assert public[0]["secrets"]["TELEGRAM_BOT_TOKEN"]["stored"] is True
    files = [x["path"] for x in f.sandbox_secret_files(sandboxes, "/s")]
    assert "/s/sandbox-chat-TELEGRAM_BOT_TOKEN" in files and "/s/sandbox-chat-SLACK_APP_TOKEN" in files


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ({"irc": {"bot_token": TG}}, "unknown channel 'irc'"),
        ({"slack": {"bot_token": SLACK_BOT}}, r"channels.slack needs exactly app_token, bot_token"),
        ({"telegram": {"bot_token": TG, "chat": 1}}, "channels.telegram needs exactly bot_token"),
        ({"telegram": {"bot_token": ""}}, "channels.telegram.bot_token must be a non-empty string"),
        ({"telegram": {"bot_token": {"x": TG}}}, "channels.telegram.bot_token must be a non-empty string"),
        (["telegram"], "channels must be a mapping"),
    ],
)
def test_channel_errors_name_the_setting_never_the_value(channels, message):
    f = _filters()
    with pytest.raises(Exception, match=message) as exc:
        f.sandboxes_without_secret_values([{"name": "chat", "channels": channels}])
    _assert_no_value(str(exc.value))


def test_channel_secret_clashing_with_an_explicit_secret_is_refused():
    f = _filters()
    sb = {"name": "chat", "channels": {"telegram": {"bot_token": TG}},
          "secrets": {"TELEGRAM_BOT_TOKEN": {"value": "other", "hosts": ["x"]}}}  # fmt: skip
    with pytest.raises(Exception, match="defines TELEGRAM_BOT_TOKEN, which secrets also defines") as exc:
        f.sandbox_secret_files([sb], "/s")
    _assert_no_value(str(exc.value))


@pytest.mark.root
@pytest.mark.slow
def test_channel_tokens_are_stored_root_only_and_never_printed(tmp_path, run_role):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    run = run_role("sandbox", {"clawfleet_sandboxes": _sandboxes(), "clawfleet_secrets_dir": str(secrets)},
                   tasks_from="secrets", verbosity=3)  # fmt: skip
    assert run.rc == 0, run.output
    assert run.changed == 1
    for name, value in (("TELEGRAM_BOT_TOKEN", TG), ("SLACK_BOT_TOKEN", SLACK_BOT), ("SLACK_APP_TOKEN", SLACK_APP),
                        ("DISCORD_BOT_TOKEN", DISCORD)):  # fmt: skip
        written = secrets / f"sandbox-chat-{name}"
        assert written.read_text() == value + "\n"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600 and written.stat().st_uid == 0
    _assert_no_value(run.output)


def _render_definitions(tmp_path: Path, sandboxes: list[dict]) -> tuple[subprocess.CompletedProcess, Path]:
    """The sandbox role's secrets tasks and its definition template task (same template, its defaults, `validate:`
    with `gateway check`, which needs the secret files), run by ansible-playbook into temporary directories."""
    policies, out = tmp_path / "policies", tmp_path / "definitions"
    (tmp_path / "secrets").mkdir(mode=0o700)
    policies.mkdir()
    out.mkdir()
    base = (REPO / "policies" / "base.yaml").read_text().replace("run_as_user: sandbox", "run_as_user: nobody")
    for sb in sandboxes:
        (policies / f"{sb['name']}.yaml").write_text(base)
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
             "clawfleet_secrets_dir": str(tmp_path / "secrets"), "clawfleet_venv": str(VENV_BIN.parent)}  # fmt: skip
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}  # fmt: skip
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path / 'vars.json'}", "-vvv"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300, check=False)  # fmt: skip
    return proc, out


def load_yaml_text(text: str):
    return YAML(typ="safe").load(text)


@pytest.mark.root  # the secrets task writes root-owned files
@pytest.mark.slow
def test_definition_binds_the_channel_tokens_and_passes_gateway_check(tmp_path):
    proc, out = _render_definitions(tmp_path, _sandboxes())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_no_value(proc.stdout + proc.stderr)
    text = (out / "chat.yaml").read_text()
    _assert_no_value(text)
    definition = load_yaml_text(text)
    assert definition["credentials"] == ["DISCORD_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_BOT_TOKEN",
                                         "TELEGRAM_BOT_TOKEN"]  # fmt: skip
    tg = definition["secrets"]["TELEGRAM_BOT_TOKEN"]
    assert tg == {"file": f"{tmp_path}/secrets/sandbox-chat-TELEGRAM_BOT_TOKEN", "hosts": ["api.telegram.org"],
                  "headers": [], "path": ["/bot"]}  # fmt: skip
    bindings = {b.name: b for b in load_gateway_section({"policy": "p", "secrets": definition["secrets"]}).secrets}
    assert bindings["TELEGRAM_BOT_TOKEN"].path == ("/bot",) and bindings["TELEGRAM_BOT_TOKEN"].headers == ()
    assert bindings["DISCORD_BOT_TOKEN"].schemes == ("bot",)
    quiet = load_yaml_text((out / "quiet.yaml").read_text())
    assert "secrets" not in quiet and "credentials" not in quiet


@pytest.mark.root
@pytest.mark.slow
def test_policy_merge_adds_the_channel_presets_and_prints_no_value(run_role):
    run = run_role("policy", {"clawfleet_sandboxes": _sandboxes()}, tasks_from="merge", verbosity=3)
    assert run.rc == 0, run.output
    assert "chat: sha256:" in run.output and "quiet: sha256:" in run.output
    # The merge report names the layers it merged: the channels' presets are among chat's.
    for preset in ("telegram", "slack", "discord"):
        assert f"presets/{preset}.yaml" in run.output
    # ... and their endpoints are in the merged policy (set_fact's result, printed at -vvv)
    assert "api.telegram.org" in run.output and "wss-primary.slack.com" in run.output
    _assert_no_value(run.output)


@pytest.mark.root
@pytest.mark.slow
def test_policy_merge_item_with_a_bad_channel_fails_without_printing_a_value(run_role):
    sandboxes = _sandboxes()
    sandboxes[0]["channels"]["irc"] = {"bot_token": TG}
    run = run_role("policy", {"clawfleet_sandboxes": sandboxes}, tasks_from="merge", verbosity=3)
    assert run.rc != 0 and "unknown channel 'irc'" in run.output, run.output
    _assert_no_value(run.output)
