"""`clawfleet agent config`: what it writes holds only sandbox paths and no secret, is owned by the sandbox user,
is rewritten only when it changes, and bad input is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clawfleet.agent import AgentError
from clawfleet.agent.config import NO_KEY, write_config

REAL_KEY = "sk-REALkeyVALUE-0123456789"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", "agent", "config", "openclaw", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})  # fmt: skip


def test_config_holds_sandbox_paths_and_an_env_reference_only(tmp_path):
    home = tmp_path / "work"
    home.mkdir()
    proc = cli("--home", str(home), "--base-url", "http://model.test:8000/v1", "--model", "fake-model",
               "--api-key-env", "MODEL_API_KEY", env={"MODEL_API_KEY": REAL_KEY})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = [p for p in (home / ".openclaw").rglob("*") if p.is_file()]
    assert [p.name for p in written] == ["openclaw.json"]
    text = written[0].read_text()
    assert str(tmp_path) not in text and REAL_KEY not in text
    config = json.loads(text)
    provider = config["models"]["providers"]["vllm"]
    assert provider["apiKey"] == "${MODEL_API_KEY}"
    assert provider["baseUrl"] == "http://model.test:8000/v1"
    assert config["agents"]["defaults"] == {"workspace": "/sandbox/.openclaw/workspace",
                                            "model": {"primary": "vllm/fake-model"}}  # fmt: skip
    assert (written[0].stat().st_mode & 0o777) == 0o600
    assert (home / ".openclaw" / "workspace").is_dir()


def test_without_an_env_variable_the_key_is_a_placeholder(tmp_path):
    write_config(tmp_path, "https://inference.local/v1", "m", sandbox_home="/home/agent")
    config = json.loads((tmp_path / ".openclaw" / "openclaw.json").read_text())
    assert config["models"]["providers"]["vllm"]["apiKey"] == NO_KEY
    assert config["agents"]["defaults"]["workspace"] == "/home/agent/.openclaw/workspace"


def test_second_write_is_unchanged_and_a_change_is_written(tmp_path):
    assert write_config(tmp_path, "http://m.test/v1", "a").changed
    path = tmp_path / ".openclaw" / "openclaw.json"
    mtime = path.stat().st_mtime_ns
    assert not write_config(tmp_path, "http://m.test/v1", "a").changed
    assert path.stat().st_mtime_ns == mtime
    assert write_config(tmp_path, "http://m.test/v1", "b").changed
    assert "vllm/b" in path.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root; CI runs as root")
def test_state_is_owned_by_the_sandbox_user(tmp_path, user):
    write_config(tmp_path, "http://m.test/v1", "a")  # first as root: --owner must also fix an existing file
    assert write_config(tmp_path, "http://m.test/v1", "a", owner=user.pw_name).changed
    for path in (
        tmp_path / ".openclaw",
        tmp_path / ".openclaw" / "workspace",
        tmp_path / ".openclaw" / "openclaw.json",
    ):
        assert (path.stat().st_uid, path.stat().st_gid) == (user.pw_uid, user.pw_gid)
    assert not write_config(tmp_path, "http://m.test/v1", "a", owner=user.pw_name).changed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sandbox_home": "sandbox"}, "--sandbox-home 'sandbox': must be an absolute path"),
        ({"base_url": "ftp://m.test/v1"}, "--base-url 'ftp://m.test/v1'"),
        ({"base_url": f"http://u:{REAL_KEY}@m.test/v1"}, "no credentials or query in the URL"),
        ({"model": ""}, "--model ''"),
        ({"api_key_env": "KEY=x"}, "--api-key-env 'KEY=x'"),
        ({"owner": "no-such-user-clawfleet"}, "--owner 'no-such-user-clawfleet': no such user"),
    ],
)
def test_bad_input_is_refused_by_name_and_nothing_written(tmp_path, kwargs, message):
    args = {"base_url": "http://m.test/v1", "model": "m", **kwargs}
    with pytest.raises(AgentError) as info:
        write_config(tmp_path, **args)
    assert message in str(info.value) and REAL_KEY not in str(info.value)
    assert not (tmp_path / ".openclaw").exists()


def test_missing_home_is_refused(tmp_path):
    proc = cli("--home", str(tmp_path / "absent"), "--base-url", "http://m.test/v1", "--model", "m")
    assert proc.returncode == 1 and f"--home {tmp_path / 'absent'}: not a directory" in proc.stderr
