"""Fixtures: a test PKI, HTTPS/HTTP echo origins on 127.0.0.1, and an in-process gateway (host namespace,
caller identity injected) for the protocol tests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from clawfleet.gateway.assembly import assemble
from clawfleet.gateway.config import GatewayConfig, SecretBinding
from clawfleet.gateway.ident import Caller

from .support import SECRET_VALUE, Origin, make_ca_and_leaf, unit_policy

# api.telegram.org: the FAKE Telegram Bot API (tests/fakes/fake_telegram.py) in test_channel_credentials.py
NAMES = ("origin.test", "pass.test", "other.test", "plain.test", "api.telegram.org")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("pki")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    return {"ca": ca, "cert": cert, "key": key, "dir": d}


@pytest.fixture(scope="session")
def origins(pki):
    https = Origin(pki["cert"], pki["key"])
    http = Origin()
    yield {"https": https, "http": http}
    https.close()
    http.close()


class LiveGateway:
    def __init__(self, tmp: Path, pki, origins, *, mode="enforce", policy_text=None, secrets=True,
                 binding: dict | None = None, bindings: tuple = (), **settings) -> None:  # fmt: skip
        self.tmp = tmp
        self.policy = tmp / "policy.yaml"
        self.policy.write_text(policy_text or unit_policy(origins))
        self.log_path = tmp / "decisions.jsonl"
        secret_file = tmp / "gh_token"
        secret_file.write_text(SECRET_VALUE + "\n")
        secret_file.chmod(0o600)
        # x-other: a header the binding names besides Authorization (tests/gateway/test_credentials.py)
        binding = {"headers": ("authorization", "x-other")} if binding is None else binding
        # bindings: more secrets (SecretBinding), after GITHUB_TOKEN's
        bindings = ((SecretBinding("GITHUB_TOKEN", str(secret_file), ("origin.test",), **binding),) if secrets
                    else ()) + tuple(bindings)  # fmt: skip
        self.config = GatewayConfig(policy=str(self.policy), mode=mode, log=str(self.log_path), sandbox="unit",
                                    extra_ca_file=str(pki["ca"]), secrets=bindings,
                                    static_hosts={n: "127.0.0.1" for n in NAMES}, reload_interval=0.05,
                                    **settings)  # fmt: skip
        # The same assembly as the supervisor's embedded and attached modes and `gateway proxy`.
        self.parts = assemble(self.config, identify=self._identify)
        self.log, self.holder, self.ca, self.gateway = (self.parts.log, self.parts.holder, self.parts.ca,
                                                        self.parts.gateway)  # fmt: skip
        self.ca_file = tmp / "gateway-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.binary = "/usr/bin/curl"
        self.resolved: list[str] = []
        orig_resolve = self.gateway.resolve

        async def resolve(host, port, d, *caller):
            self.resolved.append(host)
            return await orig_resolve(host, port, d, *caller)

        self.gateway.resolve = resolve  # type: ignore[method-assign]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        asyncio.run_coroutine_threadsafe(self.gateway.serve_socket(sock), self.loop).result(5)
        self.watch = asyncio.run_coroutine_threadsafe(self.holder.watch(0.05), self.loop)

    def _identify(self, peer, local) -> Caller:
        return Caller(pid=1234, exe=self.binary, ancestors=("/usr/bin/bash",), owners=((1234, self.binary),))

    def records(self) -> list[dict]:
        self.log.flush()
        return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.watch.cancel()
        asyncio.run_coroutine_threadsafe(self.gateway.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.parts.close_files()


@pytest.fixture
def make_gateway(tmp_path, pki, origins):
    made = []

    def make(**kw) -> LiveGateway:
        gw = LiveGateway(tmp_path, pki, origins, **kw)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


@pytest.fixture
def gw(make_gateway) -> LiveGateway:
    return make_gateway()
