"""policies/: the base denies everything; each preset opens what its comment says, and no more."""

from __future__ import annotations

import pytest
from policy_testpaths import POLICIES

from clawfleet.policy import compile_policy, load_file, load_preset_file, merge

PRESETS = sorted((POLICIES / "presets").glob("*.yaml"))
EXPECTED = {
    "anthropic",
    "discord",
    "github",
    "local-ollama",
    "local-vllm",
    "npm",
    "nvidia-inference",
    "openai",
    "pypi",
    "slack",
    "telegram",
}


def engine_with(*names: str):
    base = load_file(POLICIES / "base.yaml")
    merged, _ = merge(base, [load_preset_file(POLICIES / "presets" / f"{n}.yaml") for n in names])
    return compile_policy(merged)


def test_base_is_deny_by_default_and_strict():
    base = load_file(POLICIES / "base.yaml")
    assert base.network_policies == {}
    assert base.landlock.compatibility == "hard_requirement"
    assert base.process.run_as_user == "sandbox"
    assert "/" not in base.filesystem.read_write
    assert base.warnings == ()
    d = compile_policy(base).decide("/usr/bin/curl", (), "pypi.org", 443)
    assert d.decision == "deny"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_presets_are_valid_documented_and_warning_free(path):
    preset = load_preset_file(path)
    assert preset.info.name == path.stem
    assert preset.info.description
    assert preset.warnings == ()
    assert all(rule.binaries for rule in preset.network_policies.values())
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Opens:"), "each preset starts with a comment saying what it opens"


def test_all_expected_presets_exist():
    assert {p.stem for p in PRESETS} == EXPECTED


