"""A real gateway daemon (``clawfleet gateway serve``) with one real sandbox whose policy lives in a policy
directory, as on a host: for the ``policy apply`` and ``fleet push`` tests. Root only."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SANDBOX_USER = "clawfleet-sbx"
# Says "ready" once its TERM trap is set: a stop before that would wait for the daemon's SIGKILL timeout.
READY_COMMAND = "trap 'exit 0' TERM; echo ready; sleep 600 & wait"


def sandbox_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SANDBOX_USER], check=True)  # fmt: skip
        return pwd.getpwnam(SANDBOX_USER)


def policy_text(port: int = 8443, host: str = "api.example.com") -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        filesystem_policy:
          include_workdir: true
          read_only: [/usr, /lib, /lib64, /bin, /etc, /proc]
          read_write: [/sandbox, /tmp, /dev/null]
        process:
          run_as_user: {SANDBOX_USER}
        network_policies:
          api:
            name: api
            endpoints:
              - host: {host}
                port: {port}
            binaries:
              - path: /usr/bin/curl
        """
    )


class GatewayDaemon:
    """``root/policies/NAME.yaml`` is the sandbox's policy; ``root/gateway.sock`` the control socket."""

    def __init__(self, root: Path, name: str = "agent", command: list[str] | None = None) -> None:
        """``command`` replaces the default idle command; it must print ``ready`` once it is up."""
        user = sandbox_user()
        self.root, self.name = root, name
        root.chmod(0o755)
        self.policy_dir = root / "policies"
        self.policy_dir.mkdir(exist_ok=True)
        self.policy = self.policy_dir / f"{name}.yaml"
        if not self.policy.exists():
            self.policy.write_text(policy_text())
        self.ledger = root / "ledger.jsonl"
        work = root / "work"
        work.mkdir(exist_ok=True)
        os.chown(work, user.pw_uid, user.pw_gid)
        self.socket = root / "gateway.sock"
        (root / f"{name}.def.yaml").write_text(json.dumps({
            "name": name, "command": command or ["/bin/sh", "-c", READY_COMMAND], "policy": str(self.policy),
            "workdir": "work", "limits": {"pids_max": 64},
        }))  # fmt: skip
        self.config = root / "daemon.yaml"
        self.config.write_text(json.dumps({"state_dir": "state", "control_socket": str(self.socket),
                                           "sandboxes": [f"{name}.def.yaml"]}))  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def status(self) -> dict | None:
        from clawfleet.control_protocol import request

        try:
            return next(iter(request({"cmd": "status", "name": self.name}, str(self.socket))))
        except (OSError, StopIteration):
            return None

    @staticmethod
    def _ready(status: dict) -> bool:
        try:
            return "ready" in Path(status["output"]).read_text()
        except (OSError, KeyError, TypeError):
            return False

    def start(self, timeout: float = 60.0) -> dict:
        argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "serve", "--config", str(self.config)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.status()
            if st and st.get("state") == "running" and st.get("policy_digest") and self._ready(st):
                return st
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        err = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
        self.stop()
        raise AssertionError(f"gateway daemon did not come up: {err}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


def clawfleet(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
