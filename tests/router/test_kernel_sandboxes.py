"""Issue 18 acceptance, with real kernel sandboxes: two sandboxes run by the real gateway daemon
(`clawfleet gateway serve`, as the systemd unit runs it) call the router with the real openai and anthropic SDKs.

What the in-process gateways of test_identity.py cannot show: the daemon's own environment wiring
(CLAWFLEET_ROUTER_IDENTITY_KEY / CLAWFLEET_ROUTER_ENDPOINTS, as the gateway unit sets them), the kernel's caller
identification and the sandbox's proxy variables. Each sandbox is attributed to itself; alpha, over its token
budget, gets 429 with Retry-After and the limit named while beta still works; the identity headers alpha writes
(claiming to be beta) are ignored. Root only (CI runs as root, so nothing skips there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from policy_daemon import SANDBOX_USER

from .conftest import router_config_dict, start_router
from .sandbox_gateways import write_identity_key

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="kernel sandboxes need root; CI runs as root"),
    pytest.mark.usefixtures("clean_fakes"),
]

# The SDKs come from this test's environment; the sandbox runs the system interpreter (the venv's may live under a
# directory the sandbox user cannot enter) with the same site-packages, read-only.
SITE = sysconfig.get_paths()["purelib"]
PYTHON = "/usr/bin/python3"
GENERAL = "Explain the difference between a process and a thread in two sentences."

# Runs inside each sandbox: ROUNDS calls with the openai SDK (with forged identity headers where SPOOF is set),
# then one streamed call with the anthropic SDK; the outcome of each goes to /sandbox/result.json.
CLIENT = """\
import json, os
import anthropic, openai

base, spoof, rounds = os.environ["ROUTER"], os.environ.get("SPOOF", ""), int(os.environ["ROUNDS"])
headers = {"x-clawfleet-sandbox": spoof, "x-clawfleet-identity": "v1.1.forged.00"} if spoof else {}
out = []
client = openai.OpenAI(base_url=base + "/v1", api_key="sk-agent", max_retries=0, default_headers=headers)
for _ in range(rounds):
    try:
        r = client.chat.completions.create(model="default", messages=[{"role": "user", "content": os.environ["ASK"]}])
        out.append({"sdk": "openai", "status": 200, "text": r.choices[0].message.content})
    except openai.APIStatusError as e:
        out.append({"sdk": "openai", "status": e.status_code, "retry_after": e.response.headers.get("retry-after"),
                    "body": e.response.text})
claude = anthropic.Anthropic(base_url=base, api_key="agent", max_retries=0, default_headers=headers)
try:
    with claude.messages.stream(model="default", max_tokens=50,
                                messages=[{"role": "user", "content": os.environ["ASK"]}]) as s:
        out.append({"sdk": "anthropic", "status": 200, "text": "".join(s.text_stream)})
except anthropic.APIStatusError as e:
    out.append({"sdk": "anthropic", "status": e.status_code, "retry_after": e.response.headers.get("retry-after"),
                "body": e.response.text})
with open("/sandbox/result.tmp", "w") as f:
    json.dump(out, f)
os.rename("/sandbox/result.tmp", "/sandbox/result.json")
"""


def policy(router_port: int) -> str:
    return f"""\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom, {SITE}]
  read_write: [/sandbox, /tmp, /dev/null]
network_policies:
  inference:
    name: inference
    endpoints:
      - host: inference.local
        port: {router_port}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
    binaries: [{{path: "/usr/bin/python3*"}}]
