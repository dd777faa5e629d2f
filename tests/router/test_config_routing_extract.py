"""Config validation (positioned errors, secrets), routing semantics, and text extraction from bodies."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfleet.router.config import ConfigError, load_config, parse_config, read_secret
from clawfleet.router.extract import ExtractError, extract, guess_kind
from clawfleet.router.routing import Router

BASE = """\
version: 1
providers:
  local:
    type: vllm
    base_url: http://127.0.0.1:8000/v1
    models: {default: nemotron}
  openai:
    type: openai
    api_key_file: {key}
    models: {default: gpt}
routes:
  - name: secrets
    classes: [secret]
    action: block
  - name: pii
    classes: [structured_pii]
    action: local
    provider: local
  - name: names
    classes: [person_name]
    action: redact
    provider: openai
  - name: default
    action: cloud
    provider: openai
"""


def _write(tmp_path: Path, text: str) -> Path:
    key = tmp_path / "openai.key"
    key.write_text("sk-test-123\n")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(text.replace("{key}", str(key)))
    return cfg


def test_valid_config_loads_and_hides_secret(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    assert config.providers["openai"].api_key == "sk-test-123"
    assert "sk-test-123" not in repr(config.providers["openai"])
    assert config.providers["local"].local and not config.providers["openai"].local


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        (("action: block", "action: drop"), "routes[0].action: action must be one of", 14),
        (("provider: local", "provider: lokal"), "routes[1].provider: unknown provider 'lokal'", 18),
        (("classes: [secret]", "classes: [secrets]"), "routes[0].classes[0]: unknown class 'secrets'", 13),
        (("type: vllm", "type: llama"), "providers.local.type: type must be one of", 4),
        (("version: 1\n", "version: 1\nlisten: {prot: 1}\n"), "listen.prot: unknown key 'prot'", 2),
    ],
)
def test_errors_have_position_and_path(tmp_path, edit, message, line):
    cfg = _write(tmp_path, BASE.replace(*edit, 1))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert message in str(exc.value)
    assert f"router.yaml:{line}:" in str(exc.value)


def test_local_route_refuses_cloud_provider(tmp_path):
    text = BASE.replace("    action: local\n    provider: local", "    action: local\n    provider: openai")
    with pytest.raises(ConfigError, match="a local route may only use local providers"):
        load_config(_write(tmp_path, text))


def test_redact_route_cannot_fall_back(tmp_path):
    text = BASE.replace(
        "    action: redact\n    provider: openai", "    action: redact\n    provider: openai\n    fallback: [local]"
    )
    with pytest.raises(ConfigError, match="cannot fall back"):
        load_config(_write(tmp_path, text))


def test_cloud_provider_must_use_https(tmp_path):
    text = BASE.replace("    type: openai\n", "    type: openai\n    base_url: http://api.example.com/v1\n")
    with pytest.raises(ConfigError, match="must use https"):
        load_config(_write(tmp_path, text))


def test_default_route_must_be_last(tmp_path):
    text = BASE + "  - name: extra\n    classes: [email]\n    action: local\n    provider: local\n"
    with pytest.raises(ConfigError, match="must be the last one"):
        load_config(_write(tmp_path, text))


def test_invalid_yaml_and_regex(tmp_path):
    with pytest.raises(ConfigError, match=r"router.yaml:\d+: invalid YAML"):
        load_config(_write(tmp_path, BASE + "  - [unclosed\n"))
    text = BASE + "custom_classes:\n  ids:\n    regexes: ['CUST-(\\d+']\n"
    with pytest.raises(ConfigError, match=r"custom_classes.ids.regexes\[0\]: invalid regex"):
        load_config(_write(tmp_path, text))


def test_missing_secret_is_reported_without_value(tmp_path):
    text = BASE.replace("api_key_file: {key}", f"api_key_file: {tmp_path / 'nope'}")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_config(cfg)


def test_systemd_credentials(tmp_path):
    (tmp_path / "openai").write_text("sk-from-systemd")
    assert read_secret(None, "openai", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "sk-from-systemd"
    with pytest.raises(ValueError, match="CREDENTIALS_DIRECTORY"):
        read_secret(None, "openai", {})


def test_routing_strictest_action_wins(tmp_path):
    router = Router(load_config(_write(tmp_path, BASE)))
    assert router.decide([]).action == "cloud"
    assert router.decide(["person_name"]).action == "redact"
    assert router.decide(["person_name", "email"]).action == "local"  # local beats redact
    assert router.decide(["email", "github_token"]).action == "block"
    d = router.decide(["email"])
    assert (d.rule, d.provider, d.sensitive) == ("pii", "local", True)


def test_routing_fallback_only_when_allowed():
    cfg = parse_config(
        {
            "providers": {
                "a": {"type": "vllm", "local": False, "base_url": "http://127.0.0.1:1/v1", "models": {"default": "x"}},
                "b": {"type": "vllm", "local": False, "base_url": "http://127.0.0.1:2/v1", "models": {"default": "x"}},
            },
            "routes": [
                {"classes": ["ip_address"], "action": "cloud", "provider": "a", "fallback": ["b"]},
                {"action": "cloud", "provider": "a", "fallback": ["b"]},
            ],
        }
    )
    router = Router(cfg)
    assert router.decide([]).may_fall_back
    assert not router.decide(["ip_address"]).may_fall_back  # sensitive content never moves between clouds


@pytest.mark.parametrize(
    ("kind", "body", "texts", "opaque"),
    [
        (
            "chat",
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"q": 1}'}}]},
                    {"role": "tool", "content": "res"},
                ]
            },
            ["a", '{"q": 1}', "res"],
            False,
        ),
        (
            "chat",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ]
            },
            ["t"],
            True,
        ),
        ("completions", {"prompt": ["p1", "p2"], "suffix": "s"}, ["p1", "p2", "s"], False),
        ("completions", {"prompt": [1, 2, 3]}, [], True),
        (
            "responses",
            {
                "instructions": "sys",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "u"}]},
                    {"type": "function_call", "arguments": "{}"},
                    {"type": "function_call_output", "output": "out"},
                ],
            },
            ["sys", "u", "{}", "out"],
            False,
        ),
        ("embeddings", {"input": ["e1", "e2"]}, ["e1", "e2"], False),
        (
            "messages",
            {
                "system": [{"type": "text", "text": "sys"}],
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "1", "content": [{"type": "text", "text": "r"}]},
                            {"type": "image", "source": {"type": "base64", "data": "..."}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "1", "name": "f", "input": {"q": "deep", "n": [1, "x"]}}
                        ],
                    },
                ],
            },
            ["sys", "r", "deep", "x"],
            True,
        ),
    ],
)
def test_extract(kind, body, texts, opaque):
    ex = extract(kind, body)
    assert ex.texts == texts
    assert ex.opaque is opaque
    assert ex.text == "\n".join(texts)


def test_extract_rejects_bad_shapes():
    with pytest.raises(ExtractError):
        extract("chat", {"messages": "hi"})
    with pytest.raises(ExtractError):
        extract("messages", [])
    with pytest.raises(ExtractError, match="'prompt' must be a string or an array"):
        extract("completions", {"prompt": 3})
    with pytest.raises(ExtractError, match="'input' must be a string or an array"):
        extract("embeddings", {"model": "m"})  # input is required for embeddings, optional prompt is not
    assert extract("completions", {"model": "m"}).texts == []
    assert guess_kind({"system": "s", "messages": []}) == "messages"
    assert guess_kind({"input": ["a"]}) == "embeddings"
    assert guess_kind({"input": "a", "model": "m"}) == "responses"


def test_example_config_is_valid(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "router.yaml"
    text = example.read_text()
    for name in ("openai", "anthropic", "nvidia", "gemini"):
        (tmp_path / name).write_text(f"key-{name}")
    text = text.replace("/etc/clawfleet/secrets/", f"{tmp_path}/")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(textwrap.dedent(text))
    config = load_config(cfg)
    assert config.rules[-1].classes is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "content",
                    "role",
                    "type",
                    "text",
                    "tool_calls",
                    "function",
                    "arguments",
                    "input",
                    "output",
                    "prompt",
                    "system",
                    "instructions",
                    "source",
                    "data",
                    "model",
                    "tool_use_id",
                    "name",
                    "id",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["chat", "completions", "responses", "embeddings", "messages"]), _json)
def test_extract_never_crashes_on_odd_bodies(kind, body):
    try:
        ex = extract(kind, body)
    except ExtractError:
        return
    assert all(isinstance(t, str) for t in ex.texts)
    ex.text  # noqa: B018


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("chat", {"messages": [{"role": "user", "content": "x", "tool_calls": 5}]}),
        ("chat", {"messages": [{"tool_calls": ["a", {"function": "f"}]}]}),
        ("messages", {"messages": [{"content": [{"type": "tool_result", "content": 5}]}]}),
        ("messages", {"system": 5, "messages": [{"content": [{"type": "document", "source": "s"}]}]}),
        ("responses", {"input": [{"type": "function_call_output", "output": 5}, {"type": "x", "y": ["z"]}]}),
        ("completions", {"prompt": [["nested"]]}),
    ],
)
def test_extract_odd_shapes_are_errors_or_empty(kind, body):
    with contextlib.suppress(ExtractError):
        extract(kind, body)
