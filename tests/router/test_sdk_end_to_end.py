"""The real openai and anthropic SDKs as clients, against the router and recording fake upstreams."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from .conftest import ANTHROPIC_KEY, CLOUD_KEY

pytestmark = pytest.mark.usefixtures("clean_fakes")

SENSITIVE = "Please email the invoice to maria.garcia@example.org and call +44 20 7946 0958."
GENERAL = "Explain the difference between a process and a thread in two sentences."
NAMED = "Draft a short thank-you note to Sarah Johnson for reviewing the migration plan."


def oa(router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key="sk-agent-side-placeholder", max_retries=0)


def an(router) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.url, api_key="agent-side-placeholder", max_retries=0)


def _all_bodies(state) -> bytes:
    return b"".join(r.body for r in state.received)


# ---------------------------------------------------------------- OpenAI chat
@pytest.mark.parametrize("stream", [False, True])
def test_sensitive_chat_reaches_only_local(router, clean_fakes, stream):
    client = oa(router)
    if stream:
        chunks = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": SENSITIVE}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        resp = client.chat.completions.create(model="default", messages=[{"role": "user", "content": SENSITIVE}])
        text = resp.choices[0].message.content
    assert text == "You said: " + SENSITIVE
    assert len(clean_fakes["local"].received) == 1
    assert clean_fakes["local"].received[0].json["model"] == "nemotron-local"
    for cloud in ("cloud", "backup", "anthropic"):
        assert clean_fakes[cloud].bytes_received == 0


@pytest.mark.parametrize("stream", [False, True])
def test_general_chat_goes_to_cloud_with_host_credential(router, clean_fakes, stream):
    client = oa(router)
    resp = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": GENERAL}], stream=stream
    )
    text = (
        "".join(c.choices[0].delta.content or "" for c in resp if c.choices)
        if stream
        else resp.choices[0].message.content
    )
    assert text == "You said: " + GENERAL
    assert clean_fakes["local"].received == []
    [got] = clean_fakes["cloud"].received
    assert got.json["model"] == "gpt-cloud"
    assert got.headers["authorization"] == f"Bearer {CLOUD_KEY}"
    assert "sk-agent-side-placeholder" not in json.dumps(got.headers)


@pytest.mark.parametrize("stream", [False, True])
def test_redacted_chat_reaches_cloud_without_pii_and_is_restored(router, clean_fakes, stream):
    client = oa(router)
    clean_fakes["cloud"].chunk_size = 2  # split placeholders across many SSE events
    resp = client.chat.completions.create(model="default", messages=[{"role": "user", "content": NAMED}], stream=stream)
    text = (
        "".join(c.choices[0].delta.content or "" for c in resp if c.choices)
        if stream
        else resp.choices[0].message.content
    )
    [got] = clean_fakes["cloud"].received
    assert b"Sarah" not in got.body and b"Johnson" not in got.body
    assert "<<PERSON_NAME_1>>" in got.json["messages"][0]["content"]
    assert text == "You said: " + NAMED
    assert clean_fakes["local"].received == []


@pytest.mark.parametrize("stream", [False, True])
def test_redacted_tool_call_arguments_are_restored(router, clean_fakes, stream):
    clean_fakes["cloud"].tool_call = True
    tools = [{"type": "function", "function": {"name": "send_note", "parameters": {"type": "object"}}}]
    resp = oa(router).chat.completions.create(
        model="default", messages=[{"role": "user", "content": NAMED}], tools=tools, stream=stream
    )
    if stream:
        args = "".join(
            tc.function.arguments or "" for c in resp if c.choices for tc in (c.choices[0].delta.tool_calls or [])
        )
    else:
        args = resp.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(args) == {"echo": "You said: " + NAMED}
    assert b"Sarah" not in _all_bodies(clean_fakes["cloud"])


@pytest.mark.parametrize("prompt", [GENERAL, NAMED], ids=["passthrough", "redact-restore"])
def test_streams_are_not_buffered(router, clean_fakes, prompt):
    """The first chunk reaches the client while the upstream is still producing the rest."""
    clean_fakes["cloud"].chunk_delay = 0.05
    clean_fakes["cloud"].reply = "One two three four five six seven eight nine ten eleven twelve."
    t0 = time.monotonic()
    stream = oa(router).chat.completions.create(
        model="default", messages=[{"role": "user", "content": prompt}], stream=True
    )
    first_at = None
    text = ""
    for chunk in stream:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece and first_at is None:
            first_at = time.monotonic() - t0
        text += piece or ""
    total = time.monotonic() - t0
    assert text == clean_fakes["cloud"].reply
    assert total >= 0.05 * 20  # 21 chunks of 3 characters, 50 ms apart
    assert first_at is not None and first_at < total / 2


def test_local_down_gives_503_and_zero_bytes_to_cloud(router_local_down, clean_fakes):
    client = oa(router_local_down)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as exc:
            client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": SENSITIVE}], stream=stream
            )
        assert exc.value.status_code == 503
        assert exc.value.body["code"] == "upstream_unavailable"
    with pytest.raises(anthropic.APIStatusError) as aexc:
        an(router_local_down).messages.create(
            model="default", max_tokens=50, messages=[{"role": "user", "content": SENSITIVE}]
        )
    assert aexc.value.status_code == 503
    for cloud in ("cloud", "backup", "anthropic", "local"):
        assert clean_fakes[cloud].bytes_received == 0
    last = router_local_down.decisions()[-1]
    assert last["status"] == 503 and last["route"] == "sensitive-local"


def test_non_sensitive_falls_back_between_clouds(router, clean_fakes):
    clean_fakes["cloud"].fail_status = 503
    resp = oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    assert resp.choices[0].message.content == "You said: " + GENERAL
    assert len(clean_fakes["cloud"].received) == 1
    [got] = clean_fakes["backup"].received
    assert got.json["model"] == "nemotron-cloud"
    assert got.headers["authorization"].endswith("nvapi-host-side-backup-key")


def test_redacted_request_never_falls_back(router, clean_fakes):
    clean_fakes["cloud"].fail_status = 503
    with pytest.raises(openai.APIStatusError) as exc:
        oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": NAMED}])
    # the upstream's own 503 is passed through; nothing went to another provider
    assert exc.value.status_code == 503
    assert clean_fakes["backup"].received == [] and clean_fakes["anthropic"].received == []


def test_block_route_answers_403(router, clean_fakes):
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4k3Yb8q9\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(openai.PermissionDeniedError) as exc:
        oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": "fix " + key}])
    assert exc.value.body["code"] == "policy_blocked"
    assert all(st.received == [] for st in clean_fakes.values())


# ---------------------------------------------------------------- other OpenAI endpoints
def test_completions_and_embeddings(router, clean_fakes):
    client = oa(router)
    out = client.completions.create(model="default", prompt="My SSN is 536-22-8741, fill the form")
    assert out.choices[0].text == "You said: My SSN is 536-22-8741, fill the form"
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(model="default", prompt=GENERAL, stream=True)
    )
    assert streamed == "You said: " + GENERAL
    emb = client.embeddings.create(model="embed", input=["hello world", "ip 203.0.113.7"])
    assert len(emb.data) == 2
    assert [r.path for r in clean_fakes["local"].received] == ["/v1/completions", "/v1/embeddings"]
    assert clean_fakes["local"].received[1].json["model"] == "local-embed"
    assert [r.path for r in clean_fakes["cloud"].received] == ["/v1/completions"]


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_redacted_and_restored(router, clean_fakes, stream):
    client = oa(router)
    clean_fakes["cloud"].chunk_size = 4
    if stream:
        text = ""
        final = None
        for ev in client.responses.create(model="default", input=NAMED, stream=True):
            if ev.type == "response.output_text.delta":
                text += ev.delta
            if ev.type == "response.completed":
                final = ev.response.output_text
        assert final == "You said: " + NAMED
    else:
        text = client.responses.create(model="default", input=NAMED, instructions="Be brief.").output_text
    assert text == "You said: " + NAMED
    assert b"Sarah" not in _all_bodies(clean_fakes["cloud"])


def test_models_list_shows_aliases_only(router):
    ids = [m.id for m in oa(router).models.list()]
    assert ids == ["default", "embed"]


# ---------------------------------------------------------------- Anthropic
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_general_goes_native_to_anthropic(router, clean_fakes, stream):
    client = an(router)
    if stream:
        with client.messages.stream(
            model="default", max_tokens=100, messages=[{"role": "user", "content": GENERAL}]
        ) as s:
            text = "".join(s.text_stream)
    else:
        msg = client.messages.create(model="default", max_tokens=100, messages=[{"role": "user", "content": GENERAL}])
        text = msg.content[0].text
    assert text == "You said: " + GENERAL
    [got] = clean_fakes["anthropic"].received
    assert got.headers["x-api-key"] == ANTHROPIC_KEY
    assert got.json["model"] == "claude-cloud"
    assert clean_fakes["cloud"].received == [] and clean_fakes["local"].received == []


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sensitive_is_translated_to_local_vllm(router, clean_fakes, stream):
    client = an(router)
    kwargs = {
        "model": "default",
        "max_tokens": 100,
        "system": "You are a billing assistant.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": SENSITIVE}]}],
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert final.stop_reason == "end_turn"
    else:
        msg = client.messages.create(**kwargs)
        text = msg.content[0].text
        assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 5
    assert text == "You said: " + SENSITIVE
    [got] = clean_fakes["local"].received
    assert got.path == "/v1/chat/completions"
    assert got.json["messages"][0] == {"role": "system", "content": "You are a billing assistant."}
    assert "authorization" not in {k.lower() for k in got.headers}
    assert clean_fakes["anthropic"].bytes_received == 0 and clean_fakes["cloud"].bytes_received == 0


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_translated(router, clean_fakes, stream):
    clean_fakes["local"].tool_call = True
    tools = [{"name": "lookup", "description": "look up a customer", "input_schema": {"type": "object"}}]
    kwargs = {
        "model": "default",
        "max_tokens": 100,
        "tools": tools,
        "messages": [{"role": "user", "content": "Find customer CUST-004211"}],
    }
    client = an(router)
    if stream:
        with client.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(**kwargs)
    assert msg.stop_reason == "tool_use"
    block = msg.content[0]
    assert block.type == "tool_use" and block.name == "lookup"
    assert block.input == {"echo": "You said: Find customer CUST-004211"}
    assert clean_fakes["local"].received[0].json["tools"][0]["function"]["name"] == "lookup"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_redacted_native_stream(router, clean_fakes, stream):
    clean_fakes["anthropic"].chunk_size = 2
    # names go to the redact route whose provider is OpenAI-family: translated there and back, restored
    client = an(router)
    kwargs = {"model": "default", "max_tokens": 100, "messages": [{"role": "user", "content": NAMED}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            text = "".join(s.text_stream)
    else:
        text = client.messages.create(**kwargs).content[0].text
    assert text == "You said: " + NAMED
    [got] = clean_fakes["cloud"].received
    assert b"Sarah" not in got.body


# ---------------------------------------------------------------- errors, logs, metrics
def test_bad_json_and_unknown_alias(router, clean_fakes):
    r = httpx.post(
        router.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(router.url + "/v1/messages", content=b"[]")
    assert r.status_code == 400 and r.json()["type"] == "error"
    with pytest.raises(openai.NotFoundError) as exc:
        oa(router).chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": GENERAL}])
    assert "not an alias" in exc.value.body["message"]
    r = httpx.post(router.url + "/v1/chat/completions", json={"messages": []})
    assert r.status_code == 400 and "model" in r.json()["error"]["message"]
    # a shape the translator does not expect: a JSON error, never a forward
    odd = {"model": "default", "max_tokens": 5, "messages": [{"role": "user", "content": ["SSN 536-22-8741", 7]}]}
    r = httpx.post(router.url + "/v1/messages", json=odd)
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert all(st.received == [] for st in clean_fakes.values())


def test_decision_log_has_no_sensitive_text_and_metrics_count(router, clean_fakes):
    oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": SENSITIVE}])
    oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": NAMED}])
    log = router.log_text
    # the phone as written: a bare "7946" also turns up in random request ids and timings
    for needle in ("maria.garcia", "20 7946 0958", "Sarah", "Johnson", "invoice"):
        assert needle not in log
    records = router.decisions()
    assert {"classes", "action", "route", "latency_ms", "classify_ms", "status"} <= set(records[-1])
    assert records[-2]["classes"] == ["email", "phone"] and records[-2]["action"] == "local"
    assert records[-1]["action"] == "redact" and records[-1]["provider"] == "openai"
    assert httpx.get(router.url + "/metrics").status_code == 404  # not on the agents' port
    metrics = httpx.get(router.metrics_url).text
    assert 'clawfleet_router_decisions_total{action="local",data_class="email",route="sensitive-local"}' in metrics
    assert "clawfleet_router_request_duration_seconds_bucket" in metrics
    assert "clawfleet_router_upstream_errors_total" in metrics or "upstream_errors" in metrics


def test_image_content_is_unscanned_and_stays_local(router, clean_fakes):
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    oa(router).chat.completions.create(model="default", messages=[{"role": "user", "content": content}])
    assert len(clean_fakes["local"].received) == 1 and clean_fakes["cloud"].received == []
