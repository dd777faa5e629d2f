"""Upstream Providers v2's gateway-minted credentials (``refresh``), SigV4 signing (``credential_signing``) and
inner-label host wildcards (``*.s3.*.amazonaws.com``), as profiles and policies load them: the upstream profiles
that use them load unchanged, each refusal is positioned (FILE:LINE:COL) and sits beside its accepted twin, the
canonical form and digest carry them, and a ``*`` after the first label matches exactly one DNS label."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfleet.policy import PolicyError, compile_policy, digest, load_text, normalize
from clawfleet.policy.profiles import load_profile_file, load_profile_text, normalize_profile, profile_digest
from clawfleet.policy.reference import host_matches

CORPUS = Path(__file__).resolve().parents[1] / "data" / "openshell-providers"

SA = """\
id: gcp-sa
credentials:
  - name: token
    env_vars: [GCP_TOKEN]
    auth_style: bearer
    refresh:
      strategy: google_service_account_jwt
      token_url: https://oauth2.googleapis.com/token
      scopes: [https://www.googleapis.com/auth/cloud-platform]
      refresh_before_seconds: 300
      max_lifetime_seconds: 3600
      material:
        - {name: client_email, required: true}
        - {name: private_key, required: true, secret: true}
"""

STS = """\
id: aws-sts
credentials:
  - name: access_key_id
    env_vars: [AWS_ACCESS_KEY_ID]
    refresh:
      strategy: aws_sts_assume_role
      additional_outputs:
        - {output: secret_access_key, credential: secret_access_key}
        - {output: session_token, credential: session_token}
      material:
        - {name: role_arn, required: true}
  - name: secret_access_key
    env_vars: [AWS_SECRET_ACCESS_KEY]
  - name: session_token
    env_vars: [AWS_SESSION_TOKEN]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_profile_text(text, "p.yaml")
    return [str(p) for p in info.value.problems]


# -- the upstream profiles --------------------------------------------------------------------------------


def test_the_four_minting_and_signing_profiles_load_unchanged():
    aws = load_profile_file(CORPUS / "aws.yaml")
    (refresh,) = [c.refresh for c in aws.credentials if c.refresh]
    assert refresh.strategy == "aws_sts_assume_role"
    assert (refresh.refresh_before_seconds, refresh.max_lifetime_seconds) == (300, 3600)
    assert refresh.additional_outputs == (
        ("secret_access_key", "secret_access_key"),
        ("session_token", "session_token"),
    )
    assert [m.name for m in refresh.material if m.secret] == ["aws_secret_access_key", "aws_session_token"]
    s3 = load_profile_file(CORPUS / "aws-s3.yaml")
    assert {(e.host, e.credential_signing, e.signing_service, e.signing_region) for e in s3.endpoints} >= {
        ("*.s3.*.amazonaws.com", "sigv4", "s3", None),
        ("s3.amazonaws.com", "sigv4", "s3", "us-east-1"),
    }
    gcp = load_profile_file(CORPUS / "google-cloud.yaml")
    assert [c.refresh.strategy for c in gcp.credentials if c.refresh] == [
        "google_service_account_jwt",
        "oauth2_refresh_token",
    ]
    vertex = load_profile_file(CORPUS / "google-vertex-ai.yaml")
    assert vertex.credentials[1].refresh.token_url == "https://oauth2.googleapis.com/token"
    assert vertex.credentials[1].refresh.scopes == ("https://www.googleapis.com/auth/cloud-platform",)


def test_the_canonical_form_carries_refresh_and_signing():
    s3 = normalize_profile(load_profile_file(CORPUS / "aws-s3.yaml"))
    refresh = next(c["refresh"] for c in s3["credentials"] if "refresh" in c)
    assert refresh["strategy"] == "aws_sts_assume_role" and refresh["max_lifetime_seconds"] == 3600
    assert refresh["additional_outputs"][0] == {"output": "secret_access_key", "credential": "secret_access_key"}
    assert all(e["credential_signing"] == "sigv4" and e["signing_service"] == "s3" for e in s3["endpoints"])


def test_the_digest_follows_what_the_refresh_means():
    base = profile_digest(load_profile_text(SA, "a.yaml"))
    # material in another order, flow vs block style: one profile
    reordered = SA.replace(
        "        - {name: client_email, required: true}\n        - {name: private_key, required: true, secret: true}\n",
        "        - name: private_key\n          secret: true\n          required: true\n"
        "        - {name: client_email, required: true}\n",
    )
    assert profile_digest(load_profile_text(reordered, "b.yaml")) == base
    for old, new in (
        ("300", "600"),
        ("cloud-platform", "cloud-platform.read-only"),
        ("oauth2.googleapis", "x.example"),
    ):
        assert profile_digest(load_profile_text(SA.replace(old, new), "c.yaml")) != base, (old, new)


# -- refresh refusals beside the accepted twin --------------------------------------------------------------


def test_the_accepted_twins_load():
    assert load_profile_text(SA, "p.yaml").credentials[0].refresh.strategy == "google_service_account_jwt"
    assert load_profile_text(STS, "p.yaml").credentials[0].refresh.additional_outputs
    # a token broker on loopback may be plain http (the material never leaves the host)
    local = SA.replace("https://oauth2.googleapis.com/token", "http://127.0.0.1:8080/token")
    assert load_profile_text(local, "p.yaml").credentials[0].refresh.token_url == "http://127.0.0.1:8080/token"


@pytest.mark.parametrize(
    ("text", "old", "new", "expected"),
    [
        (SA, "google_service_account_jwt", "magic", "p.yaml:7:17: credentials[0].refresh.strategy: unknown refresh"
         " strategy 'magic'"),
        (SA, "google_service_account_jwt", "oauth2_client_credentials", "p.yaml:7:17: credentials[0].refresh.strategy:"
         " strategy oauth2_client_credentials: clawfleet's gateway mints"),
        (SA, "https://oauth2.googleapis.com/token", "http://oauth2.googleapis.com/token", "p.yaml:8:18:"
         " credentials[0].refresh.token_url: 'http://oauth2.googleapis.com/token': the token URL must be https://"),
        (SA, "https://oauth2.googleapis.com/token", "https://u:p@oauth2.googleapis.com/token", "p.yaml:8:18:"
         " credentials[0].refresh.token_url: 'https://u:p@oauth2.googleapis.com/token' is not a token URL"),
        (SA, "      token_url: https://oauth2.googleapis.com/token\n", "", "p.yaml:7:7: credentials[0].refresh:"
         " strategy google_service_account_jwt needs token_url"),
        (SA, "        - {name: private_key, required: true, secret: true}\n", "", "p.yaml:13:9:"
         " credentials[0].refresh.material: strategy google_service_account_jwt needs material 'private_key'"),
        (SA, "private_key, required", "client_email, required", "p.yaml:14:18: credentials[0].refresh.material[1].name:"
         " material 'client_email' is declared twice"),
        (SA, "refresh_before_seconds: 300", "refresh_before_seconds: 3600", "p.yaml:10:31:"
         " credentials[0].refresh.refresh_before_seconds: refresh_before_seconds (3600) must be less than"
         " max_lifetime_seconds (3600)"),
        (SA, "max_lifetime_seconds: 3600", "max_lifetime_seconds: 86400", "p.yaml:11:29:"
         " credentials[0].refresh.max_lifetime_seconds: seconds must be between 60 and 43200"),
        (SA, "scopes: [https", "scopes: ['a b', https", "p.yaml:9:16: credentials[0].refresh.scopes[0]: 'a b' is not"
         " an OAuth scope"),
        (SA, "      material:", "      audience: x\n      material:", "p.yaml:12:7: credentials[0].refresh.audience:"
         " unknown key 'audience'"),
        (STS, "        - {output: session_token, credential: session_token}\n", "", "p.yaml:8:9:"
         " credentials[0].refresh.additional_outputs: strategy aws_sts_assume_role mints session_token too"),
        (STS, "output: session_token", "output: expiration", "p.yaml:9:20:"
         " credentials[0].refresh.additional_outputs[1].output: strategy aws_sts_assume_role mints no output"
         " 'expiration'"),
        (STS, "credential: session_token}", "credential: nobody}", "p.yaml:9:47:"
         " credentials[0].refresh.additional_outputs[1].credential: 'nobody' is not a sibling credential"),
        (STS, "    env_vars: [AWS_SESSION_TOKEN]", "    env_vars: [SESSION]", "p.yaml:9:47:"
         " credentials[0].refresh.additional_outputs[1].credential: credential 'session_token' receives"
         " session_token, so it must list AWS_SESSION_TOKEN"),
        (STS, "    env_vars: [AWS_ACCESS_KEY_ID]", "    env_vars: [AWS_KEY]", "p.yaml:4:15: credentials[0].env_vars:"
         " strategy aws_sts_assume_role mints AWS_ACCESS_KEY_ID: list it"),
        (SA, "    refresh:\n", "    token_grant: {token_endpoint: x}\n    refresh:\n", "p.yaml:6:5:"
         " credentials[0].token_grant: 'token_grant': clawfleet does not offer sandbox-side token grants"),
    ],
    ids=["strategy", "client-credentials", "http-token-url", "userinfo-url", "no-token-url", "missing-material",
         "twice-material", "before-ge-lifetime", "lifetime-too-long", "scope", "unknown-key", "missing-output",
         "unknown-output", "not-a-sibling", "sibling-key", "primary-key", "token-grant"],
)  # fmt: skip
def test_refresh_refusals_are_positioned(text, old, new, expected):
    assert old in text
    found = problems(text.replace(old, new))
    assert any(p.startswith(expected) for p in found), found


# -- credential_signing ---------------------------------------------------------------------------------------

SIGNED = """\
version: 1
network_policies:
  s3:
    binaries: [{path: /usr/bin/aws}]
    endpoints:
      - host: "*.s3.*.amazonaws.com"
        port: 443
        protocol: rest
        access: full
        credential_signing: sigv4
        signing_service: s3
"""


def test_a_signed_endpoint_loads_and_is_in_the_digest():
    policy = load_text(SIGNED, "p.yaml")
    (ep,) = policy.network_policies["s3"].endpoints
    assert (ep.credential_signing, ep.signing_service, ep.signing_region) == ("sigv4", "s3", None)
    assert normalize(policy)["network_policies"]["s3"]["endpoints"][0]["credential_signing"] == "sigv4"
    for old, new in (
        ("sigv4\n", "sigv4:no_body\n"),
        ("service: s3\n", "service: s3\n        signing_region: eu-west-1\n"),
    ):
        assert digest(load_text(SIGNED.replace(old, new), "p.yaml")) != digest(policy), new


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("sigv4\n", "sigv2\n", "p.yaml:10:29: network_policies.s3.endpoints[0].credential_signing: expected one of"
         " sigv4, sigv4:body, sigv4:no_body"),
        ("        signing_service: s3\n", "", "p.yaml:10:9: network_policies.s3.endpoints[0].credential_signing:"
         " credential_signing needs signing_service"),
        ("        credential_signing: sigv4\n", "", "p.yaml:10:9: network_policies.s3.endpoints[0].signing_service:"
         " signing_service only applies with credential_signing: sigv4"),
        ("service: s3\n", "service: S3!\n", "p.yaml:11:26: network_policies.s3.endpoints[0].signing_service: 'S3!' is"
         " not an AWS service name"),
        ("protocol: rest\n", "protocol: tcp\n", "p.yaml:10:9: network_policies.s3.endpoints[0].credential_signing:"
         " SigV4 signing needs protocol: rest"),
        ("access: full\n", "access: full\n        request_body_credential_rewrite: true\n", "p.yaml:11:9:"
         " network_policies.s3.endpoints[0].credential_signing: credential_signing and request_body_credential_rewrite"
         " cannot both be set"),
    ],
    ids=["mode", "no-service", "service-alone", "bad-service", "not-rest", "with-body-rewrite"],
)  # fmt: skip
def test_signing_refusals_are_positioned(old, new, expected):
    assert old in SIGNED
    with pytest.raises(PolicyError) as info:
        load_text(SIGNED.replace(old, new), "p.yaml")
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(expected) for p in found), found


