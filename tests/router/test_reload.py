"""Hot reload: the file watch and SIGHUP load a new config; a bad edit keeps the last good one; a stream in
flight finishes on the config it started with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import httpx
import openai
import pytest

from .conftest import router_config_dict, serve_router, start_router, write_yaml
from .fake_upstreams import free_port

pytestmark = pytest.mark.usefixtures("clean_fakes")
GENERAL = "Explain the difference between a process and a thread in two sentences."


def _wait(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _reloads(router) -> list[dict]:
    return [d for d in router.decisions() if d.get("event") == "reload"]


def _chat(url: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}]).id


@pytest.fixture
def watched(fakes, tmp_path):
    cfg = router_config_dict(fakes, tmp_path)
    path = tmp_path / "router.yaml"
    router = start_router(cfg, config_file=path)
    yield router, cfg, path
    router.stop()


def test_file_edit_is_live_and_digest_logged(watched, clean_fakes):
    router, cfg, path = watched
    _chat(router.url)
    assert len(clean_fakes["cloud"].received) == 1
    old_digest = router.app.config.digest
    cfg["routes"][-1] = {"name": "default", "action": "cloud", "provider": "backup"}
    write_yaml(path, cfg)
    assert _wait(lambda: _reloads(router))
    [rec] = _reloads(router)
    assert rec["ok"] is True and rec["previous"] == old_digest and rec["digest"] == router.app.config.digest
    assert rec["digest"] != old_digest and rec["trigger"] == "file_changed"
    _chat(router.url)
    assert len(clean_fakes["cloud"].received) == 1
    assert len(clean_fakes["backup"].received) == 1


def test_touch_without_change_reloads_nothing(watched, clean_fakes):
    router, _cfg, path = watched
    text = path.read_text()
    path.write_text(text)  # new mtime, same bytes
    os.utime(path, None)
    time.sleep(1.2)  # two polls; nothing must happen (absence of a reload, not a timing measurement)
    assert _reloads(router) == []


def test_bad_edit_keeps_the_last_good_config(watched, clean_fakes):
    router, _cfg, path = watched
    good_digest = router.app.config.digest
    text = path.read_text()
    assert "provider: openai" in text
    lines = text.splitlines()
    bad_line = max(i for i, line in enumerate(lines) if "provider: openai" in line) + 1
    lines[bad_line - 1] = lines[bad_line - 1].replace("openai", "opneai")
    path.write_text("\n".join(lines) + "\n")
    assert _wait(lambda: _reloads(router))
    [rec] = _reloads(router)
    assert rec["ok"] is False and rec["digest"] == good_digest
    assert f"{path}:{bad_line}: routes[3].provider: unknown provider 'opneai'" in rec["message"]
    _chat(router.url)  # still served by the good config
    assert len(clean_fakes["cloud"].received) == 1
    path.write_text("version: 1\nproviders: [unclosed\n")  # not even YAML
    assert _wait(lambda: len(_reloads(router)) == 2)
    assert f"{path}:3: invalid YAML" in _reloads(router)[1]["message"]
    assert router.app.config.digest == good_digest


def test_stream_in_flight_survives_a_reload(watched, clean_fakes):
    router, cfg, path = watched
    clean_fakes["cloud"].chunk_delay = 0.05
    clean_fakes["cloud"].chunk_size = 4
    clean_fakes["cloud"].reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    got: dict = {}

    def consume() -> None:
        client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": GENERAL}], stream=True
        )
        parts = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                got["started"] = True
        got["text"] = "".join(parts)

    t = threading.Thread(target=consume)
    t.start()
    assert _wait(lambda: got.get("started"))
    # the new config points the cloud route at a dead port: the old stream must not care
    cfg["providers"]["openai"]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    write_yaml(path, cfg)
    assert _wait(lambda: _reloads(router))
    assert "text" not in got  # the reload happened while the stream was still running
    t.join(20)
    assert got["text"] == clean_fakes["cloud"].reply
    _chat(router.url)  # new requests use the new config: openai is down, the route falls back to backup
    assert len(clean_fakes["cloud"].received) == 1
    assert len(clean_fakes["backup"].received) == 1


def test_sighup_reloads_a_served_router(fakes, tmp_path, clean_fakes):
    cfg = router_config_dict(fakes, tmp_path)
    port, mport = free_port(), free_port()
    log = tmp_path / "decisions.jsonl"
    cfg.update(
        listen={"host": "127.0.0.1", "port": port},
        metrics_listen={"host": "127.0.0.1", "port": mport},
        decision_log=str(log),
        watch_config=False,  # only the signal may reload here
    )
    path = tmp_path / "router.yaml"
    write_yaml(path, cfg)
    proc = serve_router(path, port, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _chat(url)
        assert len(clean_fakes["cloud"].received) == 1
        cfg["routes"][-1] = {"name": "default", "action": "cloud", "provider": "backup"}
        write_yaml(path, cfg)
        time.sleep(1.2)  # the watch is off: nothing changes until the signal
        _chat(url)
        assert len(clean_fakes["cloud"].received) == 2
        proc.send_signal(signal.SIGHUP)

        def reloaded() -> list[dict]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [r for r in map(json.loads, lines) if r.get("event") == "reload"]

        assert _wait(reloaded)
        assert reloaded()[0]["trigger"] == "sighup" and reloaded()[0]["ok"] is True
        _chat(url)
        assert len(clean_fakes["backup"].received) == 1
        # metrics live on their own port, not on the agents' port
        assert httpx.get(url + "/metrics").status_code == 404
        assert "clawfleet_router_sandbox_requests_total" in httpx.get(f"http://127.0.0.1:{mport}/metrics").text
    finally:
        proc.terminate()
        proc.wait(10)


def test_sighup_rereads_a_rotated_identity_key(fakes, tmp_path, clean_fakes):
    """The key file is not part of the config digest: SIGHUP rebuilds anyway, and the old key stops working."""
    from clawfleet.router.identity import HEADER_PROOF, HEADER_SANDBOX, sign

    from .sandbox_gateways import write_identity_key

    key_file = tmp_path / "identity.key"
    old_key = write_identity_key(key_file)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file), "unknown": "refuse"}
    router = start_router(cfg, config_file=tmp_path / "router.yaml")
    try:

        def call(key: bytes) -> int:
            headers = {HEADER_SANDBOX: "alpha", HEADER_PROOF: sign(key, "alpha")}
            body = {"model": "default", "messages": [{"role": "user", "content": GENERAL}]}
            return httpx.post(router.url + "/v1/chat/completions", json=body, headers=headers).status_code

        assert call(old_key) == 200
        new_key = write_identity_key(key_file, b"n" * 48)
        assert router.app.reload("sighup") is True
        assert call(old_key) == 401
        assert call(new_key) == 200
    finally:
        router.stop()
