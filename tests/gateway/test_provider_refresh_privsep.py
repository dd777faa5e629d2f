"""Gateway-minted credentials end to end: a real ``gateway serve`` with an unprivileged parser (``gateway_user``)
and a real sandbox running curl with the placeholder from its environment. The daemon (the only process that can
read the root-only service-account key) signs the JWT, exchanges it at a FAKE Google OAuth endpoint on the host's
loopback (tests/fakes/fake_google_oauth.py, which verifies the signature with the public key) and hands the token
to the parser, which puts it in ``Authorization`` at the bound endpoint only; the sandbox holds the placeholder,
and neither the sandbox nor the origin sees the key. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .support import bind_provider, load_fake, placeholder_loop, seen_header, use_providers
from .test_daemon import Fleetlet, until
from .test_daemon import origin as origin  # the module-scoped fixture
from .test_privsep import PARSER_USER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation tests need root; CI runs as root")

REPO = Path(__file__).resolve().parents[2]
EMAIL = "agent@fake-project.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"

fake_google_oauth = load_fake("fake_google_oauth")


def test_the_daemon_mints_and_the_parser_injects_only_at_the_bound_endpoint(tmp_path, origin, user):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    google = fake_google_oauth.FakeGoogleOAuth(key.public_key(), EMAIL, SCOPE, ("i", "s", "r"))
    port = origin["origin"].port
    loop = placeholder_loop("GCP_SA_ACCESS_TOKEN", "Authorization: Bearer $GCP_SA_ACCESS_TOKEN", port)
    f = Fleetlet(tmp_path, origin, user, command=loop)
    try:
        bind_provider(tmp_path / "policy.yaml", port, "gcp")
        profile = (REPO / "tests/data/openshell-providers/google-cloud.yaml").read_text()
        (tmp_path / "google-cloud.yaml").write_text(profile.replace("https://oauth2.googleapis.com/token", google.url))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        for name, data in (("gcp-email", EMAIL.encode()), ("gcp-key.pem", pem)):
            (tmp_path / name).write_bytes(data)
            (tmp_path / name).chmod(0o600)
        material = {"client_email": str(tmp_path / "gcp-email"), "private_key": str(tmp_path / "gcp-key.pem")}
        gcp = {"profile": "google-cloud.yaml", "refresh": {"GCP_SA_ACCESS_TOKEN": material}}
        use_providers(tmp_path, f.config, ["GCP_SA_ACCESS_TOKEN"], {"gcp": gcp}, PARSER_USER)

        def auth(path: str) -> list[str]:
            return seen_header(origin["origin"], path, "Authorization")

        f.start()
        until(lambda: "Bearer ya29.fake-1" in auth("/ok/p"), 60, "the minted token at the bound endpoint")
        until(lambda: auth("/other/p"), 30, "a request outside the bound path")
        placeholder = (f.work / "placeholder.txt").read_text().strip()
        assert placeholder.endswith(":GCP_SA_ACCESS_TOKEN") and "ya29" not in placeholder
        assert set(auth("/other/p")) == {f"Bearer {placeholder}"}  # same host, other path: the placeholder
        assert set(auth("/ok/p")) == {"Bearer ya29.fake-1"}  # cached: one token for every request
        assert google.issued == 1 and all(form["grant_type"].endswith("jwt-bearer") for form in google.seen)
        assert "PRIVATE KEY" not in json.dumps(origin["origin"].seen)
    finally:
        f.close()
        google.close()
