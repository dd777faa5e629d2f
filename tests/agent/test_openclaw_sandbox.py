"""End to end: the real OpenClaw (installed by `clawfleet agent install`, configured by `clawfleet agent config`)
runs one agent turn inside `clawfleet sandbox run` (Landlock, seccomp, netns; node the only allowed binary)
through the real gateway to a FAKE OpenAI-compatible model server on loopback, over TLS. The sandbox holds only a
credential placeholder; the fake demands the real key, so the answer printed proves the gateway injected it.
The attack twin: the same agent pointed at a host outside the policy gets 403 and the model server sees nothing.
Root only (CI runs as root, so nothing skips there)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.support import Origin, make_ca_and_leaf
from policy_daemon import SANDBOX_USER

REPO = Path(__file__).resolve().parents[2]
REAL_KEY = "sk-fake-model-REAL-key-31337"
ANSWER = "the fake model says hello from loopback"

TURN = '"$0" agent --local --message "Say hello."'  # $0: the entry, $1: node, $2: the model port
# The same Node asks the gateway for a tunnel to the host outside the policy and prints the answer's status; then
# the agent's own turn, whose HTTPS request is refused at CONNECT too (Node reports that as "connection error" and
# OpenClaw retries for about 90 s, so it is stopped after its first attempts).
PROBE = (
    "const u = new URL(process.env.HTTPS_PROXY); require('http').request({host: u.hostname, port: u.port, "
    "method: 'CONNECT', path: 'other.test:' + process.argv[1]}).on('connect', r => { console.log('status', "
    "r.statusCode); process.exit(0); }).on('error', e => { console.log('error', e.message); }).end();"
)
ATTACK = f'"$1" -e "{PROBE}" "$2"; timeout 60 "$0" agent --local --message "Say hello."'

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root"),
]


def _fake_vllm():
    spec = importlib.util.spec_from_file_location("fake_vllm", REPO / "tests" / "fakes" / "fake_vllm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The FAKE model server (tests/fakes/fake_vllm.py's handler) over TLS on 127.0.0.1, recording requests."""
    d = tmp_path_factory.mktemp("model")
    ca, cert, key = make_ca_and_leaf(d, ("model.test", "other.test"))
    fake = _fake_vllm()
    fake.ANSWER = ANSWER
    base = fake.make_handler(argparse.Namespace(model="fake-model", served_model_name=None), REAL_KEY)
    seen: list[tuple[str, str, str | None]] = []

    class Recording(base):
        def log_message(self, fmt, *a):
            seen.append((self.command, self.path, self.headers.get("Authorization")))

    origin = Origin(cert, key, Recording)
    yield {"port": origin.port, "ca": ca, "seen": seen}
    origin.close()


def _turn(tmp: Path, runtime: dict, model: dict, host: str, user, script: str = TURN) -> tuple:
    tmp.chmod(0o755)
    work = tmp / "work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    config = subprocess.run([sys.executable, "-m", "clawfleet.cli", "agent", "config", "openclaw", "--home",
                             str(work), "--owner", SANDBOX_USER, "--base-url", f"https://{host}:{model['port']}/v1",
                             "--model", "fake-model", "--api-key-env", "MODEL_API_KEY"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert config.returncode == 0, config.stderr
    prefix = str(Path(runtime["node"]).parents[2])
    policy = tmp / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""\
        version: 1
        filesystem_policy:
          include_workdir: true
          read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom, {prefix}]
          read_write: [/sandbox, /tmp, /dev/null]
        process:
          run_as_user: {SANDBOX_USER}
        network_policies:
          model:
            name: model
            endpoints:
              - host: model.test
                port: {model["port"]}
                allowed_ips: [127.0.0.1/32]
                protocol: rest
                rules:
                  - allow: {{method: GET, path: "/v1/models"}}
                  - allow: {{method: POST, path: "/v1/chat/completions"}}
            binaries: [{{path: {runtime["node"]}}}]
        """))  # fmt: skip
    key = tmp / "model-key"
    key.write_text(REAL_KEY + "\n")
    key.chmod(0o600)
    gwconf = tmp / "gateway.json"
    gwconf.write_text(json.dumps({
        "extra_ca_file": str(model["ca"]),
        "static_hosts": {"model.test": "127.0.0.1", "other.test": "127.0.0.1"},
        "secrets": {"MODEL_API_KEY": {"file": str(key), "hosts": ["model.test"]}},
    }))  # fmt: skip
    log = tmp / "decisions.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(policy), "--workdir", str(work),
         "--gateway-config", str(gwconf), "--gateway-log", str(log), "--env", "HOME=/sandbox",
         "--credential", "MODEL_API_KEY", "--", "/bin/sh", "-c", script, runtime["entry"], runtime["node"],
         str(model["port"])],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    records = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    return proc, records


def test_openclaw_turn_in_the_sandbox_reaches_the_model_through_the_gateway(tmp_path, openclaw_runtime, model, user):
    model["seen"].clear()
    proc, records = _turn(tmp_path, openclaw_runtime, model, "model.test", user)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ANSWER in proc.stdout
    # The fake saw the real key (it answers 401 otherwise), injected by the gateway for the placeholder.
    assert ("POST", "/v1/chat/completions", f"Bearer {REAL_KEY}") in model["seen"]
    allowed = [r for r in records if r.get("host") == "model.test" and r.get("decision") == "allow"]
    assert allowed and all(r["binary"] == openclaw_runtime["node"] for r in allowed)
    # What the agent wrote in its home holds neither the key nor a host path.
    for path in (tmp_path / "work" / ".openclaw").rglob("*.json"):
        text = path.read_text(errors="replace")
        assert REAL_KEY not in text and str(tmp_path) not in text, path


def test_openclaw_asking_a_host_outside_the_policy_is_denied(tmp_path, openclaw_runtime, model, user):
    model["seen"].clear()
    proc, records = _turn(tmp_path, openclaw_runtime, model, "other.test", user, ATTACK)
    assert "status 403" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ANSWER not in proc.stdout
    denied = [r for r in records if r.get("host") == "other.test" and r.get("decision") == "deny"]
    assert len(denied) >= 2, records  # the probe's and at least one of the agent's
    assert all(r["binary"] == openclaw_runtime["node"] for r in denied)
    assert model["seen"] == []  # nothing reached the model server