"""


class TwoSandboxes:
    def __init__(self, tmp: Path, router_port: int, key_file: Path, user) -> None:
        tmp.mkdir(mode=0o755)
        self.tmp = tmp
        (tmp / "client.py").write_text(CLIENT)
        (tmp / "client.py").chmod(0o644)
        (tmp / "policy.yaml").write_text(policy(router_port))
        self.work: dict[str, Path] = {}
        names = []
        for name, env in {
            # alpha claims to be beta in headers it writes itself; its budget covers one call
            "alpha": {"SPOOF": "beta", "ROUNDS": "3"},
            "beta": {"ROUNDS": "2"},
        }.items():
            work = tmp / f"work-{name}"
            work.mkdir()
            os.chown(work, user.pw_uid, user.pw_gid)
            shutil.copy(tmp / "client.py", work / "client.py")
            self.work[name] = work
            env = {**env, "ROUTER": f"http://inference.local:{router_port}", "ASK": GENERAL, "PYTHONPATH": SITE}
            command = ["/bin/sh", "-c", f"{PYTHON} /sandbox/client.py; echo done; sleep 600"]
            (tmp / f"{name}.yaml").write_text(json.dumps({
                "name": name, "policy": "policy.yaml", "user": SANDBOX_USER, "workdir": str(work),
                "command": command, "env": env,
                "gateway": {"static_hosts": {"inference.local": "127.0.0.1"}},
            }))  # fmt: skip
            names.append(f"{name}.yaml")
        self.socket = str(tmp / "gateway.sock")
        os.makedirs("/run/clawfleet-tests", mode=0o755, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="router18-", dir="/run/clawfleet-tests"))
        self.run_dir.chmod(0o755)
        # As the role configures it: each sandbox's traffic parsed by an unprivileged process (gateway_user), which
        # signs the router requests with the key the daemon hands it (docs/gateway.md "Privilege separation").
        config = {"state_dir": "state", "control_socket": self.socket, "runtime_dir": str(self.run_dir),
                  "sandboxes": names, "gateway_user": "nobody"}  # fmt: skip
        (tmp / "gateway.yaml").write_text(json.dumps(config))
        # What the gateway unit sets (roles/gateway/templates/clawfleet-gateway.service.j2).
        env = {**os.environ, "CLAWFLEET_ROUTER_IDENTITY_KEY": str(key_file),
               "CLAWFLEET_ROUTER_ENDPOINTS": f"inference.local:{router_port}"}  # fmt: skip
        argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "serve", "--config", str(tmp / "gateway.yaml")]
        self.stderr = open(tmp / "daemon.err", "wb")  # noqa: SIM115 - closed in close()
        self.daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)

    def result(self, name: str, timeout: float = 120) -> list[dict]:
        path = self.work[name] / "result.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                logs = (self.tmp / "state" / f"{name}.out").read_text() if (self.tmp / "state").exists() else ""
                raise AssertionError(f"{name} gave no result; daemon: {(self.tmp / 'daemon.err').read_text()}\n{logs}")
            time.sleep(0.2)
        return json.loads(path.read_text())

    def close(self) -> None:
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(60)
        self.stderr.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def test_two_kernel_sandboxes_are_attributed_limited_and_cannot_spoof(fakes, tmp_path, user):
    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file), "unknown": "refuse"}
    cfg["state_dir"] = str(tmp_path / "router-state")
    # The fake cloud reports 15 tokens a call: alpha's budget holds one call, beta's is the default (none).
    cfg["limits"] = {"sandboxes": {"alpha": {"tokens_per_min": 10}}}
    router = start_router(cfg)
    boxes = TwoSandboxes(tmp_path / "boxes", router.server.port, key_file, user)
    try:
        alpha, beta = boxes.result("alpha"), boxes.result("beta")
    finally:
        boxes.close()
        router.stop()

    # beta works throughout, with both SDKs, while alpha is refused.
    assert [r["status"] for r in beta] == [200, 200, 200], beta
    assert all(r["text"] == "You said: " + GENERAL for r in beta)
    # alpha: its first call passes, then it is over its token budget: 429, Retry-After, the limit named. (A
    # minute boundary between two calls opens a new window: one more call may pass, never all of them.)
    statuses = [r["status"] for r in alpha]
    assert statuses[0] == 200 and statuses.count(429) >= 2 and set(statuses) == {200, 429}, alpha
    for r in alpha:
        if r["status"] == 429:
            assert r["retry_after"] and int(r["retry_after"]) >= 1
            assert "tokens_per_min" in r["body"]

    decisions = [d for d in router.decisions() if d.get("event") == "decision"]
    # "unknown: refuse": a request without the gateway's valid proof would have been a 401, so every call here
    # carried the daemon's signature; alpha's own claim to be beta changed nothing.
    assert {(d["sandbox"], d["identity"]) for d in decisions} == {("alpha", "verified"), ("beta", "verified")}
    by_box = {name: [d for d in decisions if d["sandbox"] == name] for name in ("alpha", "beta")}
    assert len(by_box["beta"]) == 3 and len(by_box["alpha"]) == 4
    limits = [d.get("limit") for d in by_box["alpha"]]
    assert limits.count("sandbox.tokens_per_min") == statuses.count(429)
    assert not any(d.get("limit") for d in by_box["beta"])
    # alpha's refused calls never reached a provider.
    assert sum(len(state.received) for state in fakes["states"].values()) == 3 + statuses.count(200)
