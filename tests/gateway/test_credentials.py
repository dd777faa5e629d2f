"""Credential placeholders and a bound host that echoes the request (issue 14, finding 7): the real value goes
only where the binding says, never into the request target unless configured, and TRACE never reaches a bound
host. Each attack next to the placement that must still work."""

from __future__ import annotations

import base64
import json

import pytest

from clawfleet.gateway.config import ConfigError, load_gateway_section

from .support import SECRET_VALUE, https

PH = "clawfleet:secret:GITHUB_TOKEN"


def _full_access(origins) -> str:  # every method allowed: only the credential rules can stop an echo
    return f"""\
version: 1
network_policies:
  api:
    name: api
    endpoints:
      - {{host: origin.test, port: {origins["https"].port}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
    binaries: [{{path: /usr/bin/curl}}]
"""


def _seen(origins) -> dict:
    rec = origins["https"].seen[-1]
    return {"path": rec["path"], **{k.lower(): v for k, v in rec["headers"].items()}}


def test_placeholder_in_query_not_injected_by_default(gw, origins):
    status, _, body = https(gw, origins, "GET", f"/ok/q?key={PH}&x=1")
    assert status == 200
    assert SECRET_VALUE not in body.decode() and PH in json.loads(body)["path"]


def test_configured_query_parameter_injected(make_gateway, origins):
    gw = make_gateway(binding={"query": ("access_token",)})
    enc = PH.replace(":", "%3A")
    assert https(gw, origins, "GET", f"/ok/q?access_token={enc}&other={PH}")[0] == 200
    path = _seen(origins)["path"]
    assert path == f"/ok/q?access_token={SECRET_VALUE}&other={PH}"  # only the named parameter


def test_unlisted_header_not_injected(make_gateway, origins):
    gw = make_gateway(binding={})  # defaults: Authorization only
    status, _, body = https(gw, origins, "GET", "/ok/h", headers={"X-Api-Key": PH, "Authorization": f"Bearer {PH}"})
    assert status == 200
    seen = _seen(origins)
    assert seen["x-api-key"] == PH and seen["authorization"] == f"Bearer {SECRET_VALUE}"
    echoed = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert echoed["x-api-key"] == PH  # what the echo hands back is the placeholder


def test_configured_header_injected(make_gateway, origins):
    gw = make_gateway(binding={"headers": ("x-api-key",)})
    assert https(gw, origins, "GET", "/ok/h", headers={"X-Api-Key": PH, "Authorization": f"Bearer {PH}"})[0] == 200
    seen = _seen(origins)
    assert seen["x-api-key"] == SECRET_VALUE and seen["authorization"] == f"Bearer {PH}"


@pytest.mark.parametrize(
    "value",
    [f"Bearer echo-me-{PH}", f"Bearer {PH} trailing", f"Digest {PH}", f"{PH}", f"Bearer {PH}{PH}"],
)
def test_placeholder_must_fill_a_configured_place(gw, origins, value):
    assert https(gw, origins, "GET", "/ok/h", headers={"Authorization": value})[0] == 200
    assert _seen(origins)["authorization"] == value


def test_basic_scheme_only_when_configured(make_gateway, origins):
    gw = make_gateway(binding={"schemes": ("bearer",)})
    cred = base64.b64encode(f"x-access-token:{PH}".encode()).decode()
    assert https(gw, origins, "GET", "/ok/b", headers={"Authorization": f"Basic {cred}"})[0] == 200
    assert _seen(origins)["authorization"] == f"Basic {cred}"
    assert https(gw, origins, "GET", "/ok/b", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    assert _seen(origins)["authorization"] == f"Bearer {SECRET_VALUE}"


def test_trace_refused_on_bound_host(make_gateway, origins):
    gw = make_gateway(policy_text=_full_access(origins))
    before = len(origins["https"].seen)
    status, _, body = https(gw, origins, "TRACE", "/ok/t", headers={"Authorization": f"Bearer {PH}"})
    assert status == 405 and SECRET_VALUE not in body.decode()
    assert len(origins["https"].seen) == before  # never reached the origin
    assert any(r.get("method") == "TRACE" and r["action"] == "deny" for r in gw.records())


def test_trace_allowed_on_unbound_host(make_gateway, origins):
    gw = make_gateway(policy_text=_full_access(origins), secrets=False)
    status, _, body = https(gw, origins, "TRACE", "/ok/t")
    assert status == 200 and json.loads(body)["method"] == "TRACE"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"file": "f", "hosts": ["h"], "header": ["x"]}, "unknown settings header"),
        ({"file": "f", "hosts": ["h"], "headers": ["bad name"]}, "'headers' must be a list"),
        ({"file": "f", "hosts": ["h"], "schemes": "bearer"}, "'schemes' must be a list"),
        ({"file": "f", "hosts": ["h"], "query": ["a&b"]}, "'query' must be a list"),
    ],
)
def test_binding_settings_validated(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_gateway_section({"policy": "p.yaml", "secrets": {"TOK": spec}})


def test_binding_settings_loaded():
    spec = {"file": "/s", "hosts": ["API.example"], "headers": ["X-Api-Key"], "schemes": ["Token"], "query": ["key"]}
    b = load_gateway_section({"policy": "p.yaml", "secrets": {"TOK": spec}}).secrets[0]
    assert (b.hosts, b.headers, b.schemes, b.query) == (("api.example",), ("x-api-key",), ("token",), ("key",))
