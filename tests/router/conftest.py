"""Fixtures: fake upstreams as real loopback HTTP servers, a router config pointing at them, the router itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clawfleet.router.app import RouterApp
from clawfleet.router.config import load_config, parse_config
from clawfleet.router.logging import DecisionLog

from .fake_upstreams import FakeState, ServerThread, free_port, make_anthropic_app, make_openai_app

CLOUD_KEY = "sk-host-side-openai-key-0000"
BACKUP_KEY = "nvapi-host-side-backup-key"
ANTHROPIC_KEY = "sk-ant-host-side-anthropic-key"


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, Any]]:
    states = {
        "local": FakeState("local"),
        "cloud": FakeState("cloud"),
        "backup": FakeState("backup"),
        "anthropic": FakeState("anthropic"),
    }
    servers = {
        "local": ServerThread(make_openai_app(states["local"])).start(),
        "cloud": ServerThread(make_openai_app(states["cloud"])).start(),
        "backup": ServerThread(make_openai_app(states["backup"])).start(),
        "anthropic": ServerThread(make_anthropic_app(states["anthropic"])).start(),
    }
    yield {"states": states, "servers": servers}
    for s in servers.values():
        s.stop()


@pytest.fixture(autouse=False)
def clean_fakes(fakes: dict[str, Any]) -> dict[str, FakeState]:
    for st in fakes["states"].values():
        st.received.clear()
        st.reply = None
        st.fail_status = None
        st.tool_call = False
        st.chunk_size = 3
        st.chunk_delay = 0.0
        st.reset_after = None
        st.fail_first = 0
    return fakes["states"]


def router_config_dict(fakes: dict[str, Any], secrets: Path, *, local_url: str | None = None) -> dict[str, Any]:
    srv = fakes["servers"]
    (secrets / "openai").write_text(CLOUD_KEY + "\n")
    (secrets / "backup").write_text(BACKUP_KEY)
    (secrets / "anthropic").write_text(ANTHROPIC_KEY)
    return {
        "version": 1,
        "providers": {
            "local": {
                "type": "vllm",
                "base_url": (local_url or srv["local"].url) + "/v1",
                "models": {"default": "nemotron-local", "embed": "local-embed"},
            },
            "openai": {
                "type": "openai",
                "base_url": srv["cloud"].url + "/v1",
                "api_key_file": str(secrets / "openai"),
                "models": {"default": "gpt-cloud", "embed": "cloud-embed"},
                "timeout": 10,
            },
            "backup": {
                "type": "nvidia",
                "base_url": srv["backup"].url + "/v1",
                "api_key_file": str(secrets / "backup"),
                "models": {"default": "nemotron-cloud"},
            },
            "anthropic": {
                "type": "anthropic",
                "base_url": srv["anthropic"].url + "/v1",
                "api_key_file": str(secrets / "anthropic"),
                "models": {"default": "claude-cloud"},
            },
        },
        "custom_classes": {
            "project_codename": {"keywords": ["Project Nightjar"], "markers": ["CONFIDENTIAL"]},
            "customer_id": {"regexes": [r"\bCUST-\d{6}\b"]},
        },
        "routes": [
            {"name": "no-private-keys", "classes": ["private_key"], "action": "block"},
            {
                "name": "sensitive-local",
                "classes": [
                    "structured_pii",
                    "secret",
                    "health",
                    "national_id",
                    "project_codename",
                    "customer_id",
                    "unscanned_content",
                ],
                "action": "local",
                "provider": "local",
            },
            {
                "name": "names-redacted",
                "classes": ["person_name", "street_address"],
                "action": "redact",
                "provider": "openai",
            },
            {"name": "default", "action": "cloud", "provider": "openai", "fallback": ["backup", "anthropic"]},
        ],
        "decision_log": "off",
    }


class RouterHandle:
    def __init__(self, app: RouterApp, server: ServerThread, log: io.StringIO) -> None:
        self.app, self.server, self._log = app, server, log
        # the metrics listener: the router's own port no longer serves /metrics
        self.metrics_server = ServerThread(app.metrics_asgi).start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def metrics_url(self) -> str:
        return self.metrics_server.url + "/metrics"

    def stop(self) -> None:
        self.server.stop()
        self.metrics_server.stop()

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._log.getvalue().splitlines() if line]

    @property
    def log_text(self) -> str:
        return self._log.getvalue()


def write_yaml(path: Path, cfg: dict[str, Any]) -> None:
    from ruamel.yaml import YAML

    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump(cfg, f)


def start_router(cfg: dict[str, Any], *, config_file: Path | None = None) -> RouterHandle:
    """The router on a loopback port; with ``config_file``, loaded from that file (hot reload watches it)."""
    if config_file is not None:
        write_yaml(config_file, cfg)
        config = load_config(config_file)
    else:
        config = parse_config(cfg, source="test")
    log = io.StringIO()
    dlog = DecisionLog("off")
    dlog._stream = log  # capture the JSON lines
    app = RouterApp(config, decision_log=dlog)
    return RouterHandle(app, ServerThread(app.asgi).start(), log)


@pytest.fixture(scope="session")
def router(fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterHandle]:
    secrets = tmp_path_factory.mktemp("secrets")
    handle = start_router(router_config_dict(fakes, secrets))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def router_local_down(fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterHandle]:
    secrets = tmp_path_factory.mktemp("secrets-down")
    handle = start_router(router_config_dict(fakes, secrets, local_url=f"http://127.0.0.1:{free_port()}"))
    yield handle
    handle.stop()


def serve_router(path: Path, port: int, *, stderr: Any = subprocess.DEVNULL, timeout: float = 20.0) -> subprocess.Popen:
    """``clawfleet router serve --config PATH`` in its own process (this venv's console script), returned once its
    ``/healthz`` on ``port`` answers; killed, and the test failed, if it does not within ``timeout`` seconds."""
    exe = Path(sys.executable).parent / "clawfleet"
    proc = subprocess.Popen([str(exe), "router", "serve", "--config", str(path)], stderr=stderr)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"router serve did not answer /healthz within {timeout:g} s")
