"""Chat channel tokens (issue 13 item 4): the Telegram Bot API carries its token in the path
(``/bot<token>/getMe``), so a ``path`` binding lets the gateway put it there, and only there. A FAKE Telegram Bot
API (tests/fakes/fake_telegram.py, over TLS) answers only for the real token and records what it received.

The attacker is the sandbox: it holds the placeholder and wants the gateway to write the real token somewhere it
can read it back (another host, a query or header the bound host echoes, a path an error page or redirect
quotes). Each attack below is next to the placement that must still work, and every response is checked for the
real value."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import pytest

from clawfleet.gateway.config import ConfigError, SecretBinding, load_gateway_section

from .support import connect, request, tls_over

REPO = Path(__file__).resolve().parents[2]
TOKEN = "7000000001:AAFakeRealTelegramToken_x-1234567890abc"
PH = "clawfleet:secret:TELEGRAM_BOT_TOKEN"
OPENSHELL_PH = "openshell:resolve:env:TELEGRAM_BOT_TOKEN"
HOST = "api.telegram.org"


def _fake_telegram():
    spec = importlib.util.spec_from_file_location("fake_telegram", REPO / "tests" / "fakes" / "fake_telegram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def telegram(pki):
    server = _fake_telegram().make_server(TOKEN, pki["cert"], pki["key"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _policy(telegram, origins, rules: str) -> str:
    return f"""\
