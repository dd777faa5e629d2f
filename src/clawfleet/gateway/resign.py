"""SigV4 re-signing of a request to a ``credential_signing`` endpoint (upstream's proxy-side AWS signing): the
sandbox signed with placeholder keys; the gateway drops that signature and signs with the provider's real keys
(:mod:`.sigv4`). The payload hash, as upstream's modes say: ``sigv4:no_body`` ``UNSIGNED-PAYLOAD``; ``sigv4`` the
client's own ``x-amz-content-sha256`` when it is a hex hash or ``UNSIGNED-PAYLOAD`` (the body is the sandbox's
and goes on unchanged, so the hash it computed is the one to sign), else the hash of an empty body when there is
none, else the hash of the body, which the gateway then reads (``sigv4:body`` always; at most
:data:`MAX_SIGNED_BODY`, as upstream); chunk-signed streaming payloads are refused (501, as upstream)."""

from __future__ import annotations

import hashlib
import re

from clawfleet.policy.model import Endpoint

from .sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, sign_headers

__all__ = ["MAX_SIGNED_BODY", "ResignRefused", "needs_body", "region_of", "resign"]

_HEX64 = re.compile(rb"[0-9a-f]{64}")
# a region label in an AWS host name: us-east-1, eu-west-3, us-gov-west-1, cn-north-1, ap-southeast-2
_REGION = re.compile(r"(?:^|\.)((?:[a-z]{2}-gov|[a-z]{2})-[a-z]+-[0-9])\.")


class ResignRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def region_of(host: str, endpoint: Endpoint) -> str:
    """``signing_region``, else the region label of the host name, else us-east-1 (S3's global endpoint)."""
    if endpoint.signing_region:
        return endpoint.signing_region
    m = _REGION.search(host)
    return m.group(1) if m else "us-east-1"


#: The largest body the gateway buffers to hash for a signature (upstream's ``sigv4:body`` limit).
MAX_SIGNED_BODY = 10 * 1024 * 1024


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bool]:
    """(the client's ``x-amz-content-sha256`` or None, whether the request has a body), in one pass."""
    given = length = None
    chunked = False
    for k, v in headers:
        if k == b"x-amz-content-sha256" and given is None:
            given = v.strip()
        elif k == b"content-length" and length is None:
            length = v.strip()
        elif k == b"transfer-encoding":
            chunked = True
    return given, chunked or length not in (None, b"0")


def needs_body(endpoint: Endpoint, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether signing this request needs the hash of a body the gateway must read first: ``sigv4:body``, or
    ``sigv4`` when the client sent no usable ``x-amz-content-sha256``, and the request has a body."""
    mode = endpoint.credential_signing
    given, has_body = _framing(headers)
    if not has_body:
        return False
    if given is not None and given.startswith(b"STREAMING-"):
        return False  # refused or sent unsigned below, never buffered
    if mode == "sigv4:body":
        return True
    return mode == "sigv4" and not (given is not None and (_HEX64.fullmatch(given) or given == b"UNSIGNED-PAYLOAD"))


def _payload_hash(mode: str, headers: list[tuple[bytes, bytes]], body: bytes | None) -> str:
    given, has_body = _framing(headers)
    if mode == "sigv4:no_body":
        return UNSIGNED_PAYLOAD
    if given is not None and given.startswith(b"STREAMING-") and given != b"STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        raise ResignRefused(501, "chunk-signed streaming payloads cannot be re-signed; use credential_signing:"
                            " sigv4:no_body or an unsigned payload")  # fmt: skip
    if body is not None:
        return hashlib.sha256(body).hexdigest()
    if mode == "sigv4" and given is not None and (_HEX64.fullmatch(given) or given == UNSIGNED_PAYLOAD.encode()):
        return given.decode()
    if mode == "sigv4" and given == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        return UNSIGNED_PAYLOAD
    if not has_body:
        return EMPTY_SHA256
    # defensive: needs_body() made the proxy read every body this could be reached with
    raise ResignRefused(501, "this request's body was not read, so its hash cannot be signed")


def resign(endpoint: Endpoint, method: str, host: str, target: bytes, headers: list[tuple[bytes, bytes]],
           body: bytes | None, keys: tuple[str, str, str | None]) -> list[tuple[bytes, bytes]]:  # fmt: skip
    """``headers`` re-signed for ``endpoint`` with ``keys`` (access key id, secret, session token or None)."""
    assert endpoint.credential_signing is not None and endpoint.signing_service is not None
    payload = _payload_hash(endpoint.credential_signing, headers, body)
    authority = next((v for k, v in headers if k == b"host"), host.encode()).decode("latin-1")
    path, _, query = target.decode("latin-1").partition("?")
    text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k != b"host"]
    signed = sign_headers(method=method, host=authority, path=path, query=query, headers=text, payload_hash=payload,
                          access_key=keys[0], secret_key=keys[1], session_token=keys[2],
                          region=region_of(host, endpoint), service=endpoint.signing_service)  # fmt: skip
    host_first = [(b"host", authority.encode("latin-1"))]
    return host_first + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in signed]
