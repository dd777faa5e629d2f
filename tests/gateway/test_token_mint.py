"""Gateway-minted provider credentials (:mod:`clawfleet.gateway.token_mint`) against FAKE token endpoints on
loopback: a Google OAuth endpoint that verifies the service account JWT with the test key's public half
(tests/fakes/fake_google_oauth.py), the same endpoint's refresh-token grant, and an STS AssumeRole that verifies
the SigV4 signature with the source secret (tests/fakes/fake_sts.py). Each attack (endpoint down, garbage, a
redirect, an oversized or entity-laden answer, a wrong key) sits beside the allowed mint, and the material never
appears in an error."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clawfleet.gateway.token_mint import MintError, minters_for
from clawfleet.policy.profiles import load_profile_file, load_profile_text

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "openshell-providers"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EMAIL = "agent@fake-project.iam.gserviceaccount.com"
CLIENT = ("fake-client-id", "fake-client-secret", "fake-refresh-token")
SOURCE = ("AKIAFAKESOURCE", "fake/source/secret+key")
ROLE = "arn:aws:iam::123456789012:role/fake"


def _fake(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "fakes" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fake_google_oauth, fake_sts = _fake("fake_google_oauth"), _fake("fake_sts")


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key():
    return _key()


@pytest.fixture
def google(key):
    server = fake_google_oauth.FakeGoogleOAuth(key.public_key(), EMAIL, SCOPE, CLIENT)
    yield server
    server.close()


@pytest.fixture
def sts():
    server = fake_sts.FakeSts(SOURCE[1], ROLE)
    yield server
    server.close()


def _files(tmp_path: Path, **values: str) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
        out[name] = str(tmp_path / name)
    return out


def _google_profile(url: str):
    # google-cloud.yaml as upstream ships it, pointed at the fake (a loopback token broker may be plain http)
    text = (CORPUS / "google-cloud.yaml").read_text().replace("https://oauth2.googleapis.com/token", url)
    return load_profile_text(text, "google-cloud.yaml")


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _sa_minter(google, key, tmp_path, clock=None):
    material = _files(tmp_path, client_email=EMAIL, private_key=_pem(key))
    kwargs = {"clock": clock} if clock else {}
    return minters_for("gcp", _google_profile(google.url), {"GCP_SA_ACCESS_TOKEN": material}, **kwargs)[
        "GCP_SA_ACCESS_TOKEN"
    ]


# -- google_service_account_jwt -----------------------------------------------------------------------------


def test_a_service_account_jwt_verified_by_the_public_key_mints_a_token(google, key, tmp_path):
    minter = _sa_minter(google, key, tmp_path)
    assert asyncio.run(minter.values()) == {"GCP_SA_ACCESS_TOKEN": "ya29.fake-1"}
    (form,) = google.seen
    assert set(form) == {"grant_type", "assertion"}  # the private key itself never leaves the gateway
    assert "PRIVATE KEY" not in json.dumps(google.seen)


def test_a_jwt_signed_by_another_key_is_refused_with_502_naming_the_provider(google, tmp_path):
    minter = _sa_minter(google, _key(), tmp_path)  # the fake verifies with the test key's public half
    with pytest.raises(MintError) as info:
        asyncio.run(minter.values())
    assert info.value.status == 502 and info.value.provider == "gcp"
    assert str(info.value) == (
        "provider gcp: cannot mint 'service_account_token': the token endpoint http://127.0.0.1:"
        f"{google.server_address[1]} answered HTTP 400 (invalid_grant)"
    )


def test_the_token_is_cached_and_minted_again_refresh_before_seconds_before_expiry(google, key, tmp_path):
    clock = Clock()
    minter = _sa_minter(google, key, tmp_path, clock)
    assert asyncio.run(minter.values())["GCP_SA_ACCESS_TOKEN"] == "ya29.fake-1"
    clock.now += 3600 - 300 - 1  # one second before the refresh window (refresh_before_seconds: 300)
    assert asyncio.run(minter.values())["GCP_SA_ACCESS_TOKEN"] == "ya29.fake-1"
    assert len(google.seen) == 1
    clock.now += 1
    assert asyncio.run(minter.values())["GCP_SA_ACCESS_TOKEN"] == "ya29.fake-2"
    assert len(google.seen) == 2


def test_concurrent_requests_share_one_mint(google, key, tmp_path):
    minter = _sa_minter(google, key, tmp_path)

    async def many():
        return await asyncio.gather(*(minter.values() for _ in range(20)))

    assert {v["GCP_SA_ACCESS_TOKEN"] for v in asyncio.run(many())} == {"ya29.fake-1"}
    assert len(google.seen) == 1


def test_an_unexpired_token_outlives_a_failed_refresh_but_not_its_expiry(google, key, tmp_path):
    clock = Clock()
    minter = _sa_minter(google, key, tmp_path, clock)
    asyncio.run(minter.values())
    google.mode = "garbage"
    clock.now += 3600 - 100  # inside the refresh window, token still valid
    assert asyncio.run(minter.values())["GCP_SA_ACCESS_TOKEN"] == "ya29.fake-1"
    clock.now += 100  # expired
    with pytest.raises(MintError, match=r"not an OAuth 2\.0 token") as info:
        asyncio.run(minter.values())
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("garbage", "answered something that is not an OAuth 2.0 token"),
        ("huge", "answer is over 65536 bytes"),
        ("redirect", "answered HTTP 302"),  # not followed: the material goes to token_url only
    ],
)
def test_a_misbehaving_token_endpoint_is_a_502_never_a_token(google, key, tmp_path, mode, why):
    google.mode = mode
    with pytest.raises(MintError, match=why) as info:
        asyncio.run(_sa_minter(google, key, tmp_path).values())
    assert info.value.status == 502
    assert "PRIVATE" not in str(info.value) and "assertion" not in str(info.value)


def test_a_token_endpoint_that_is_down_is_a_503(google, key, tmp_path):
    minter = _sa_minter(google, key, tmp_path)
    google.close()
    with pytest.raises(MintError, match="cannot be reached") as info:
        asyncio.run(minter.values())
    assert info.value.status == 503 and "gcp" in str(info.value)


# -- oauth2_refresh_token ----------------------------------------------------------------------------------


def _adc(google, tmp_path, secret=CLIENT[1]):
    material = _files(tmp_path, client_id=CLIENT[0], client_secret=secret, refresh_token=CLIENT[2])
    return minters_for("gcp", _google_profile(google.url), {"GCP_ADC_ACCESS_TOKEN": material})["GCP_ADC_ACCESS_TOKEN"]


def test_a_refresh_token_grant_mints_a_token(google, tmp_path):
    assert asyncio.run(_adc(google, tmp_path).values()) == {"GCP_ADC_ACCESS_TOKEN": "ya29.fake-1"}
    assert google.seen == [dict(zip(("client_id", "client_secret", "refresh_token"), CLIENT, strict=True),
                                grant_type="refresh_token")]  # fmt: skip


def test_a_wrong_client_secret_is_refused_and_not_quoted(google, tmp_path):
    with pytest.raises(MintError) as info:
        asyncio.run(_adc(google, tmp_path, secret="wrong-secret-value").values())
    # the fake's error_description quotes the form; the gateway keeps only the error code
    assert "wrong-secret-value" not in str(info.value) and "(invalid_grant)" in str(info.value)


def test_material_must_be_given_and_known(google, tmp_path):
    with pytest.raises(ValueError, match=r"needs refresh material client_secret, refresh_token"):
        minters_for("gcp", _google_profile(google.url), {"GCP_ADC_ACCESS_TOKEN": _files(tmp_path, client_id="x")})
    with pytest.raises(ValueError, match="is not a refreshed credential"):
        minters_for("gcp", _google_profile(google.url), {"NOPE": {}})


# -- aws_sts_assume_role -----------------------------------------------------------------------------------


def _sts_minter(sts, tmp_path, secret=SOURCE[1]):
    before = "      refresh_before_seconds: 300\n"
    text = (CORPUS / "aws.yaml").read_text().replace(before, f"      token_url: {sts.url}\n{before}")
    profile = load_profile_text(text, "aws.yaml")
    material = _files(tmp_path, role_arn=ROLE, aws_access_key_id=SOURCE[0], aws_secret_access_key=secret,
                      aws_region="eu-west-1")  # fmt: skip
    return minters_for("aws", profile, {"AWS_ACCESS_KEY_ID": material})["AWS_ACCESS_KEY_ID"]


def test_assume_role_signed_with_the_source_keys_mints_all_three_credentials(sts, tmp_path):
    values = asyncio.run(_sts_minter(sts, tmp_path).values())
    assert values == {"AWS_ACCESS_KEY_ID": "ASIAFAKE1", "AWS_SECRET_ACCESS_KEY": "fake-minted-secret-1",
                      "AWS_SESSION_TOKEN": "fake-session-token-1"}  # fmt: skip
    ((form, headers),) = sts.seen
    assert form["Action"] == "AssumeRole" and form["RoleArn"] == ROLE and form["DurationSeconds"] == "3600"
    assert SOURCE[1] not in json.dumps([form, headers])  # the source secret signs; it is never sent
    assert "/eu-west-1/sts/aws4_request" in headers["authorization"]


def test_assume_role_signed_with_a_wrong_secret_is_refused(sts, tmp_path):
    with pytest.raises(MintError, match="answered HTTP 403") as info:
        asyncio.run(_sts_minter(sts, tmp_path, secret="not-the-secret").values())
    assert info.value.provider == "aws" and "not-the-secret" not in str(info.value)


@pytest.mark.parametrize("mode", ["garbage", "entity"])
def test_an_sts_answer_without_credentials_is_a_502(sts, tmp_path, mode):
    sts.mode = mode
    with pytest.raises(MintError, match="not AssumeRole credentials") as info:
        asyncio.run(_sts_minter(sts, tmp_path).values())
    assert info.value.status == 502


def test_assume_role_without_source_keys_is_refused_before_any_call(sts, tmp_path):
    profile = load_profile_file(CORPUS / "aws.yaml")
    minter = minters_for("aws", profile, {"AWS_ACCESS_KEY_ID": _files(tmp_path, role_arn=ROLE)})["AWS_ACCESS_KEY_ID"]
    with pytest.raises(MintError, match="does not use ambient AWS credentials"):
        asyncio.run(minter.values())
    assert sts.seen == []


def test_after_a_failure_the_endpoint_is_not_called_again_for_a_few_seconds(google, key, tmp_path):
    clock = Clock()
    minter = _sa_minter(google, key, tmp_path, clock)
    google.mode = "garbage"
    for _ in range(3):  # a hanging or broken endpoint must not be called (and waited for) by every request
        with pytest.raises(MintError):
            asyncio.run(minter.values())
    assert len(google.seen) == 1
    google.mode = "ok"
    clock.now += 5
    assert asyncio.run(minter.values())["GCP_SA_ACCESS_TOKEN"] == "ya29.fake-1"
    assert len(google.seen) == 2


class _Handover:
    """What MintDriver.refresh hands to the secrets (the real Secrets' two methods, recorded)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def set_minted(self, values) -> None:
        self.calls.append(("set", dict(values)))

    def mint_failed(self, names, status, message) -> None:
        self.calls.append(("failed", tuple(names), status))


def test_the_driver_hands_a_value_over_once_until_it_is_minted_again(google, key, tmp_path):
    from clawfleet.gateway.token_mint import MintDriver

    clock = Clock()
    material = _files(tmp_path, client_email=EMAIL, private_key=_pem(key))
    driver = MintDriver({"gcp": _google_profile(google.url)}, {"gcp": {"GCP_SA_ACCESS_TOKEN": material}}, clock=clock)
    secrets = _Handover()
    for _ in range(3):  # a request each: the cached token is handed over once
        asyncio.run(driver.refresh(secrets))
    assert secrets.calls == [("set", {"GCP_SA_ACCESS_TOKEN": "ya29.fake-1"})]
    other = _Handover()  # another Secrets (a reload) gets the value although it is not new
    asyncio.run(driver.refresh(other))
    assert other.calls == [("set", {"GCP_SA_ACCESS_TOKEN": "ya29.fake-1"})]
    clock.now += 3600  # expired and the endpoint fails: the placeholder must be refused, not the old token kept
    google.mode = "garbage"
    asyncio.run(driver.refresh(secrets))
    assert secrets.calls[-1] == ("failed", ("GCP_SA_ACCESS_TOKEN",), 502)
    google.mode = "ok"
    clock.now += 60  # past the few seconds a failure is remembered
    asyncio.run(driver.refresh(secrets))
    asyncio.run(driver.refresh(secrets))
    assert secrets.calls[-1][0] == "set" and secrets.calls[-2][0] == "failed"
