"""Profiles with gateway-minted credentials (``refresh``) or SigV4 signing load for checking, composing and
diffing, but a gateway that does not mint or sign yet refuses them at start, naming the provider and the reason,
rather than passing the sandbox's placeholder on; a static profile beside them still starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfleet.gateway.providers import parse_providers
from clawfleet.gateway.reload import require_no_signing
from clawfleet.policy import PolicyError, load_text

CORPUS = Path(__file__).resolve().parents[1] / "data" / "openshell-providers"


def _parse(profile: str, creds: dict[str, str]):
    return parse_providers({"p": {"profile": str(CORPUS / f"{profile}.yaml"), "credentials": creds}}, lambda x: x)


@pytest.mark.parametrize(
    ("profile", "why"),
    [
        ("aws", "credential 'access_key_id' of profile 'aws' is minted by the gateway (refresh strategy"
         " aws_sts_assume_role), which this gateway does not do yet"),
        ("google-cloud", "credential 'service_account_token' of profile 'google-cloud' is minted by the gateway"),
        ("google-vertex-ai", "credential 'service_account_token' of profile 'google-vertex-ai' is minted"),
        ("aws-s3", "credential 'access_key_id' of profile 'aws-s3' is minted by the gateway"),
    ],
)  # fmt: skip
def test_a_minting_profile_is_refused_by_the_gateway_by_name(profile, why):
    with pytest.raises(ValueError, match=r"^provider p: ") as info:
        _parse(profile, {})
    assert why in str(info.value)


def test_the_static_twin_still_starts():
    profiles, _ = _parse("aws-bedrock", {})
    assert "p" in profiles


SIGNED = """\
version: 1
network_policies:
  s3:
    binaries: [{path: /usr/bin/aws}]
    endpoints:
      - {host: "*.s3.*.amazonaws.com", port: 443, protocol: rest, access: full%s}
"""


def test_a_signing_policy_is_refused_by_the_gateway_beside_its_unsigned_twin():
    require_no_signing(load_text(SIGNED % "", "p.yaml"))
    with pytest.raises(PolicyError) as info:
        require_no_signing(load_text(SIGNED % ", credential_signing: sigv4, signing_service: s3", "p.yaml"))
    (problem,) = info.value.problems
    assert str(problem).startswith(
        "p.yaml: network_policies.s3.endpoints[0].credential_signing: this gateway does not re-sign SigV4 requests"
    ), str(problem)
