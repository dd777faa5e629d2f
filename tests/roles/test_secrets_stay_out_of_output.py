"""Sandbox secret values never reach Ansible's output, even at -vvv and when a loop item fails: a failed item prints
its whole item, so the roles loop over sandboxes without their values and only no_log tasks read a value.

Each attack (a loop item made to fail, output at -vvv) sits next to its twin where the same task works: the secret
file is written with the value (sandbox), the policy is merged (policy), and the value is still not printed. The
sandbox role runs in check mode against temporary directories (it would install units), its secrets task for real."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Values no task may print; distinct so a leak says which path printed it.
TOKEN = "ghp_FAKE-test-value-7Qm3Zr9Lx2Vw"
PASSWORD = "FAKE-db-password-Hs8Kd1Pq4Yt6"


def _sandboxes(**first) -> list[dict]:
    return [
        {
            "name": "agent-a",
            "presets": ["pypi"],
            "secrets": {"GITHUB_TOKEN": {"value": TOKEN, "hosts": ["api.github.com"]}},
            **first,
        },
        {
            "name": "agent-b",
            "presets": ["pypi"],
            "secrets": {"DB_PASSWORD": {"value": PASSWORD, "hosts": ["db.example"]}},
        },
    ]


def _assert_no_value(output: str) -> None:
    assert TOKEN not in output and PASSWORD not in output, "a secret value was printed"


def _sandbox_vars(tmp_path: Path, sandboxes: list[dict], user) -> dict:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    policy = (
        (REPO / "policies" / "base.yaml").read_text().replace("run_as_user: sandbox", f"run_as_user: {user.pw_name}")
    )
    for sb in sandboxes:
        (policies / f"{sb['name']}.yaml").write_text(policy)
    return {
        "clawfleet_sandboxes": [{**sb, "user": user.pw_name} for sb in sandboxes],
        "clawfleet_venv": str(Path(sys.executable).parent.parent),
        "clawfleet_policy_dir": str(policies),
        "clawfleet_sandbox_definitions_dir": str(tmp_path / "definitions"),
        "clawfleet_secrets_dir": str(tmp_path / "secrets"),
        "clawfleet_gateway_state_dir": str(tmp_path / "state"),
        "sandbox_workdir_root": str(tmp_path / "workdirs"),
        "clawfleet_gateway_config": str(tmp_path / "gateway.yaml"),
        "sandbox_report_security": False,
    }


def test_sandbox_secrets_are_written_root_only_and_never_printed(tmp_path, run_role):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    run = run_role("sandbox", {"clawfleet_sandboxes": _sandboxes(), "clawfleet_secrets_dir": str(secrets)},
                   tasks_from="secrets", verbosity=3)  # fmt: skip
    assert run.rc == 0, run.output
    assert run.changed == 1
    for name, value in (("sandbox-agent-a-GITHUB_TOKEN", TOKEN), ("sandbox-agent-b-DB_PASSWORD", PASSWORD)):
        written = secrets / name
        assert written.read_text() == value + "\n"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600 and written.stat().st_uid == 0
    _assert_no_value(run.output)


def test_sandbox_secret_items_that_fail_do_not_print_their_values(tmp_path, run_role):
    # The secrets directory does not exist: every item of the loop fails.
    missing = tmp_path / "no-such-dir"
    run = run_role("sandbox", {"clawfleet_sandboxes": _sandboxes(), "clawfleet_secrets_dir": str(missing)},
                   tasks_from="secrets", verbosity=3)  # fmt: skip
    assert run.rc != 0 and run.failed == 1, run.output
    assert "Store the sandboxes' secrets root-only" in run.output
    assert not missing.exists()
    _assert_no_value(run.output)


def test_sandbox_role_check_run_prints_no_value(tmp_path, run_role, user):
    run = run_role("sandbox", _sandbox_vars(tmp_path, _sandboxes(), user), check=True, verbosity=3)
    assert run.rc == 0, run.output
    # The loops over the sandboxes ran and printed their items (names only); the secrets task ran for both.
    assert "(item=agent-a)" in run.output and "(item=agent-b)" in run.output
    assert run.output.count("(item=(censored due to no_log))") >= 2
    _assert_no_value(run.output)


def test_sandbox_role_failed_sandbox_item_prints_no_value(tmp_path, run_role, user):
    # agent-a's workdir is a regular file: its item of "Create each sandbox's working directory" fails, and a
    # failed item is printed whole.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run = run_role("sandbox", _sandbox_vars(tmp_path, _sandboxes(workdir=str(blocker)), user), check=True, verbosity=3)
    assert run.rc != 0 and run.failed == 1, run.output
    failed = [line for line in run.output.splitlines() if line.startswith("failed: [localhost]")]
    assert failed and all("agent-a" in line for line in failed), run.output
    assert "GITHUB_TOKEN" in run.output  # the item was printed (names only)
    _assert_no_value(run.output)


def test_policy_merge_item_that_fails_prints_no_value(run_role):
    run = run_role("policy", {"clawfleet_sandboxes": _sandboxes(presets=["no-such-preset"])}, tasks_from="merge",
                   verbosity=3)  # fmt: skip
    assert run.rc != 0 and run.failed == 1, run.output
    assert "no-such-preset" in run.output
    _assert_no_value(run.output)


def test_policy_merge_prints_no_value(run_role):
    run = run_role("policy", {"clawfleet_sandboxes": _sandboxes()}, tasks_from="merge", verbosity=3)
    assert run.rc == 0, run.output
    assert "agent-a: sha256:" in run.output and "agent-b: sha256:" in run.output
    _assert_no_value(run.output)


def test_projection_keeps_everything_but_the_values():
    sys.path.insert(0, str(REPO / "filter_plugins"))
    try:
        from clawfleet_sandboxes import sandbox_secret_files, sandboxes_without_secret_values
    finally:
        sys.path.pop(0)
    sandboxes = _sandboxes()
    sandboxes[1]["secrets"]["CA"] = {"file": "/etc/ssl/ca.pem", "hosts": ["db.example"]}
    public = sandboxes_without_secret_values(sandboxes)
    assert TOKEN not in json.dumps(public) and PASSWORD not in json.dumps(public)
    assert public[0]["secrets"] == {"GITHUB_TOKEN": {"hosts": ["api.github.com"], "stored": True}}
    assert public[1]["secrets"]["CA"] == {"file": "/etc/ssl/ca.pem", "hosts": ["db.example"]}
    assert sandboxes[0]["secrets"]["GITHUB_TOKEN"]["value"] == TOKEN  # the input is left as it was
    files = sandbox_secret_files(sandboxes, "/s")
    assert [f["path"] for f in files] == ["/s/sandbox-agent-a-GITHUB_TOKEN", "/s/sandbox-agent-b-DB_PASSWORD"]
    # A name that would leave the secrets directory is refused, naming the secret, not its value.
    bad = _sandboxes()
    bad[0]["secrets"] = {"../../root/x": {"value": TOKEN, "hosts": ["h"]}}
    with pytest.raises(Exception, match=r"agent-a.*\.\./\.\./root/x") as exc:
        sandbox_secret_files(bad, "/s")
    assert TOKEN not in str(exc.value)
