"""Property: a sensitive value placed in ANY string field or key of a request never reaches a cloud upstream.

Hypothesis builds request shapes for all five endpoints (a valid base body with arbitrary extra JSON grafted on
at the top level, into a message and into a content list), puts a marker into one string value or object key
chosen anywhere in the document, and sends it through the real router. Whatever the router decides (local,
redact, block, 400), the bytes the cloud fakes receive, headers included, must not hold the marker in any case
or escaping. No field is exempt: the router replaces ``model`` itself, and every other string is scanned.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_router_leaks import CLOUDS, EMAIL, NAME, TOKEN

pytestmark = pytest.mark.usefixtures("clean_fakes")

BASES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "default", "messages": [{"role": "user", "content": "hello there"}]},
    "/v1/completions": {"model": "default", "prompt": "hello there"},
    "/v1/responses": {
        "model": "default",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}],
    },
    "/v1/embeddings": {"model": "embed", "input": ["hello there"]},
    "/v1/messages": {
        "model": "default",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    },
}
_words = st.text(alphabet="abcdefghij ", min_size=1, max_size=12)
_keys = st.sampled_from(
    ["metadata", "user", "name", "id", "description", "text", "content", "input", "schema", "tools", "x", "stop"]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | _words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)


def _graft(body: dict[str, Any], extra: dict[str, Any], part: Any) -> None:
    for key, value in extra.items():
        if key not in ("model", "stream"):
            body[key] = value
    holder = body.get("messages") or (body["input"] if isinstance(body.get("input"), list) else None)
    if holder and isinstance(holder[0], dict):
        holder[0]["extra_field"] = part
        content = holder[0].get("content")
        if isinstance(content, list):
            content.append(part if isinstance(part, dict) else {"type": "text", "text": "more", "extra": part})


def _string_spots(node: Any, path: tuple = ()) -> list[tuple[tuple, bool]]:
    """(path, is_key) for every string value and object key; the top-level model alias is left as it is."""
    spots: list[tuple[tuple, bool]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if path == () and key in ("model", "stream"):
                continue
            spots.append(((*path, key), True))
            if isinstance(value, str):
                spots.append(((*path, key), False))
            else:
                spots.extend(_string_spots(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, str):
                spots.append(((*path, i), False))
            else:
                spots.extend(_string_spots(value, (*path, i)))
    return spots


def _plant(body: dict[str, Any], spot: tuple[tuple, bool], marker: str) -> None:
    path, is_key = spot
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        items = list(parent.items())
        parent.clear()
        parent.update({(marker if k == last else k): v for k, v in items})
    else:
        parent[last] = f"{parent[last]} {marker} {parent[last]}"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(sorted(BASES)),
    extra=st.dictionaries(_keys, _json, max_size=3),
    part=_json,
    marker=st.sampled_from([EMAIL, NAME, TOKEN]),
    data=st.data(),
)
def test_a_marker_in_any_string_or_key_never_reaches_the_cloud(router, clean_fakes, path, extra, part, marker, data):
    for state in clean_fakes.values():
        state.received.clear()
    body = json.loads(json.dumps(BASES[path]))
    _graft(body, extra, part)
    spots = _string_spots(body)
    spot = data.draw(st.sampled_from(spots))
    _plant(body, spot, marker)
    r = httpx.post(router.url + path, json=body, timeout=30)
    assert "internal_error" not in r.text, r.text  # the router itself never fails on a shape
    sent = b"".join(rec.body + json.dumps(rec.headers).encode() for n in CLOUDS for rec in clean_fakes[n].received)
    assert marker.lower().encode() not in sent.lower(), (spot, body)
    assert json.dumps(marker)[1:-1].encode() not in sent
