"""The gateway daemon (`clawfleet gateway serve`) and its sandboxes as separate processes: a sandbox keeps running
when the gateway dies, has no network while it is gone (fail closed), and is reached again, with the same CA, when
the gateway comes back - without being restarted. Root only (CI runs as root, so nothing skips there).

The restart here is done by hand (SIGKILL, start again); molecule/site proves the same with systemd's Restart=."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clawfleet.control_protocol import request
from policy_daemon import SANDBOX_USER

from .support import Origin, make_ca_and_leaf

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gateway daemon tests need root; CI runs as root")


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    d = tmp_path_factory.mktemp("daemon-pki")
    ca, cert, key = make_ca_and_leaf(d, ("origin.test",))
    o = Origin(cert, key)
    yield {"ca": ca, "origin": o}
    o.close()


LOOP = """while true; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 https://origin.test:PORT/ok/ping)
  echo "$code" >> /sandbox/results.log
  sleep 0.2
done"""


class Fleetlet:
    """A daemon config with one sandbox whose command polls an HTTPS origin through the gateway forever."""

    def __init__(self, tmp: Path, origin: dict, user, command: list[str] | None = None) -> None:
        tmp.chmod(0o755)
        self.tmp = tmp
        self.work = tmp / "work"
        self.work.mkdir()
        os.chown(self.work, user.pw_uid, user.pw_gid)
        port = origin["origin"].port
        (tmp / "policy.yaml").write_text(f"""\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]
  read_write: [/sandbox, /tmp, /dev/null]
network_policies:
  origin:
    name: origin
    endpoints:
      - host: origin.test
        port: {port}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: read-only
    binaries: [{{path: /usr/bin/curl}}]
