"""SigV4 re-signing at the gateway (upstream's ``credential_signing: sigv4``): the sandbox's AWS SDK signs with the
placeholder keys it was given; the gateway drops that signature (and its date, payload hash and placeholder
session token) and signs with the provider's real keys, which the origin verifies with the real secret (the
independent verifier of tests/fakes/fake_sts.py). Each refusal sits beside the signed request: no provider keys
reach the endpoint, a body the gateway would have to hash, a chunk-signed stream. In process: the gateway of
tests/gateway/conftest.py, the TLS echo origin on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path

import pytest

from clawfleet.gateway.providers import parse_providers, refresh_material
from clawfleet.gateway.sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, sign_headers

from .support import https, load_fake

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "openshell-providers"
REAL = ("AKIAREALKEYFORTEST01", "real/secret+key/only-the-gateway-has", "real-session-token")
PH = "openshell:resolve:env:"

fake_sts = load_fake("fake_sts")


def _policy(origins, mode: str = "sigv4", bind: bool = True) -> str:
    hp = origins["https"].port
    binding = "        credential_binding: {provider: aws}\n" if bind else ""
    return f"""\
version: 1
network_policies:
  s3:
    endpoints:
      - host: origin.test
        port: {hp}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: full
        credential_signing: {mode}
        signing_service: s3
        signing_region: eu-west-1
{binding}      - {{host: other.test, port: {hp}, allowed_ips: [127.0.0.1/32], protocol: rest, access: full}}
    binaries: [{{path: /usr/bin/curl}}]
