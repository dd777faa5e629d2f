"""Providers v2 credentials at the gateway (issue 17, item 1): a provider's credential goes only to the endpoints
its profile names or the policy binds it to (host, port and path), only in the places the profile names, over
plain HTTP only to loopback or private addresses; a binding to a provider the gateway does not have is refused at
start and on reload. Each attack sits beside the request that must still get the value. In process: the gateway
of tests/gateway/conftest.py, the echo origins on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from clawfleet.gateway.config import ConfigError, SecretBinding, load_gateway_section
from clawfleet.gateway.credentials import Destination, Secrets
from clawfleet.gateway.providers import _all_private, parse_providers, private_addresses, provider_binding
from clawfleet.policy import PolicyError, credential_scopes, load_profile_text, load_text

from .support import SECRET_VALUE, _response, connect, https, request, tls_over, ws_frame, ws_frames

PH = "openshell:resolve:env:API_TOKEN"  # the spelling upstream's sandboxes carry
CF = "clawfleet:secret:API_TOKEN"

# Endpointless: the sandbox policy says where its credential goes (credential_binding).
PROFILE = """\
id: custom-api
category: data
credentials:
  - name: api_token
    env_vars: [API_TOKEN]
    required: true
    auth_style: header
    header_name: X-Api-Key
    query_param: api_key
"""


def _policy(origins, bound_host: str = "origin.test", provider: str = "work", rewrite: bool = False) -> str:
    hp, pp = origins["https"].port, origins["http"].port
    opt = ", request_body_credential_rewrite: true" if rewrite else ""
    return f"""\
