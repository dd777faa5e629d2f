"""Providers v2 end to end: a real ``gateway serve`` with an unprivileged parser (``gateway_user``), a real sandbox
running curl with the placeholder from its environment. The provider's root-only credential file reaches the
parser through the daemon; the value goes only to the policy endpoint that binds the provider (the same host on
another path gets the placeholder), follows a rotation of the file, and the sandbox only ever holds the
placeholder. Root only (CI runs as root)."""

from __future__ import annotations

import os

import pytest

from clawfleet.gateway.privsep import parser_user

from .support import CUSTOM_API_PROFILE, bind_provider, placeholder_loop, seen_header, use_providers
from .test_daemon import Fleetlet, until
from .test_daemon import origin as origin  # the module-scoped fixture
from .test_privsep import PARSER_USER, _parsers, _status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation tests need root; CI runs as root")


def test_a_provider_credential_reaches_only_its_bound_endpoint_through_an_unprivileged_parser(tmp_path, origin, user):
    port = origin["origin"].port
    f = Fleetlet(tmp_path, origin, user, command=placeholder_loop("API_TOKEN", "X-Api-Key: $API_TOKEN", port))
    try:
        bind_provider(tmp_path / "policy.yaml", port, "work")
        (tmp_path / "custom-api.yaml").write_text(CUSTOM_API_PROFILE)
        secret = tmp_path / "work-API_TOKEN"
        secret.write_text("first-value\n")
        secret.chmod(0o600)
        work = {"profile": "custom-api.yaml", "credentials": {"API_TOKEN": str(secret)}}
        use_providers(tmp_path, f.config, ["API_TOKEN"], {"work": work}, PARSER_USER)

        def keys(path: str) -> list[str]:
            return seen_header(origin["origin"], path, "X-Api-Key")

        f.start()
        until(lambda: "first-value" in keys("/ok/p"), 60, "the injected value at the bound endpoint")
        until(lambda: keys("/other/p"), 30, "a request outside the bound path")
        placeholder = (f.work / "placeholder.txt").read_text().strip()
        assert placeholder.endswith(":API_TOKEN") and "value" not in placeholder  # the sandbox holds no value
        assert set(keys("/other/p")) == {placeholder}  # same host, other path: the placeholder, not the value
        secret.write_text("second-value\n")
        until(lambda: "second-value" in keys("/ok/p"), 30, "the rotated value at the bound endpoint")
        assert set(keys("/ok/p")) <= {"first-value", "second-value"}, keys("/ok/p")
        (parser,) = _parsers(f.daemon.pid)
        assert _status(parser)["Uid"].split()[0] == str(parser_user(PARSER_USER)[0])
    finally:
        f.close()
