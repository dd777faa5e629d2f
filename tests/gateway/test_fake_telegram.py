"""The FAKE Telegram Bot API as a program (what molecule/agent runs): it answers only the real token, and its
``--log`` records what arrived (real token, other token, none) without ever writing the token itself."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .support import make_ca_and_leaf

REPO = Path(__file__).resolve().parents[2]
TOKEN = "7000000001:AAFakeTokenForTheLogTest-31c7"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(ctx: ssl.SSLContext, port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_the_fake_answers_the_real_token_only_and_its_log_never_holds_it(tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path, ("api.telegram.org",))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    log = tmp_path / "requests.jsonl"
    port = _free_port()
    fake = subprocess.Popen(
        [sys.executable, str(REPO / "tests/fakes/fake_telegram.py"), "--cert", str(cert), "--key", str(key),
         "--token-file", str(token_file), "--port", str(port), "--log", str(log)]
    )  # fmt: skip
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.check_hostname = False  # the leaf names api.telegram.org and 127.0.0.1; the test dials the address
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        status, body = _get(ctx, port, f"/bot{TOKEN}/getMe?x={TOKEN}")
        assert (status, body["result"]["username"]) == (200, "clawfleet_fake_bot")
        status, body = _get(ctx, port, "/botclawfleet:secret:TELEGRAM_BOT_TOKEN/getMe")
        assert (status, body["ok"]) == (401, False)
        status, _ = _get(ctx, port, "/favicon.ico")
        assert status == 404
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    text = log.read_text()
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(x["method"], x["token"]) for x in lines] == [("GET", "real"), ("GET", "other"), ("GET", "none")]
    assert lines[0]["path"] == "/bot<TOKEN>/getMe?x=<TOKEN>"
