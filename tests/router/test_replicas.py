"""Several local deployments: least outstanding requests, a killed replica out of rotation and back after
it recovers (health checks), cooldowns and retries with backoff for non-sensitive traffic only; sensitive
traffic never reaches the cloud, whatever fails."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from .conftest import router_config_dict, start_router
from .fake_upstreams import FakeState, ServerThread, free_port, make_openai_app

pytestmark = pytest.mark.usefixtures("clean_fakes")
SENSITIVE = "Please email the invoice to maria.garcia@example.org today."
GENERAL = "Explain the difference between a process and a thread in two sentences."


def _wait(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Replicas:
    def __init__(self, n: int) -> None:
        self.states = [FakeState(f"gpu{i}") for i in range(n)]
        self.ports = [free_port() for _ in range(n)]
        self.servers: list[ServerThread | None] = [None] * n
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> None:
        self.servers[i] = ServerThread(make_openai_app(self.states[i]), port=self.ports[i]).start()

    def kill(self, i: int) -> None:
        server = self.servers[i]
        assert server is not None
        server.stop()
        self.servers[i] = None

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/v1" for p in self.ports]

    def close(self) -> None:
        for i, s in enumerate(self.servers):
            if s is not None:
                self.kill(i)


@pytest.fixture
def gpus(fakes, tmp_path):
    reps = Replicas(2)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["providers"]["local"] = {
        "type": "vllm",
        "replicas": reps.urls(),
        "models": {"default": "nemotron-local", "embed": "local-embed"},
        "health_interval_s": 0.1,
        "cooldown_s": 60,  # longer than the test: only a passing health check brings a replica back
    }
    router = start_router(cfg)
    yield reps, router
    router.stop()
    reps.close()


def chat(router, text=SENSITIVE, **kw):
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": text}], **kw)


def test_idle_replicas_share_the_load(gpus, clean_fakes):
    reps, router = gpus
    for _ in range(6):
        assert chat(router).choices[0].message.content == "You said: " + SENSITIVE
    assert [len(s.received) for s in reps.states] == [3, 3]
    assert all(st.received == [] for name, st in clean_fakes.items() if name != "local")


def test_least_outstanding_requests_wins(gpus, clean_fakes):
    reps, router = gpus
    for st in reps.states:
        st.chunk_delay, st.chunk_size, st.reply = 0.1, 2, "a slow answer that takes a while to stream"
    done: dict = {}

    def slow() -> None:
        for chunk in chat(router, stream=True):
            done.setdefault("first", chunk)
        done["end"] = True

    t = threading.Thread(target=slow)
    t.start()
    assert _wait(lambda: "first" in done)
    busy = next(i for i, st in enumerate(reps.states) if st.received)
    idle = reps.states[1 - busy]
    idle.chunk_delay, idle.reply = 0.0, None
    for _ in range(3):
        chat(router)
    t.join(20)
    assert len(reps.states[busy].received) == 1  # only the slow stream
    assert len(reps.states[1 - busy].received) == 3
    assert done.get("end")


def test_killed_replica_leaves_and_rejoins_the_rotation(gpus, clean_fakes):
    reps, router = gpus
    reps.kill(0)
    for _ in range(4):  # no request fails: the dead replica is skipped
        assert chat(router).choices[0].message.content == "You said: " + SENSITIVE
    assert len(reps.states[1].received) == 4 and reps.states[0].received == []
    assert clean_fakes["cloud"].received == []
    up = router.app.upstreams["local"]
    assert _wait(lambda: not up.replicas[0].available(time.monotonic()))
    reps.start(0)  # recovered: the health check puts it back (its 60 s cooldown notwithstanding)
    assert _wait(lambda: up.replicas[0].available(time.monotonic()))
    for _ in range(4):
        chat(router)
    assert len(reps.states[0].received) >= 1


def test_sensitive_traffic_never_falls_back_to_the_cloud(gpus, clean_fakes):
    reps, router = gpus
    reps.kill(0)
    reps.kill(1)
    with pytest.raises(openai.APIStatusError) as exc:
        chat(router)
    assert exc.value.status_code == 503
    assert all(st.bytes_received == 0 for name, st in clean_fakes.items() if name != "local")


def test_retries_with_backoff_for_non_sensitive_only(fakes, tmp_path, clean_fakes):
    cfg = router_config_dict(fakes, tmp_path)
    cfg["retries"] = {"attempts": 2, "backoff_ms": 10}
    cfg["routes"][-1] = {"name": "default", "action": "cloud", "provider": "openai"}  # no fallback
    router = start_router(cfg)
    try:
        clean_fakes["cloud"].fail_first = 2
        assert chat(router, GENERAL).choices[0].message.content == "You said: " + GENERAL
        assert len(clean_fakes["cloud"].received) == 3  # two 503s, then the answer
        clean_fakes["local"].fail_first = 1
        with pytest.raises(openai.APIStatusError) as exc:  # sensitive: one try, no retry
            chat(router)
        assert exc.value.status_code == 503
        assert len(clean_fakes["local"].received) == 1
        assert len(clean_fakes["cloud"].received) == 3
    finally:
        router.stop()


def test_cooldown_skips_a_failed_deployment(fakes, tmp_path, clean_fakes):
    cfg = router_config_dict(fakes, tmp_path)
    cfg["providers"]["openai"]["cooldown_s"] = 60
    router = start_router(cfg)
    try:
        clean_fakes["cloud"].fail_first = 1
        for _ in range(3):
            assert chat(router, GENERAL).choices[0].message.content == "You said: " + GENERAL
        assert len(clean_fakes["cloud"].received) == 1  # failed once, then out of rotation
        assert len(clean_fakes["backup"].received) == 3
    finally:
        router.stop()