version: 1
network_policies:
  telegram:
    name: telegram
    endpoints:
      - {{host: {HOST}, port: {telegram.server_address[1]}, allowed_ips: [127.0.0.1/32], protocol: rest, {rules}}}
      - {{host: other.test, port: {origins["https"].port}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
    binaries: [{{path: /usr/bin/curl}}]
"""


# The upstream preset's rules (policies/presets/telegram.yaml): what the engine judges is the placeholder form.
PRESET_RULES = 'rules: [{allow: {method: GET, path: "/bot*/*"}}, {allow: {method: POST, path: "/bot*/*"}}]'
FULL = "access: full"  # the attacks: every path reaches the fake, so only the binding can keep the token out


@pytest.fixture
def make_tg(make_gateway, tmp_path, telegram, origins):
    def make(rules: str = FULL, **binding):
        token_file = tmp_path / "telegram_bot_token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        spec = {"headers": (), "path": ("/bot",), **binding}
        tg = SecretBinding("TELEGRAM_BOT_TOKEN", str(token_file), (HOST,), **spec)
        return make_gateway(policy_text=_policy(telegram, origins, rules), bindings=(tg,))

    return make


def _call(gw, port: int, method: str, path: str, host: str = HOST, headers=None) -> tuple[int, dict, bytes]:
    sock, status, refusal = connect(gw, f"{host}:{port}")
    if status != 200:
        return status, {}, refusal
    with tls_over(gw, sock, host) as tls:
        return request(tls, method, path, f"{host}:{port}", headers)


def tg(gw, telegram, method: str, path: str, headers=None) -> tuple[int, dict, bytes]:
    """One request to the fake through the gateway; the response must never carry the real token."""
    status, head, body = _call(gw, telegram.server_address[1], method, path, headers=headers)
    assert TOKEN not in body.decode("latin-1") and TOKEN not in json.dumps(head)
    assert TOKEN.replace(":", "%3A") not in json.dumps(head)
    return status, head, body


def _received(telegram) -> str:
    return telegram.seen[-1]["path"]


def _no_token_logged(gw) -> None:
    gw.log.flush()
    assert TOKEN not in gw.log_path.read_text()


# -- the allowed placements --------------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", [PH, OPENSHELL_PH])
def test_token_placed_in_the_bot_segment(make_tg, telegram, placeholder):
    gw = make_tg()
    status, _, body = tg(gw, telegram, "GET", f"/bot{placeholder}/getMe")
    assert status == 200 and json.loads(body)["result"]["username"] == "clawfleet_fake_bot"
    assert _received(telegram) == f"/bot{TOKEN}/getMe"  # the fake answers 401 to anything else
    _no_token_logged(gw)


def test_preset_rules_judge_the_placeholder_form(make_tg, telegram):
    gw = make_tg(PRESET_RULES)
    assert tg(gw, telegram, "POST", f"/bot{PH}/getUpdates?timeout=0")[0] == 200
    assert _received(telegram) == f"/bot{TOKEN}/getUpdates?timeout=0"
    allowed = [r for r in gw.records() if r.get("kind") == "tls_request" and r.get("decision") == "allow"]
    assert allowed and all(PH in json.dumps(r) for r in allowed)  # the log shows the placeholder
    # The preset does not open the file download path, with or without the placeholder.
    before = len(telegram.seen)
    assert tg(gw, telegram, "GET", f"/file/bot{PH}/photos/1.jpg")[0] == 403
    assert len(telegram.seen) == before
    _no_token_logged(gw)


def test_a_second_prefix_when_configured(make_tg, telegram):
    gw = make_tg(path=("/bot", "/v2/bot"))
    tg(gw, telegram, "GET", f"/v2/bot{PH}/getMe")
    assert _received(telegram) == f"/v2/bot{TOKEN}/getMe"


@pytest.mark.parametrize("placeholder", [PH, OPENSHELL_PH])
def test_reflecting_redirect_returns_the_placeholder(make_tg, telegram, placeholder):
    """The fake's redirectMe quotes the path it received in Location: the sandbox gets its placeholder back."""
    gw = make_tg()
    status, head, _ = tg(gw, telegram, "GET", f"/bot{placeholder}/redirectMe")
    assert status == 302 and _received(telegram) == f"/bot{TOKEN}/redirectMe"
    assert head["location"] == f"/bot{placeholder}/redirectMe/"


# -- attacks: the placeholder reaches the fake unchanged, or the request is refused ---------------------------

UNCHANGED = [
    # (sent, what the fake receives): canonicalisation may rewrite the spelling, never inject
    ("/botclawfleet%3Asecret%3ATELEGRAM_BOT_TOKEN/getMe", f"/bot{PH}/getMe"),  # percent-encoded placeholder
    (f"/bot{PH[:-1]}%4E/getMe", f"/bot{PH}/getMe"),  # one encoded letter
    (f"//bot{PH}/getMe", f"/bot{PH}/getMe"),  # a spelling canonicalisation changes
    (f"/bot{PH}//getMe", f"/bot{PH}/getMe"),
    (f"/x/bot{PH}/getMe", None),  # a later segment
    (f"/bot1/{PH}/getMe", None),
    (f"/bot1/bot{PH}", None),
    (f"/botecho-{PH}/getMe", None),  # text of the sandbox's around the placeholder
    (f"/bot{PH}x/getMe", None),
    (f"/bot{PH}{PH}/getMe", None),
    (f"/bot{PH}:{PH}/getMe", None),
    ("/botclawfleet:secret:/TELEGRAM_BOT_TOKEN/getMe", None),  # split across segments
    (f"/BOT{PH}/getMe", None),  # the prefix is case-sensitive
    (f"/{PH}/getMe", None),  # no prefix
    (f"/bot{PH.upper()}/getMe", None),
    ("/bot1/getMe?token=" + PH, None),  # a query parameter (not bound)
    (f"/bot1/getMe?x=/bot{PH}/", None),
    ("/botclawfleet:secret:GITHUB_TOKEN/getMe", None),  # another secret, not bound to this host or place
]


@pytest.mark.parametrize(("sent", "received"), UNCHANGED)
def test_placeholder_outside_the_bound_segment_passes_unchanged(make_tg, telegram, sent, received):
    gw = make_tg()
    status, _, _ = tg(gw, telegram, "GET", sent)
    assert status in (401, 404)  # the fake never got the real token, so it could not answer 200
    assert _received(telegram) == (received or sent)
    assert TOKEN not in json.dumps(telegram.seen[-1])
    _no_token_logged(gw)


REFUSED = [
    f"/x/../bot{PH}/getMe",  # dot segments
    f"/bot{PH}/../getMe",
    f"/./bot{PH}/getMe",
    f"/bot{PH}/%2e%2e/getMe",
    f"/bot{PH}%2FgetMe",  # an encoded slash
    f"/bot{PH}%2fgetMe",
    f"/bot{PH};x/getMe",  # a matrix parameter some servers drop
    f"/bot{PH}%3B/getMe",
    f"/bot{PH}%00/getMe",
    f"/bot{PH}%252F/getMe",  # double encoding
    f"/bot{PH}\\getMe",
    f"/bot{PH}/getMe#frag",
]


@pytest.mark.parametrize("sent", REFUSED)
def test_ambiguous_paths_are_refused_before_the_fake(make_tg, telegram, sent):
    gw = make_tg()
    before = len(telegram.seen)
    status, _, _ = tg(gw, telegram, "GET", sent)
    assert status == 400 and len(telegram.seen) == before
    _no_token_logged(gw)


def test_other_host_gets_the_placeholder(make_tg, telegram, origins):
    """The same request to a host the token is not bound to (an echo origin): it echoes the placeholder."""
    gw = make_tg()
    status, _, body = _call(gw, origins["https"].port, "GET", f"/bot{PH}/getMe", host="other.test")
    assert status == 200 and json.loads(body)["path"] == f"/bot{PH}/getMe" and TOKEN not in body.decode()


def test_headers_not_bound_for_a_path_binding(make_tg, telegram):
    gw = make_tg()
    tg(gw, telegram, "GET", f"/bot{PH}/getMe", headers={"Authorization": f"Bearer {PH}", "X-Token": PH})
    seen = {k.lower(): v for k, v in telegram.seen[-1]["headers"].items()}
    assert seen["authorization"] == f"Bearer {PH}" and seen["x-token"] == PH
    assert _received(telegram) == f"/bot{TOKEN}/getMe"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (["bot"], "'path' must be a list"),  # must start with "/"
        (["/bot/../x"], "'.' or '..'"),
        (["//bot"], "'//'"),
        (["/bot%2F"], "'path' must be a list"),
        (["/bo t"], "'path' must be a list"),
        ("/bot", "'path' must be a list"),
    ],
)
def test_path_prefixes_validated(path, message):
    with pytest.raises(ConfigError, match=message):
        load_gateway_section({"policy": "p.yaml", "secrets": {"TOK": {"file": "f", "hosts": ["h"], "path": path}}})