# -- host wildcards after the first label: exactly one DNS label ----------------------------------------------

HOSTS = [
    # (pattern, host, matches)
    ("*.s3.*.amazonaws.com", "bucket.s3.us-west-2.amazonaws.com", True),
    ("*.s3.*.amazonaws.com", "bucket.s3.dualstack.us-west-2.amazonaws.com", False),  # two labels for one '*'
    ("*.s3.*.amazonaws.com", "s3.us-west-2.amazonaws.com", False),  # no bucket label
    ("*.s3.*.amazonaws.com", "bucket.s3.us-west-2.amazonaws.com.evil.example", False),
    ("*.s3.*.amazonaws.com", "bucket.s3.amazonaws.com", False),  # no region label
    ("*.s3.*.amazonaws.com", "a.b.s3.us-west-2.amazonaws.com", False),  # '*' first is one label too
    ("s3.*.amazonaws.com", "s3.eu-west-1.amazonaws.com", True),
    ("s3.*.amazonaws.com", "s3.evil.example.amazonaws.com", False),
    ("s3.*.amazonaws.com", "s3.amazonaws.com", False),
    ("s3.*.amazonaws.com", "xs3.eu-west-1.amazonaws.com", False),
    ("*.s3.dualstack.*.amazonaws.com", "b.s3.dualstack.eu-west-1.amazonaws.com", True),
    ("**.s3.*.amazonaws.com", "a.b.s3.eu-west-1.amazonaws.com", True),
    ("**.s3.*.amazonaws.com", "s3.eu-west-1.amazonaws.com", False),
]


