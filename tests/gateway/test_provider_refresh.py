"""Gateway-minted provider credentials at the gateway (upstream Providers v2 ``refresh``): the gateway, never the
sandbox, mints the token from material files configured beside the provider (``providers.<name>.refresh``),
caches it and puts it where the profile says; when it cannot mint, a request carrying the placeholder is refused
with a 502/503 naming the provider and goes nowhere. In process: the gateway of tests/gateway/conftest.py, the
echo origins on 127.0.0.1, FAKE Google OAuth on loopback (tests/fakes/fake_google_oauth.py). SigV4 signing:
tests/gateway/test_provider_signing.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clawfleet.gateway.providers import parse_providers, refresh_material

from .support import https, load_fake, request

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "openshell-providers"
EMAIL = "agent@fake-project.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PH = "openshell:resolve:env:GCP_SA_ACCESS_TOKEN"

fake_google_oauth = load_fake("fake_google_oauth")


def _parse(profile: str, **spec):
    return parse_providers({"p": {"profile": str(CORPUS / f"{profile}.yaml"), **spec}}, lambda x: x)


# -- configuration ------------------------------------------------------------------------------------------


def test_aws_s3_loads_with_minted_keys():
    _, bindings = _parse("aws-s3", refresh={"AWS_ACCESS_KEY_ID": {"role_arn": "/r"}})
    assert {b.name for b in bindings} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_a_required_minted_credential_needs_a_file_or_its_material():
    with pytest.raises(
        ValueError, match="is required: give a file for one of AWS_ACCESS_KEY_ID or its refresh material"
    ):
        _parse("aws")
    _, bindings = _parse("aws", refresh={"AWS_ACCESS_KEY_ID": {"role_arn": "/r"}})
    # one AssumeRole fills all three, each where its own credential entry says
    assert {(b.name, b.minted_by, b.file) for b in bindings} == {
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", ""),
        ("AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", ""),
    }


@pytest.mark.parametrize(
    ("refresh", "why"),
    [
        ({"GCP_SA_ACCESS_TOKEN": {"client_email": "/e"}}, "needs refresh material private_key"),
        ({"GCP_SA_ACCESS_TOKEN": {"client_email": "/e", "private_key": "/k", "pin": "/x"}}, "pin is not refresh"),
        ({"GOOGLE_TOKEN": {}}, "GOOGLE_TOKEN is not a refreshed credential"),
        ({"GCP_SA_ACCESS_TOKEN": "/file"}, "'refresh' maps a minted credential's environment variable"),
    ],
)
def test_refresh_settings_are_checked_beside_the_accepted_twin(refresh, why):
    with pytest.raises(ValueError, match=why):
        _parse("google-cloud", refresh=refresh)
    _parse("google-cloud", refresh={"GCP_SA_ACCESS_TOKEN": {"client_email": "/e", "private_key": "/k"}})


def test_a_minted_name_cannot_also_have_a_file():
    with pytest.raises(ValueError, match="GCP_SA_ACCESS_TOKEN is also bound by provider p"):
        _parse("google-cloud", credentials={"GCP_SA_ACCESS_TOKEN": "/f"},
               refresh={"GCP_SA_ACCESS_TOKEN": {"client_email": "/e", "private_key": "/k"}})  # fmt: skip


# -- at the gateway -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def google(key):
    server = fake_google_oauth.FakeGoogleOAuth(key.public_key(), EMAIL, SCOPE, ("i", "s", "r"))
    yield server
    server.close()


def _policy(origins) -> str:
    hp = origins["https"].port
    return f"""\