CASES = [
    # (preset, binary, ancestors, host, port, method, path, decision)
    ("pypi", "/usr/bin/python3.12", (), "pypi.org", 443, "GET", "/simple/requests/", "allow"),
    ("pypi", "/usr/local/bin/uv", (), "files.pythonhosted.org", 443, "GET", "/packages/x.whl", "allow"),
    ("pypi", "/usr/bin/python3.12", (), "upload.pypi.org", 443, "POST", "/legacy/", "deny"),
    ("pypi", "/usr/bin/python3.12", (), "pypi.org", 443, "POST", "/legacy/", "deny"),
    ("pypi", "/usr/bin/curl", (), "pypi.org", 443, "GET", "/simple/", "deny"),
    ("npm", "/usr/bin/node", (), "registry.npmjs.org", 443, "GET", "/left-pad", "allow"),
    ("npm", "/usr/bin/node", (), "registry.npmjs.org", 443, "PUT", "/left-pad", "deny"),
    (
        "github",
        "/usr/lib/git-core/git-remote-https",
        ("/usr/bin/git",),
        "github.com",
        443,
        "GET",
        "/o/r.git/info/refs?service=git-upload-pack",
        "allow",
    ),
    ("github", "/usr/bin/git", (), "github.com", 443, "POST", "/o/r.git/git-receive-pack", "allow"),
    ("github", "/usr/bin/git", (), "github.com", 443, "GET", "/o/r/settings", "deny"),
    ("github", "/usr/bin/gh", (), "api.github.com", 443, "POST", "/repos/o/r/issues", "allow"),
    ("github", "/usr/bin/gh", (), "api.github.com", 443, "DELETE", "/repos/o/r", "deny"),
    ("github", "/usr/bin/gh", (), "api.github.com", 443, "POST", "/repos/o/r/hooks/1", "deny"),
    ("github", "/usr/bin/gh", (), "api.github.com", 443, "GET", "/orgs/nvidia/members", "deny"),
    ("github", "/usr/bin/python3", (), "api.github.com", 443, "GET", "/repos/o/r", "deny"),
    ("slack", "/usr/bin/node", (), "slack.com", 443, "POST", "/api/chat.postMessage", "allow"),
    ("slack", "/usr/bin/node", (), "slack.com", 443, "POST", "/api/admin.users.remove", "deny"),
    ("slack", "/usr/bin/node", (), "hooks.slack.com", 443, "POST", "/services/T/B/X", "allow"),
    ("telegram", "/usr/bin/node", (), "api.telegram.org", 443, "POST", "/bot123:abc/sendMessage", "allow"),
    ("telegram", "/usr/bin/node", (), "api.telegram.org", 443, "GET", "/file/bot123/x", "deny"),
    # what the engine judges for a channel token: the placeholder form the sandbox sent (docs/agents.md)
    (
        "telegram",
        "/opt/clawfleet/openclaw/node/bin/node",
        (),
        "api.telegram.org",
        443,
        "POST",
        "/botclawfleet:secret:TELEGRAM_BOT_TOKEN/getUpdates",
        "allow",
    ),
    ("telegram", "/usr/bin/curl", (), "api.telegram.org", 443, "GET", "/bot1/getMe", "deny"),
    ("slack", "/usr/bin/node", (), "slack.com", 443, "POST", "/api/apps.connections.open", "allow"),
    ("slack", "/usr/bin/node", (), "wss-primary.slack.com", 443, "GET", "/link/?ticket=t&app_id=A1", "allow"),
    ("slack", "/usr/bin/node", (), "wss-primary.slack.com", 443, "POST", "/link/", "deny"),
    ("discord", "/usr/bin/node", (), "discord.com", 443, "POST", "/api/v10/channels/1/messages", "allow"),
    ("discord", "/usr/bin/node", (), "discord.com", 443, "DELETE", "/api/v10/channels/1", "deny"),
    ("discord", "/usr/bin/node", (), "discord.com", 443, "GET", "/login", "deny"),
    ("discord", "/usr/bin/node", (), "cdn.discordapp.com", 443, "POST", "/attachments/1", "deny"),
    ("nvidia-inference", "/usr/bin/node", (), "integrate.api.nvidia.com", 443, "POST", "/v1/chat/completions", "allow"),
    ("nvidia-inference", "/usr/bin/node", (), "integrate.api.nvidia.com", 443, "DELETE", "/v1/models", "deny"),
    ("openai", "/usr/bin/python3.11", (), "api.openai.com", 443, "POST", "/v1/responses", "allow"),
    ("openai", "/usr/bin/python3.11", (), "api.openai.com", 443, "POST", "/v1/files", "deny"),
    ("anthropic", "/usr/local/bin/claude", (), "api.anthropic.com", 443, "POST", "/v1/messages", "allow"),
    ("anthropic", "/usr/local/bin/claude", (), "api.anthropic.com", 443, "GET", "/v1/organizations/x", "deny"),
    ("local-ollama", "/usr/bin/node", (), "127.0.0.1", 11434, "POST", "/api/chat", "allow"),
    ("local-ollama", "/usr/bin/node", (), "127.0.0.1", 11434, "DELETE", "/api/delete", "deny"),
    ("local-ollama", "/usr/bin/node", (), "127.0.0.2", 11434, "POST", "/api/chat", "deny"),
    ("local-ollama", "/usr/bin/node", (), "10.200.0.1", 11434, "POST", "/api/chat", "deny"),
    ("local-vllm", "/usr/bin/python3", (), "127.0.0.1", 8000, "POST", "/v1/chat/completions", "allow"),
    ("local-vllm", "/usr/bin/python3", (), "127.0.0.1", 8001, "POST", "/v1/chat/completions", "deny"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[5]}-{c[6]}" for c in CASES])
def test_preset_decisions(case):
    preset, binary, ancestors, host, port, method, path, want = case
    d = engine_with(preset).decide(binary, ancestors, host, port, method, path)
    assert d.decision == want, d.reason


def test_all_presets_merge_without_conflicts():
    base = load_file(POLICIES / "base.yaml")
    merged, report = merge(base, [load_preset_file(p) for p in PRESETS])
    assert report.overridden == ()
    assert len(merged.network_policies) == len(PRESETS)