def _policy(pattern: str):
    return load_text(
        "version: 1\nnetwork_policies:\n  r:\n    binaries: [{path: /usr/bin/aws}]\n    endpoints:\n"
        f'      - {{host: "{pattern}", port: 443}}\n',
        "p.yaml",
    )


@pytest.mark.parametrize(("pattern", "host", "matches"), HOSTS)
def test_an_inner_star_is_exactly_one_label_in_the_engine_and_the_reference(pattern, host, matches):
    engine = compile_policy(_policy(pattern))
    decision = engine.decide("/usr/bin/aws", (), host, 443).decision
    assert decision == ("allow" if matches else "deny"), (pattern, host)
    assert host_matches(pattern, host) is matches
    assert engine.decide("/usr/bin/aws", (), host, 80).decision == "deny"  # the port still decides


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("s3.*-x.amazonaws.com", "a wildcard after the first label must be the whole label"),
        ("s3.**.amazonaws.com", "a wildcard after the first label must be the whole label"),
        ("s3.?.amazonaws.com", "a wildcard after the first label must be the whole label"),
        ("s3.amazonaws.*", "the last label must be fixed"),
        ("*.*", "the last label must be fixed"),
    ],
)
def test_other_inner_wildcards_are_refused_beside_the_whole_label_star(pattern, why):
    with pytest.raises(PolicyError) as info:
        _policy(pattern)
    (problem,) = info.value.problems
    assert str(problem).startswith("p.yaml:6:16: network_policies.r.endpoints[0].host: " + why), str(problem)
    assert _policy("s3.*.amazonaws.com").network_policies["r"].endpoints[0].host == "s3.*.amazonaws.com"


def test_a_middleware_selector_takes_the_same_inner_star():
    from clawfleet.policy.middleware import matches_host

    assert matches_host(("*.s3.*.amazonaws.com",), "b.s3.eu-west-1.amazonaws.com")
    assert not matches_host(("*.s3.*.amazonaws.com",), "b.s3.dualstack.eu-west-1.amazonaws.com")
