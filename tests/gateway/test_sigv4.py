"""The gateway's SigV4 signer (:mod:`clawfleet.gateway.sigv4`): AWS's published test-suite vectors, and a FAKE S3
on loopback (tests/fakes/fake_s3.py) that verifies with the real secret: a request the sandbox signed with
placeholder keys is refused there, and the same request re-signed by the gateway is accepted, with the
sandbox's own Authorization, date and session token replaced, never forwarded."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from clawfleet.gateway.sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, sign_headers

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fakes"))
_spec = importlib.util.spec_from_file_location("fake_s3", REPO / "tests" / "fakes" / "fake_s3.py")
assert _spec and _spec.loader
fake_s3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_s3)

VECTOR_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
VECTOR_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc)
REAL = ("AKIAREALKEYFORTEST01", "real/secret+key/only-the-gateway-has")
PLACEHOLDER = ("openshell:resolve:env:AWS_ACCESS_KEY_ID", "openshell:resolve:env:AWS_SECRET_ACCESS_KEY")


@pytest.mark.parametrize(
    ("name", "method", "query", "signature"),
    [
        ("get-vanilla", "GET", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("get-vanilla-query-order-key-case", "GET", "Param2=value2&Param1=value1",
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("post-vanilla", "POST", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("post-vanilla-query", "POST", "Param1=value1",
         "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ],
)  # fmt: skip
def test_aws_published_sigv4_vectors(name, method, query, signature):
    headers = sign_headers(method=method, host="example.amazonaws.com", path="/", query=query, headers=[],
                           payload_hash=EMPTY_SHA256, access_key=VECTOR_KEY[0], secret_key=VECTOR_KEY[1],
                           region="us-east-1", service="service", now=VECTOR_TIME)  # fmt: skip
    assert dict(headers)["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,"
        f" SignedHeaders=host;x-amz-date, Signature={signature}"
    ), name


@pytest.fixture
def s3():
    server = fake_s3.FakeS3(*REAL)
    yield server
    server.close()


def _sandbox_signed(s3, method: str, path: str, body: bytes) -> list[tuple[str, str]]:
    """What an SDK in the sandbox sends: signed with the placeholders it was given as keys."""
    return sign_headers(method=method, host=s3.host, path=path, query="", headers=[("x-amz-meta-note", "kept")],
                        payload_hash=hashlib.sha256(body).hexdigest(), access_key=PLACEHOLDER[0],
                        secret_key=PLACEHOLDER[1], region="us-east-1", service="s3",
                        session_token="openshell:resolve:env:AWS_SESSION_TOKEN")  # fmt: skip


def _send(s3, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> httpx.Response:
    return httpx.request(method, f"http://{s3.host}{path}", headers=headers, content=body, trust_env=False)


def test_a_request_signed_with_placeholders_is_refused_by_s3(s3):
    body = b"hello"
    assert _send(s3, "PUT", "/bucket/a.txt", _sandbox_signed(s3, "PUT", "/bucket/a.txt", body), body).status_code == 403


@pytest.mark.parametrize("payload", ["signed", UNSIGNED_PAYLOAD])
def test_the_gateway_re_signs_it_with_the_real_keys(s3, payload):
    body = b"hello, bucket"
    sandbox = _sandbox_signed(s3, "PUT", "/bucket/a%20b.txt", body)
    payload_hash = hashlib.sha256(body).hexdigest() if payload == "signed" else UNSIGNED_PAYLOAD
    resigned = sign_headers(method="PUT", host=s3.host, path="/bucket/a%20b.txt", query="", headers=sandbox,
                            payload_hash=payload_hash, access_key=REAL[0], secret_key=REAL[1],
                            region="us-east-1", service="s3")  # fmt: skip
    assert _send(s3, "PUT", "/bucket/a%20b.txt", resigned, body).status_code == 200
    (seen,) = s3.seen
    assert seen["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={REAL[0]}/")
    assert seen["x-amz-meta-note"] == "kept" and "x-amz-meta-note" in seen["authorization"]
    # the sandbox's signature, date and placeholder session token were replaced, not forwarded beside
    assert "openshell:resolve" not in str(seen) and REAL[1] not in str(seen)
    assert [n for n, _ in resigned].count("authorization") == 1
    get = sign_headers(method="GET", host=s3.host, path="/bucket/a%20b.txt", query="", headers=[],
                       payload_hash=EMPTY_SHA256, access_key=REAL[0], secret_key=REAL[1], region="us-east-1",
                       service="s3")  # fmt: skip
    assert _send(s3, "GET", "/bucket/a%20b.txt", get).content == body


def test_a_body_changed_after_signing_is_refused(s3):
    body = b"original"
    headers = sign_headers(method="PUT", host=s3.host, path="/bucket/x", query="", headers=[],
                           payload_hash=hashlib.sha256(body).hexdigest(), access_key=REAL[0], secret_key=REAL[1],
                           region="us-east-1", service="s3")  # fmt: skip
    assert _send(s3, "PUT", "/bucket/x", headers, b"tampered").status_code == 403
    assert _send(s3, "PUT", "/bucket/x", headers, body).status_code == 200


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("bucket.s3.eu-west-1.amazonaws.com", "eu-west-1"),
        ("s3.dualstack.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
        ("bedrock-runtime.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("bucket.s3.amazonaws.com", "us-east-1"),  # the global endpoint
        ("s3.amazonaws.com", "us-east-1"),
    ],
)
def test_the_signing_region_comes_from_the_host_unless_the_endpoint_names_it(host, region):
    from clawfleet.gateway.resign import region_of
    from clawfleet.policy.model import Endpoint

    assert region_of(host, Endpoint(host="x.com", ports=(443,))) == region
    assert region_of(host, Endpoint(host="x.com", ports=(443,), signing_region="eu-central-1")) == "eu-central-1"
