"""Providers v2 policy composition at the gateway: a configured provider whose profile has endpoints adds its
``_provider_<name>`` rule to the policy the gateway enforces (upstream's effective policy), for the profile's
binaries only, on start and after every reload; the reported ``digest`` stays the base policy's (the file's) and
``effective_digest`` names the composed one. Each attack (another binary, another host, a method the profile's
rules do not allow, a user policy claiming a ``_provider_*`` name) sits beside the request that must still pass.
In process: the gateway of tests/gateway/conftest.py, the echo origins on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clawfleet.gateway.config import ConfigError, load_gateway_section
from clawfleet.gateway.providers import parse_providers
from clawfleet.gateway.reload import PolicyHolder
from clawfleet.policy import compose, digest, load_text

from .support import CUSTOM_API_PROFILE, SECRET_VALUE, connect, https, profile_endpoint, request, tls_over

PH = "openshell:resolve:env:API_TOKEN"
GH = "/usr/bin/gh"  # the profile's binary; the base policy grants only curl


def _profile(port: int) -> str:
    # pass.test is in the base policy for no one; the profile brings it, read-only, for gh and git
    return CUSTOM_API_PROFILE + profile_endpoint("pass.test", port, f"[{GH}, /usr/bin/git]")


def _base(origins, extra: str = "") -> str:
    return f"""\
version: 1
network_policies:
  curl_only:
    endpoints:
      - {{host: origin.test, port: {origins["https"].port}, allowed_ips: [127.0.0.1/32], protocol: rest,
          access: full}}
    binaries: [{{path: /usr/bin/curl}}]
{extra}"""


@pytest.fixture
def provider_config(tmp_path, origins):
    (tmp_path / "custom-api.yaml").write_text(_profile(origins["https"].port))
    (tmp_path / "work-API_TOKEN").write_text(SECRET_VALUE + "\n")
    (tmp_path / "work-API_TOKEN").chmod(0o600)
    section = {"work": {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "work-API_TOKEN"}}}
    return parse_providers(section, lambda p: str(tmp_path / p))


@pytest.fixture
def pgw(make_gateway, origins, provider_config):
    providers, bindings = provider_config
    return make_gateway(policy_text=_base(origins), secrets=False, bindings=bindings, providers=providers)


def _key(origins) -> str:
    return {k.lower(): v for k, v in origins["https"].seen[-1]["headers"].items()}["x-api-key"]


def _last_decision(gw) -> dict:
    return [r for r in gw.records() if "decision" in r][-1]


# -- allowed: the profile's endpoints for the profile's binaries, its credential injected ---------------------
def test_the_profile_binary_reaches_the_profile_endpoint_with_the_value(pgw, origins):
    pgw.binary = GH
    assert https(pgw, origins, "GET", "/repos/x", host="pass.test", headers={"X-Api-Key": PH})[0] == 200
    assert _key(origins) == SECRET_VALUE
    assert _last_decision(pgw)["rule"] == "_provider_work"


def test_the_base_rules_still_apply_beside_the_provider_rule(pgw, origins):
    pgw.binary = "/usr/bin/curl"
    assert https(pgw, origins, "DELETE", "/anything", headers={"X-Api-Key": PH})[0] == 200
    assert _key(origins) == PH  # origin.test is allowed, but not the provider's endpoint: no value


# -- denied: the provider rule widens nothing else ------------------------------------------------------------
def test_a_binary_not_in_the_profile_is_denied_the_profile_endpoint(pgw, origins):
    pgw.binary = "/usr/bin/curl"  # allowed elsewhere by the base policy, not listed by the profile
    before = len(origins["https"].seen)
    assert https(pgw, origins, "GET", "/repos/x", host="pass.test", headers={"X-Api-Key": PH})[0] == 403
    assert len(origins["https"].seen) == before


def test_the_profile_binary_is_denied_other_hosts(pgw, origins):
    pgw.binary = GH
    assert https(pgw, origins, "GET", "/x", host="origin.test")[0] == 403  # the base policy's host, curl's only
    assert https(pgw, origins, "GET", "/x", host="other.test")[0] == 403  # in no rule at all


def test_the_profile_rules_still_decide_methods(pgw, origins):
    pgw.binary = GH
    before = len(origins["https"].seen)
    assert https(pgw, origins, "POST", "/repos/x", host="pass.test", headers={"X-Api-Key": PH}, body=b"x")[0] == 403
    assert len(origins["https"].seen) == before  # read-only: the write never left the gateway


def test_without_the_provider_the_endpoint_is_denied(make_gateway, origins):
    gw = make_gateway(policy_text=_base(origins), secrets=False)
    gw.binary = GH
    assert https(gw, origins, "GET", "/repos/x", host="pass.test")[0] == 403


# -- digests and reload -------------------------------------------------------------------------------------
def test_the_reported_digest_is_the_base_policy_and_the_effective_one_is_beside_it(pgw, origins, provider_config):
    base = load_text(_base(origins))
    assert pgw.holder.digest == digest(base)  # what `policy apply` waits for: the file's digest
    assert pgw.holder.effective_digest == digest(compose(base, provider_config[0])) != pgw.holder.digest
    assert "_provider_work" in pgw.holder.policy.network_policies
    assert "_provider_work" not in pgw.holder.base.network_policies


def test_a_reload_keeps_the_provider_rule(pgw, origins):
    old = pgw.holder.digest
    pgw.policy.write_text(_base(origins).replace("access: full", "access: read-only"))
    assert pgw.wait_for(lambda: pgw.holder.digest != old)
    record = [r for r in pgw.records() if r.get("event") == "reload"][-1]
    assert record["ok"] and record["effective_digest"] == pgw.holder.effective_digest
    pgw.binary = GH
    assert https(pgw, origins, "GET", "/repos/y", host="pass.test", headers={"X-Api-Key": PH})[0] == 200
    assert _key(origins) == SECRET_VALUE


def test_a_reloaded_policy_cannot_claim_a_provider_rule_name(pgw, origins):
    # the attack: a policy edit that redefines _provider_work to widen it (any binary, any host)
    hijack = """\
  _provider_work:
    endpoints: [{host: "*.test", port: 443}]
    binaries: [{path: "/**"}]
