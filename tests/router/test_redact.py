"""Placeholders, restoration, and the streaming restorer with placeholders split across chunks."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from clawfleet.router.classifier import Classifier
from clawfleet.router.redact import Redactor
from clawfleet.router.restore_stream import StreamRestoreTransform
from clawfleet.router.scan import classify_request
from clawfleet.router.sse import Event, SSEParser


def _redacted_body():
    body = {
        "model": "default",
        "messages": [
            {"role": "system", "content": "Reply to Sarah Johnson."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Mail sarah.j@example.org, then Sarah Johnson again"}],
            },
        ],
    }
    red = Redactor()
    red.redact(classify_request("chat", body, Classifier().classify))
    return body, red


def test_same_value_same_placeholder_and_in_place_rewrite():
    body, red = _redacted_body()
    assert body["messages"][0]["content"] == "Reply to <<PERSON_NAME_1>>."
    assert body["messages"][1]["content"][0]["text"] == "Mail <<EMAIL_1>>, then <<PERSON_NAME_1>> again"
    assert red.originals == {"PERSON_NAME_1": "Sarah Johnson", "EMAIL_1": "sarah.j@example.org"}


def test_restore_json_escapes_inside_tool_arguments():
    red = Redactor()
    ph = red.placeholder("password", 'pa"ss')
    doc = {"content": f"pw {ph}", "tool_calls": [{"function": {"arguments": json.dumps({"pw": ph})}}]}
    out = red.restore_json(doc)
    assert out["content"] == 'pw pa"ss'
    assert json.loads(out["tool_calls"][0]["function"]["arguments"]) == {"pw": 'pa"ss'}


def test_unknown_placeholders_are_left_alone():
    red = Redactor()
    red.placeholder("email", "a@b.example")
    assert red.restore("<<EMAIL_1>> <<EMAIL_2>> <<x>>") == "a@b.example <<EMAIL_2>> <<x>>"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=80), max_size=12), st.sampled_from(["", "<", "a < b", "<<"]))
def test_stream_restorer_any_split(cuts, tail):
    red = Redactor()
    a = red.placeholder("email", "x@y.example")
    b = red.placeholder("person_name", "Ana Lima")
    text = f"Hi {b}, write to {a}<<{a}>> and {b}{tail}"
    expected = red.restore(text)
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]
    sr = red.stream()
    out = "".join(sr.feed(p) for p in pieces) + sr.flush()
    assert out == expected


def _chat_events(text: str, size: int) -> list[Event]:
    evs = []
    for i in range(0, len(text), size):
        chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": text[i : i + size]}, "finish_reason": None}]}
        evs.append(Event(data=json.dumps(chunk)))
    evs.append(Event(data=json.dumps({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})))
    evs.append(Event(data="[DONE]"))
    return evs


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=9))
def test_chat_stream_transform(size):
    red = Redactor()
    ph = red.placeholder("email", "x@y.example")
    tr = StreamRestoreTransform("chat", red)
    out = ""
    for ev in _chat_events(f"Send it to {ph} now {ph}", size):
        for o in tr.on_event(ev):
            if o.data and o.data != "[DONE]":
                for ch in json.loads(o.data)["choices"]:
                    out += ch["delta"].get("content") or ""
    assert out == "Send it to x@y.example now x@y.example"


def test_anthropic_stream_flushes_before_block_stop():
    red = Redactor()
    ph = red.placeholder("person_name", "Ana Lima")
    tr = StreamRestoreTransform("messages", red)
    evs = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello " + ph[:5]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ph[5:] + " <"}},
        {"type": "content_block_stop", "index": 0},
    ]
    texts = []
    for d in evs:
        for o in tr.on_event(Event(data=json.dumps(d), event=d["type"])):
            doc = json.loads(o.data)
            if doc["type"] == "content_block_delta":
                texts.append(doc["delta"]["text"])
            last = doc["type"]
    assert "".join(texts) == "Hello Ana Lima <"
    assert last == "content_block_stop"


def test_sse_parser_handles_split_and_crlf():
    p = SSEParser()
    raw = b'event: a\r\ndata: {"x": 1}\r\n\r\n: comment\ndata: two\ndata: lines\n\n'
    events = []
    for i in range(len(raw)):
        events += p.feed(raw[i : i + 1])
    events += p.close()
    assert [(e.event, e.data) for e in events] == [("a", '{"x": 1}'), (None, "two\nlines")]
    assert events[1].other == [": comment"]
