"""Who is calling: two sandboxes behind their own gateways, real SDKs, the real router.

Attacks: a sandbox writes its own identity headers (the gateway replaces them); a client that reaches the
router without the gateway (any host process) forges them, with or without a guessed proof, or replays a
proof it saw; a sandbox points the gateway at another destination to obtain a proof. Next to each: the
allowed action (a sandbox's own calls) still works and is attributed to it.
"""

from __future__ import annotations

import pickle
import time

import httpx
import openai
import pytest

from clawfleet.router.config import ConfigError, parse_config
from clawfleet.router.identity import HEADER_PROOF, HEADER_SANDBOX, IdentityVerifier, load_key, sign

from .conftest import router_config_dict, start_router
from .sandbox_gateways import SandboxGateway, write_identity_key

pytestmark = pytest.mark.usefixtures("clean_fakes")
GENERAL = "Explain the difference between a process and a thread in two sentences."
SENSITIVE = "Please email the invoice to maria.garcia@example.org today."


@pytest.fixture
def setup(fakes, tmp_path):
    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file), "unknown": "allow"}
    router = start_router(cfg)
    other_port = fakes["servers"]["backup"].port
    alpha = SandboxGateway(tmp_path, "alpha", router.server.port, key_file, other_port=other_port)
    beta = SandboxGateway(tmp_path, "beta", router.server.port, key_file)
    yield {"router": router, "alpha": alpha, "beta": beta, "other_port": other_port}
    alpha.close()
    beta.close()
    router.stop()


def _wait_decisions(router, n: int) -> list[dict]:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        found = [d for d in router.decisions() if d.get("event") == "decision"]
        if len(found) >= n:
            return found
        time.sleep(0.02)
    return [d for d in router.decisions() if d.get("event") == "decision"]


def test_each_sandbox_is_attributed(setup, clean_fakes):
    alpha, beta, router = setup["alpha"], setup["beta"], setup["router"]
    r1 = alpha.openai().chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    assert r1.choices[0].message.content == "You said: " + GENERAL
    stream = beta.anthropic().messages.create(
        model="default", max_tokens=50, messages=[{"role": "user", "content": SENSITIVE}], stream=True
    )
    text = "".join(ev.delta.text for ev in stream if ev.type == "content_block_delta")
    assert text == "You said: " + SENSITIVE
    d1, d2 = _wait_decisions(router, 2)
    assert (d1["sandbox"], d1["identity"], d1["action"]) == ("alpha", "verified", "cloud")
    assert (d2["sandbox"], d2["identity"], d2["action"]) == ("beta", "verified", "local")
    assert d1["tokens_in"] == 10 and d1["tokens_out"] == 5  # the provider's usage
    metrics = httpx.get(router.metrics_url).text
    assert 'clawfleet_router_sandbox_requests_total{sandbox="alpha",status="200"} 1.0' in metrics
    assert 'clawfleet_router_sandbox_requests_total{sandbox="beta",status="200"} 1.0' in metrics
    assert (
        'clawfleet_router_tokens_total{direction="input",model="gpt-cloud",provider="openai",sandbox="alpha"} 10.0'
        in metrics
    )
    # the proof never reaches a provider
    for state in clean_fakes.values():
        for got in state.received:
            assert HEADER_PROOF not in got.headers and HEADER_SANDBOX not in got.headers


def test_sandbox_cannot_forge_its_identity(setup, clean_fakes):
    """alpha claims to be beta, with a proof signed by a key it guessed and one copied from nowhere."""
    alpha, router = setup["alpha"], setup["router"]
    forged = sign(b"g" * 40, "beta")
    client = alpha.openai(default_headers={HEADER_SANDBOX: "beta", HEADER_PROOF: forged})
    client.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    [d] = _wait_decisions(router, 1)
    assert (d["sandbox"], d["identity"]) == ("alpha", "verified")


def test_sandbox_cannot_remove_its_identity(setup, clean_fakes):
    """Empty identity headers from the sandbox do not make it anonymous."""
    alpha, router = setup["alpha"], setup["router"]
    client = alpha.openai(default_headers={HEADER_SANDBOX: "", HEADER_PROOF: ""})
    client.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    [d] = _wait_decisions(router, 1)
    assert d["sandbox"] == "alpha"


