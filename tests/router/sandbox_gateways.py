"""In-process sandbox gateways (the real clawfleet.gateway proxy) in front of the router, one per sandbox.

What cannot exist here is the kernel's view of the caller (netns, /proc): the gateway's identify callback
returns a fixed caller, as tests/gateway/conftest.py does. Everything on the wire is real: the SDK sends its
request to the gateway as an HTTP proxy, the gateway applies its policy, strips and signs, and forwards to
the router on loopback.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from pathlib import Path

import anthropic
import httpx
import openai

from clawfleet.gateway.ca import SandboxCA
from clawfleet.gateway.config import DecisionLog, GatewayConfig
from clawfleet.gateway.ident import Caller
from clawfleet.gateway.proxy import Gateway
from clawfleet.gateway.reload import PolicyHolder

INFERENCE = "inference.local"
AGENT = "/usr/bin/python3"


def write_identity_key(path: Path, key: bytes = b"k" * 8 + b"0123456789abcdef0123456789abcdef") -> bytes:
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    return key


class SandboxGateway:
    def __init__(self, tmp: Path, sandbox: str, router_port: int, key_file: Path, *, other_port: int = 0) -> None:
        self.sandbox = sandbox
        policy = tmp / f"policy-{sandbox}.yaml"

        def endpoint(host: str, port: int) -> list[str]:
            return [f"      - host: {host}", f"        port: {port}", "        allowed_ips: [127.0.0.1/32]",
                    "        protocol: rest", "        access: full"]  # fmt: skip

        lines = ["version: 1", "network_policies:", "  inference:", "    name: inference", "    endpoints:"]
        lines += endpoint(INFERENCE, router_port) + (endpoint("other.test", other_port) if other_port else [])
        lines += ["    binaries:", f"      - path: {AGENT}"]
        policy.write_text("\n".join(lines) + "\n")
        config = GatewayConfig(
            policy=str(policy),
            sandbox=sandbox,
            static_hosts={INFERENCE: "127.0.0.1", "other.test": "127.0.0.1"},
        )
        self.log = DecisionLog(stream=io.StringIO(), sandbox=sandbox)
        holder = PolicyHolder(config.policy, self.log)
        env = {
            "CLAWFLEET_ROUTER_IDENTITY_KEY": str(key_file),
            "CLAWFLEET_ROUTER_ENDPOINTS": f"{INFERENCE}:{router_port}",
        }
        self.gateway = Gateway(config, holder, self.log, self._identify, SandboxCA(sandbox))
        from clawfleet.gateway.router_identity import RouterIdentity

        # the production gateway reads the same two variables from its environment
        self.gateway.router_identity = RouterIdentity.from_environment(sandbox, env)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        asyncio.run_coroutine_threadsafe(self.gateway.serve_socket(sock), self.loop).result(5)
        self.router_url = f"http://{INFERENCE}:{router_port}"

    @staticmethod
    def _identify(peer: tuple, local: tuple) -> Caller:
        return Caller(pid=4242, exe=AGENT, ancestors=("/usr/bin/bash",), owners=((4242, AGENT),))

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(proxy=self.proxy, trust_env=False, **kw)

    def openai(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.router_url + "/v1", api_key="sk-agent", max_retries=0, http_client=self.http(), **kw
        )

    def anthropic(self, **kw) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.router_url,
            api_key="agent",
            max_retries=0,
            http_client=anthropic.DefaultHttpxClient(proxy=self.proxy, trust_env=False),
            **kw,
        )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
