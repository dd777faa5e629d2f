"""Attacks on the router's one promise: nothing it did not scan, and nothing sensitive, reaches a cloud upstream.

Each test sends a request through the real router (real HTTP on loopback, the openai/anthropic SDKs where they
can send the shape) to recording fake upstreams, and reads the bytes the cloud fakes received. Beside each attack
is the allowed twin: the same shape without the sensitive value still reaches the cloud.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import time

import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.usefixtures("clean_fakes")

EMAIL = "leak.marker@example.org"  # structured PII: the test config routes it to the local model
NAME = "Sarah Johnson"  # a person name: the test config redacts it and sends the rest to the cloud
TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # a GitHub token: local
CLOUDS = ("cloud", "backup", "anthropic")


def cloud_bytes(fakes) -> bytes:
    return b"".join(r.body + json.dumps(r.headers).encode() for name in CLOUDS for r in fakes[name].received)


def post(router, path: str, body, **headers) -> httpx.Response:
    return httpx.post(router.url + path, json=body, headers=headers, timeout=30)


def assert_not_in_cloud(fakes, value: str) -> None:
    sent = cloud_bytes(fakes)
    assert value.encode() not in sent
    assert value.lower().encode() not in sent.lower()
    assert json.dumps(value)[1:-1].encode() not in sent


# ------------------------------------------------------------ finding 1: fields the extractor does not read
_CHAT = {"model": "default", "messages": [{"role": "user", "content": "Summarise the release notes."}]}
_RESP = {"model": "default", "input": "Summarise the release notes."}
_MSG = {"model": "default", "max_tokens": 64, "messages": [{"role": "user", "content": "Summarise the notes."}]}


def _with(base: dict, **extra) -> dict:
    return json.loads(json.dumps({**base, **extra}))


FIELD_CASES = [
    ("/v1/chat/completions", _with(_CHAT, user=EMAIL)),
    ("/v1/chat/completions", _with(_CHAT, metadata={"owner": EMAIL})),
    ("/v1/chat/completions", _with(_CHAT, metadata={EMAIL: "owner"})),  # a key
    (
        "/v1/chat/completions",
        _with(
            _CHAT,
            tools=[{"type": "function", "function": {"name": "f", "description": f"mail {EMAIL}", "parameters": {}}}],
        ),
    ),
    ("/v1/chat/completions", _with(_CHAT, stop=[EMAIL])),
    ("/v1/chat/completions", _with(_CHAT, prediction={"type": "content", "content": EMAIL})),
    ("/v1/chat/completions", _with(_CHAT, response_format={"type": "json_schema", "json_schema": {"name": EMAIL}})),
    ("/v1/chat/completions", _with(_CHAT, web_search_options={"user_location": {"approximate": {"city": EMAIL}}})),
    ("/v1/chat/completions", _with(_CHAT, some_future_field={"deep": [{"x": EMAIL}]})),
    (
        "/v1/chat/completions",
        _with(_CHAT, messages=[{"role": "user", "name": EMAIL, "content": "hi"}]),
    ),
    (
        "/v1/chat/completions",
        _with(
            _CHAT,
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": EMAIL, "type": "function", "function": {"name": "f", "arguments": {"to": EMAIL}}}
                    ],
                },
            ],
        ),
    ),
    ("/v1/chat/completions", _with(_CHAT, messages=[{"role": "assistant", "refusal": EMAIL, "content": "x"}])),
    ("/v1/chat/completions", _with(_CHAT, messages=[{"role": "assistant", "reasoning_content": EMAIL}])),
    ("/v1/responses", _with(_RESP, prompt={"id": "p", "variables": {"who": EMAIL}})),
    ("/v1/responses", _with(_RESP, instructions=[{"role": "system", "content": EMAIL}])),
    ("/v1/responses", _with(_RESP, text={"format": {"type": "json_schema", "schema": {"title": EMAIL}}})),
    ("/v1/responses", _with(_RESP, tools=[{"type": "function", "name": "f", "description": EMAIL}])),
    (
        "/v1/responses",
        _with(_RESP, input=[{"type": "function_call_output", "call_id": EMAIL, "output": {"to": EMAIL}}]),
    ),
    ("/v1/completions", {"model": "default", "prompt": "Say hi", "user": EMAIL, "stop": [EMAIL]}),
    ("/v1/embeddings", {"model": "embed", "input": "release notes", "user": EMAIL}),
    ("/v1/messages", _with(_MSG, metadata={"user_id": EMAIL})),
    ("/v1/messages", _with(_MSG, tools=[{"name": "f", "description": EMAIL, "input_schema": {"title": EMAIL}}])),
    ("/v1/messages", _with(_MSG, stop_sequences=[EMAIL])),
    ("/v1/messages", _with(_MSG, container=EMAIL)),
    (
        "/v1/messages",
        _with(
            _MSG,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": EMAIL, "name": EMAIL, "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": {"x": EMAIL}}]},
            ],
        ),
    ),
    (
        "/v1/messages",
        _with(
            _MSG,
            messages=[
                {
                    "role": "assistant",
                    "content": [
                        {"type": "redacted_thinking", "data": EMAIL},
                        {"type": "text", "text": "ok", "citations": [{"cited_text": EMAIL}]},
                    ],
                }
            ],
        ),
    ),
]


@pytest.mark.parametrize(("path", "body"), FIELD_CASES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(FIELD_CASES)])
def test_pii_in_any_field_never_reaches_the_cloud(router, clean_fakes, path, body):
    r = post(router, path, body)
    assert r.status_code < 500, r.text
    assert_not_in_cloud(clean_fakes, EMAIL)
    if r.status_code == 200:  # it was served, so it was served locally
        assert clean_fakes["local"].received


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions"])
def test_unknown_fields_without_pii_still_reach_the_cloud(router, clean_fakes, path):
    base = {
        "/v1/chat/completions": _CHAT,
        "/v1/responses": _RESP,
        "/v1/messages": _MSG,
        "/v1/completions": {"model": "default", "prompt": "Say hi"},
    }[path]
    r = post(router, path, _with(base, metadata={"ticket": "release-42"}))
    assert r.status_code == 200, r.text
    assert b"release-42" in cloud_bytes(clean_fakes)
    assert clean_fakes["local"].received == []


def test_sdk_extra_fields_are_scanned(router, clean_fakes):
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="sk-agent", max_retries=0)
    resp = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Summarise the release notes."}],
        user=EMAIL,
        extra_body={"metadata": {"owner": EMAIL}},
    )
    assert resp.choices[0].message.content
    assert_not_in_cloud(clean_fakes, EMAIL)
    assert clean_fakes["local"].received


def test_redacted_name_in_unknown_fields_goes_out_as_a_placeholder(router, clean_fakes):
    body = _with(_CHAT, metadata={"reviewer": NAME}, messages=[{"role": "user", "content": f"Thank {NAME} please"}])
    r = post(router, "/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    [got] = clean_fakes["cloud"].received
    assert_not_in_cloud(clean_fakes, NAME)
    assert got.json["metadata"]["reviewer"] == "<<PERSON_NAME_1>>"
    assert NAME in r.json()["choices"][0]["message"]["content"]  # restored for the caller


# ------------------------------------------------------------ finding 2: credentials in API fields
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/messages",
            _with(_MSG, mcp_servers=[{"type": "url", "url": "https://mcp.example", "authorization_token": TOKEN}]),
        ),
        (
            "/v1/responses",
            _with(
                _RESP,
                tools=[{"type": "mcp", "server_label": "gh", "headers": {"Authorization": f"Bearer {TOKEN}"}}],
            ),
        ),
    ],
)
def test_credentials_in_api_fields_never_reach_the_cloud(router, clean_fakes, path, body):
    r = post(router, path, body)
    assert r.status_code < 500, r.text
    assert_not_in_cloud(clean_fakes, TOKEN)


# ------------------------------------------------------------ finding 3: tool_use.input as a string
@pytest.mark.parametrize("value", [EMAIL, NAME])
def test_anthropic_tool_use_input_given_as_a_string_is_scanned(router, clean_fakes, value):
    client = anthropic.Anthropic(base_url=router.url, api_key="agent", max_retries=0)
    msgs = [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": json.dumps({"q": value})}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]},
    ]
    with contextlib.suppress(anthropic.BadRequestError):  # a route that cannot translate it sends nothing
        client.messages.create(model="default", max_tokens=32, messages=msgs)
    assert_not_in_cloud(clean_fakes, value)


# ------------------------------------------------------------ finding 4: redaction on a copy
def test_unlisted_responses_item_types_are_redacted_in_the_body_that_is_sent(router, clean_fakes):
    body = _with(
        _RESP,
        input=[
            {"role": "user", "content": "Tell me what the tool said."},
            {"type": "mcp_call", "id": "mcp_1", "name": "crm", "arguments": "{}", "output": f"owner: {NAME}"},
            {"type": "local_shell_call_output", "id": "sh_1", "output": f"signed-off-by {NAME}"},
        ],
    )
    r = post(router, "/v1/responses", body)
    assert r.status_code == 200, r.text
    assert_not_in_cloud(clean_fakes, NAME)
    [got] = clean_fakes["cloud"].received
    assert "<<PERSON_NAME_1>>" in got.body.decode()
    decision = router.decisions()[-1]
    assert decision["action"] == "redact" and decision["redacted"] >= 1


# ------------------------------------------------------------ finding 5: every occurrence, any case
def test_every_occurrence_of_a_detected_value_is_redacted_in_any_case(router, clean_fakes):
    body = _with(
        _CHAT,
        messages=[
            {"role": "user", "content": f"Write a note to {NAME} about the review."},
            {"role": "assistant", "content": "Done: dear sarah johnson, thanks."},  # the restored answer, lowercased
            {"role": "user", "content": "Now one for SARAH JOHNSON's manager."},
        ],
    )
    r = post(router, "/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    assert_not_in_cloud(clean_fakes, NAME)
    sent = clean_fakes["cloud"].received[0].json["messages"]
    assert [m["content"].count("<<PERSON_NAME_1>>") for m in sent] == [1, 1, 1]


# ------------------------------------------------------------ finding 6: values split across parts
def test_email_split_across_content_parts_is_found_whole(router, clean_fakes):
    content = [{"type": "text", "text": "Please write to leak.marker@"}, {"type": "text", "text": "example.org today"}]
    r = post(router, "/v1/chat/completions", _with(_CHAT, messages=[{"role": "user", "content": content}]))
    assert r.status_code == 200, r.text
    assert cloud_bytes(clean_fakes) == b"" and clean_fakes["local"].received
    assert "email" in router.decisions()[-1]["classes"]


def test_name_split_across_content_parts_is_cut_out_of_every_part(router, clean_fakes):
    content = [{"type": "text", "text": "A note for Sarah John"}, {"type": "text", "text": "son, please."}]
    r = post(router, "/v1/chat/completions", _with(_CHAT, messages=[{"role": "user", "content": content}]))
    assert r.status_code == 200, r.text
    [got] = clean_fakes["cloud"].received
    assert [p["text"] for p in got.json["messages"][0]["content"]] == ["A note for <<PERSON_NAME_1>>", ", please."]


def test_values_split_across_messages_are_found_whole(router, clean_fakes):
    messages = [{"role": "user", "content": "Mail it to leak.marker@"}, {"role": "user", "content": "example.org"}]
    r = post(router, "/v1/chat/completions", _with(_CHAT, messages=messages))
    assert r.status_code == 200, r.text
    assert clean_fakes["local"].received and cloud_bytes(clean_fakes) == b""


# ------------------------------------------------------------ finding 7: images are unscanned content
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/responses",
            _with(
                _RESP,
                input=[
                    {
                        "type": "computer_call_output",
                        "call_id": "c1",
                        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                    }
                ],
            ),
        ),
        (
            "/v1/chat/completions",
            _with(_CHAT, messages=[{"role": "user", "content": [{"image_url": {"url": "https://img.example/a.png"}}]}]),
        ),
    ],
)
def test_images_anywhere_are_unscanned_content(router, clean_fakes, path, body):
    r = post(router, path, body)
    assert r.status_code == 200, r.text
    assert cloud_bytes(clean_fakes) == b""
    assert "unscanned_content" in router.decisions()[-1]["classes"]


# ------------------------------------------------------------ finding 8: forwarded headers
def test_caller_headers_with_free_text_never_reach_the_cloud(router, clean_fakes):
    r = post(
        router,
        "/v1/chat/completions",
        _CHAT,
        **{
            "user-agent": f"agent/1.0 ({EMAIL})",
            "accept": f"application/json; who={EMAIL}",
            "openai-beta": f"assistants=v2, {EMAIL}",
            "x-stainless-os": EMAIL,
        },
    )
    assert r.status_code == 200, r.text
    [got] = clean_fakes["cloud"].received
    assert EMAIL not in json.dumps(got.headers)
    assert got.headers["openai-beta"] == "assistants=v2"  # the allowed flag still goes through
    assert got.headers["user-agent"] == "clawfleet-router"


def test_anthropic_beta_names_pass_and_anything_else_is_dropped(router, clean_fakes):
    r = post(
        router,
        "/v1/messages",
        _MSG,
        **{"anthropic-beta": f"prompt-caching-2024-07-31,{TOKEN},sarah-johnson-2024-01-01", "anthropic-version": "x"},
    )
    assert r.status_code == 200, r.text
    [got] = clean_fakes["anthropic"].received
    assert got.headers["anthropic-beta"] == "prompt-caching-2024-07-31,sarah-johnson-2024-01-01"
    assert TOKEN not in json.dumps(got.headers)
    assert got.headers["anthropic-version"] != "x"


# ------------------------------------------------------------ finding 10: bad bodies get 400
@pytest.mark.parametrize(
    ("content", "headers", "reason"),
    [
        (b'{"model": "default", "messages": [{"role": "user", "content": "\xff\xfe"}]}', {}, "UTF-8"),
        (
            gzip.compress(json.dumps(_CHAT).encode()),
            {"content-encoding": "gzip"},
            "content-encoding: gzip",
        ),
        (b'{"model": "default", "messages": [{"role": "user", "content": "\\ud800 x"}]}', {}, "surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, {}, "nested"),
        (b'{"model": "default", "messages": [], "m": ' + b'{"a": ' * 200 + b'"x"' + b"}" * 201, {}, "nested"),
        (b'{"model": "default", "temperature": NaN, "messages": []}', {}, "NaN"),
    ],
    ids=["invalid-utf8", "gzip", "lone-surrogate", "deep-array", "deep-object", "nan"],
)
def test_bad_bodies_get_400_with_a_reason(router, clean_fakes, content, headers, reason):
    r = httpx.post(
        router.url + "/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]["message"]
    assert cloud_bytes(clean_fakes) == b"" and clean_fakes["local"].received == []


# ------------------------------------------------------------ finding 10: upstream reset mid-stream
def test_openai_stream_cut_upstream_ends_with_an_error_the_sdk_raises(router, clean_fakes):
    clean_fakes["cloud"].reset_after = 3
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="sk-agent", max_retries=0)
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Tell me a long story about rivers."}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError, match="closed the stream"):
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got)  # what arrived before the reset was delivered
    # the router writes its decision when the stream's generator finishes, which can be just after the client
    # read the error event: wait for that record (an event, not a duration)
    deadline = time.monotonic() + 10
    while router.decisions()[-1].get("error") != "upstream_reset" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert router.decisions()[-1]["error"] == "upstream_reset"


def test_complete_stream_has_no_error_event(router, clean_fakes):
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="sk-agent", max_retries=0)
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Tell me a long story about rivers."}], stream=True
    )
    text = "".join(c.delta.content or "" for chunk in stream for c in chunk.choices)
    assert text.endswith("rivers.")


def test_anthropic_stream_cut_upstream_ends_with_an_error_event(router, clean_fakes):
    clean_fakes["anthropic"].reset_after = 2
    client = anthropic.Anthropic(base_url=router.url, api_key="agent", max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError, match="closed the stream"),
        client.messages.stream(
            model="default", max_tokens=64, messages=[{"role": "user", "content": "Tell me about rivers."}]
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