def test_path_prefixes_loaded():
    spec = {"file": "/s", "hosts": [HOST], "headers": [], "path": ["/bot", "/file/bot"]}
    b = load_gateway_section({"policy": "p.yaml", "secrets": {"TELEGRAM_BOT_TOKEN": spec}}).secrets[0]
    assert (b.headers, b.path) == ((), ("/bot", "/file/bot"))


# -- Discord REST (Authorization: Bot <token>) and Slack (Bearer xoxb-/xapp-): header bindings -----------------

GH = "clawfleet:secret:GITHUB_TOKEN"  # the echo origin's secret (conftest), bound to origin.test


def _echoed_auth(gw, origins, value: str) -> tuple[str, str]:
    """(what the origin received, what the sandbox got back) for one Authorization header."""
    from .support import SECRET_VALUE, https

    status, _, body = https(gw, origins, "GET", "/ok/channels", headers={"Authorization": value})
    assert status == 200
    received = {k.lower(): v for k, v in origins["https"].seen[-1]["headers"].items()}["authorization"]
    echoed = {k.lower(): v for k, v in json.loads(body)["headers"].items()}["authorization"]
    return received.replace(SECRET_VALUE, "<REAL>"), echoed.replace(SECRET_VALUE, "<REAL>")


def test_discord_bot_scheme_when_bound(make_gateway, origins):
    gw = make_gateway(binding={"schemes": ("bot",)})
    received, _ = _echoed_auth(gw, origins, f"Bot {GH}")
    assert received == "Bot <REAL>"


@pytest.mark.parametrize("value", [f"Bearer {GH}", f"Bot  x{GH}", f"Bot {GH}:{GH}", f"Botx {GH}"])
def test_discord_binding_fills_only_the_bot_scheme(make_gateway, origins, value):
    gw = make_gateway(binding={"schemes": ("bot",)})
    received, echoed = _echoed_auth(gw, origins, value)
    assert received == value and "<REAL>" not in echoed


def test_scrub_puts_placeholders_back_in_headers_but_never_touches_framing(tmp_path):
    from clawfleet.gateway.config import Secrets

    f = tmp_path / "tok"
    f.write_text("1:a/b\n")  # a short value with characters a path would carry percent-encoded
    s = Secrets([SecretBinding("TOK", str(f), ("h",), path=("/bot",))])
    headers = [(b"content-length", b"1"), (b"location", b"/bot1:a%2Fb/x"), (b"x-echo", b"raw 1:a/b")]
    out = dict(s.scrub({"TOK"}, headers, b"/botopenshell:resolve:env:TOK/x"))
    assert out[b"content-length"] == b"1"
    assert out[b"location"] == b"/botopenshell:resolve:env:TOK/x"
    assert out[b"x-echo"] == b"raw openshell:resolve:env:TOK"
    assert s.scrub(set(), headers) == headers  # nothing was put in: nothing to take out
