"""Limits per sandbox and per host, through two sandbox gateways, the real router and the real SDKs.

The fake upstreams report usage 10 input + 5 output tokens per call. The limiter's clock is pinned (a
fake clock, so a test never straddles a minute): windows are what is tested, not time.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from clawfleet.router.config import ConfigError, parse_config

from .conftest import router_config_dict, start_router
from .sandbox_gateways import SandboxGateway, write_identity_key

pytestmark = pytest.mark.usefixtures("clean_fakes")
GENERAL = "Explain the difference between a process and a thread in two sentences."
SENSITIVE = "Please email the invoice to maria.garcia@example.org today."
NOON = 1_796_472_000.0  # 2026-12-05 12:00:00 UTC


def _config(fakes, tmp_path, limits):
    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file)}
    cfg["state_dir"] = str(tmp_path / "state")
    cfg["limits"] = limits
    # USD per million tokens: one call (10 in, 5 out) costs 0.002 USD on openai
    cfg["prices"] = {
        "openai": {"gpt-cloud": {"input": 100, "output": 200}, "cloud-embed": {"input": 0, "output": 0}},
        "backup": {"nemotron-cloud": {"input": 1, "output": 1}},
        "anthropic": {"claude-cloud": {"input": 1, "output": 1}},
    }
    return cfg, key_file


class Fleet:
    def __init__(self, fakes, tmp_path, limits, clock=NOON):
        self.cfg, self.key_file = _config(fakes, tmp_path, limits)
        self.tmp = tmp_path
        self.clock = clock
        self._start()

    def _start(self):
        self.router = start_router(self.cfg)
        self.router.app.limiter._clock = lambda: self.clock
        port = self.router.server.port
        self.alpha = SandboxGateway(self.tmp, "alpha", port, self.key_file)
        self.beta = SandboxGateway(self.tmp, "beta", port, self.key_file)

    def restart(self):
        self.close()
        self._start()

    def close(self):
        self.alpha.close()
        self.beta.close()
        self.router.stop()


@pytest.fixture
def fleet_factory(fakes, tmp_path):
    made = []

    def make(limits, **kw):
        f = Fleet(fakes, tmp_path, limits, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def chat(gw, text=GENERAL):
    return gw.openai().chat.completions.create(model="default", messages=[{"role": "user", "content": text}])


def test_sandbox_over_its_token_limit_gets_429_other_sandbox_works(fleet_factory, clean_fakes):
    fleet = fleet_factory({"sandbox": {"tokens_per_min": 1000}, "sandboxes": {"alpha": {"tokens_per_min": 20}}})
    chat(fleet.alpha)  # 15 tokens
    chat(fleet.alpha)  # 30: this one crosses the limit and completes
    sent = len(clean_fakes["cloud"].received)
    with pytest.raises(openai.RateLimitError) as exc:
        chat(fleet.alpha)
    assert exc.value.body["limit"] == "sandbox.tokens_per_min"
    assert "sandbox 'alpha' is over its tokens_per_min limit (30 of 20 used)" in exc.value.body["message"]
    retry = int(exc.value.response.headers["retry-after"])
    assert 1 <= retry <= 60
    assert len(clean_fakes["cloud"].received) == sent  # nothing went out for the refused call
    # the Anthropic SDK sees its own 429 shape
    with pytest.raises(anthropic.RateLimitError) as aexc:
        fleet.alpha.anthropic().messages.create(
            model="default", max_tokens=20, messages=[{"role": "user", "content": GENERAL}]
        )
    assert aexc.value.body["error"]["type"] == "rate_limit_error"
    assert chat(fleet.beta).choices[0].message.content == "You said: " + GENERAL
    # a new minute: alpha works again
    fleet.clock += 60
    assert chat(fleet.alpha).choices[0].message.content == "You said: " + GENERAL


def test_spending_budget_blocks_cloud_but_not_the_local_model(fleet_factory, clean_fakes):
    fleet = fleet_factory({"sandboxes": {"alpha": {"usd_per_day": 0.003}}})
    chat(fleet.alpha)
    chat(fleet.alpha)  # 0.004 USD spent
    with pytest.raises(openai.RateLimitError) as exc:
        chat(fleet.alpha)
    assert exc.value.body["limit"] == "sandbox.usd_per_day"
    retry = int(exc.value.response.headers["retry-after"])
    assert retry == 12 * 3600  # until UTC midnight
    assert len(clean_fakes["cloud"].received) == 2
    # local calls cost nothing: alpha still reaches its local model
    assert chat(fleet.alpha, SENSITIVE).choices[0].message.content == "You said: " + SENSITIVE
    assert chat(fleet.beta).choices[0].message.content == "You said: " + GENERAL
    d = [r for r in fleet.router.decisions() if r.get("sandbox") == "alpha" and r.get("provider") == "openai"]
    assert d[0]["cost_usd"] == pytest.approx(0.002)


def test_host_limit_applies_to_every_sandbox(fleet_factory, clean_fakes):
    fleet = fleet_factory({"host": {"requests_per_min": 2}})
    chat(fleet.alpha)
    chat(fleet.beta)
    for gw in (fleet.alpha, fleet.beta):
        with pytest.raises(openai.RateLimitError) as exc:
            chat(gw)
        assert exc.value.body["limit"] == "host.requests_per_min"


def test_counts_survive_a_restart(fleet_factory, clean_fakes):
    fleet = fleet_factory({"sandboxes": {"alpha": {"tokens_per_min": 20, "usd_per_month": 0.003}}})
    chat(fleet.alpha)
    chat(fleet.alpha)
    fleet.restart()
    with pytest.raises(openai.RateLimitError) as exc:
        chat(fleet.alpha)
    assert exc.value.body["limit"] == "sandbox.tokens_per_min"
    fleet.clock += 60  # a new minute, the same month: the spending still counts
    fleet.restart()
    fleet.router.app.limiter._clock = lambda: fleet.clock
    with pytest.raises(openai.RateLimitError) as exc:
        chat(fleet.alpha)
    assert exc.value.body["limit"] == "sandbox.usd_per_month"
    assert chat(fleet.beta).choices[0].message.content == "You said: " + GENERAL
    assert (fleet.tmp / "state" / "usage.sqlite").exists()


def test_unknown_callers_share_the_default_limits(fleet_factory, clean_fakes):
    fleet = fleet_factory({"sandbox": {"requests_per_min": 1}})
    direct = openai.OpenAI(base_url=fleet.router.url + "/v1", api_key="x", max_retries=0)
    direct.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    with pytest.raises(openai.RateLimitError) as exc:
        direct.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    assert "sandbox 'unknown'" in exc.value.body["message"]
    assert chat(fleet.alpha).choices[0].message.content == "You said: " + GENERAL


def test_limit_config_errors_name_the_place(fakes, tmp_path):
    cfg, _ = _config(fakes, tmp_path, {"sandbox": {"tokens_per_min": 10}})
    del cfg["state_dir"]
    with pytest.raises(ConfigError, match="limits need a state_dir"):
        parse_config(cfg, source="router.yaml")
    cfg, _ = _config(fakes, tmp_path, {"sandbox": {"usd_per_day": 1}})
    del cfg["prices"]["backup"]
    with pytest.raises(ConfigError, match="cloud model 'nemotron-cloud' of provider 'backup' has no price"):
        parse_config(cfg, source="router.yaml")
    cfg, _ = _config(fakes, tmp_path, {"sandbox": {"tokens_per_minute": 10}})
    with pytest.raises(ConfigError, match=r"limits.sandbox.tokens_per_minute: unknown key"):
        parse_config(cfg, source="router.yaml")