"""
    before = (pgw.holder.digest, pgw.holder.effective_digest)
    pgw.policy.write_text(_base(origins, hijack))
    assert pgw.wait_for(lambda: any(r.get("event") == "reload" and not r["ok"] for r in pgw.records()))
    record = [r for r in pgw.records() if r.get("event") == "reload"][-1]
    assert "_provider_* names are reserved" in "\n".join(record["error"])
    assert (pgw.holder.digest, pgw.holder.effective_digest) == before  # the last good policy stays
    pgw.binary = "/usr/bin/curl"
    assert https(pgw, origins, "GET", "/repos/x", host="pass.test")[0] == 403


def test_the_parser_holder_composes_the_handed_over_base_policy_alike(pgw, provider_config):
    # the unprivileged parser gets the base policy (privsep) and composes it with the same providers
    parser = PolicyHolder.given(pgw.holder.base, provider_config[0])
    assert (parser.digest, parser.effective_digest) == (pgw.holder.digest, pgw.holder.effective_digest)
    parser.replace(pgw.holder.base)
    assert parser.policy.network_policies.keys() == pgw.holder.policy.network_policies.keys()


# -- configuration and commands -----------------------------------------------------------------------------
def test_two_provider_names_deriving_one_rule_are_refused(tmp_path, origins):
    (tmp_path / "p.yaml").write_text(_profile(origins["https"].port))
    (tmp_path / "v").write_text("x")
    spec = {"profile": "p.yaml", "credentials": {}}
    with pytest.raises(ConfigError, match="'work_a' and 'work-a' both derive the policy rule _provider_work_a"):
        load_gateway_section({"policy": "x.yaml", "providers": {"work-a": spec, "work_a": spec}}, str(tmp_path))
    assert load_gateway_section({"policy": "x.yaml", "providers": {"work-a": spec, "work-b": spec}}, str(tmp_path))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", "policy", *args], capture_output=True, text=True)


def test_policy_commands_show_the_effective_policy(pgw, origins, tmp_path):
    prof, pol = str(tmp_path / "custom-api.yaml"), str(pgw.policy)
    port = str(origins["https"].port)
    check = ["check", "--policy", pol, "--binary", GH, "--host", "pass.test", "--port", port, "--method", "GET",
             "--path", "/r", "--json"]  # fmt: skip
    allowed = _cli(*check, "--provider", f"work={prof}")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["policy"] == "_provider_work", allowed.stderr
    assert _cli(*check).returncode == 1  # the base policy alone denies it
    assert _cli(*check[:4], "/usr/bin/curl", *check[5:], "--provider", f"work={prof}").returncode == 1
    digests = _cli("digest", pol, "--provider", f"work={prof}")
    assert digests.stdout.strip() == pgw.holder.effective_digest
    assert _cli("digest", pol).stdout.strip() == pgw.holder.digest
    normal = json.loads(_cli("normalize", pol, "--json", "--provider", f"work={prof}").stdout)
    assert set(normal["network_policies"]) == {"curl_only", "_provider_work"}
    bad = _cli("digest", pol, "--provider", "work")
    assert bad.returncode == 2 and "expected NAME=PROFILE_FILE" in bad.stderr


def test_gateway_check_compiles_the_effective_policy(tmp_path, origins):
    from clawfleet.supervisor.check import check_file

    (tmp_path / "custom-api.yaml").write_text(_profile(origins["https"].port))
    (tmp_path / "v").write_text(SECRET_VALUE)
    (tmp_path / "policy.yaml").write_text(_base(origins))
    gateway = {"providers": {"work": {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "v"}}}}
    d = tmp_path / "agent.yaml"
    d.write_text(json.dumps({"name": "agent", "command": ["/usr/bin/gh"], "policy": "policy.yaml",
                             "credentials": ["API_TOKEN"], "gateway": gateway}))  # fmt: skip
    assert check_file(str(d)) == ["agent"]


# -- allow_uninspected_credentials: upstream's recorded exception (its copilot profile's telemetry endpoints) ----
def _uninspected_gw(make_gateway, origins, tmp_path, endpoint: str):
    port = origins["https"].port
    profile = _profile(port).replace(
        "    protocol: rest\n    access: read-only\n", endpoint + "    allow_uninspected_credentials: true\n"
    )
    (tmp_path / "custom-api.yaml").write_text(profile)
    (tmp_path / "work-API_TOKEN").write_text(SECRET_VALUE + "\n")
    section = {"work": {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": "work-API_TOKEN"}}}
    providers, bindings = parse_providers(section, lambda p: str(tmp_path / p))
    gw = make_gateway(policy_text=_base(origins), secrets=False, bindings=bindings, providers=providers)
    gw.binary = GH
    return gw, port


def test_an_uninspected_tls_skip_endpoint_relays_the_placeholder_never_the_value(make_gateway, origins, tmp_path, pki):
    gw, port = _uninspected_gw(make_gateway, origins, tmp_path, "    tls: skip\n")
    sock, status, _ = connect(gw, f"pass.test:{port}")
    assert status == 200  # the composed rule allows the raw tunnel for the profile's binary
    with tls_over(gw, sock, "pass.test", ca=pki["ca"]) as tls:  # the origin's own certificate: not intercepted
        assert request(tls, "GET", "/t", f"pass.test:{port}", {"X-Api-Key": PH})[0] == 200
    assert _key(origins) == PH
    gw.binary = "/usr/bin/curl"  # the exception widens nothing: another binary is still denied the endpoint
    assert connect(gw, f"pass.test:{port}")[1] == 403


def test_an_uninspected_l4_endpoint_still_gets_the_value_where_the_gateway_terminates_tls(make_gateway, origins,
                                                                                          tmp_path):  # fmt: skip
    # as upstream's auto-detected TLS: a credential bound to an L4 endpoint makes the gateway intercept it
    gw, _port = _uninspected_gw(make_gateway, origins, tmp_path, "")
    assert https(gw, origins, "POST", "/t", host="pass.test", headers={"X-Api-Key": PH}, body=b"x")[0] == 200
    assert _key(origins) == SECRET_VALUE  # no L7 rules on an L4 endpoint: the POST passes too
