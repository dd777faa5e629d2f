"""Run one sandbox with its gateway in the same supervisor process.

The sandbox's network namespace has only ``lo``. :func:`listen_in_netns` creates the proxy's listening
socket *inside* it (a short-lived thread joins the namespace with ``setns``; only that thread moves, the
socket stays bound to 127.0.0.1:3128 in the sandbox) and hands it to the asyncio server running in the
supervisor's own namespace, where the upstream sockets are opened. No veth, no routable address.

``clawfleet sandbox run`` calls :func:`run_sandbox` (see docs/gateway.md for the wiring)::

    from clawfleet.gateway.embedded import run_sandbox
    from clawfleet.gateway.config import GatewayConfig
    code, launcher = run_sandbox(spec, GatewayConfig(policy=args.policy, mode=args.mode, log=args.gateway_log))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable

from clawfleet import paths
from clawfleet.atomicfile import write_atomic
from clawfleet.sandbox.namespaces import run_in_netns

from .ca import SandboxCA
from .config import DecisionLog, GatewayConfig
from .ident import HashPins, Identifier
from .proxy import Gateway
from .reload import PolicyHolder

__all__ = ["EmbeddedGateway", "config_from_args", "listen_in_netns", "run_sandbox", "sandbox_env"]

PROXY_HOST = "127.0.0.1"
STATE_ROOT = paths.EMBEDDED_GATEWAY_ROOT
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                "PIP_CERT")  # fmt: skip


def listen_in_netns(pid: int, port: int = 3128, host: str = PROXY_HOST, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket bound in the network namespace of ``pid`` (root only)."""

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    return run_in_netns(pid, bind)


def sandbox_env(port: int, ca_bundle: str) -> dict[str, str]:
    """Proxy and CA variables for the sandbox (both spellings: curl only reads lower-case http_proxy)."""
    proxy = f"http://{PROXY_HOST}:{port}"
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    for name in CA_VARIABLES:
        env[name] = ca_bundle
    env["NODE_USE_ENV_PROXY"] = "1"  # node >= 22.21/24.5 honours the proxy variables with this
    return env


class EmbeddedGateway:
    """The gateway for one sandbox: policy holder, CA, asyncio loop thread, netns hook."""

    def __init__(self, config: GatewayConfig, *, state_root: str = STATE_ROOT) -> None:
        self.config = config
        self.log = DecisionLog(config.log, sandbox=config.sandbox)
        self.holder = PolicyHolder(config.policy, self.log)
        self.ca = SandboxCA(config.sandbox)
        os.makedirs(state_root, mode=0o755, exist_ok=True)
        self.state_dir = tempfile.mkdtemp(prefix=f"{_safe(config.sandbox)}-", dir=state_root)
        os.chmod(self.state_dir, 0o755)  # noqa: S103 - the sandbox reads the bundle; the CA key is never here
        self.ca_bundle = os.path.join(self.state_dir, "ca-bundle.pem")
        write_atomic(self.ca_bundle, self.ca.bundle_text(extra_ca_file=config.extra_ca_file), 0o644)
        self.pins = HashPins(config.pins_file) if config.pin_binaries else None
        self.gateway = Gateway(config, self.holder, self.log, identify=None, ca=self.ca)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="gateway", daemon=True)
        self._thread.start()
        self._watch = asyncio.run_coroutine_threadsafe(self._start_watch(), self.loop).result(5)
        self.identifier: Identifier | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start_watch(self) -> asyncio.Task:
        return asyncio.ensure_future(self.holder.watch(self.config.reload_interval))

    def prepare(self, spec):
        """The spec with the CA bundle mounted read-only and the proxy variables set."""
        env = {**dict(spec.env), **sandbox_env(self.config.listen_port, self.ca_bundle)}
        return dataclasses.replace(spec, read_only=(*spec.read_only, self.state_dir), env=env)

    def hook(self, pid: int) -> None:
        """``Launcher(on_netns_ready=...)``: listen inside the sandbox's namespace, identify callers there."""
        sock = listen_in_netns(pid, self.config.listen_port)
        self.identifier = Identifier(netns_pid=pid, pins=self.pins)
        self.gateway.identify = self.identifier.identify_async
        asyncio.run_coroutine_threadsafe(self.gateway.serve_socket(sock), self.loop).result(10)
        self.log.write({"event": "listening", "netns_pid": pid, "port": self.config.listen_port,
                        "digest": self.holder.digest, "mode": self.config.mode})  # fmt: skip

    def close(self) -> None:
        async def stop() -> None:
            self._watch.cancel()
            await self.gateway.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.ca.close()
        self.log.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "sandbox"


def config_from_args(
    policy: str, gateway_config: str | None = None, mode: str | None = None, log: str | None = None
) -> GatewayConfig:
    """The gateway settings for ``sandbox run``: ``--policy``, optional ``--gateway-config FILE`` (YAML, see
    docs/gateway.md), ``--mode`` and ``--gateway-log`` override the file. Raises ConfigError/OSError."""
    from ruamel.yaml import YAML

    from .config import ConfigError, load_gateway_section

    section: dict = {}
    base = "."
    if gateway_config:
        with open(gateway_config, encoding="utf-8") as f:
            section = YAML(typ="safe").load(f) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{gateway_config}: expected a mapping")
        base = os.path.dirname(os.path.abspath(gateway_config))
    section["policy"] = os.path.abspath(policy)
    if mode:
        section["mode"] = mode
    if log:
        section["log"] = os.path.abspath(log)
    return load_gateway_section(section, base)


def run_sandbox(spec, config: GatewayConfig, *, warn: Callable[[str], None] | None = None):
    """Run ``spec`` (a SandboxSpec) with its traffic through a gateway; returns ``(exit code, launcher)``."""
    from clawfleet.sandbox.launcher import Launcher

    gw = EmbeddedGateway(config)
    try:
        launcher = Launcher(gw.prepare(spec), on_netns_ready=gw.hook, warn=warn)
        code = launcher.run()
    finally:
        gw.close()
    return code, launcher