"""


@pytest.fixture
def aws_provider(tmp_path):
    files = {}
    for var, value in zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), REAL, strict=True):
        (tmp_path / var).write_text(value + "\n")
        files[var] = str(tmp_path / var)
    return parse_providers({"aws": {"profile": str(CORPUS / "aws.yaml"), "credentials": files}}, lambda p: p)


@pytest.fixture
def signing_gw(make_gateway, origins, aws_provider):
    providers, bindings = aws_provider

    def make(**kw):
        return make_gateway(policy_text=_policy(origins, **kw), secrets=False, bindings=bindings, providers=providers)

    return make


def _sandbox_headers(origins, method: str, path: str, body: bytes, host: str = "origin.test") -> dict:
    """What an SDK in the sandbox sends: signed with the placeholders it holds as keys."""
    signed = sign_headers(method=method, host=f"{host}:{origins['https'].port}", path=path, query="", headers=[],
                          payload_hash=hashlib.sha256(body).hexdigest(), access_key=PH + "AWS_ACCESS_KEY_ID",
                          secret_key=PH + "AWS_SECRET_ACCESS_KEY", region="eu-west-1", service="s3",
                          session_token=PH + "AWS_SESSION_TOKEN")  # fmt: skip
    return dict(signed)


def _verified(origins) -> bool:
    rec = origins["https"].seen[-1]
    headers = {k.lower(): v for k, v in rec["headers"].items()}
    path, _, query = rec["path"].partition("?")
    return fake_sts.verify_sigv4(rec["method"], path, query, headers, rec["body"].encode("latin-1"), REAL[1])


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_the_gateway_re_signs_with_the_real_keys(signing_gw, origins, method):
    gw = signing_gw()
    body = b"object body" if method == "PUT" else b""
    headers = _sandbox_headers(origins, method, "/bucket/key.txt", body)
    assert https(gw, origins, method, "/bucket/key.txt", headers=headers, body=body)[0] == 200
    rec = origins["https"].seen[-1]
    seen = {k.lower(): v for k, v in rec["headers"].items()}
    assert _verified(origins)  # the origin verifies with the real secret
    assert seen["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={REAL[0]}/")
    assert "/eu-west-1/s3/aws4_request" in seen["authorization"]
    assert seen["x-amz-security-token"] == REAL[2]
    assert PH not in json.dumps(rec)  # the sandbox's signature and placeholders were replaced, not forwarded
    assert REAL[1] not in json.dumps(rec)  # the secret signs; it is never sent


def test_without_signing_the_placeholder_signature_goes_on_and_fails(signing_gw, origins):
    gw = signing_gw()
    headers = _sandbox_headers(origins, "GET", "/bucket/k", b"", host="other.test")
    assert https(gw, origins, "GET", "/bucket/k", host="other.test", headers=headers)[0] == 200
    assert not _verified(origins)  # an endpoint without credential_signing: nothing re-signed (as upstream)
    assert REAL[0] not in json.dumps(origins["https"].seen[-1])


def test_an_unsigned_payload_is_signed_as_unsigned(signing_gw, origins):
    gw = signing_gw(mode="sigv4:no_body")
    body = b"large upload"
    headers = _sandbox_headers(origins, "PUT", "/bucket/big", body)
    assert https(gw, origins, "PUT", "/bucket/big", headers=headers, body=body)[0] == 200
    seen = {k.lower(): v for k, v in origins["https"].seen[-1]["headers"].items()}
    assert seen["x-amz-content-sha256"] == UNSIGNED_PAYLOAD and _verified(origins)


def test_no_provider_keys_for_the_endpoint_is_a_503_and_nothing_is_sent(signing_gw, origins):
    gw = signing_gw(bind=False)
    before = len(origins["https"].seen)
    status, _, body = https(gw, origins, "GET", "/bucket/k", headers=_sandbox_headers(origins, "GET", "/bucket/k", b""))
    assert status == 503 and json.loads(body)["error"] == "signing_refused"
    assert len(origins["https"].seen) == before


def test_a_gateway_without_any_secrets_refuses_to_sign_instead_of_forwarding_the_placeholder(make_gateway, origins):
    gw = make_gateway(policy_text=_policy(origins, bind=False), secrets=False)  # no provider, no secret at all
    before = len(origins["https"].seen)
    status, _, body = https(gw, origins, "GET", "/bucket/k", headers=_sandbox_headers(origins, "GET", "/bucket/k", b""))
    assert status == 503 and json.loads(body)["error"] == "signing_refused"
    assert len(origins["https"].seen) == before  # the sandbox's placeholder signature was not sent on
    headers = _sandbox_headers(origins, "GET", "/bucket/k", b"", host="other.test")  # no credential_signing: passes
    assert https(gw, origins, "GET", "/bucket/k", host="other.test", headers=headers)[0] == 200


@pytest.mark.parametrize("mode", ["sigv4", "sigv4:body"])
def test_a_body_without_the_clients_hash_is_read_and_signed_with_its_hash(signing_gw, origins, mode):
    gw = signing_gw(mode=mode)
    body = b'{"some": "json body"}'
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=x", "x-amz-content-sha256": UNSIGNED_PAYLOAD}
    if mode == "sigv4":
        del headers["x-amz-content-sha256"]  # no hash from the client: the gateway hashes the body
    assert https(gw, origins, "PUT", "/bucket/k", headers=headers, body=body)[0] == 200
    rec = origins["https"].seen[-1]
    assert rec["body"] == body.decode() and _verified(origins)
    assert rec["headers"]["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()


def test_a_chunk_signed_stream_is_refused_beside_its_empty_body_twin(signing_gw, origins):
    gw = signing_gw()
    before = len(origins["https"].seen)
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=x",
               "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}  # fmt: skip
    status, _, body = https(gw, origins, "PUT", "/bucket/k", headers=headers, body=b"5;chunk-signature=x\r\nhello")
    assert status == 501 and json.loads(body)["error"] == "signing_refused"
    assert len(origins["https"].seen) == before  # nothing was sent
    assert https(gw, origins, "GET", "/bucket/k", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})[0] == 200
    assert _verified(origins)
    assert origins["https"].seen[-1]["headers"]["x-amz-content-sha256"] == EMPTY_SHA256


def test_a_body_over_the_signing_limit_is_refused(signing_gw, origins):
    gw = signing_gw(mode="sigv4:body")
    before = len(origins["https"].seen)
    try:  # the gateway answers 413 as soon as it knows, and may close while the rest is still being sent
        status = https(gw, origins, "PUT", "/bucket/k", headers={"Authorization": "x"},
                       body=b"x" * (10 * 1024 * 1024 + 1))[0]  # fmt: skip
    except (ssl.SSLError, ConnectionError):
        status = 413
    assert status == 413 and len(origins["https"].seen) == before


def test_keys_minted_by_sts_sign_the_request(make_gateway, origins, tmp_path):
    """upstream's aws profile end to end: AssumeRole (FAKE STS, signed with the source keys) mints the three keys,
    and the request is re-signed with the minted ones, session token included."""
    sts = fake_sts.FakeSts("source/secret", "arn:aws:iam::123456789012:role/fake")
    try:
        before = "      refresh_before_seconds: 300\n"
        profile = tmp_path / "aws.yaml"
        profile.write_text((CORPUS / "aws.yaml").read_text().replace(before, f"      token_url: {sts.url}\n{before}"))
        for name, value in (("role", sts.role), ("kid", "AKIASOURCE"), ("secret", "source/secret")):
            (tmp_path / name).write_text(value)
        material = {"role_arn": str(tmp_path / "role"), "aws_access_key_id": str(tmp_path / "kid"),
                    "aws_secret_access_key": str(tmp_path / "secret")}  # fmt: skip
        section = {"aws": {"profile": str(profile), "refresh": {"AWS_ACCESS_KEY_ID": material}}}
        providers, bindings = parse_providers(section, lambda p: p)
        gw = make_gateway(policy_text=_policy(origins), secrets=False, bindings=bindings, providers=providers,
                          refresh=refresh_material(section, lambda p: p))  # fmt: skip
        headers = _sandbox_headers(origins, "GET", "/bucket/k", b"")
        assert https(gw, origins, "GET", "/bucket/k", headers=headers)[0] == 200
        rec = origins["https"].seen[-1]
        seen = {k.lower(): v for k, v in rec["headers"].items()}
        assert seen["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAFAKE1/")
        assert seen["x-amz-security-token"] == "fake-session-token-1"
        path, _, query = rec["path"].partition("?")
        assert fake_sts.verify_sigv4("GET", path, query, seen, b"", "fake-minted-secret-1")
        assert "source/secret" not in json.dumps(rec) and PH not in json.dumps(rec)
    finally:
        sts.close()


@pytest.mark.parametrize("named", [False, True])
def test_a_hash_named_in_connection_is_gone_before_the_signing_decision(signing_gw, origins, named):
    """Attack: the sandbox names its own ``x-amz-content-sha256`` in ``Connection``. The decision whether to read
    and hash the body is made on the headers that are forwarded (the field dropped), so the gateway hashes the body
    and signs instead of refusing 501; allowed twin: the same request without the option keeps the client's hash."""
    gw = signing_gw()
    body = b"object body"
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=x", "x-amz-content-sha256": UNSIGNED_PAYLOAD}
    if named:
        headers["Connection"] = "x-amz-content-sha256"
    assert https(gw, origins, "PUT", "/bucket/k", headers=headers, body=body)[0] == 200
    rec = origins["https"].seen[-1]
    assert rec["body"] == body.decode() and _verified(origins)
    assert rec["headers"]["x-amz-content-sha256"] == (hashlib.sha256(body).hexdigest() if named else UNSIGNED_PAYLOAD)
