"""`clawfleet router classify` / `serve` argument handling and output contract."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from clawfleet.router import cli


def _run(argv: list[str], stdin: str, monkeypatch, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="clawfleet")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_classify_text_json(monkeypatch, capsys):
    code, out, _ = _run(["router", "classify", "--json"], "card 4111 1111 1111 1111 please", monkeypatch, capsys)
    assert code == 0
    result = json.loads(out)
    assert result == {
        "sensitive": True,
        "classes": ["credit_card"],
        "entities": [{"type": "credit_card", "start": 5, "end": 24, "score": 0.99}],
        "action": "local",
        "route": "sensitive-local",
        "provider": "local",
    }


def test_classify_whole_anthropic_body(monkeypatch, capsys):
    body = {
        "model": "default",
        "system": "You help with billing.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image", "source": {}}]}],
    }
    code, out, _ = _run(["router", "classify", "--json"], json.dumps(body), monkeypatch, capsys)
    result = json.loads(out)
    assert code == 0 and result["classes"] == ["unscanned_content"] and result["action"] == "local"


def test_classify_non_sensitive_human_output(monkeypatch, capsys):
    code, out, _ = _run(["router", "classify"], "write a haiku about rain", monkeypatch, capsys)
    assert code == 0
    assert "sensitive: no" in out and "action:    cloud (route default" in out


@pytest.mark.parametrize("sub", ["classify", "serve"])
def test_bad_config_exits_2_with_position(sub, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "router.yaml"
    cfg.write_text("version: 1\nproviders: {}\nroutes:\n  - action: fly\n")
    code, _, err = _run(["router", sub, "--config", str(cfg)], "", monkeypatch, capsys)
    assert code == 2
    assert "router.yaml:4: routes[0].action" in err


def test_classify_with_example_config_needs_no_secrets(monkeypatch, capsys):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "router.yaml"
    text = "Patient Ana Lima, DOB 1984-07-02; ticket CUST-004211"
    code, out, _ = _run(["router", "classify", "--json", "--config", str(example)], text, monkeypatch, capsys)
    result = json.loads(out)
    assert code == 0
    assert result["classes"] == ["customer_id", "date_of_birth", "person_name"]
    assert (result["action"], result["route"], result["provider"]) == ("local", "sensitive-local", "nemotron")


def test_check_accepts_the_example_without_reading_secrets(monkeypatch, capsys):
    # examples/router.yaml names key files that do not exist here: check validates without reading them.
    example = str(Path(__file__).resolve().parents[2] / "examples" / "router.yaml")
    code, out, err = _run(["router", "check", "--config", example], "", monkeypatch, capsys)
    assert code == 0, err
    assert "ok (5 providers, 4 routes)" in out


def test_check_refuses_an_invalid_config(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "router.yaml"
    bad.write_text(
        "version: 1\nproviders:\n  openai: {type: openai, credential: openai, models: {default: m}}\n"
        "routes:\n  - name: d\n    action: cloud\n    provider: opneai\n"
    )
    code, _, err = _run(["router", "check", "--config", str(bad)], "", monkeypatch, capsys)
    assert code == 2
    assert "unknown provider 'opneai'" in err


def test_serve_runs_on_uvloop_where_installed_and_on_asyncio_without_it(monkeypatch):
    import asyncio
    import importlib.util
    import sys

    seen: list[str] = []

    async def probe() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    cli.run_loop(probe())
    installed = importlib.util.find_spec("uvloop") is not None  # a runtime pin; a dev venv may lack it
    assert seen[0].split(".")[0] == ("uvloop" if installed else "asyncio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not importable: the fallback
    cli.run_loop(probe())
    assert seen[1].split(".")[0] == "asyncio"