""")  # fmt: skip
        (tmp / "looper.yaml").write_text(json.dumps({
            "name": "looper", "policy": "policy.yaml", "user": SANDBOX_USER, "workdir": str(self.work),
            "command": command or ["/bin/sh", "-c", LOOP.replace("PORT", str(port))],
            "gateway": {"extra_ca_file": str(origin["ca"]), "static_hosts": {"origin.test": "127.0.0.1"}},
        }))  # fmt: skip
        self.socket = str(tmp / "gateway.sock")
        # Not under /tmp: the sandbox mounts a private /tmp over it, hiding the CA bundle directory.
        os.makedirs("/run/clawfleet-tests", mode=0o755, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="daemon-", dir="/run/clawfleet-tests"))
        self.run_dir.chmod(0o755)
        self.config = tmp / "gateway.yaml"
        config = {"state_dir": "state", "control_socket": self.socket, "runtime_dir": str(self.run_dir),
                  "sandboxes": ["looper.yaml"]}  # fmt: skip
        self.config.write_text(json.dumps(config))
        self.daemon: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "clawfleet.cli", "gateway", "serve", "--config", str(self.config)]
        self.daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: os.path.exists(self.socket), 30, "control socket")

    def status(self) -> dict:
        return next(request({"cmd": "status", "name": "looper"}, self.socket))

    def results(self) -> list[str]:
        path = self.work / "results.log"
        return path.read_text().split() if path.exists() else []

    def records(self, event: str) -> list[dict]:
        lines = (self.tmp / "state" / "looper.decisions.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("event") == event]

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(60)
        # A test that killed the daemon leaves its sandboxes running (they outlive the gateway by design): stop them
        # here, or their processes and cgroups outlive the test (tests/sandbox checks that none are left).
        for record in (self.run_dir / "sandboxes").glob("*.json"):
            try:
                pid = json.loads(record.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            if isinstance(pid, int) and alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def fleetlet(tmp_path, origin, user):
    f = Fleetlet(tmp_path, origin, user)
    yield f
    f.close()


def test_gateway_death_fails_closed_and_a_new_gateway_resumes_without_restarting_the_sandbox(fleetlet):
    fleetlet.start()
    until(lambda: fleetlet.results()[-1:] == ["200"], 60, "the first request through the gateway")
    before = fleetlet.status()
    assert before["state"] == "running" and before["gateway_attached"] is True, before
    bundle = fleetlet.run_dir / "gateway" / "looper" / "ca-bundle.pem"
    ca_before = bundle.read_bytes()

    fleetlet.daemon.kill()  # the gateway dies hard: no cleanup of its own
    fleetlet.daemon.wait()
    seen = len(fleetlet.results())
    until(lambda: "000" in fleetlet.results()[seen:], 30, "a refused request while no gateway listens")
    assert alive(before["pid"]), "the sandbox must outlive its gateway"
    assert "200" not in fleetlet.results()[seen + 1 :], "traffic passed while no gateway was running"

    fleetlet.start()
    seen = len(fleetlet.results())
    until(lambda: "200" in fleetlet.results()[seen:], 60, "traffic to resume through the new gateway")
    after = fleetlet.status()
    assert after["pid"] == before["pid"] and after["gateway_attached"] is True, (before, after)
    assert bundle.read_bytes() == ca_before, "a restarted gateway must present the CA the sandbox trusts"
    listening = fleetlet.records("listening")
    assert [r["netns_pid"] for r in listening] == [before["pid"], before["pid"]]

    fleetlet.close()  # the daemon launched this sandbox: it stops it
    until(lambda: not alive(before["pid"]), 30, "the sandbox to stop with the daemon")


def test_ca_key_stays_out_of_the_sandbox(fleetlet):
    fleetlet.start()
    until(lambda: fleetlet.status()["gateway_attached"], 60, "the gateway to attach")
    key = fleetlet.tmp / "state" / "ca" / "looper.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (key.parent.stat().st_mode & 0o777) == 0o700
    bundle_dir = fleetlet.run_dir / "gateway" / "looper"
    assert all(b"PRIVATE KEY" not in p.read_bytes() for p in bundle_dir.iterdir())


def test_a_failed_sandbox_is_restarted_and_a_stopped_one_is_not(tmp_path, origin, user):
    f = Fleetlet(tmp_path, origin, user, command=["/bin/sh", "-c", "echo started >> /sandbox/starts; sleep 1; exit 3"])
    try:
        f.start()
        until(lambda: (f.work / "starts").exists() and len((f.work / "starts").read_text().split()) >= 2, 60,
              "the daemon to restart the failed sandbox")  # fmt: skip
        assert f.status()["restarts"] >= 1
        until(lambda: f.status()["state"] == "running", 30, "the restarted sandbox")
        answer = next(request({"cmd": "stop", "name": "looper"}, f.socket))
        assert answer["state"] == "exited", answer
        count = len((f.work / "starts").read_text().split())
        time.sleep(7)  # longer than the daemon's restart delay (5 s)
        assert len((f.work / "starts").read_text().split()) == count, "a stopped sandbox was restarted"
    finally:
        f.close()


CONNECT_SCRIPT = """
id -u
grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status | tr -s '\\t' ' '
test -f /sandbox/results.log && echo sees-workdir
cat /proc/1/comm
touch /.landlock-probe/x 2>/dev/null && echo LANDLOCK-BYPASSED || echo landlock-denied
cat /etc/shadow >/dev/null 2>&1 && echo SHADOW-READ || echo shadow-denied
curl -s -o /dev/null -w 'curl %{http_code}\\n' --max-time 5 https://origin.test:PORT/ok/connect
exit 7
"""


def test_connect_runs_a_command_inside_the_running_sandbox_confined_like_it(fleetlet, origin, user):
    fleetlet.start()
    until(lambda: fleetlet.results()[-1:] == ["200"], 60, "the sandbox to reach the origin")
    script = CONNECT_SCRIPT.replace("PORT", str(origin["origin"].port))
    proc = subprocess.run([sys.executable, "-m", "clawfleet.cli", "sandbox", "connect", "--socket", fleetlet.socket,
                           "looper", "--", "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(user.pw_uid)
    assert "NoNewPrivs: 1" in lines and "Seccomp: 2" in lines and "CapEff: 0000000000000000" in lines, lines
    assert "sees-workdir" in lines  # the sandbox's own mount namespace
    assert lines[lines.index("sees-workdir") + 1] not in ("systemd", "init", "process_api")  # its PID namespace
    assert "landlock-denied" in lines and "shadow-denied" in lines, lines
    assert "curl 200" in lines, lines  # through the sandbox's gateway, with its CA
    log = fleetlet.tmp / "state" / "looper.decisions.jsonl"

    def connect_records() -> list[dict]:
        return [r for r in map(json.loads, log.read_text().splitlines()) if r.get("path") == "/ok/connect"]

    # allow records are batched: they reach the file within the log's flush interval, not with the response
    until(connect_records, 30, "the connect request's decision record")
    records = connect_records()
    assert records[-1]["binary"] == "/usr/bin/curl" and records[-1]["decision"] == "allow"


def test_connect_refuses_an_unknown_or_stopped_sandbox(fleetlet):
    fleetlet.start()
    base = [sys.executable, "-m", "clawfleet.cli", "sandbox", "connect"]
    unknown = subprocess.run([*base, "--socket", fleetlet.socket, "nope"], capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 1 and "no sandbox named 'nope'" in unknown.stderr
    until(lambda: fleetlet.status()["state"] == "running", 60, "the sandbox")
    next(request({"cmd": "stop", "name": "looper"}, fleetlet.socket))
    stopped = subprocess.run([*base, "--socket", fleetlet.socket, "looper", "--", "/bin/true"], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    assert stopped.returncode == 1 and "not running" in stopped.stderr


def reload_cli(socket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", "gateway", "reload", "--socket", socket, "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_sighup_remakes_only_the_changed_sandbox_and_keeps_the_last_good_set(fleetlet, origin, user):
    # A second sandbox with its own workdir, next to the looper, in the same daemon.
    other_work = fleetlet.tmp / "other-work"
    other_work.mkdir()
    os.chown(other_work, user.pw_uid, user.pw_gid)
    looper = json.loads((fleetlet.tmp / "looper.yaml").read_text())
    (fleetlet.tmp / "other.yaml").write_text(json.dumps({**looper, "name": "other", "workdir": str(other_work)}))
    config = json.loads(fleetlet.config.read_text())
    fleetlet.config.write_text(json.dumps({**config, "sandboxes": ["looper.yaml", "other.yaml"]}))
    other_results = other_work / "results.log"

    def other() -> dict:
        return next(request({"cmd": "status", "name": "other"}, fleetlet.socket))

    fleetlet.start()
    until(lambda: fleetlet.results()[-1:] == ["200"], 60, "the looper through the gateway")
    until(lambda: other_results.exists() and other_results.read_text().split()[-1:] == ["200"], 60, "the other")
    looper_before, other_before = fleetlet.status(), other()

    # Change the looper's definition only, then SIGHUP (what `systemctl reload clawfleet-gateway` sends).
    (fleetlet.tmp / "looper.yaml").write_text(json.dumps({**looper, "env": {"EDITED": "1"}}))
    seen_other = len(other_results.read_text().split())
    fleetlet.daemon.send_signal(signal.SIGHUP)
    attached: list[bool] = []

    def looper_remade() -> bool:
        attached.append(other()["gateway_attached"])
        st = fleetlet.status()
        return st["state"] == "running" and st["pid"] != looper_before["pid"] and st["gateway_attached"]

    until(looper_remade, 60, "the changed sandbox to be remade")
    until(lambda: fleetlet.results()[-1:] == ["200"], 60, "the remade looper through its new gateway")
    # The other sandbox was never touched: same process, its gateway attached at every look, no refused request.
    assert other()["pid"] == other_before["pid"] and all(attached), attached
    assert "000" not in other_results.read_text().split()[seen_other:]

    # A broken edit, through `clawfleet gateway reload` (the unit's ExecReload: it waits for the outcome): it fails
    # naming the file, and nothing changes, the last good set stays (the looper keeps running as it is).
    remade = fleetlet.status()
    (fleetlet.tmp / "looper.yaml").write_text(json.dumps({**looper, "no_such_key": 1}))
    broken = reload_cli(fleetlet.socket)
    assert broken.returncode == 1, broken
    assert "looper.yaml" in broken.stderr and "no_such_key" in broken.stderr, broken.stderr
    assert json.loads(broken.stdout)["kept"] == ["looper", "other"]
    assert fleetlet.status()["pid"] == remade["pid"] and other()["pid"] == other_before["pid"]

    # Removing a sandbox from the configuration stops it and its gateway; the looper is untouched. The reload
    # command returns once that is done.
    (fleetlet.tmp / "looper.yaml").write_text(json.dumps({**looper, "env": {"EDITED": "1"}}))
    fleetlet.config.write_text(json.dumps({**config, "sandboxes": ["looper.yaml"]}))
    removed = reload_cli(fleetlet.socket)
    assert removed.returncode == 0, removed
    assert json.loads(removed.stdout) | {"restart_needed_for": None} == {
        "event": "reloaded", "added": [], "removed": ["other"], "changed": [], "unchanged": ["looper"],
        "restart_needed_for": None}  # fmt: skip
    assert "error" in other()
    assert not alive(other_before["pid"])
    assert fleetlet.status()["pid"] == remade["pid"]