def test_client_without_the_key_is_unknown(setup, clean_fakes):
    """A host process talking to the router's port directly, claiming to be alpha."""
    router = setup["router"]
    for proof in ("", sign(b"x" * 40, "alpha"), "v1.1.aaaaaaaaaaaaaaaa." + "0" * 64):
        client = openai.OpenAI(
            base_url=router.url + "/v1",
            api_key="x",
            max_retries=0,
            default_headers={HEADER_SANDBOX: "alpha", HEADER_PROOF: proof},
        )
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
    decisions = _wait_decisions(router, 3)
    assert [d["sandbox"] for d in decisions] == ["unknown"] * 3
    assert [d["identity"] for d in decisions] == ["malformed", "bad_signature", "stale"]


def test_refuse_unidentified_callers(fakes, tmp_path, clean_fakes):
    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file), "unknown": "refuse"}
    router = start_router(cfg)
    gw = SandboxGateway(tmp_path, "alpha", router.server.port, key_file)
    try:
        direct = openai.OpenAI(
            base_url=router.url + "/v1", api_key="x", max_retries=0, default_headers={HEADER_SANDBOX: "alpha"}
        )
        with pytest.raises(openai.AuthenticationError) as exc:
            direct.chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
        assert exc.value.body["code"] == "identity_required"
        assert clean_fakes["cloud"].received == []
        ok = gw.openai().chat.completions.create(model="default", messages=[{"role": "user", "content": GENERAL}])
        assert ok.choices[0].message.content == "You said: " + GENERAL
    finally:
        gw.close()
        router.stop()


def test_proof_is_sent_only_to_the_router(setup, clean_fakes):
    """A sandbox that sends a request through the gateway to another host gets no proof to replay."""
    with setup["alpha"].http() as client:
        resp = client.post(
            f"http://other.test:{setup['other_port']}/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
            headers={HEADER_SANDBOX: "alpha", HEADER_PROOF: "v1.1.aaaaaaaaaaaaaaaa." + "0" * 64},
        )
    assert resp.status_code == 200
    [got] = clean_fakes["backup"].received
    assert HEADER_PROOF not in got.headers and HEADER_SANDBOX not in got.headers


def test_replayed_and_stale_proofs_are_refused(tmp_path):
    key = write_identity_key(tmp_path / "k")
    now = [1_000_000.0]
    verifier = IdentityVerifier(key, max_skew_s=30, clock=lambda: now[0])
    proof = sign(key, "alpha", now=now[0])
    assert verifier.verify(["alpha"], [proof]) == ("alpha", None)
    assert verifier.verify(["alpha"], [proof]) == (None, "replayed")
    assert verifier.verify(["beta"], [sign(key, "alpha", now=now[0])]) == (None, "bad_signature")
    assert verifier.verify(["alpha"], [sign(key, "alpha", now=now[0] - 31)]) == (None, "stale")
    assert verifier.verify(["alpha", "alpha"], [proof, proof]) == (None, "malformed")
    assert verifier.verify([], []) == (None, "missing")


def test_a_sandboxs_signer_holds_only_its_own_key_and_cannot_vouch_for_another(tmp_path):
    """What the code serving one sandbox's traffic holds (its RouterIdentity, also as pickled for another process)
    signs for its own sandbox and for no other; the host key is not in it."""
    from clawfleet.gateway.router_identity import RouterIdentity
    from clawfleet.router.identity import sign_as

    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    key = load_key(key_file)
    env = {"CLAWFLEET_ROUTER_IDENTITY_KEY": str(key_file), "CLAWFLEET_ROUTER_ENDPOINTS": "inference.local:8484"}
    alpha = RouterIdentity.from_environment("alpha", env)
    held = alpha._key
    assert held is not None and held != key and key not in pickle.dumps(alpha)
    verifier = IdentityVerifier(key)
    # allowed: alpha's own proof, as the gateway adds it
    headers = dict(alpha.apply("inference.local", 8484, []))
    assert verifier.verify([headers[HEADER_SANDBOX.encode()].decode()], [headers[HEADER_PROOF.encode()].decode()]) == (
        "alpha", None)  # fmt: skip
    # attack: alpha's key signing in beta's name
    assert verifier.verify(["beta"], [sign_as(held, "beta")]) == (None, "bad_signature")


def test_identity_key_must_be_private(fakes, tmp_path):
    key_file = tmp_path / "identity.key"
    write_identity_key(key_file)
    key_file.chmod(0o644)
    cfg = router_config_dict(fakes, tmp_path)
    cfg["identity"] = {"key_file": str(key_file)}
    with pytest.raises(ConfigError, match="readable or writable by others"):
        parse_config(cfg, source="router.yaml")
    key_file.chmod(0o600)
    assert load_key(key_file)
    assert parse_config(cfg, source="router.yaml").identity.configured
