"""AWS Signature Version 4, as the gateway signs with keys the sandbox never holds (upstream's
``credential_signing: sigv4``) and as it calls STS ``AssumeRole`` to mint them (:mod:`.token_mint`).

Hand-written rather than botocore's ``SigV4Auth``: botocore 1.44.18 is a 17.5 MB wheel (``pip download botocore
--no-deps``; mostly service models) plus jmespath and python-dateutil, for some hundred lines that matter here,
and it signs its own request objects where the gateway signs the bytes a sandbox sent. The signer reproduces
AWS's published SigV4 test-suite signatures (tests/gateway/test_sigv4.py: get-vanilla,
get-vanilla-query-order-key-case, post-vanilla, post-vanilla-query) and a fake S3 that verifies with the real
secret accepts what it signs.

What it signs: ``host``, ``content-type`` when present, and every ``x-amz-*`` header (the date, the payload
hash, the session token), so a header the origin authenticates cannot be changed after signing.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import quote, unquote

__all__ = ["EMPTY_SHA256", "UNSIGNED_PAYLOAD", "canonical_request", "sign_headers", "signing_key"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_ALGORITHM = "AWS4-HMAC-SHA256"
# Headers that are the sandbox's own signature or the keys it was made with: never forwarded, always replaced.
_DROPPED = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's derived key (``kSigning``): HMAC chained over date, region, service and ``aws4_request``."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _uri(path: str, service: str) -> str:
    """The canonical URI. S3 signs the path as sent (encoded once, never normalised); every other service signs
    it normalised (``.``/``..``/``//`` removed) with each segment encoded twice, as the SigV4 rules say."""
    if not path:
        return "/"
    if service == "s3":
        return quote(unquote(path), safe="/~")
    normal = posixpath.normpath(unquote(path)) if path != "/" else "/"
    if path.endswith("/") and normal != "/":
        normal += "/"
    normal = "/" + normal.lstrip("/")
    once = quote(normal, safe="/~")
    return quote(once, safe="/~")


def _query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else ():
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    method: str, path: str, query: str, headers: Iterable[tuple[str, str]], payload_hash: str, service: str
) -> tuple[str, str]:
    """(the canonical request, the signed header names joined by ``;``). ``headers``: the ones to sign."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    lines = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    signed = ";".join(names)
    text = "\n".join((method.upper(), _uri(path, service), _query(query), lines, signed, payload_hash))
    return text, signed


def sign_headers(
    *,
    method: str,
    host: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    payload_hash: str,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    session_token: str | None = None,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """The request's headers with the sandbox's ``Authorization`` and ``X-Amz-Date`` / ``-Security-Token`` /
    ``-Content-Sha256`` dropped and the gateway's own put in their place. ``host``: as the origin will see it
    (``bucket.s3.eu-west-1.amazonaws.com``, with ``:port`` when not the scheme's default)."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    amz_date, date = stamp.strftime("%Y%m%dT%H%M%SZ"), stamp.strftime("%Y%m%d")
    kept = [(n, v) for n, v in headers if n.lower() not in _DROPPED and n.lower() != "host"]
    added = [("host", host), ("x-amz-date", amz_date)]
    if service == "s3" or payload_hash == UNSIGNED_PAYLOAD:
        added.append(("x-amz-content-sha256", payload_hash))
    if session_token:
        added.append(("x-amz-security-token", session_token))
    to_sign = [*added, *((n, v) for n, v in kept if n.lower() == "content-type" or n.lower().startswith("x-amz-"))]
    text, signed = canonical_request(method, path, query, to_sign, payload_hash, service)
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join((_ALGORITHM, amz_date, scope, hashlib.sha256(text.encode("utf-8")).hexdigest()))
    signature = hmac.new(signing_key(secret_key, date, region, service), string_to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()  # fmt: skip
    auth = f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return [*kept, *added[1:], ("authorization", auth)]