version: 1
network_policies:
  gcp:
    endpoints:
      - host: origin.test
        port: {hp}
        path: /gcp/**
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
        credential_binding: {{provider: gcp}}
      - {{host: other.test, port: {hp}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
      - {{host: origin.test, port: {hp}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
    binaries: [{{path: /usr/bin/curl}}]
"""


@pytest.fixture
def minting_gw(make_gateway, origins, google, key, tmp_path):
    profile = tmp_path / "google-cloud.yaml"
    profile.write_text((CORPUS / "google-cloud.yaml").read_text().replace("https://oauth2.googleapis.com/token",
                                                                          google.url))  # fmt: skip
    (tmp_path / "email").write_text(EMAIL)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    (tmp_path / "key.pem").write_bytes(pem)
    section = {
        "gcp": {
            "profile": "google-cloud.yaml",
            "refresh": {"GCP_SA_ACCESS_TOKEN": {"client_email": "email", "private_key": "key.pem"}},
        }
    }
    resolve = lambda p: str(tmp_path / p)  # noqa: E731
    providers, bindings = parse_providers(section, resolve)
    return make_gateway(policy_text=_policy(origins), secrets=False, bindings=bindings, providers=providers,
                        refresh=refresh_material(section, resolve))  # fmt: skip


def _seen(origins) -> dict:
    rec = origins["https"].seen[-1]
    return {"path": rec["path"], **{k.lower(): v for k, v in rec["headers"].items()}}


def test_the_gateway_mints_the_token_and_puts_it_in_authorization(minting_gw, origins, google):
    assert https(minting_gw, origins, "GET", "/gcp/v1/x", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    assert _seen(origins)["authorization"] == "Bearer ya29.fake-1"
    assert https(minting_gw, origins, "GET", "/gcp/v1/y", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    assert _seen(origins)["authorization"] == "Bearer ya29.fake-1"
    assert len(google.seen) == 1  # cached: one mint for both requests
    assert "PRIVATE KEY" not in json.dumps(origins["https"].seen)


def test_another_host_or_path_gets_the_placeholder_not_the_token(minting_gw, origins, google):
    assert (
        https(minting_gw, origins, "GET", "/gcp/x", host="other.test", headers={"Authorization": f"Bearer {PH}"})[0]
        == 200
    )
    assert _seen(origins)["authorization"] == f"Bearer {PH}"
    assert https(minting_gw, origins, "GET", "/api/x", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    assert _seen(origins)["authorization"] == f"Bearer {PH}"


@pytest.mark.parametrize(("mode", "status", "why"), [("down", 503, "cannot be reached"),
                                                    ("garbage", 502, "not an OAuth 2.0 token")])  # fmt: skip
def test_when_the_gateway_cannot_mint_the_request_is_refused_naming_the_provider(minting_gw, origins, google, mode,
                                                                                 status, why):  # fmt: skip
    if mode == "down":
        google.close()
    else:
        google.mode = mode
    before = len(origins["https"].seen)
    got, _, body = https(minting_gw, origins, "GET", "/gcp/v1/x", headers={"Authorization": f"Bearer {PH}"})
    assert got == status
    detail = json.loads(body)
    assert detail["error"] == "credential_unavailable"
    assert (
        detail["detail"].startswith("provider gcp: cannot mint 'service_account_token': ") and why in detail["detail"]
    )
    assert len(origins["https"].seen) == before  # nothing reached the origin, placeholder or otherwise
    # a request without the placeholder still goes through
    assert https(minting_gw, origins, "GET", "/gcp/v1/plain")[0] == 200


def test_the_token_endpoint_is_the_gateways_egress_not_the_sandboxs(minting_gw, origins, google):
    """The gateway calls the token endpoint itself; a sandbox asking the gateway for it is denied like any host
    its policy does not list, and the endpoint never hears from it."""
    port = google.server_address[1]
    with socket.create_connection(("127.0.0.1", minting_gw.port), timeout=10) as sock:
        status = request(sock, "POST", f"http://127.0.0.1:{port}/token", f"127.0.0.1:{port}")[0]
    assert status == 403 and google.seen == []
    # the gateway's own mint still works
    assert https(minting_gw, origins, "GET", "/gcp/v1/x", headers={"Authorization": f"Bearer {PH}"})[0] == 200
    assert len(google.seen) == 1
