"""Who is calling: the gateway vouches for the sandbox of every request it forwards to the router.

The gateway removes any identity header the sandbox sent and adds two of its own::

    x-clawfleet-sandbox:  alpha
    x-clawfleet-identity: v1.<unix seconds>.<nonce>.<hex HMAC-SHA256(K_sandbox, "v1\\n<sandbox>\\n<ts>\\n<nonce>")>

where ``K_sandbox = HMAC-SHA256(key, "clawfleet-router-identity\\n<sandbox>")``: the process that serves one
sandbox's traffic (:class:`clawfleet.gateway.router_identity.RouterIdentity`) keeps that sandbox's key alone,
so even taken over it can vouch for no other sandbox; the router derives the key of the sandbox a proof names.
The key is per host, in a root-only file (``/etc/clawfleet/router/identity.key``) that the gateway reads
directly and the router receives as a systemd credential. Whoever lacks the key (a sandbox, any other host
process talking to the router's loopback port) cannot produce a valid proof, so a header it writes is
ignored: the request is attributed to ``unknown`` or refused (``identity.unknown: refuse``). The timestamp
bounds a proof's life (``max_skew_s``) and each nonce is accepted once within that window, so a proof seen on
the wire cannot be replayed. Only the request's attribution is signed, not its body: what a request may do
is still decided by the classifier and the limits, never by who claims to send it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

HEADER_SANDBOX = "x-clawfleet-sandbox"
HEADER_PROOF = "x-clawfleet-identity"
IDENTITY_HEADERS = (HEADER_SANDBOX, HEADER_PROOF)
UNKNOWN = "unknown"
VERSION = "v1"
MIN_KEY_BYTES = 32
SANDBOX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PROOF = re.compile(r"^v1\.(\d{1,12})\.([A-Za-z0-9_\-]{16,64})\.([0-9a-f]{64})$")


class IdentityKeyError(ValueError):
    """The identity key file is missing, too open, or too short (the message never holds the key)."""


def load_key(path: str | os.PathLike[str], *, check_mode: bool = True) -> bytes:
    """Read the per-host identity key. It must not be readable by others (mode 0600/0640/0400)."""
    p = Path(path)
    try:
        st = p.stat()
        raw = p.read_bytes().strip()
    except OSError as exc:
        raise IdentityKeyError(f"cannot read identity key {str(p)!r}: {exc.strerror}") from None
    if check_mode and st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise IdentityKeyError(f"identity key {str(p)!r} is readable or writable by others; chmod 0600 it")
    if len(raw) < MIN_KEY_BYTES:
        raise IdentityKeyError(f"identity key {str(p)!r} is shorter than {MIN_KEY_BYTES} bytes")
    return raw


def sandbox_key(key: bytes, sandbox: str) -> bytes:
    """The key that signs for ``sandbox`` alone, derived from the per-host ``key``."""
    return hmac.new(key, f"clawfleet-router-identity\n{sandbox}".encode(), hashlib.sha256).digest()


def _mac(skey: bytes, sandbox: str, ts: int, nonce: str) -> str:
    msg = f"{VERSION}\n{sandbox}\n{ts}\n{nonce}".encode()
    return hmac.new(skey, msg, hashlib.sha256).hexdigest()


def sign_as(skey: bytes, sandbox: str, *, now: float | None = None, nonce: str | None = None) -> str:
    """The proof header value for ``sandbox``, signed with its own key (:func:`sandbox_key`)."""
    ts = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_urlsafe(18)
    return f"{VERSION}.{ts}.{nonce}.{_mac(skey, sandbox, ts, nonce)}"


def sign(key: bytes, sandbox: str, *, now: float | None = None, nonce: str | None = None) -> str:
    """The proof header value for ``sandbox``, from the per-host ``key``."""
    return sign_as(sandbox_key(key, sandbox), sandbox, now=now, nonce=nonce)


class IdentityVerifier:
    """Checks the gateway's proof. ``verify`` returns (sandbox, None) or (None, reason code)."""

    def __init__(self, key: bytes, *, max_skew_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.max_skew_s = max_skew_s
        self._clock = clock
        self._seen: dict[str, float] = {}  # nonce -> expiry

    def __repr__(self) -> str:  # the key never shows up in a repr
        return f"IdentityVerifier(max_skew_s={self.max_skew_s})"

    def verify(self, sandboxes: list[str], proofs: list[str]) -> tuple[str | None, str | None]:
        if not sandboxes and not proofs:
            return None, "missing"
        if len(sandboxes) != 1 or len(proofs) != 1:
            return None, "malformed"
        sandbox, proof = sandboxes[0].strip(), proofs[0].strip()
        m = _PROOF.fullmatch(proof)
        if m is None or not SANDBOX_NAME.fullmatch(sandbox):
            return None, "malformed"
        ts, nonce, mac = int(m.group(1)), m.group(2), m.group(3)
        now = self._clock()
        if abs(now - ts) > self.max_skew_s:
            return None, "stale"
        if not hmac.compare_digest(mac, _mac(sandbox_key(self._key, sandbox), sandbox, ts, nonce)):
            return None, "bad_signature"
        self._prune(now)
        if nonce in self._seen:
            return None, "replayed"
        self._seen[nonce] = ts + self.max_skew_s
        return sandbox, None

    def _prune(self, now: float) -> None:
        if len(self._seen) < 4096:
            return
        self._seen = {n: exp for n, exp in self._seen.items() if exp >= now}
