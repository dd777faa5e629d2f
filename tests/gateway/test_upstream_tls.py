"""The gateway -> origin TLS context is made on the first intercepted connection, not at the gateway's start
(loading the system trust store was ~100 ms of every `clawfleet sandbox run`): it must still verify every
origin, and a bad extra CA file must still stop the gateway at start."""

from __future__ import annotations

import json
import ssl

import pytest

from clawfleet.gateway.assembly import assemble
from clawfleet.gateway.config import GatewayConfig

from .conftest import LiveGateway
from .support import https, make_ca_and_leaf


def test_upstream_context_is_made_at_first_use_and_the_request_passes(gw, origins):
    assert gw.gateway._upstream_ctx is None  # nothing loaded at start
    status, _, body = https(gw, origins, "GET", "/ok/a")
    assert status == 200 and json.loads(body)["path"] == "/ok/a"
    ctx = gw.gateway._upstream_ctx
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert https(gw, origins, "GET", "/ok/b")[0] == 200
    assert gw.gateway._upstream_ctx is ctx  # made once


def test_origin_with_untrusted_certificate_is_refused(tmp_path, pki, origins):
    # The gateway trusts the system store and an unrelated extra CA: the origin's certificate (signed by the
    # test PKI's CA) must fail verification on the lazily made context, as it did on the eager one.
    other = tmp_path / "other-pki"
    other.mkdir()
    other_ca, _, _ = make_ca_and_leaf(other)
    gw = LiveGateway(tmp_path, {**pki, "ca": other_ca}, origins)
    seen = len(origins["https"].seen)
    try:
        status, _, body = https(gw, origins, "GET", "/ok/untrusted")
        assert status == 502
        assert "failed TLS verification" in json.loads(body)["detail"]
        assert len(origins["https"].seen) == seen  # no request reached the origin
    finally:
        gw.close()


def test_unreadable_extra_ca_file_still_fails_the_start(tmp_path, origins):
    from .support import unit_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text(unit_policy(origins))
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not a certificate\n")
    with pytest.raises(ssl.SSLError):
        assemble(GatewayConfig(policy=str(policy), sandbox="unit", extra_ca_file=str(bad)))
    with pytest.raises(FileNotFoundError):
        assemble(GatewayConfig(policy=str(policy), sandbox="unit", extra_ca_file=str(tmp_path / "missing.pem")))


def test_a_trust_store_that_cannot_be_loaded_refuses_with_a_reason(gw, origins, monkeypatch):
    # Made at first use, a broken system store shows on the connection (502, the reason logged), fail closed.
    import clawfleet.gateway.proxy as proxy

    def broken(extra_ca_file=None):
        raise ssl.SSLError("unreadable system bundle")

    monkeypatch.setattr(proxy, "upstream_context", broken)
    seen = len(origins["https"].seen)
    status, _, body = https(gw, origins, "GET", "/ok/a")
    assert status == 502 and "gateway trust store" in json.loads(body)["reason"]
    assert len(origins["https"].seen) == seen
    assert gw.gateway._upstream_ctx is None  # tried again on the next connection