version: 1
network_policies:
  api:
    endpoints:
      - host: {bound_host}
        port: {hp}
        path: /ok/**
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
        credential_binding: {{provider: {provider}}}
        request_body_credential_rewrite: {str(rewrite).lower()}
      - {{host: origin.test, port: {hp}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
      - {{host: other.test, port: {hp}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full{opt}}}
      - host: plain.test
        port: {pp}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
        credential_binding: {{provider: {provider}}}
    binaries: [{{path: /usr/bin/curl}}]
"""


@pytest.fixture
def provider_config(tmp_path):
    """(providers, bindings) as the gateway config's ``providers:`` section gives them."""
    (tmp_path / "custom-api.yaml").write_text(PROFILE)
    secret = tmp_path / "work-API_TOKEN"
    secret.write_text(SECRET_VALUE + "\n")
    secret.chmod(0o600)
    section = {"work": {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "work-API_TOKEN"}}}
    return parse_providers(section, lambda p: str(tmp_path / p))


@pytest.fixture
def make_provider_gw(make_gateway, origins, provider_config):
    providers, bindings = provider_config

    def make(policy_text: str | None = None, **kw):
        return make_gateway(policy_text=policy_text or _policy(origins), secrets=False, bindings=bindings,
                            providers=providers, **kw)  # fmt: skip

    return make


def _seen(origins, which: str = "https") -> dict:
    rec = origins[which].seen[-1]
    return {"path": rec["path"], **{k.lower(): v for k, v in rec["headers"].items()}}


def _plain(gw, origins, path: str, host: str = "plain.test", headers: dict | None = None) -> int:
    port = origins["http"].port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        return request(sock, "GET", f"http://{host}:{port}{path}", f"{host}:{port}", headers)[0]


# -- where the value goes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("placeholder", [PH, CF])
def test_bound_endpoint_gets_the_value_in_the_profile_header(make_provider_gw, origins, placeholder):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", "/ok/h", headers={"X-Api-Key": placeholder})[0] == 200
    assert _seen(origins)["x-api-key"] == SECRET_VALUE


def test_bound_endpoint_gets_the_value_as_bearer_basic_and_query(make_provider_gw, origins):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", f"/ok/q?api_key={PH}&x=1", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    seen = _seen(origins)
    assert seen["authorization"] == f"Bearer {SECRET_VALUE}"
    assert seen["path"] == f"/ok/q?api_key={SECRET_VALUE}&x=1"
    basic = base64.b64encode(f"x-access-token:{PH}".encode()).decode()
    assert https(gw, origins, "GET", "/ok/b", headers={"Authorization": f"Basic {basic}"})[0] == 200
    decoded = base64.b64decode(_seen(origins)["authorization"].split()[1]).decode()
    assert decoded == f"x-access-token:{SECRET_VALUE}"


# -- attacks: each place the binding does not name gets the placeholder -----------------------------------
def test_a_host_the_binding_does_not_name_gets_the_placeholder(make_provider_gw, origins):
    gw = make_provider_gw()
    headers = {"X-Api-Key": PH, "Authorization": f"Bearer {PH}"}
    status, _, body = https(gw, origins, "GET", f"/ok/x?api_key={PH}", host="other.test", headers=headers)
    assert status == 200  # the policy allows other.test: only the credential stays behind
    seen = _seen(origins)
    assert (seen["x-api-key"], seen["authorization"]) == (PH, f"Bearer {PH}")
    assert seen["path"] == f"/ok/x?api_key={PH}"
    assert SECRET_VALUE not in body.decode()


def test_a_path_outside_the_bound_endpoint_gets_the_placeholder(make_provider_gw, origins):
    gw = make_provider_gw()  # origin.test is allowed everywhere, bound under /ok/** only
    assert https(gw, origins, "GET", f"/api/x?api_key={PH}", headers={"X-Api-Key": PH})[0] == 200
    seen = _seen(origins)
    assert (seen["x-api-key"], seen["path"]) == (PH, f"/api/x?api_key={PH}")


def test_a_header_or_parameter_the_profile_does_not_name_gets_the_placeholder(make_provider_gw, origins):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", f"/ok/x?token={PH}", headers={"X-Other": PH, "Cookie": PH})[0] == 200
    seen = _seen(origins)
    assert (seen["x-other"], seen["cookie"], seen["path"]) == (PH, PH, f"/ok/x?token={PH}")


def test_text_around_the_placeholder_is_not_filled(make_provider_gw, origins):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", "/ok/x", headers={"X-Api-Key": f"echo-{PH}"})[0] == 200
    assert _seen(origins)["x-api-key"] == f"echo-{PH}"


def test_trace_to_a_bound_endpoint_is_refused(make_provider_gw, origins):
    gw = make_provider_gw()
    status, _, body = https(gw, origins, "TRACE", "/ok/x", headers={"X-Api-Key": PH})
    assert status == 405 and SECRET_VALUE not in body.decode()
    assert https(gw, origins, "TRACE", "/ok/x", host="other.test")[0] != 405  # not bound: the policy decides


# -- plain HTTP ---------------------------------------------------------------------------------------------
def test_plain_http_to_a_bound_loopback_endpoint_gets_the_value(make_provider_gw, origins):
    gw = make_provider_gw()
    assert _plain(gw, origins, f"/r?api_key={PH}", headers={"X-Api-Key": PH}) == 200
    assert origins["http"].seen[-1]["path"] == f"/r?api_key={SECRET_VALUE}"


def test_plain_http_to_an_unbound_host_gets_the_placeholder(make_provider_gw, origins):
    hp, pp = origins["https"].port, origins["http"].port
    policy = _policy(origins).replace(f"host: other.test, port: {hp}", f"host: other.test, port: {pp}")
    gw = make_provider_gw(policy)
    assert _plain(gw, origins, f"/r?api_key={PH}", host="other.test") == 200
    assert origins["http"].seen[-1]["path"] == f"/r?api_key={PH}"


def test_a_host_bound_secret_never_travels_over_plain_http(make_gateway, origins, tmp_path):
    secret = tmp_path / "k"
    secret.write_text(SECRET_VALUE)
    binding = SecretBinding("API_TOKEN", str(secret), ("plain.test",), query=("api_key",))
    gw = make_gateway(policy_text=_policy(origins).replace("        credential_binding: {provider: work}\n", ""),
                      secrets=False, bindings=(binding,))  # fmt: skip
    assert _plain(gw, origins, f"/r?api_key={PH}") == 200
    assert origins["http"].seen[-1]["path"] == f"/r?api_key={PH}"


def _provider_secrets(tmp_path, scope_host: str = "api.example.com", port: int = 80) -> Secrets:
    secret = tmp_path / "v"
    secret.write_text(SECRET_VALUE)
    credential = load_profile_text(PROFILE, "p.yaml").credentials[0]
    secrets = Secrets([provider_binding("work", "API_TOKEN", str(secret), credential)])
    endpoint = f"{{host: {scope_host}, port: {port}, protocol: rest, access: full,"
    endpoint += " credential_binding: {provider: work}}"
    policy = load_text(f"version: 1\nnetwork_policies:\n  a:\n    endpoints: [{endpoint}]\n"
                       "    binaries: [{path: /usr/bin/curl}]\n")  # fmt: skip
    secrets.scope(credential_scopes(policy, {"work": load_profile_text(PROFILE, "p.yaml")}))
    return secrets


@pytest.mark.parametrize(
    ("dest", "injected"),
    [
        (Destination("api.example.com", 80, "/x", plain=True, private=True), True),
        (Destination("api.example.com", 80, "/x", plain=True, private=False), False),  # public address, clear text
        (Destination("api.example.com", 80, "/x"), True),  # TLS
        (Destination("api.example.com", 8080, "/x"), False),  # another port
        (Destination("evil.example.com", 80, "/x"), False),
        (Destination("api.example.com.evil.test", 80, "/x"), False),
    ],
    ids=["plain-private", "plain-public", "tls", "other-port", "other-host", "suffix-host"],
)
def test_provider_scope_by_host_port_and_transport(tmp_path, dest, injected):
    secrets = _provider_secrets(tmp_path)
    _, headers, used = secrets.inject(dest, b"/x", [(b"x-api-key", PH.encode())])
    assert (headers[0][1] == SECRET_VALUE.encode()) is injected
    assert (used == {"API_TOKEN"}) is injected


@pytest.mark.parametrize(
    ("ips", "ok"),
    [
        (["127.0.0.1"], True),
        (["10.1.2.3", "192.168.0.9", "172.31.255.1"], True),
        (["::1"], True),
        (["fd00::5"], True),
        (["::ffff:10.0.0.1"], True),
        (["10.0.0.1", "8.8.8.8"], False),  # every address the request may go to must be private
        (["169.254.169.254"], False),  # cloud metadata: link-local is not the operator's network
        (["100.64.0.1"], False),
        (["172.32.0.1"], False),
        ([], False),
        (["not-an-ip"], False),
    ],
)
def test_private_addresses(ips, ok):
    assert private_addresses(ips) is ok


def test_private_addresses_is_cached_for_every_caller():
    """The cache lives in the function itself (the proxy and any other caller share it): one computation per
    distinct address list, whatever iterable the caller passes."""
    _all_private.cache_clear()
    assert private_addresses(["10.0.0.1", "127.0.0.1"]) is True
    assert private_addresses(("10.0.0.1", "127.0.0.1")) is True
    assert private_addresses(iter(["10.0.0.1", "127.0.0.1"])) is True  # a one-shot iterable is read once
    info = _all_private.cache_info()
    assert (info.misses, info.hits) == (1, 2) and info.maxsize == 256


def test_a_cached_private_list_never_answers_for_another_list():
    """Attack: a resolved list that adds a public address after a private one was cached (DNS answering first with
    the private address only) must not reuse that answer: the cache key is the whole list."""
    _all_private.cache_clear()
    assert private_addresses(["10.0.0.1"]) is True
    assert private_addresses(["10.0.0.1", "8.8.8.8"]) is False
    assert private_addresses(["8.8.8.8", "10.0.0.1"]) is False
    assert private_addresses([]) is False and private_addresses(["10.0.0.1"]) is True


# -- the binding follows the policy; unknown providers are refused ------------------------------------------
def test_the_scope_follows_a_policy_reload(make_provider_gw, origins):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", "/ok/a", host="other.test", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == PH
    old = gw.holder.digest
    gw.policy.write_text(_policy(origins, bound_host="other.test"))
    assert gw.wait_for(lambda: gw.holder.digest != old)
    assert https(gw, origins, "GET", "/ok/a", host="other.test", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == SECRET_VALUE
    assert https(gw, origins, "GET", "/ok/a", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == PH  # origin.test lost the binding


def test_a_gateway_does_not_start_with_a_binding_to_a_provider_it_lacks(make_gateway, origins):
    with pytest.raises(PolicyError) as info:
        make_gateway(policy_text=_policy(origins, provider="nobody"), secrets=False)
    first = str(info.value).splitlines()[0]
    assert first.endswith(
        "policy.yaml:11:29: network_policies.api.endpoints[0].credential_binding.provider: provider 'nobody' is not"
        " configured for this sandbox (the gateway's providers: none)"
    )


def test_a_reload_to_a_binding_to_a_provider_it_lacks_is_refused(make_provider_gw, origins):
    gw = make_provider_gw()
    old = gw.holder.digest
    gw.policy.write_text(_policy(origins, provider="nobody"))
    assert gw.wait_for(lambda: any(r.get("event") == "reload" and r.get("ok") is False for r in gw.records()))
    failed = [r for r in gw.records() if r.get("event") == "reload"][-1]
    assert failed["kept_digest"] == old and "provider 'nobody' is not configured" in failed["error"][0]
    time.sleep(0.1)
    assert gw.holder.digest == old
    assert https(gw, origins, "GET", "/ok/h", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == SECRET_VALUE  # the last good policy, binding included


def test_a_profile_with_endpoints_binds_without_the_policy(make_gateway, origins, tmp_path):
    hp = origins["https"].port
    (tmp_path / "p.yaml").write_text(PROFILE + f"endpoints:\n  - {{host: origin.test, port: {hp}, path: /ok/**,"
                                     " protocol: rest, access: full}\n")  # fmt: skip
    (tmp_path / "v").write_text(SECRET_VALUE)
    providers, bindings = parse_providers({"work": {"profile": "p.yaml", "credentials": {"API_TOKEN": "v"}}},
                                          lambda p: str(tmp_path / p))  # fmt: skip
    policy = _policy(origins).replace("        credential_binding: {provider: work}\n", "")
    gw = make_gateway(policy_text=policy, secrets=False, bindings=bindings, providers=providers)
    assert https(gw, origins, "GET", "/ok/p", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == SECRET_VALUE
    assert https(gw, origins, "GET", "/ok/p", host="other.test", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == PH
    gw.policy.write_text(_policy(origins))  # binding it from the policy too is refused: one authority
    assert gw.wait_for(lambda: any(r.get("event") == "reload" and r.get("ok") is False for r in gw.records()))


# -- the providers: section --------------------------------------------------------------------------------
@pytest.fixture
def section(tmp_path):
    (tmp_path / "custom-api.yaml").write_text(PROFILE)
    (tmp_path / "v").write_text(SECRET_VALUE)

    def make(**provider) -> dict:
        spec = {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "v"}, **provider}
        return {"policy": "policy.yaml", "providers": {"work": {k: v for k, v in spec.items() if v is not None}}}

    return make


def test_providers_section_loads(section, tmp_path):
    config = load_gateway_section(section(), str(tmp_path))
    assert list(config.providers) == ["work"] and config.providers["work"].id == "custom-api"
    (binding,) = config.secrets
    assert (binding.name, binding.provider, binding.file) == ("API_TOKEN", "work", str(tmp_path / "v"))
    assert binding.headers == ("authorization", "x-api-key") and binding.query == ("api_key",)


@pytest.mark.parametrize(
    ("provider", "extra", "message"),
    [
        (
            {"credentials": {"API_TOKN": "v"}},
            {},
            "provider work: API_TOKN is not a credential of profile 'custom-api' (API_TOKEN)",
        ),
        (
            {"credentials": {}},
            {},
            "provider work: credential 'api_token' of profile 'custom-api' is required: give a file for one of"
            " API_TOKEN",
        ),
        (
            {},
            {"secrets": {"API_TOKEN": {"file": "v", "hosts": ["x.test"]}}},
            "provider work: API_TOKEN is also bound by secrets; one name, one value",
        ),
        ({"profile": None}, {}, "provider work: needs 'profile' (a provider profile file) and 'credentials'"),
        ({"type": "github"}, {}, "provider work: unknown settings type"),
    ],
    ids=["unknown-env", "required", "clash", "no-profile", "unknown-setting"],
)
def test_providers_section_refusals(section, tmp_path, provider, extra, message):
    with pytest.raises(ConfigError) as info:
        load_gateway_section({**section(**provider), **extra}, str(tmp_path))
    assert str(info.value) == message


def test_a_bad_profile_keeps_its_position(section, tmp_path):
    (tmp_path / "custom-api.yaml").write_text(PROFILE.replace("category: data", "category: storage"))
    with pytest.raises(ConfigError) as info:
        load_gateway_section(section(), str(tmp_path))
    assert str(info.value).splitlines() == [
        "provider work: profile custom-api.yaml:",
        f"{tmp_path}/custom-api.yaml:2:11: category: expected one of other, inference, agent, source_control,"
        " messaging, data, knowledge, got 'storage'",
    ]


def test_decision_log_never_holds_the_value(make_provider_gw, origins):
    gw = make_provider_gw()
    https(gw, origins, "GET", f"/ok/q?api_key={PH}", headers={"X-Api-Key": PH})
    https(gw, origins, "GET", f"/ok/q?api_key={PH}", host="other.test")
    assert SECRET_VALUE not in json.dumps(gw.records())


# -- `clawfleet gateway check` -------------------------------------------------------------------------------
def _definition(tmp_path, origins, provider: str, configured: bool = True):
    from clawfleet.supervisor.check import check_file

    (tmp_path / "custom-api.yaml").write_text(PROFILE)
    (tmp_path / "v").write_text(SECRET_VALUE)
    (tmp_path / "policy.yaml").write_text(_policy(origins, provider=provider))
    gateway = {"providers": {"work": {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "v"}}}}
    d = tmp_path / "agent.yaml"
    d.write_text(json.dumps({"name": "agent", "command": ["/usr/bin/python3", "/sandbox/a.py"],
                             "policy": "policy.yaml", "credentials": ["API_TOKEN"],
                             "gateway": gateway if configured else {}}))  # fmt: skip
    return lambda: check_file(str(d))


def test_gateway_check_accepts_a_binding_to_a_configured_provider(tmp_path, origins):
    assert _definition(tmp_path, origins, "work")() == ["agent"]


def test_gateway_check_refuses_a_binding_to_a_provider_not_configured(tmp_path, origins):
    with pytest.raises(PolicyError) as info:
        _definition(tmp_path, origins, "nobody")()
    assert str(info.value).splitlines()[0] == (
        f"{tmp_path}/policy.yaml:11:29: network_policies.api.endpoints[0].credential_binding.provider: provider"
        " 'nobody' is not configured for this sandbox (the gateway's providers: work)"
    )


def test_a_rotated_value_is_used_without_a_restart(make_provider_gw, origins, tmp_path):
    gw = make_provider_gw()
    assert https(gw, origins, "GET", "/ok/r", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == SECRET_VALUE
    rotated = tmp_path / "rotated"
    rotated.write_text("ghp_ROTATED_value\n")
    rotated.replace(tmp_path / "work-API_TOKEN")  # as an operator (or Ansible) replaces the file
    assert https(gw, origins, "GET", "/ok/r", headers={"X-Api-Key": PH})[0] == 200
    assert _seen(origins)["x-api-key"] == "ghp_ROTATED_value"


# -- request bodies (opt-in: request_body_credential_rewrite) ----------------------------------------------
def _post(gw, origins, body: bytes, ctype: str, host: str = "origin.test", path: str = "/ok/b") -> tuple[int, str]:
    status, _, _ = https(gw, origins, "POST", path, host=host, headers={"Content-Type": ctype}, body=body)
    rec = origins["https"].seen[-1]
    length = {k.lower(): v for k, v in rec["headers"].items()}["content-length"]
    assert int(length) == len(rec["body"].encode("latin-1"))  # reframed exactly
    return status, rec["body"]


def test_json_string_values_are_filled_and_nothing_else_changes(make_provider_gw, origins):
    gw = make_provider_gw(_policy(origins, rewrite=True))
    sent = '{"api_key": "' + PH + '", "n": 1.50, "dup": 1, "dup": 2, "deep": [{"k": "' + CF + '"}]}'
    status, got = _post(gw, origins, sent.encode(), "application/json; charset=utf-8")
    assert status == 200
    assert got == sent.replace(PH, SECRET_VALUE).replace(CF, SECRET_VALUE)


@pytest.mark.parametrize(
    "sent",
    [
        '{"' + PH + '": 1}',  # a key
        '{"auth": "Bearer ' + PH + '"}',  # text of the sandbox's around it
        '{"auth": "openshell:resolve:env:API\\u005fTOKEN"}',  # an escaped spelling
        '{"msg": "' + PH + '"',  # not JSON
    ],
    ids=["key", "text-around", "escaped", "invalid-json"],
)
def test_json_places_that_are_not_a_whole_value_keep_the_placeholder(make_provider_gw, origins, sent):
    gw = make_provider_gw(_policy(origins, rewrite=True))
    assert _post(gw, origins, sent.encode(), "application/json") == (200, sent)


def test_form_values_are_filled(make_provider_gw, origins):
    gw = make_provider_gw(_policy(origins, rewrite=True))
    enc = PH.replace(":", "%3A")
    sent = f"api_key={enc}&msg=hello+{PH}&{PH}=x"
    status, got = _post(gw, origins, sent.encode(), "application/x-www-form-urlencoded")
    assert (status, got) == (200, f"api_key={SECRET_VALUE}&msg=hello+{PH}&{PH}=x")


def test_a_text_body_is_not_rewritten(make_provider_gw, origins):
    gw = make_provider_gw(_policy(origins, rewrite=True))
    assert _post(gw, origins, PH.encode(), "text/plain") == (200, PH)


def test_a_body_is_not_rewritten_without_the_opt_in(make_provider_gw, origins):
    gw = make_provider_gw()  # the same bound endpoint, request_body_credential_rewrite: false
    sent = json.dumps({"api_key": PH})
    assert _post(gw, origins, sent.encode(), "application/json") == (200, sent)


def test_an_opted_in_endpoint_the_provider_is_not_bound_to_keeps_the_placeholder(make_provider_gw, origins):
    gw = make_provider_gw(_policy(origins, rewrite=True))  # other.test opts in, but binds no provider
    sent = json.dumps({"api_key": PH})
    assert _post(gw, origins, sent.encode(), "application/json", host="other.test") == (200, sent)


def test_a_body_over_the_rewrite_limit_is_refused_only_where_it_would_be_rewritten(make_provider_gw, origins):
    gw = make_provider_gw(_policy(origins, rewrite=True))
    big = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
    port = origins["https"].port
    sock, status, _ = connect(gw, f"origin.test:{port}")
    assert status == 200
    with tls_over(gw, sock, "origin.test") as tls:  # the client waits for 100-continue: the refusal comes first
        tls.sendall(f"POST /ok/big HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(big)}\r\nExpect: 100-continue\r\n\r\n".encode())  # fmt: skip
        status, _, body = _response(tls)
    assert status == 413 and b"request_body_credential_rewrite" in body
    status, _, _ = https(gw, origins, "POST", "/api/big", headers={"Content-Type": "application/json"}, body=big)
    assert status == 200  # outside the bound endpoint: streamed as before


# -- WebSocket text messages (opt-in: websocket_credential_rewrite) --------------------------------------------
def _ws_policy(port: int, rewrite: bool = True, provider: str = "work") -> str:
    return f"""\
version: 1
network_policies:
  gateway:
    endpoints:
      - host: origin.test
        port: {port}
        allowed_ips: [127.0.0.1/32]
        protocol: websocket
        rules:  # the upgrade, then the sandbox's messages (judged one by one: .ws_relay)
          - allow: {{method: GET, path: "/ws/**"}}
          - allow: {{method: WEBSOCKET_TEXT, path: "/ws/**"}}
          - allow: {{method: WEBSOCKET_BINARY, path: "/ws/**"}}
        credential_binding: {{provider: {provider}}}
        websocket_credential_rewrite: {str(rewrite).lower()}
    binaries: [{{path: /usr/bin/curl}}]
"""


@pytest.fixture
def ws_session(make_gateway, provider_config, pki):
    from .support import SwitchingOrigin

    providers, bindings = provider_config
    origins_made = []

    def open_session(rewrite: bool = True, extensions: bool = False):
        origin = SwitchingOrigin(pki["cert"], pki["key"])
        origins_made.append(origin)
        gw = make_gateway(policy_text=_ws_policy(origin.port, rewrite), secrets=False, bindings=bindings,
                          providers=providers)  # fmt: skip
        sock, status, _ = connect(gw, f"origin.test:{origin.port}")
        assert status == 200
        tls = tls_over(gw, sock, "origin.test")
        ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if extensions else ""
        key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        tls.sendall(f"GET /ws/gateway HTTP/1.1\r\nHost: origin.test:{origin.port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}{ext}\r\n".encode())  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        return tls, origin

    yield open_session
    for origin in origins_made:
        origin.close()


def _received(origin, size: int) -> bytes:
    deadline = time.monotonic() + 5
    while len(origin.raw) < size and time.monotonic() < deadline:
        time.sleep(0.02)
    return bytes(origin.raw)


IDENTIFY = json.dumps({"op": 2, "d": {"token": PH, "note": f"text {PH}"}}).encode()


def test_a_text_message_gets_the_value_in_a_whole_json_value(ws_session):
    tls, origin = ws_session(extensions=True)
    tls.sendall(ws_frame(0x1, IDENTIFY))
    expected = IDENTIFY.replace(f'"{PH}"'.encode(), f'"{SECRET_VALUE}"'.encode())
    frames = ws_frames(_received(origin, len(expected) + 6))
    assert frames == [(1, 0x1, expected)]  # the value in the token; the text around a placeholder keeps it
    assert b"sec-websocket-extensions" not in origin.heads[-1].lower()  # no deflate: the messages stay readable
    tls.close()


def test_a_fragmented_text_message_is_filled_as_one(ws_session):
    tls, origin = ws_session()
    tls.sendall(ws_frame(0x1, IDENTIFY[:10], fin=False) + ws_frame(0x9, b"ping") + ws_frame(0x0, IDENTIFY[10:]))
    expected = IDENTIFY.replace(f'"{PH}"'.encode(), f'"{SECRET_VALUE}"'.encode())
    frames = ws_frames(_received(origin, 6 + 4 + len(expected) + 6))
    assert frames == [(1, 0x9, b"ping"), (1, 0x1, expected)]
    tls.close()


def test_without_the_opt_in_frames_pass_as_sent(ws_session):
    tls, origin = ws_session(rewrite=False)
    frame = ws_frame(0x1, IDENTIFY)
    tls.sendall(frame)
    assert _received(origin, len(frame)) == frame  # as sent, byte for byte: the placeholder reaches the origin
    tls.close()


def test_a_binary_message_keeps_the_placeholder(ws_session):
    tls, origin = ws_session()
    frame = ws_frame(0x2, IDENTIFY)
    tls.sendall(frame)
    assert _received(origin, len(frame)) == frame
    tls.close()


def test_an_unmasked_frame_closes_the_session_before_the_origin_sees_it(ws_session):
    tls, origin = ws_session()
    tls.sendall(ws_frame(0x1, IDENTIFY, mask=False))
    assert tls.recv(16) == b"\x88\x02\x03\xea"  # close 1002 (protocol error)
    assert ws_frames(_received(origin, 8)) == [(1, 0x8, b"\x03\xea")]  # the origin gets the close, not the frame
