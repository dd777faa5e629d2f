#!/usr/bin/env python3
"""One OpenClaw agent turn (`openclaw agent --local`) inside `clawfleet sandbox run` (through the gateway) vs
directly on the host, against the same FAKE model server (tests/fakes/fake_vllm.py over TLS on 127.0.0.1), in
the same run, alternating. Prints the wall time of each turn, the ratio, and the peak RSS of the agent's process
tree (`/usr/bin/time -f %M`). Root only (the sandbox). Uses the runtime the tests install in .cache/agent/.

    sudo .venv/bin/python benchmarks/bench_openclaw_turn.py [--runs 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from clawfleet.agent.pins import lock_digest, openclaw_version  # noqa: E402
from gateway.support import Origin, make_ca_and_leaf  # noqa: E402
from policy_daemon import SANDBOX_USER, sandbox_user  # noqa: E402

KEY = "sk-bench-key"
CLI = [sys.executable, "-m", "clawfleet.cli"]


def fake_model(d: Path) -> tuple[Origin, Path]:
    spec = importlib.util.spec_from_file_location("fake_vllm", ROOT / "tests" / "fakes" / "fake_vllm.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    ca, cert, key = make_ca_and_leaf(d, ("model.test",))
    handler = fake.make_handler(argparse.Namespace(model="fake-model", served_model_name=None), KEY)
    return Origin(cert, key, handler), ca


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS KiB of the process tree's largest member, stdout)."""
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0 or "fake vllm answer" not in proc.stdout:
        sys.exit(f"turn failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, int(proc.stderr.strip().splitlines()[-1]), proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    prefix = ROOT / ".cache" / "agent" / f"openclaw-{openclaw_version()}-{lock_digest()}"
    inst = subprocess.run([*CLI, "agent", "install", "openclaw", "--prefix", str(prefix), "--json"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    runtime = json.loads(inst.stdout)
    user = sandbox_user()
    with tempfile.TemporaryDirectory(prefix="bench-openclaw-") as tmp:
        d = Path(tmp)
        d.chmod(0o755)
        origin, ca = fake_model(d)
        # Outside: the agent's home is a host directory, the model reached directly with the real key.
        host_home = d / "host-home"
        host_home.mkdir()
        subprocess.run([*CLI, "agent", "config", "openclaw", "--home", str(host_home), "--sandbox-home",
                        str(host_home), "--base-url", f"https://127.0.0.1:{origin.port}/v1", "--model", "fake-model",
                        "--api-key-env", "MODEL_API_KEY"], check=True, capture_output=True)  # fmt: skip
        outside_env = {"PATH": "/usr/bin:/bin", "HOME": str(host_home), "MODEL_API_KEY": KEY,
                       "NODE_EXTRA_CA_CERTS": str(ca)}  # fmt: skip
        # Inside: the sandbox home, a placeholder in the sandbox, the key injected by the gateway.
        work = d / "work"
        work.mkdir()
        os.chown(work, user.pw_uid, user.pw_gid)
        subprocess.run([*CLI, "agent", "config", "openclaw", "--home", str(work), "--owner", SANDBOX_USER,
                        "--base-url", f"https://model.test:{origin.port}/v1", "--model", "fake-model",
                        "--api-key-env", "MODEL_API_KEY"], check=True, capture_output=True)  # fmt: skip
        (d / "key").write_text(KEY)
        (d / "key").chmod(0o600)
        (d / "gw.json").write_text(json.dumps({"extra_ca_file": str(ca), "static_hosts": {"model.test": "127.0.0.1"},
                                               "secrets": {"MODEL_API_KEY": {"file": str(d / "key"),
                                                                             "hosts": ["model.test"]}}}))  # fmt: skip
        (d / "policy.yaml").write_text(textwrap.dedent(f"""\
            version: 1
            filesystem_policy:
              include_workdir: true
              read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom, {prefix}]
              read_write: [/sandbox, /tmp, /dev/null]
            process: {{run_as_user: {SANDBOX_USER}}}
            network_policies:
              model:
                name: model
                endpoints: [{{host: model.test, port: {origin.port}, allowed_ips: [127.0.0.1/32]}}]
                binaries: [{{path: {runtime["node"]}}}]
            """))  # fmt: skip
        turn = [runtime["entry"], "agent", "--local", "--message", "Say hello."]
        inside_cmd = [*CLI, "sandbox", "run", "--policy", str(d / "policy.yaml"), "--workdir", str(work),
                      "--gateway-config", str(d / "gw.json"), "--env", "HOME=/sandbox", "--credential",
                      "MODEL_API_KEY", "--", *turn]  # fmt: skip
        inside, outside = [], []
        for _ in range(args.runs):
            outside.append(timed(turn, outside_env)[:2])
            inside.append(timed(inside_cmd)[:2])
        origin.close()
    o, i = statistics.median(t for t, _ in outside), statistics.median(t for t, _ in inside)
    print(f"openclaw {runtime['version']} first turn (fresh home), median of {args.runs}:")
    print(f"  outside the sandbox: {o:6.1f} s   peak RSS {max(r for _, r in outside) / 1024:6.0f} MiB")
    print(f"  inside the sandbox:  {i:6.1f} s   peak RSS {max(r for _, r in inside) / 1024:6.0f} MiB")
    print(f"  inside / outside:    {i / o:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
