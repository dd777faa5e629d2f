"""A Telegram bot token in a real sandbox (Launcher: namespaces, Landlock, seccomp; the sandbox user): curl inside
holds only the placeholder in TELEGRAM_BOT_TOKEN, calls /bot$TELEGRAM_BOT_TOKEN/getMe through the gateway, and the
FAKE Telegram Bot API (tests/fakes/fake_telegram.py, TLS on 127.0.0.1) answers because it received the real token
in that path segment. Next to it, the attacks from inside the same sandbox: the token requested into another
host, a later segment and a reflecting redirect; none returns the real value. Root only (CI runs as root)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from policy_daemon import SANDBOX_USER

from .support import Origin, make_ca_and_leaf

REPO = Path(__file__).resolve().parents[2]
TOKEN = "7000000001:AAFakeRealTelegramToken_kernel-987654"
HOST = "api.telegram.org"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("telegram")
    ca, cert, key = make_ca_and_leaf(d, (HOST, "other.test"))
    spec = importlib.util.spec_from_file_location("fake_telegram", REPO / "tests" / "fakes" / "fake_telegram.py")
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    telegram = fake.make_server(TOKEN, cert, key)
    thread = threading.Thread(target=telegram.serve_forever, daemon=True)
    thread.start()
    echo = Origin(cert, key)  # other.test: a host the token is not bound to, echoing what it received
    yield {"ca": ca, "telegram": telegram, "echo": echo}
    telegram.shutdown()
    telegram.server_close()
    echo.close()


def test_telegram_token_reaches_the_fake_only_through_the_gateway(tmp_path, world, user):
    tmp_path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    tport, eport = world["telegram"].server_address[1], world["echo"].port
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""\
        version: 1
        filesystem_policy:
          include_workdir: true
          read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]
          read_write: [/sandbox, /tmp, /dev/null]
        process:
          run_as_user: {SANDBOX_USER}
        network_policies:
          telegram:
            name: telegram
            endpoints:
              - host: {HOST}
                port: {tport}
                allowed_ips: [127.0.0.1/32]
                protocol: rest
                rules:  # policies/presets/telegram.yaml, plus /x/** for the later-segment attack
                  - allow: {{method: GET, path: "/bot*/*"}}
                  - allow: {{method: POST, path: "/bot*/*"}}
                  - allow: {{method: GET, path: "/x/**"}}
              - {{host: other.test, port: {eport}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
            binaries: [{{path: /usr/bin/curl}}]
        """))  # fmt: skip
    token_file = tmp_path / "telegram_bot_token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    gwconf = tmp_path / "gateway.json"
    gwconf.write_text(json.dumps({
        "extra_ca_file": str(world["ca"]),
        "static_hosts": {HOST: "127.0.0.1", "other.test": "127.0.0.1"},
        "secrets": {"TELEGRAM_BOT_TOKEN": {"file": str(token_file), "hosts": [HOST], "headers": [],
                                           "path": ["/bot"]}},
    }))  # fmt: skip
    log = tmp_path / "decisions.jsonl"
    t, e = f"https://{HOST}:{tport}", f"https://other.test:{eport}"
    script = f"""
        echo "uid $(id -u) token $TELEGRAM_BOT_TOKEN"
        echo "getMe $(curl -s {t}/bot$TELEGRAM_BOT_TOKEN/getMe)"
        echo "other $(curl -s {e}/bot$TELEGRAM_BOT_TOKEN/getMe)"
        echo "later $(curl -s -o /dev/null -w '%{{http_code}}' {t}/x/bot$TELEGRAM_BOT_TOKEN/getMe)"
        echo "redirect $(curl -s -o /dev/null -D - {t}/bot$TELEGRAM_BOT_TOKEN/redirectMe | grep -i ^location)"
    """  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(policy), "--workdir", str(work),
         "--gateway-config", str(gwconf), "--gateway-log", str(log), "--credential", "TELEGRAM_BOT_TOKEN", "--",
         "/bin/sh", "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    placeholder = "openshell:resolve:env:TELEGRAM_BOT_TOKEN"
    assert out["uid"] == f"{user.pw_uid} token {placeholder}"  # the sandbox user, holding the placeholder only
    assert json.loads(out["getMe"])["result"]["username"] == "clawfleet_fake_bot"  # the fake got the real token
    assert f"/bot{TOKEN}/getMe" in [r["path"] for r in world["telegram"].seen]
    # The attacks: another host echoes the placeholder; a later segment reaches the fake with the placeholder
    # (404); a redirect quoting the path comes back with the placeholder.
    assert json.loads(out["other"])["path"] == f"/bot{placeholder}/getMe"
    assert out["later"] == "404"
    assert f"/x/bot{placeholder}/getMe" in [r["path"] for r in world["telegram"].seen]
    assert out["redirect"].strip().lower() == f"location: /bot{placeholder}/redirectme/".lower()
    assert TOKEN not in proc.stdout + proc.stderr and TOKEN not in log.read_text()
