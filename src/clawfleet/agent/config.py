"""Write OpenClaw's configuration for a sandbox home: ``HOSTDIR/.openclaw/openclaw.json``.

Written directly rather than by ``openclaw onboard``: onboarding stores the API key it is given in its state
database and a backup file, mints a gateway token and stamps times, so its output holds a secret and changes on
every run. This file holds only what the sandbox sees: paths under the sandbox home, the model endpoint, and the
API key as an environment reference (``${VAR}``) or a placeholder, never a key. The shape follows OpenClaw's
docs (``docs/providers/vllm.md``, "Explicit configuration"): an OpenAI-compatible provider with one model.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from clawfleet.agent import AgentError

PROVIDER = "vllm"  # OpenClaw's provider for any OpenAI-compatible endpoint (onboard --auth-choice vllm)
NO_KEY = "clawfleet-no-api-key"  # a keyless endpoint (the privacy router): any non-empty value works
GATEWAY_PORT = 18789  # OpenClaw's default; its gateway listens on the sandbox's own loopback
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Written:
    path: Path
    changed: bool


def render(sandbox_home: str, base_url: str, model: str, api_key_env: str | None = None) -> dict[str, Any]:
    home = PurePosixPath(sandbox_home)
    if not home.is_absolute() or ".." in home.parts:
        raise AgentError(f"--sandbox-home {sandbox_home!r}: must be an absolute path, as the sandbox sees it")
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise AgentError(f"--base-url {base_url!r}: expected http(s)://HOST[:PORT]/v1")
    if url.username or url.password or url.query:
        # The URL itself is not echoed: it holds what may be a secret.
        raise AgentError("--base-url: no credentials or query in the URL (use --api-key-env)")
    if not model or model.strip() != model:
        raise AgentError(f"--model {model!r}: expected the model name the endpoint serves")
    if api_key_env is not None and not _ENV_NAME.match(api_key_env):
        raise AgentError(f"--api-key-env {api_key_env!r}: expected an environment variable name")
    state = home / ".openclaw"
    return {
        "agents": {"defaults": {"workspace": str(state / "workspace"), "model": {"primary": f"{PROVIDER}/{model}"}}},
        "models": {
            "mode": "merge",
            "providers": {
                PROVIDER: {
                    "baseUrl": base_url.rstrip("/"),
                    "api": "openai-completions",
                    "apiKey": f"${{{api_key_env}}}" if api_key_env else NO_KEY,
                    "models": [
                        {
                            "id": model,
                            "name": model,
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000,
                            "maxTokens": 8192,
                        }
                    ],
                }
            },
        },
        "plugins": {"entries": {PROVIDER: {"enabled": True}}},
        "gateway": {"mode": "local", "bind": "loopback", "port": GATEWAY_PORT},
    }


def _owner(name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentError(f"--owner {name!r}: no such user") from None
    return entry.pw_uid, entry.pw_gid


def write_config(home: str | Path, base_url: str, model: str, sandbox_home: str = "/sandbox",
                 owner: str | None = None, api_key_env: str | None = None) -> Written:  # fmt: skip
    """Write ``home/.openclaw/openclaw.json`` (and the workspace directory), owned by ``owner``."""
    text = json.dumps(render(sandbox_home, base_url, model, api_key_env), indent=2) + "\n"
    ids = _owner(owner)
    home = Path(home)
    if not home.is_dir():
        raise AgentError(f"--home {home}: not a directory (the sandbox's workdir)")
    state = home / ".openclaw"
    path = state / "openclaw.json"
    try:
        changed = not path.is_file() or path.read_text() != text
    except OSError as exc:
        raise AgentError(f"{path}: {exc}") from exc
    for directory in (state, state / "workspace"):
        directory.mkdir(mode=0o700, exist_ok=True)
    if changed:
        tmp = state / ".openclaw.json.tmp"
        tmp.write_text(text)
        tmp.chmod(0o600)
        os.replace(tmp, path)
    if ids is not None:
        # OpenClaw chmods and rewrites its state: the sandbox user must own it, not root.
        for item in (state, state / "workspace", path):
            if (item.stat().st_uid, item.stat().st_gid) != ids:
                os.chown(item, *ids)
                changed = True
    return Written(path, changed)
