"""Fail-safe paths: a classification that runs out of time, and a redaction that misses something.

The stuck engine and the broken redactor below are TEST DOUBLES standing in for what the real code must survive
(a regex that backtracks for minutes, a redaction bug): the router must keep answering other clients, and the
request must go local, get 503 or be blocked, never reach a cloud route.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from clawfleet.router.classifier import Classifier
from clawfleet.router.redact import Redactor

from .conftest import router_config_dict, start_router
from .test_router_leaks import NAME, cloud_bytes

pytestmark = pytest.mark.usefixtures("clean_fakes")


def _stuck_router(fakes, tmp_path, *, routes=None):
    cfg = router_config_dict(fakes, tmp_path)
    cfg["classifier"] = {"time_budget_ms": 200}
    if routes is not None:
        cfg["routes"] = routes
    handle = start_router(cfg)
    started, release = threading.Event(), threading.Event()

    def stuck_engine(text):  # test double: a pattern that backtracks until released
        if "STALL" in text:
            started.set()
            release.wait(60)
        return []

    handle.app.classifier = Classifier(extra_engines=[stuck_engine])
    return handle, started, release


def _send_stalling_request(handle, started, release):
    body = {"model": "default", "messages": [{"role": "user", "content": "STALL: what is a thread?"}]}
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.post, handle.url + "/v1/chat/completions", json=body, timeout=30)
        assert started.wait(10)
        health = httpx.get(handle.url + "/healthz", timeout=10)  # while the classification is stuck
        response = future.result()
        still_stuck = not release.is_set()
    return health, response, still_stuck


def test_a_stuck_classification_leaves_health_up_and_the_request_goes_local(fakes, clean_fakes, tmp_path):
    handle, started, release = _stuck_router(fakes, tmp_path)
    try:
        health, r, still_stuck = _send_stalling_request(handle, started, release)
    finally:
        release.set()
        handle.stop()
    assert health.status_code == 200
    assert still_stuck  # the answer came on the budget, not when the engine let go
    assert r.status_code == 200, r.text
    assert clean_fakes["local"].received and cloud_bytes(clean_fakes) == b""
    decision = handle.decisions()[-1]
    assert decision["error"] == "classify_timeout" and decision["classes"] == ["unscanned_content"]


def test_a_stuck_classification_with_only_a_cloud_route_gets_503(fakes, clean_fakes, tmp_path):
    routes = [{"name": "default", "action": "cloud", "provider": "openai"}]
    handle, started, release = _stuck_router(fakes, tmp_path, routes=routes)
    try:
        _, r, _ = _send_stalling_request(handle, started, release)
    finally:
        release.set()
        handle.stop()
    assert r.status_code == 503 and "not sent to a cloud route" in r.json()["error"]["message"]
    assert cloud_bytes(clean_fakes) == b""


def test_a_request_the_stuck_engine_does_not_touch_still_goes_to_the_cloud(fakes, clean_fakes, tmp_path):
    handle, _, release = _stuck_router(fakes, tmp_path)
    try:
        body = {"model": "default", "messages": [{"role": "user", "content": "what is a thread?"}]}
        r = httpx.post(handle.url + "/v1/chat/completions", json=body, timeout=30)
    finally:
        release.set()
        handle.stop()
    assert r.status_code == 200 and clean_fakes["cloud"].received


def test_what_redaction_misses_is_stopped_by_the_last_look(router, clean_fakes, monkeypatch):
    monkeypatch.setattr(Redactor, "redact", lambda self, found: 0)  # test double: a redaction bug
    body = {"model": "default", "messages": [{"role": "user", "content": f"Thank {NAME} for the review."}]}
    r = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 403, r.text
    assert "person_name" in r.json()["error"]["message"]
    assert cloud_bytes(clean_fakes) == b""
    assert router.decisions()[-1]["error"] == "residual_sensitive"


def test_working_redaction_passes_the_last_look(router, clean_fakes):
    body = {"model": "default", "messages": [{"role": "user", "content": f"Thank {NAME} for the review."}]}
    r = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert b"<<PERSON_NAME_1>>" in cloud_bytes(clean_fakes)
